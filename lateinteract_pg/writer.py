"""The write path: a validated batch into a collection in one transaction.

Document rows (text, metadata, the vectors stage 2 reads, the dense vector) go in with one
binary COPY, token rows with another (:mod:`~lateinteract_pg.copy_rows`; pooled where the
collection pools its index rows, ``index_pool_factor`` > 1); an id that
exists is replaced (its old rows deleted in the same transaction), and the collection's
counters move with them. The HNSW index is rebuilt around a large load and inserted into
otherwise (:data:`REBUILD_RATIO`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from pgvector import HalfVector
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.types.json import Jsonb
from tqdm.auto import tqdm

from . import pooling
from .catalog import CollectionSpec
from .copy_rows import pack_token_rows
from .errors import CollectionNotFound, InvalidInput
from .indexes import build_index, has_index
from .matrices import pack_matrices, pack_vectors
from .session import Session
from .types import IngestStats
from .validation import Batch

__all__ = ["REBUILD_RATIO", "delete", "write"]

log = logging.getLogger(__name__)

COPY_ROWS_PER_CHUNK = 50_000
PROGRESS_MIN_TOKENS = 200_000
# Rebuild the HNSW index around a load that adds at least this share of the rows. Measured
# on scifact vectors (384-d, 191k rows present, 2 cores): inserting into the graph cost
# 1.1 ms per row, rebuilding 0.17 ms per row of the whole table, so a rebuild pays off
# from about 18% (adding 48k rows: insert 53 s, rebuild 36 s).
REBUILD_RATIO = 0.2


def write(
    session: Session,
    spec: CollectionSpec,
    batch: Batch,
    *,
    progress: bool | None = None,
    rebuild_index: bool | None = None,
    documents_replaced: Sequence[str] = (),
    tenant: str | None = None,
) -> IngestStats:
    """Write a validated batch in one transaction; also removes the passages of
    ``documents_replaced``. Dense vectors come from the tokens as given, then the tokens
    are pooled if the collection pools, and the token rows pooled again if it pools its
    index rows."""
    dense = pooling.dense_vectors(batch.tokens, batch.offsets)
    batch = pooling.pool_batch(batch, spec.pool_factor)
    index_rows = pooling.pool_batch(batch, spec.index_pool_factor)
    with session.writing(f"adding to {spec.name!r}") as conn:
        replaced, remaining = _lock_and_remove(conn, spec, batch.ids, documents_replaced, tenant)
        new_tokens = len(batch.tokens)
        indexed = has_index(conn, spec)
        # building HNSW over all rows at once beats inserting many rows into the graph
        if rebuild_index is None:
            rebuild_index = new_tokens >= REBUILD_RATIO * max(remaining, 1)
        rebuild = not indexed or rebuild_index
        if indexed and rebuild:
            conn.execute(sql.SQL("DROP INDEX {}").format(spec.token_index))
        started = time.perf_counter()
        doc_ids = _insert_documents(conn, spec, batch, dense, tenant)
        _copy_tokens(conn, spec, doc_ids, index_rows, progress, tenant)
        copied = time.perf_counter()
        if rebuild:
            build_index(session, spec)
        _count(conn, spec, len(batch.ids), new_tokens)
    log.info("added %d documents (%d tokens) to %r", len(batch.ids), new_tokens, spec.name)
    return IngestStats(
        documents=len(batch.ids),
        token_rows=new_tokens,
        replaced=replaced,
        copy_s=copied - started,
        index_s=time.perf_counter() - copied,
        index_rebuilt=rebuild,
    )


def delete(session: Session, spec: CollectionSpec, ids: list[str]) -> int:
    """Delete documents (and their token rows) by id, in one transaction; how many existed."""
    with session.writing(f"deleting from {spec.name!r}") as conn:
        removed, _ = _lock_and_remove(conn, spec, ids)
    return removed


def _count(conn: Any, spec: CollectionSpec, documents: int, tokens: int) -> None:
    """Move the collection's counters by ``documents`` and ``tokens`` (negative: removed)."""
    conn.execute(
        sql.SQL(
            "UPDATE {} SET n_documents = n_documents + %s, n_tokens = n_tokens + %s, "
            "updated_at = now() WHERE id = %s"
        ).format(spec.table("collections")),
        (documents, tokens, spec.id),
    )


