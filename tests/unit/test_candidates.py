"""Stage 1's Python side without a database: merging query vectors, merging partial sums."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from lateinteract_pg.search.candidates import merge_partial_scores, merge_query_tokens


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_merging_keeps_every_query_vector_once() -> None:
    rng = np.random.default_rng(3)
    base = _unit(rng.standard_normal((8, 32)))
    # [MASK]-like expansion: near-duplicates of a few vectors
    query = _unit(np.concatenate([base, base[:3] + 0.01 * rng.standard_normal((3, 32))]))
    probes, weights = merge_query_tokens(query, 0.95)
    assert weights.sum() == len(query)
    assert len(probes) == len(query) - 3
    # every probe is one of the query vectors, and each query vector is that similar to one
    assert all(any(np.array_equal(p, q) for q in query) for p in probes)
    assert (_unit(query) @ _unit(probes).T).max(axis=1).min() >= 0.95


def test_threshold_one_keeps_the_query_as_it_is() -> None:
    query = _unit(np.random.default_rng(1).standard_normal((5, 8)))
    probes, weights = merge_query_tokens(query, 1.0)
    assert np.array_equal(probes, query) and weights.tolist() == [1.0] * 5


def test_partial_sums_merge_to_the_sum_over_all_probes() -> None:
    rng = np.random.default_rng(7)
    parts = []
    total: dict[int, float] = defaultdict(float)
    for _ in range(3):
        ids = rng.choice(50, size=20, replace=False)
        scores = rng.random(20)
        parts.append((ids, scores))
        for doc, score in zip(ids.tolist(), scores.tolist()):
            total[doc] += score
    expected = sorted(total, key=lambda d: (-total[d], d))[:10]
    assert merge_partial_scores(parts, 10).tolist() == expected
