"""Token pooling and dense vectors without a database."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lateinteract_pg.pooling import dense_vectors, pool_tokens


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
