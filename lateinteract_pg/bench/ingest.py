"""The bench's collections in PostgreSQL: ingested from the encodings (COPY rate, HNSW build
time), reused when kept, and what they cost: bytes on disk and the server's memory."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from ..catalog import creation_options, read_sizes
from ..collection import Collection
from ..store import Store
from ..types import Document
from .encoding import Encoded

__all__ = ["ingest", "server_info", "storage_bytes"]

log = logging.getLogger(__name__)

INGESTS = "bench_ingests"  # the figures of each kept collection's ingest


def ingest(
    store: Store,
    name: str,
    enc: Encoded,
    echo: Callable[[str], None],
    keep: bool,
    texts: list[str] | None = None,
    **options: Any,
) -> tuple[Collection, dict[str, Any]]:
    """The collection ``name`` holding the encoded documents (and their texts), created with
    ``options`` (candidate_index, pool_factor, rescore_storage); reused when kept."""
    n_tokens = len(enc.doc_tokens)
    if keep and name in store:
        coll = store.collection(name)
        wanted = creation_options(options)  # what creating it now would give
        same = all(getattr(coll.spec, option) == value for option, value in wanted.items())
        has_texts = texts is None or (coll.get(enc.doc_ids[0]) or Document("", None)).text
        # the same vectors: the same width and, unpooled, the same number of them
        stored = read_sizes(coll.conn, coll.spec).n_tokens
        same_vectors = coll.dim == enc.doc_tokens.shape[1] and (
            coll.spec.pool_factor > 1 or stored == n_tokens
        )
        if len(coll) == len(enc.doc_ids) and same and has_texts and same_vectors:
            echo(f"collection {name!r}: reusing {len(coll)} documents")
            return coll, {**_remembered(store, name), "reused": True}
        store.drop_collection(name)
    elif name in store:
        store.drop_collection(name)
    coll = store.collection(name, dim=enc.doc_tokens.shape[1], **options)
    echo(f"ingesting {len(enc.doc_ids)} documents, {n_tokens} token rows into {name!r} ...")
    coll.add_embeddings(enc.doc_ids, enc.documents(), texts=texts)
    stats = coll.last_ingest
    assert stats is not None
    figures = {
        "token_rows": n_tokens,
        "copy_s": round(stats.copy_s, 2),
        "copy_rows_per_s": round(n_tokens / stats.copy_s) if stats.copy_s else None,
        "hnsw_build_s": round(stats.index_s, 1),
    }
    _remember(store, name, figures)
    return coll, {"reused": False, **figures}


def _remember(store: Store, name: str, figures: dict[str, Any]) -> None:
    """Keep a collection's ingest figures beside it, for the runs that reuse it."""
    with store.conn.transaction():
        store.conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (collection text PRIMARY KEY, figures jsonb)"
            ).format(store.table(INGESTS))
        )
        store.conn.execute(
            sql.SQL(
                "INSERT INTO {} VALUES (%s, %s) ON CONFLICT (collection) "
                "DO UPDATE SET figures = excluded.figures"
            ).format(store.table(INGESTS)),
            (name, Jsonb(figures)),
        )


def _remembered(store: Store, name: str) -> dict[str, Any]:
    """The ingest figures of the run that built ``name`` ({} when none were kept)."""
    table = store.table(INGESTS)
    found = store.conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", (table.as_string(store.conn),)
    ).fetchone()
    if not found or not found[0]:
        return {}
    row = store.conn.execute(
        sql.SQL("SELECT figures FROM {} WHERE collection = %s").format(table),
        (name,),
    ).fetchone()
    return dict(row[0]) if row else {}


def storage_bytes(coll: Collection, n_tokens: int) -> dict[str, Any]:
    """Bytes of the collection, part by part, from :meth:`Collection.storage`.

    Per token means per token as encoded (``n_tokens``), also for a pooled collection, whose
    bytes are spread over the tokens it was given.
    """
    report = coll.storage()
    parts = dict(report.parts)
    row = coll.conn.execute(
        sql.SQL(
            "SELECT coalesce(sum(pg_column_size(dense)), 0), count(*) FROM {} "
            "WHERE collection_id = %s"
        ).format(coll.spec.documents),
        (coll.id,),
    ).fetchone()
    dense, n_docs = int(row[0]), max(1, int(row[1]))
    return {
        "bytes": parts,
        "bytes_total": report.total,
        "bytes_per_token": {name: round(v / n_tokens, 1) for name, v in parts.items()}
        | {"rescoring": round(report.rescoring / n_tokens, 1)}
        | {"total": round(report.total / n_tokens, 1)},
        "bytes_per_document": round(report.total / n_docs, 1),
        "dense_tier_bytes_per_document": round((dense + parts["dense_index"]) / n_docs, 1),
    }


def server_info(store: Store) -> dict[str, Any]:
    """Version, memory settings and, for a server on this machine, its processes' memory."""
    conn = store.conn
    info: dict[str, Any] = {
        "version": conn.execute("SHOW server_version").fetchone()[0],  # type: ignore[index]
        "shared_buffers": conn.execute("SHOW shared_buffers").fetchone()[0],  # type: ignore[index]
    }
    try:
        import psutil

        data_dir = conn.execute("SHOW data_directory").fetchone()[0]  # type: ignore[index]
        rss = pss = 0
        for proc in psutil.process_iter(["name"]):
            try:
                if proc.info["name"] == "postgres" and proc.cwd() == data_dir:
                    full = proc.memory_full_info()
                    rss += full.rss
                    pss += getattr(full, "pss", full.rss)
            except (psutil.Error, OSError):
                continue
        if rss:
            info["memory_rss_mb"] = round(rss / 2**20, 1)
            info["memory_pss_mb"] = round(pss / 2**20, 1)
    except Exception as exc:  # not superuser, psutil missing, or a remote server
        log.info("server memory not measured: %s", exc)
    return info
