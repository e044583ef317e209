"""Each document's token vectors in one column of its row (stage 2 reads it), in one of
three layouts (:attr:`CollectionSpec.matrix_layout <lateinteract_pg.catalog.CollectionSpec>`):

- ``float16``: ``matrix bytea``, n_tokens x dim little-endian float16 (2 bytes per value);
- ``int8``: ``matrix bytea``, n_tokens x dim int8, then n_tokens little-endian float32 scales
  (token i is its int8 row times its scale; about half the bytes);
- ``vectors``: ``vectors halfvec[]``, which the SQL functions read too; it travels in
  PostgreSQL's binary array format (``array_send``: a 20-byte header, then per vector a
  4-byte length, pgvector's 4-byte halfvec header and dim big-endian float16).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from .maxsim import half_to_float32, maxsim_packed, scratch
from .types import MatrixLayout, RescoreStorage

__all__ = ["VECTORS_HEADER", "Packed", "decode_matrices", "pack_matrices", "pack_vectors"]

VECTORS_HEADER = 20  # a one-dimensional array's header in the binary format
_HALFVEC_HEADER = 4  # pgvector's binary halfvec: int16 dim, int16 unused


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


def pack_vectors(tokens: np.ndarray, offsets: np.ndarray, element_oid: int) -> list[bytes]:
    """Each document's vectors as a binary ``halfvec[]`` (``element_oid``: halfvec's oid).

    >>> t = np.array([[0.5, -1.0], [0.25, 0.125]], dtype=np.float16)
    >>> blobs = pack_vectors(t, np.array([0, 2]), 1234)
    >>> len(blobs[0]) == VECTORS_HEADER + 2 * (4 + 4 + 2 * 2)
    True
    >>> decode_matrices([(7, blobs[0])], 2, "vectors").float32().tolist()
    [[0.5, -1.0], [0.25, 0.125]]
    """
    n, dim = tokens.shape
    slots = _HALFVEC_HEADER + dim  # 16-bit slots of one element, its length word included
    elements = np.zeros((n, slots), dtype=">u2")
    elements[:, 1] = 4 + 2 * dim  # the element's int32 length (its high half stays 0)
    elements[:, 2] = dim
    elements[:, 4:] = tokens.astype(">f2", copy=False).view(">u2")
    out = []
    for lo, hi in pairwise(offsets):
        header = np.array([1, 0, element_oid, hi - lo, 1], dtype=">u4").tobytes()
        out.append(header + elements[lo:hi].tobytes())
    return out


def _int8_bytes(tokens: np.ndarray) -> bytes:
    """One matrix as int8 values (per-token scale: the largest magnitude maps to 127), then
    the float32 scales."""
    values = tokens.astype(np.float32)
    peak = np.abs(values).max(axis=1)
    scales = np.where(peak > 0, peak / 127.0, 1.0).astype("<f4")
    return np.rint(values / scales[:, None]).astype(np.int8).tobytes() + scales.tobytes()


def decode_matrices(
    rows: list[tuple[Any, ...]], dim: int, layout: MatrixLayout, *, reuse: bool = False
) -> Packed:
    """Rows of (id, bytes in ``layout``) -> :class:`Packed`.

    With ``reuse`` the tokens land in a per-thread buffer that the next call overwrites.
    """
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    if layout == "vectors":
        row_bytes, header = 2 * (_HALFVEC_HEADER + dim), VECTORS_HEADER
    else:
        row_bytes, header = (2 * dim if layout == "float16" else dim + 4), 0
    lengths = np.fromiter(
        ((len(r[1]) - header) // row_bytes for r in rows), dtype=np.int64, count=len(rows)
    )
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    shape = (int(offsets[-1]), dim)
    dtype = np.int8 if layout == "int8" else np.float16
    tokens = scratch.get("packed", shape, dtype) if reuse else np.empty(shape, dtype)
    if layout == "vectors":
        for (_, blob), lo, hi in zip(rows, offsets[:-1], offsets[1:]):
            elements = np.frombuffer(blob, dtype=">f2", offset=header)
            tokens[lo:hi] = elements.reshape(-1, _HALFVEC_HEADER + dim)[:, _HALFVEC_HEADER:]
        return Packed(ids, tokens, offsets)
    if layout == "float16":
        for (_, blob), lo, hi in zip(rows, offsets[:-1], offsets[1:]):
            tokens[lo:hi] = np.frombuffer(blob, dtype="<f2").reshape(-1, dim)
        return Packed(ids, tokens, offsets)
    scales = np.empty(shape[0], dtype=np.float32)
    for (_, blob), lo, hi in zip(rows, offsets[:-1], offsets[1:]):
        split = (hi - lo) * dim
        tokens[lo:hi] = np.frombuffer(blob, dtype=np.int8, count=split).reshape(-1, dim)
        scales[lo:hi] = np.frombuffer(blob, dtype="<f4", offset=split)
    return Packed(ids, tokens, offsets, scales)
