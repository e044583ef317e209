"""Stage 2: fetch candidates' packed token matrices in binary, score them with exact MaxSim.

Each document row carries its matrix as one ``bytea`` (n_tokens x dim little-endian
float16, stored uncompressed), so stage 2 reads one row per candidate and decodes all of
them with a single ``numpy.frombuffer``: no per-token rows, no text parsing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from psycopg import sql

from .maxsim import maxsim_packed, scratch

__all__ = ["decode_matrices", "fetch_matrices", "fetch_sql", "scan_all", "scan_sql"]

_FETCH = "SELECT id, matrix FROM {documents} WHERE id = ANY({ids})"

_SCAN = """
SELECT id, matrix FROM {documents}
WHERE collection_id = {collection} AND id > {after}
ORDER BY id
LIMIT {limit}
"""


def fetch_sql(documents: sql.Composable) -> sql.Composed:
    return sql.SQL(_FETCH).format(documents=documents, ids=sql.Placeholder("ids"))


def scan_sql(documents: sql.Composable) -> sql.Composed:
    return sql.SQL(_SCAN).format(
        documents=documents,
        collection=sql.Placeholder("collection"),
        after=sql.Placeholder("after"),
        limit=sql.Placeholder("limit"),
    )


def decode_matrices(
    rows: list[tuple[Any, ...]], dim: int, *, reuse: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of (id, packed bytes) -> (ids, float16 tokens (total, dim), offsets (n + 1,)).

    With ``reuse`` the tokens land in a per-thread buffer that the next call overwrites.
    """
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    row_bytes = 2 * dim
    lengths = np.fromiter((len(r[1]) // row_bytes for r in rows), dtype=np.int64, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    shape = (int(offsets[-1]), dim)
    tokens = scratch.get("packed", shape, np.float16) if reuse else np.empty(shape, np.float16)
    for (_, blob), lo, hi in zip(rows, offsets[:-1], offsets[1:]):
        tokens[lo:hi] = np.frombuffer(blob, dtype="<f2").reshape(-1, dim)
    return ids, tokens, offsets


def fetch_matrices(
    conn: Any, statement: sql.Composed, doc_ids: np.ndarray, dim: int, *, reuse: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Packed matrices of ``doc_ids`` (internal ids): (ids in fetch order, tokens, offsets).

    Rows are streamed (libpq single-row mode): no result set of all matrices is assembled.
    """
    with conn.cursor(binary=True) as cursor:
        rows = list(cursor.stream(statement, {"ids": doc_ids.tolist()}))
    return decode_matrices(rows, dim, reuse=reuse)


def score_candidates(
    conn: Any, statement: sql.Composed, query: np.ndarray, doc_ids: np.ndarray, dim: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Exact MaxSim of every candidate: (ids, scores, tokens read)."""
    ids, tokens, offsets = fetch_matrices(conn, statement, doc_ids, dim, reuse=True)
    return ids, maxsim_packed(query, tokens, offsets), len(tokens)


def scan_all(
    conn: Any, statement: sql.Composed, collection_id: int, dim: int, docs_per_batch: int = 256
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every document of a collection, in batches of (ids, tokens, offsets)."""
    after = 0
    while True:
        rows = conn.execute(
            statement,
            {"collection": collection_id, "after": after, "limit": docs_per_batch},
            binary=True,
        ).fetchall()
        if not rows:
            return
        after = int(rows[-1][0])
        yield decode_matrices(rows, dim, reuse=True)
