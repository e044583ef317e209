"""Fewer vectors per document: token pooling, and the one pooled vector of the dense tier.

Token pooling (as in Clavié et al., "Reducing the footprint of multi-vector retrieval with
minimal performance impact via token pooling", 2024) clusters a document's token vectors
and keeps each cluster's normalised mean: pool factor 2 keeps about half the vectors.
Clusters are formed agglomeratively, always merging the two clusters whose normalised
means are most similar (centroid linkage on cosine similarity). A batch's documents are
pooled side by side, a group of similar length at a time, one merge step in each per round:
the interpreter's cost of a step is shared by the group (about 4x faster than one document
at a time), and each document ends as it would alone.
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
    if pool_factor <= 1 or len(x) <= pooled_length(len(x), pool_factor):
        return _unit(x), np.arange(len(x))
    ((pooled, representative),) = _pool_group([x], pool_factor)
    return pooled, representative


POOL_GROUP = 128  # documents of similar length pooled together, one merge step each at a time


def pool_batch(batch: Batch, pool_factor: int) -> Batch:
    """The batch with every document's tokens pooled (spans follow the representatives)."""
    if pool_factor <= 1:
        return batch
    docs = [batch.tokens[lo:hi].astype(np.float32) for lo, hi in
            zip(batch.offsets[:-1], batch.offsets[1:])]  # fmt: skip
    results: list[tuple[np.ndarray, np.ndarray]] = [(np.empty(0), np.empty(0))] * len(docs)
    order = sorted(range(len(docs)), key=lambda d: -len(docs[d]))  # similar lengths together
    for start in range(0, len(order), POOL_GROUP):
        group = order[start : start + POOL_GROUP]
        for d, result in zip(group, _pool_group([docs[d] for d in group], pool_factor)):
            results[d] = result
    spans = [None if span is None else span[rep] for span, (_, rep) in zip(batch.spans, results)]
    lengths = np.array([len(pooled) for pooled, _ in results], dtype=np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    tokens = np.concatenate([pooled.astype(np.float16) for pooled, _ in results])
    return Batch(batch.ids, batch.texts, batch.metadata, tokens, offsets, spans)


def _pool_group(docs: list[np.ndarray], pool_factor: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`pool_tokens` of each of ``docs`` (float32, longest first), run side by side:
    each step merges, in every document that still needs a merge, its two live clusters
    whose normalised sums are most similar. Each step costs a fixed number of array
    operations over the group, so documents share the interpreter's overhead."""
    lengths = np.array([len(d) for d in docs])
    merges = lengths - np.array([pooled_length(int(n), pool_factor) for n in lengths])
    b, n, dim = len(docs), int(lengths.max()), docs[0].shape[1]
    sums = np.zeros((b, n, dim), dtype=np.float32)
    for d, x in enumerate(docs):
        sums[d, : len(x)] = x
    alive = np.arange(n) < lengths[:, None]
    units = _unit(sums)
    sims = units @ units.transpose(0, 2, 1)
    sims[~alive] = -np.inf
    sims.transpose(0, 2, 1)[~alive] = -np.inf
    sims[:, np.arange(n), np.arange(n)] = -np.inf
    best = sims.argmax(axis=2)  # each live cluster's most similar live cluster
    best_sim = np.take_along_axis(sims, best[..., None], axis=2)[..., 0]
    into = np.tile(np.arange(n), (b, 1))  # the cluster each was merged into (itself if alive)
    for step in range(int(merges.max(initial=0))):
        c = int(np.count_nonzero(merges > step))  # docs are longest first: a prefix merges
        merging = np.arange(c)
        a = best_sim[:c].argmax(axis=1)
        partner = best[merging, a]
        i = np.minimum(a, partner)  # keep the smaller index: clusters stay in order
        j = np.maximum(a, partner)
        sums[merging, i] += sums[merging, j]
        units[merging, i] = _unit(sums[merging, i])
        into[merging, j] = i
        alive[merging, j] = False
        best_sim[merging, j] = -np.inf
        sims[merging, j, :] = -np.inf
        sims[merging, :, j] = -np.inf
        row = np.matmul(units[:c], units[merging, i][..., None])[..., 0]
        row[~alive[:c]] = -np.inf
        row[merging, i] = -np.inf
        sims[merging, i, :] = row
        sims[merging, :, i] = row
        # clusters whose best match was i or j look again; the rest compare against new i
        stale = alive[:c] & ((best[:c] == i[:, None]) | (best[:c] == j[:, None]))
        stale[merging, i] = True
        sd, sr = np.nonzero(stale)
        best[sd, sr] = sims[sd, sr].argmax(axis=1)
        best_sim[sd, sr] = sims[sd, sr, best[sd, sr]]
        gained = alive[:c] & ~stale & (row > best_sim[:c])
        best[:c] = np.where(gained, i[:, None], best[:c])
        best_sim[:c] = np.where(gained, row, best_sim[:c])
    # follow each token to its live cluster (a cluster is merged only into a smaller index)
    for t in range(n):
        into[:, t] = into[np.arange(b), into[:, t]]
    out = []
    for d, x in enumerate(docs):
        leader = into[d, : len(x)]
        leaders = np.unique(leader)  # sorted: each cluster's first token
        pooled = _unit(sums[d, leaders])
        # each cluster's representative: its member closest to the pooled vector
        cluster = np.searchsorted(leaders, leader)
        closeness = np.einsum("td,td->t", x, pooled[cluster])
        ranked = np.lexsort((-closeness, cluster))
        first = np.flatnonzero(np.r_[True, np.diff(cluster[ranked]) != 0])
        out.append((pooled, ranked[first]))
    return out


def dense_vectors(tokens: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """One unit vector per document: the normalised mean of its token vectors.

    >>> t = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
    >>> np.round(dense_vectors(t, np.array([0, 2, 3])).astype(float), 3).tolist()
    [[0.707, 0.707], [0.0, 1.0]]
    """
    sums = np.add.reduceat(tokens, offsets[:-1], axis=0, dtype=np.float32)
    return _unit(sums)
