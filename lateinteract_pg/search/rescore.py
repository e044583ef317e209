"""Stage 2: fetch candidates' token matrices in binary, score them with exact MaxSim.

Each document row carries its vectors in one column (a ``bytea`` matrix, or ``halfvec[]``
where the token rows are pooled; stored uncompressed; layouts in
:mod:`~lateinteract_pg.matrices`), so stage 2 reads one row per candidate and decodes all of
them with ``numpy.frombuffer``: no per-token rows, no text parsing. float16 matrices give
exact MaxSim of the stored vectors. int8 ones give MaxSim within about 0.5% of it, so they
rank the candidates, and the best of them are then re-scored exactly from their token rows
(:func:`refine`): returned scores are exact either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from psycopg import sql

from ..matrices import Packed, decode_matrices
from ..types import MatrixLayout

__all__ = [
    "fetch_from_token_rows",
    "fetch_matrices",
    "fetch_sql",
    "refine",
    "refine_count",
    "scan_all",
    "scan_sql",
    "score_candidates",
    "token_rows_sql",
]

_FETCH = "SELECT id, {column} FROM {documents} WHERE id = ANY({ids})"

_SCAN = """
SELECT id, {column} FROM {documents}
WHERE collection_id = {collection} AND id > {after}
ORDER BY id
LIMIT {limit}
"""

# the per-token alternative: one row per token, in pgvector's binary form (int16 dim,
# int16 unused, then dim big-endian float16)
_TOKEN_ROWS = """
SELECT doc_id, halfvec_send(embedding) FROM {tokens}
WHERE collection_id = {collection} AND doc_id = ANY({ids})
ORDER BY doc_id, position
"""


def _column(layout: MatrixLayout) -> sql.SQL:
    """The document column of ``layout``, as bytes."""
    return sql.SQL("pg_catalog.array_send(vectors)" if layout == "vectors" else "matrix")


def fetch_sql(documents: sql.Composable, layout: MatrixLayout) -> sql.Composed:
    return sql.SQL(_FETCH).format(
        column=_column(layout), documents=documents, ids=sql.Placeholder("ids")
    )


def scan_sql(documents: sql.Composable, layout: MatrixLayout) -> sql.Composed:
    return sql.SQL(_SCAN).format(
        column=_column(layout),
        documents=documents,
        collection=sql.Placeholder("collection"),
        after=sql.Placeholder("after"),
        limit=sql.Placeholder("limit"),
    )


def token_rows_sql(tokens: sql.Composable, collection_id: int) -> sql.Composed:
    return sql.SQL(_TOKEN_ROWS).format(
        tokens=tokens, collection=sql.Literal(collection_id), ids=sql.Placeholder("ids")
    )


def fetch_matrices(
    conn: Any,
    statement: sql.Composed,
    doc_ids: np.ndarray,
    dim: int,
    layout: MatrixLayout,
    *,
    reuse: bool = False,
) -> Packed:
    """Packed matrices of ``doc_ids`` (internal ids), in fetch order.

    Rows are streamed (libpq single-row mode): no result set of all matrices is assembled.
    """
    with conn.cursor(binary=True) as cursor:
        rows = list(cursor.stream(statement, {"ids": doc_ids.tolist()}))
    return decode_matrices(rows, dim, layout, reuse=reuse)


def fetch_from_token_rows(
    conn: Any, statement: sql.Composed, doc_ids: np.ndarray, dim: int
) -> Packed:
    """The same as :func:`fetch_matrices`, read from the token table: one row per token
    (always float16)."""
    with conn.cursor(binary=True) as cursor:
        rows = cursor.execute(statement, {"ids": doc_ids.tolist()}).fetchall()
    if not rows:
        return Packed(np.zeros(0, np.int64), np.zeros((0, dim), np.float16), np.zeros(1, np.int64))
    owners = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    raw = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.uint8).reshape(len(rows), -1)
    tokens = raw[:, 4:].copy().view(">f2").astype(np.float16)
    starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
    offsets = np.append(starts, len(rows)).astype(np.int64)
    return Packed(owners[starts], tokens, offsets)


def score_candidates(
    conn: Any,
    statement: sql.Composed,
    query: np.ndarray,
    doc_ids: np.ndarray,
    dim: int,
    layout: MatrixLayout,
    from_token_rows: bool = False,
) -> tuple[np.ndarray, np.ndarray, int]:
    """MaxSim of every candidate: (ids, scores, tokens read)."""
    if from_token_rows:
        packed = fetch_from_token_rows(conn, statement, doc_ids, dim)
    else:
        packed = fetch_matrices(conn, statement, doc_ids, dim, layout, reuse=True)
    return packed.ids, packed.maxsim(query), len(packed.tokens)


def scan_all(
    conn: Any,
    statement: sql.Composed,
    collection_id: int,
    dim: int,
    layout: MatrixLayout,
    docs_per_batch: int = 256,
) -> Iterator[Packed]:
    """Every document of a collection, in batches."""
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
        yield decode_matrices(rows, dim, layout, reuse=True)


def refine_count(k: int) -> int:
    """How many of the best candidates by int8 scores are re-scored exactly for a top-k:
    a document whose int8 score is off by 0.5% moves a few ranks at most."""
    return max(2 * k, k + 16)


def refine(
    conn: Any,
    statement: sql.Composed,
    query: np.ndarray,
    ranked: list[tuple[int, float]],
    dim: int,
    k: int,
) -> list[tuple[int, float]]:
    """The top ``k`` of ``ranked`` (internal id, approximate score) by exact MaxSim from
    the token rows, where only the first :func:`refine_count` are re-scored."""
    head = ranked[: refine_count(k)]
    if not head:
        return []
    packed = fetch_from_token_rows(conn, statement, np.array([d for d, _ in head]), dim)
    scores = packed.maxsim(query)
    exact = sorted(zip(packed.ids.tolist(), scores.tolist()), key=lambda p: (-p[1], p[0]))
    return [(int(d), float(s)) for d, s in exact[:k]]
