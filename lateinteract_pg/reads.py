"""Reading documents back: one by id, and how many a role can read."""

from __future__ import annotations

from typing import Any

import numpy as np
from psycopg import sql

from .catalog import CollectionSpec, read_sizes
from .search.filters import count_matching
from .search.rescore import fetch_from_token_rows, fetch_matrices, fetch_sql, token_rows_sql
from .types import Document

__all__ = ["count_documents", "get_document"]


def count_documents(conn: Any, spec: CollectionSpec) -> int:
    """How many documents of the collection this role can read."""
    sizes = read_sizes(conn, spec)
    if not sizes.restricted:
        return sizes.n_documents
    return count_matching(conn, spec, (sql.SQL("true"), {}))[0]


def get_document(
    conn: Any, spec: CollectionSpec, id: str, embeddings: bool = False
) -> Document | None:
    """The document with external id ``id`` (its stored token vectors with ``embeddings``:
    from its float16 matrix or vectors, or from its token rows where the matrix is int8), or
    None."""
    row = conn.execute(
        sql.SQL(
            "SELECT id, text, metadata, n_tokens FROM {} "
            "WHERE collection_id = %s AND external_id = %s"
        ).format(spec.documents),
        (spec.id, id),
    ).fetchone()
    if row is None:
        return None
    matrix = None
    if embeddings:
        doc_ids = np.array([row[0]])
        layout = spec.matrix_layout
        if layout != "int8":
            fetch = fetch_sql(spec.documents, layout)
            packed = fetch_matrices(conn, fetch, doc_ids, spec.dim, layout)
        else:  # the token rows keep the vectors exactly
            packed = fetch_from_token_rows(
                conn, token_rows_sql(spec.tokens, spec.id), doc_ids, spec.dim
            )
        matrix = packed.float32()
    return Document(id, row[1], row[2], int(row[3]), matrix)