def _lock_and_remove(
    conn: Any,
    spec: CollectionSpec,
    ids: list[str],
    parents: Sequence[str] = (),
    tenant: str | bool | None = False,
) -> tuple[int, int]:
    """Lock the collection row, delete documents with these ids or passages of these
    parent documents; unless ``tenant`` is False, they must belong to that tenant.

    Returns (documents removed, token rows left in the collection)."""
    row = conn.execute(
        sql.SQL("SELECT n_tokens FROM {} WHERE id = %s FOR UPDATE").format(
            spec.table("collections")
        ),
        (spec.id,),
    ).fetchone()
    if row is None:
        raise CollectionNotFound(f"collection {spec.name!r} no longer exists")
    which = sql.SQL("external_id = ANY(%s)")
    params: tuple[Any, ...] = (spec.id, ids)
    if parents:  # the passages of re-added documents too
        which = sql.SQL("(external_id = ANY(%s) OR metadata ->> 'document_id' = ANY(%s))")
        params += (list(parents),)
    old = conn.execute(
        sql.SQL(
            "DELETE FROM {} WHERE collection_id = %s AND {} RETURNING id, n_tokens, tenant, "
            "external_id"
        ).format(spec.documents, which),
        params,
    ).fetchall()
    if not old:
        return 0, int(row[0])
    others = [r[3] for r in old if tenant is not False and r[2] != tenant]
    if others:  # raised inside the transaction: nothing is deleted
        raise InvalidInput(
            f"documents {others[:5]} belong to another tenant than {tenant!r}: ids are "
            "unique per collection; give each tenant's documents their own ids"
        )
    conn.execute(
        sql.SQL("DELETE FROM {} WHERE doc_id = ANY(%s)").format(spec.partition),
        ([r[0] for r in old],),
    )
    removed_tokens = sum(int(r[1]) for r in old)
    _count(conn, spec, -len(old), -removed_tokens)
    return len(old), int(row[0]) - removed_tokens


def _insert_documents(
    conn: Any, spec: CollectionSpec, batch: Batch, dense: np.ndarray, tenant: str | None
) -> np.ndarray:
    """COPY the document rows; returns their internal ids, taken from the table's sequence."""
    n = len(batch.ids)
    sequence = conn.execute(
        "SELECT pg_get_serial_sequence(%s, 'id')", (spec.documents.as_string(conn),)
    ).fetchone()[0]
    rows = conn.execute(
        "SELECT nextval(%s::regclass) FROM generate_series(1, %s)", (sequence, n)
    ).fetchall()
    doc_ids = np.array([r[0] for r in rows], dtype=np.int64)
    cursor = conn.cursor()
    if spec.matrix_layout == "vectors":  # packed here; psycopg passes the bytes on as they are
        halfvec = cursor.adapters.types["halfvec"]
        cursor.adapters.register_dumper(None, _prepacked_dumper(halfvec.array_oid))
        matrices = pack_vectors(batch.tokens, batch.offsets, halfvec.oid)
        column, column_type = "vectors", "halfvec[]"
    else:
        matrices = pack_matrices(batch.tokens, batch.offsets, spec.rescore_storage)
        column, column_type = "matrix", "bytea"
    copy_sql = sql.SQL(  # the tsvector is the trigger's (sql/functions/documents_tsv.sql)
        "COPY {} (id, collection_id, external_id, text, metadata, n_tokens, {}, offsets, "
        "dense, tenant) FROM STDIN WITH (FORMAT BINARY)"
    ).format(spec.documents, sql.Identifier(column))
    with cursor.copy(copy_sql) as copy:
        copy.set_types(
            ["int8", "int4", "text", "text", "jsonb", "int4", column_type, "int4[]", "halfvec",
             "text"]
        )  # fmt: skip
        for j, length in enumerate(batch.lengths):
            meta, spans = batch.metadata[j], batch.spans[j]
            copy.write_row(
                (
                    int(doc_ids[j]),
                    spec.id,
                    batch.ids[j],
                    batch.texts[j],
                    None if meta is None else Jsonb(meta),
                    int(length),
                    matrices[j],
                    None if spans is None else spans.tolist(),
                    HalfVector(dense[j]),
                    tenant,
                )
            )
    return doc_ids


def _copy_tokens(
    conn: Any,
    spec: CollectionSpec,
    doc_ids: np.ndarray,
    batch: Batch,
    progress: bool | None,
    tenant: str | None,
) -> None:
    total = len(batch.tokens)
    show = total >= PROGRESS_MIN_TOKENS if progress is None else progress
    copy_sql = sql.SQL(
        "COPY {} (collection_id, doc_id, position, embedding, tenant) FROM STDIN "
        "WITH (FORMAT BINARY)"
    ).format(spec.partition)
    with (
        tqdm(total=total, unit="tok", desc=f"COPY {spec.name}", disable=not show) as bar,
        conn.cursor().copy(copy_sql) as copy,
    ):
        for rows, payload in pack_token_rows(spec.id, doc_ids, batch, COPY_ROWS_PER_CHUNK, tenant):
            copy.write(payload)
            bar.update(rows)


def _prepacked_dumper(oid: int) -> type[Dumper]:
    """A binary dumper for type ``oid`` of values already in its binary format."""

    class Prepacked(Dumper):
        format = Format.BINARY

        def dump(self, obj: Any) -> bytes:
            return bytes(obj)

    Prepacked.oid = oid
    return Prepacked
