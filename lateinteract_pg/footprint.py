"""What a collection costs on disk, part by part (:meth:`Collection.storage`).

The token partition and the per-collection indexes belong to one collection: their file
sizes count whole. The documents table (its heap, its TOAST table, its btree indexes) is
shared by every collection of the schema: a collection's share of each file is in
proportion to the bytes of its rows as stored (``pg_column_size``), so the shares of all
collections add up to the files.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from .catalog import CollectionSpec
from .types import StorageReport

__all__ = ["measure_storage"]

_FILES = """
SELECT pg_table_size(to_regclass(%(partition)s)),
       coalesce(pg_relation_size(to_regclass(%(keys)s)), 0),
       coalesce(pg_relation_size(to_regclass(%(hnsw)s)), 0),
       coalesce(pg_relation_size(to_regclass(%(dense)s)), 0),
       coalesce(pg_relation_size(to_regclass(%(full_text)s)), 0),
       pg_relation_size(%(documents)s::regclass),
       coalesce(pg_table_size(c.reltoastrelid), 0),
       (SELECT coalesce(sum(pg_relation_size(i.indexrelid)), 0)
        FROM pg_catalog.pg_index AS i JOIN pg_catalog.pg_class AS ic ON ic.oid = i.indexrelid
        WHERE i.indrelid = c.oid AND ic.relname !~ '^documents_[0-9]+_(dense_hnsw|tsv)$')
FROM pg_catalog.pg_class AS c WHERE c.oid = %(documents)s::regclass
"""

# this collection's rows and all rows of the documents table, in stored bytes
_ROWS = """
SELECT coalesce(sum(pg_column_size(d.*)) FILTER (WHERE d.collection_id = %(id)s), 0),
       coalesce(sum(coalesce(pg_column_size(d.matrix), pg_column_size(d.vectors)))
                FILTER (WHERE d.collection_id = %(id)s), 0),
       coalesce(sum(pg_column_size(d.*)), 0),
       coalesce(sum(d.n_tokens) FILTER (WHERE d.collection_id = %(id)s), 0)
FROM {documents} AS d
"""


def measure_storage(conn: Any, spec: CollectionSpec) -> StorageReport:
    """The bytes of each part of the collection (see :class:`~lateinteract_pg.StorageReport`)."""

    def name(relation: str) -> str:
        return spec.table(relation).as_string(conn)

    files = conn.execute(
        _FILES,
        {
            "partition": spec.partition.as_string(conn),
            "keys": name(f"tokens_{spec.id}_pkey"),
            "hnsw": spec.token_index.as_string(conn),
            "dense": spec.dense_index.as_string(conn),
            "full_text": spec.full_text_index.as_string(conn),
            "documents": spec.documents.as_string(conn),
        },
    ).fetchone()
    own, rescoring, everyone, n_tokens = conn.execute(
        sql.SQL(_ROWS).format(documents=spec.documents), {"id": spec.id}
    ).fetchone()
    share = int(own) / int(everyone) if everyone else 0.0
    parts = {
        "token_heap": int(files[0] or 0),
        "token_keys": int(files[1]),
        "candidate_index": int(files[2]),
        "document_heap": round(share * int(files[5])),
        "toast": round(share * int(files[6])),
        "document_keys": round(share * int(files[7] or 0)),
        "dense_index": int(files[3]),
        "full_text_index": int(files[4]),
    }
    return StorageReport(parts, int(rescoring), int(n_tokens))
