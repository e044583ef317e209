"""Each document's token matrix packed into one ``bytea`` (stage 2 reads it), in one of two
layouts chosen per collection:

- ``float16``: n_tokens x dim little-endian float16 (2 bytes per value);
- ``int8``: n_tokens x dim int8, then n_tokens little-endian float32 scales (token i is
  its int8 row times its scale; about half the bytes).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from .maxsim import half_to_float32, maxsim_packed, scratch
from .types import RescoreStorage

__all__ = ["Packed", "decode_matrices", "pack_matrices"]


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
