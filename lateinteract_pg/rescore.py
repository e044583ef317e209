"""Stage 2: fetch candidates' packed token matrices in binary, score them with exact MaxSim.

Each document row carries its matrix as one ``bytea`` (stored uncompressed), so stage 2
reads one row per candidate and decodes all of them with ``numpy.frombuffer``: no
per-token rows, no text parsing. Two layouts, chosen per collection:

- ``float16``: n_tokens x dim little-endian float16 (2 bytes per value); scores are exact
  MaxSim of the stored vectors;
- ``int8``: n_tokens x dim int8, then n_tokens little-endian float32 scales (token i is
  its int8 row times its scale; about half the bytes); scores are MaxSim of the quantised
  vectors, within about 0.5% of the exact ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Literal

import numpy as np
from psycopg import sql

from .maxsim import half_to_float32, maxsim_packed, scratch

__all__ = [
    "RESCORE_STORAGES",
    "Packed",
    "RescoreStorage",
    "decode_matrices",
    "fetch_from_token_rows",
    "fetch_matrices",
    "fetch_sql",
    "pack_matrices",
    "scan_all",
    "scan_sql",
    "token_rows_sql",
]

RescoreStorage = Literal["float16", "int8"]
RESCORE_STORAGES: tuple[RescoreStorage, ...] = ("float16", "int8")

_FETCH = "SELECT id, matrix FROM {documents} WHERE id = ANY({ids})"

_SCAN = """
SELECT id, matrix FROM {documents}
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


@dataclass(frozen=True)
class Packed:
    """Documents' matrices back to back: document j is ``tokens[offsets[j]:offsets[j+1]]``;
    int8 tokens come with per-token ``scales``."""

    ids: np.ndarray  # (n,) int64 internal ids
    tokens: np.ndarray  # (total, dim) float16 or int8
    offsets: np.ndarray  # (n + 1,) int64
    scales: np.ndarray | None = None  # (total,) float32 for int8

    def maxsim(self, query: np.ndarray) -> np.ndarray:
        """MaxSim of ``query`` against each document, in ``ids`` order."""
        return maxsim_packed(query, self.tokens, self.offsets, self.scales)

    def float32(self) -> np.ndarray:
        """All tokens as a (total, dim) float32 array."""
        if self.scales is None:
            return half_to_float32(self.tokens)
        return self.tokens.astype(np.float32) * self.scales[:, None]


def fetch_sql(documents: sql.Composable) -> sql.Composed:
    return sql.SQL(_FETCH).format(documents=documents, ids=sql.Placeholder("ids"))


def scan_sql(documents: sql.Composable) -> sql.Composed:
    return sql.SQL(_SCAN).format(
        documents=documents,
        collection=sql.Placeholder("collection"),
        after=sql.Placeholder("after"),
        limit=sql.Placeholder("limit"),
    )


def token_rows_sql(tokens: sql.Composable, collection_id: int) -> sql.Composed:
    return sql.SQL(_TOKEN_ROWS).format(
        tokens=tokens, collection=sql.Literal(collection_id), ids=sql.Placeholder("ids")
    )


def pack_matrices(tokens: np.ndarray, offsets: np.ndarray, storage: RescoreStorage) -> list[bytes]:
    """Each document's matrix as the bytes of its ``matrix`` column.

    >>> t = np.array([[0.5, -1.0], [0.25, 0.125]], dtype=np.float16)
    >>> [len(b) for b in pack_matrices(t, np.array([0, 1, 2]), "int8")]
    [6, 6]
    >>> d = decode_matrices([(1, b) for b in pack_matrices(t, np.array([0, 2]), "int8")], 2,
    ...                     "int8")
    >>> np.round(d.float32().astype(float), 3).tolist()
    [[0.504, -1.0], [0.25, 0.126]]
    """
    if storage == "float16":
        little_endian = tokens.astype("<f2", copy=False)
        return [little_endian[lo:hi].tobytes() for lo, hi in pairwise(offsets)]
    return [_int8_bytes(tokens[lo:hi]) for lo, hi in pairwise(offsets)]


def _int8_bytes(tokens: np.ndarray) -> bytes:
    """One matrix as int8 values (per-token scale: the largest magnitude maps to 127), then
    the float32 scales."""
    values = tokens.astype(np.float32)
    peak = np.abs(values).max(axis=1)
    scales = np.where(peak > 0, peak / 127.0, 1.0).astype("<f4")
    return np.rint(values / scales[:, None]).astype(np.int8).tobytes() + scales.tobytes()


def decode_matrices(
    rows: list[tuple[Any, ...]], dim: int, storage: RescoreStorage, *, reuse: bool = False
) -> Packed:
    """Rows of (id, packed bytes) -> :class:`Packed`.

    With ``reuse`` the tokens land in a per-thread buffer that the next call overwrites.
    """
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    row_bytes = 2 * dim if storage == "float16" else dim + 4
    lengths = np.fromiter((len(r[1]) // row_bytes for r in rows), dtype=np.int64, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    shape = (int(offsets[-1]), dim)
    dtype = np.float16 if storage == "float16" else np.int8
    tokens = scratch.get("packed", shape, dtype) if reuse else np.empty(shape, dtype)
    if storage == "float16":
        for (_, blob), lo, hi in zip(rows, offsets[:-1], offsets[1:]):
            tokens[lo:hi] = np.frombuffer(blob, dtype="<f2").reshape(-1, dim)
        return Packed(ids, tokens, offsets)
    scales = np.empty(shape[0], dtype=np.float32)
    for (_, blob), lo, hi in zip(rows, offsets[:-1], offsets[1:]):
        split = (hi - lo) * dim
        tokens[lo:hi] = np.frombuffer(blob, dtype=np.int8, count=split).reshape(-1, dim)
        scales[lo:hi] = np.frombuffer(blob, dtype="<f4", offset=split)
    return Packed(ids, tokens, offsets, scales)


def fetch_matrices(
    conn: Any,
    statement: sql.Composed,
    doc_ids: np.ndarray,
    dim: int,
    storage: RescoreStorage,
    *,
    reuse: bool = False,
) -> Packed:
    """Packed matrices of ``doc_ids`` (internal ids), in fetch order.

    Rows are streamed (libpq single-row mode): no result set of all matrices is assembled.
    """
    with conn.cursor(binary=True) as cursor:
        rows = list(cursor.stream(statement, {"ids": doc_ids.tolist()}))
    return decode_matrices(rows, dim, storage, reuse=reuse)


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
    storage: RescoreStorage,
    from_token_rows: bool = False,
) -> tuple[np.ndarray, np.ndarray, int]:
    """MaxSim of every candidate: (ids, scores, tokens read)."""
    if from_token_rows:
        packed = fetch_from_token_rows(conn, statement, doc_ids, dim)
    else:
        packed = fetch_matrices(conn, statement, doc_ids, dim, storage, reuse=True)
    return packed.ids, packed.maxsim(query), len(packed.tokens)


def scan_all(
    conn: Any,
    statement: sql.Composed,
    collection_id: int,
    dim: int,
    storage: RescoreStorage,
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
        yield decode_matrices(rows, dim, storage, reuse=True)
