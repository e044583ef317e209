"""Token pooling and dense vectors without a database."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lateinteract_pg import pooling
from lateinteract_pg.pooling import dense_vectors, pool_batch, pool_tokens
from lateinteract_pg.validation import Batch


@pytest.mark.parametrize(("n", "factor"), [(1, 2), (7, 2), (30, 3), (64, 16), (10, 1)])
def test_pooling_keeps_a_share_of_unit_vectors(n: int, factor: int) -> None:
    tokens = np.random.default_rng(n).standard_normal((n, 16)).astype(np.float32)
    pooled, representative = pool_tokens(tokens, factor)
    assert len(pooled) == max(1, n // factor) == len(representative)
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1.0, rtol=1e-5)
    assert len(set(representative.tolist())) == len(representative)
    assert all(0 <= r < n for r in representative.tolist())


def test_pooling_merges_near_duplicates_first() -> None:
    a, b = np.eye(8, dtype=np.float32)[:2]
    tokens = np.stack([a, b, a + 0.01 * b, b + 0.01 * a])
    pooled, _ = pool_tokens(tokens, 2)
    unit = tokens / np.linalg.norm(tokens, axis=1, keepdims=True)
    assert (unit @ pooled.T).max(axis=1).min() > 0.99


def test_dense_vectors_are_normalised_means() -> None:
    tokens = np.random.default_rng(5).standard_normal((9, 4)).astype(np.float32)
    offsets = np.array([0, 4, 9])
    dense = dense_vectors(tokens, offsets)
    for j, (lo, hi) in enumerate(itertools.pairwise(offsets)):
        mean = tokens[lo:hi].mean(axis=0)
        np.testing.assert_allclose(dense[j], mean / np.linalg.norm(mean), rtol=1e-5, atol=1e-6)


def _reference_clusters(tokens: np.ndarray, pool_factor: int) -> list[list[int]]:
    """Agglomerative pooling written the slow, obvious way: recompute every pair's cosine
    of normalised sums and merge the most similar pair, until the target count remains."""
    clusters = [[t] for t in range(len(tokens))]
    target = max(1, len(tokens) // pool_factor)
    while len(clusters) > target:
        means = np.stack([tokens[c].sum(axis=0) for c in clusters])
        means /= np.linalg.norm(means, axis=1, keepdims=True)
        sims = means @ means.T
        np.fill_diagonal(sims, -np.inf)
        a, b = np.unravel_index(int(sims.argmax()), sims.shape)
        a, b = min(a, b), max(a, b)
        clusters[a] = sorted(clusters[a] + clusters[b])
        del clusters[b]
    return clusters


def test_pooling_matches_the_reference_merge_order() -> None:
    rng = np.random.default_rng(11)
    centres = rng.standard_normal((6, 32))
    for n, factor in [(40, 3), (25, 2), (9, 4)]:
        tokens = (centres[rng.integers(0, 6, n)] + 0.6 * rng.standard_normal((n, 32))).astype(
            np.float32
        )
        pooled, representative = pool_tokens(tokens, factor)
        clusters = _reference_clusters(tokens, factor)
        assert len(pooled) == len(clusters)
        for vector, rep, members in zip(pooled, representative, clusters):
            mean = tokens[members].sum(axis=0)
            np.testing.assert_allclose(vector, mean / np.linalg.norm(mean), atol=1e-5)
            assert rep in members


def test_pooling_a_batch_pools_each_document_as_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # documents of many lengths, pooled side by side in groups, give what each gives alone
    monkeypatch.setattr(pooling, "POOL_GROUP", 3)
    rng = np.random.default_rng(12)
    lengths = [1, 2, 3, 5, 17, 64, 130, 7, 40, 3]
    tokens = rng.standard_normal((sum(lengths), 16)).astype(np.float16)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ids = [str(i) for i in range(len(lengths))]
    spans = [np.arange(2 * n).reshape(n, 2) for n in lengths]
    batch = Batch(ids, [None] * len(ids), [None] * len(ids), tokens, offsets, spans)
    pooled = pool_batch(batch, 3)
    for d, (lo, hi) in enumerate(itertools.pairwise(offsets)):
        alone, representative = pool_tokens(tokens[lo:hi], 3)
        got = pooled.tokens[pooled.offsets[d] : pooled.offsets[d + 1]]
        np.testing.assert_array_equal(got, alone.astype(np.float16))
        np.testing.assert_array_equal(pooled.spans[d], spans[d][representative])
