"""Fewer vectors per document: token pooling, and the one pooled vector of the dense tier.

Token pooling (as in Clavié et al., "Reducing the footprint of multi-vector retrieval with
minimal performance impact via token pooling", 2024) clusters a document's token vectors
and keeps each cluster's normalised mean: pool factor 2 keeps about half the vectors.
Clusters are formed agglomeratively, always merging the two clusters whose normalised
means are most similar (centroid linkage on cosine similarity).
"""

from __future__ import annotations

import numpy as np

from .validation import Batch

__all__ = ["dense_vectors", "pool_batch", "pool_tokens", "pooled_length"]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def pooled_length(n: int, pool_factor: int) -> int:
    """How many vectors pooling ``n`` tokens by ``pool_factor`` keeps."""
    return min(n, max(1, n // pool_factor))


def pool_tokens(tokens: np.ndarray, pool_factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Pool one document's (n, dim) tokens into ``max(1, n // pool_factor)`` vectors.

    Returns the pooled unit vectors (float32, in order of each cluster's first token) and,
    per pooled vector, the index of its member closest to it (whose text span it keeps).

    >>> t = np.array([[1.0, 0.0], [0.0, 1.0], [0.99, 0.1], [0.1, 0.99]])
    >>> pooled, representative = pool_tokens(t, 2)
    >>> np.round(pooled.astype(float), 2).tolist(), representative.tolist()
    ([[1.0, 0.05], [0.05, 1.0]], [0, 1])
    """
    x = np.asarray(tokens, dtype=np.float32)
    n = len(x)
    target = pooled_length(n, pool_factor)
    if pool_factor <= 1 or n <= target:
        return _unit(x), np.arange(n)
    sums = x.copy()
    members = np.arange(n)  # cluster of each token, named by a member's index
    sims = _unit(x) @ _unit(x).T
    np.fill_diagonal(sims, -np.inf)
    best = sims.argmax(axis=1)  # each live cluster's most similar live cluster
    best_sim = sims[np.arange(n), best]
    for _ in range(n - target):
        a = int(best_sim.argmax())
        i, j = sorted((a, int(best[a])))  # keep the smaller index: clusters stay in order
        sums[i] += sums[j]
        members[members == j] = i
        sims[j, :] = sims[:, j] = -np.inf
        best_sim[j] = -np.inf
        row = _unit(sums) @ _unit(sums[i])
        alive = np.isfinite(best_sim)
        row[~alive] = -np.inf
        row[i] = -np.inf
        sims[i, :] = sims[:, i] = row
        # clusters whose best match was i or j look again; the rest compare against new i
        stale = alive & ((best == i) | (best == j))
        stale[i] = True
        for r in np.flatnonzero(stale):
            best[r] = sims[r].argmax()
            best_sim[r] = sims[r, best[r]]
        gained = alive & ~stale & (row > best_sim)
        best[gained] = i
        best_sim[gained] = row[gained]
    leaders = np.unique(members)  # sorted: each cluster's smallest index, its first token
    pooled = _unit(sums[leaders])
    representative = np.empty(len(leaders), dtype=np.int64)
    for c, leader in enumerate(leaders):
        own = np.flatnonzero(members == leader)
        representative[c] = own[np.argmax(x[own] @ pooled[c])]
    return pooled, representative


def pool_batch(batch: Batch, pool_factor: int) -> Batch:
    """The batch with every document's tokens pooled (spans follow the representatives)."""
    if pool_factor <= 1:
        return batch
    tokens: list[np.ndarray] = []
    spans: list[np.ndarray | None] = []
    lengths = np.zeros(len(batch.ids), dtype=np.int64)
    for j, (lo, hi) in enumerate(zip(batch.offsets[:-1], batch.offsets[1:])):
        pooled, representative = pool_tokens(batch.tokens[lo:hi], pool_factor)
        tokens.append(pooled.astype(np.float16))
        lengths[j] = len(pooled)
        span = batch.spans[j]
        spans.append(None if span is None else span[representative])
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Batch(batch.ids, batch.texts, batch.metadata, np.concatenate(tokens), offsets, spans)


def dense_vectors(tokens: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """One unit vector per document: the normalised mean of its token vectors.

    >>> t = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
    >>> np.round(dense_vectors(t, np.array([0, 2, 3])).astype(float), 3).tolist()
    [[0.707, 0.707], [0.0, 1.0]]
    """
    sums = np.add.reduceat(tokens, offsets[:-1], axis=0, dtype=np.float32)
    return _unit(sums)
