"""Retrieval metrics over ranked document ids: against the qrels and against exact MaxSim."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["mrr_at", "ndcg_at", "overlap_at", "percentile", "recall_at"]


def ndcg_at(ranked: Sequence[str], relevant: dict[str, int], k: int = 10) -> float:
    """nDCG@k with graded gains.

    >>> round(ndcg_at(["a", "b"], {"b": 1}), 4)
    0.6309
    """
    gains = [relevant.get(doc, 0) for doc in ranked[:k]]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def mrr_at(ranked: Sequence[str], relevant: dict[str, int], k: int = 10) -> float:
    """Reciprocal rank of the first relevant document within the top k.

    >>> mrr_at(["a", "b", "c"], {"c": 2})
    0.3333333333333333
    """
    for i, doc in enumerate(ranked[:k]):
        if relevant.get(doc, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def recall_at(ranked: Sequence[str], relevant: dict[str, int], k: int = 100) -> float:
    """Share of the relevant documents found in the top k.

    >>> recall_at(["a", "b"], {"a": 1, "z": 1})
    0.5
    """
    wanted = {doc for doc, grade in relevant.items() if grade > 0}
    return len(wanted & set(ranked[:k])) / len(wanted) if wanted else 0.0


def overlap_at(ranked: Sequence[str], exact: Sequence[str], k: int = 10) -> float:
    """recall@k against exact MaxSim: the share of the exact top k that ``ranked`` returned.

    >>> overlap_at(["a", "c"], ["a", "b"], k=2)
    0.5
    """
    target = list(exact[:k])
    return len(set(ranked[:k]) & set(target)) / len(target) if target else 1.0


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (linear interpolation); NaN for no values."""
    return float(np.percentile(np.asarray(values), p)) if len(values) else float("nan")
