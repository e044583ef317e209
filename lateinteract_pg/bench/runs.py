"""Timing a search over the queries, and the figures of one run: recall@k against exact
MaxSim, latency percentiles, its ratio to exhaustive numpy, and quality against the qrels."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..collection import Collection
from .metrics import mrr_at, ndcg_at, overlap_at, percentile, recall_at

__all__ = ["FirstQueries", "Run", "line", "p50", "probing", "search_ids", "summary", "timed"]

# the first sweep_queries queries: (vectors, exact top 100 ids, qrels, numpy latencies)
FirstQueries = tuple[list[np.ndarray], list[list[str]], list[dict[str, int]], list[float]]


@dataclass
class Run:
    """One system at one setting: rankings and latencies over the queries."""

    name: str
    settings: dict[str, Any]
    rankings: list[list[str]]
    latencies_ms: list[float]
    extra: dict[str, Any] = field(default_factory=dict)


def search_ids(coll: Collection, query: np.ndarray, /, **options: Any) -> list[str]:
    """The ids of ``coll.search_embeddings(query, **options)``, best first."""
    return [h.id for h in coll.search_embeddings(query, **options)]


def probing(
    coll: Collection, probes: list[int], **options: Any
) -> Callable[[np.ndarray], list[str]]:
    """A search that also records how many HNSW probes each query ran."""

    def search(query: np.ndarray) -> list[str]:
        ids = search_ids(coll, query, **options)
        probes.append(coll.last_search.probes if coll.last_search else 0)
        return ids

    return search


def timed(search: Callable[[np.ndarray], list[str]], queries: list[np.ndarray]) -> Run:
    """``search`` over each query in turn: its rankings and milliseconds (a Run to name)."""
    rankings, latencies = [], []
    for query in queries:
        started = time.perf_counter()
        rankings.append(search(query))
        latencies.append((time.perf_counter() - started) * 1000)
    return Run("", {}, rankings, latencies)


def summary(
    run: Run,
    truth: list[list[str]],
    qrels: list[dict[str, int]],
    k: int,
    brute_p50: float,
    encode_ms: list[float] | None = None,
    deep: list[list[str]] | None = None,
) -> dict[str, Any]:
    """The figures of one run: recall against exact MaxSim, latency, quality."""
    n = len(run.rankings)
    lat = run.latencies_ms
    row: dict[str, Any] = {
        "system": run.name,
        "settings": run.settings,
        "queries": n,
        "recall_at_k_vs_exact": round(
            float(np.mean([overlap_at(r, t, k) for r, t in zip(run.rankings, truth)])), 4
        ),
        "latency_ms": {f"p{p}": round(percentile(lat, p), 2) for p in (50, 95, 99)},
        "ratio_to_numpy": round(statistics.median(lat) / brute_p50, 3),
        "ndcg_at_10": round(
            float(np.mean([ndcg_at(r, q) for r, q in zip(run.rankings, qrels)])), 4
        ),
        "mrr_at_10": round(
            float(np.mean([mrr_at(r, q) for r, q in zip(run.rankings, qrels)])), 4
        ),
        "recall_at_100": None
        if deep is None
        else round(float(np.mean([recall_at(r, q) for r, q in zip(deep, qrels)])), 4),
    }
    if encode_ms is not None:
        total = [a + b for a, b in zip(lat, encode_ms)]
        row["latency_with_encoding_ms"] = {
            f"p{p}": round(percentile(total, p), 2) for p in (50, 95, 99)
        }
    row.update(run.extra)
    return row


def p50(run: Run, n: int | None = None) -> float:
    """Median latency of a run over its first ``n`` queries (all by default)."""
    return statistics.median(run.latencies_ms[:n])


def line(row: dict[str, Any]) -> str:
    """One row's headline figures, as the bench echoes them while it runs."""
    return (
        f"  {row['system']} {row['settings']}: recall@10 {row['recall_at_k_vs_exact']:.4f} "
        f"p50 {row['latency_ms']['p50']:.1f} ms ({row['ratio_to_numpy']:.2f}x numpy) "
        f"nDCG@10 {row['ndcg_at_10']:.4f}"
    )
