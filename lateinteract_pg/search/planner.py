"""Choosing how to search: the knobs, and the index plan or the exhaustive scan by cost.

The constants are per-unit costs measured with ``lateinteract-pg bench`` on a 2-core machine
(milliseconds); only their ratios matter for the choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import limits
from ..types import PlanKind

__all__ = ["Knobs", "Plan", "choose_plan", "default_knobs", "estimate_costs", "plan_search"]

# One HNSW probe costs about PROBE_MS_PER_EF * ef_search at 384 dimensions; re-scoring
# costs about TOKEN_MS per stored token read, fetch included (scifact, 2 cores, 23 query
# tokens). Both scale with the vector width; only their ratio decides the plan.
PROBE_MS_PER_EF = 0.013
TOKEN_MS = 0.0011
STATEMENT_MS = 0.3
REFERENCE_DIM = 384
MIN_SELECTIVITY = 1e-3  # a filter is costed as passing at least this share of documents


@dataclass(frozen=True)
class Knobs:
    """Tuning knobs of the index plan: k' nearest tokens per probe, the HNSW scan's
    ef_search, and how many candidate documents stage 2 re-scores exactly."""

    candidates_per_token: int
    ef_search: int
    rescore_depth: int

    @property
    def rerank_depth(self) -> int:
        """Deprecated name of :attr:`rescore_depth` (kept one release)."""
        return self.rescore_depth


def default_knobs(k: int, query_vectors: int = 1) -> Knobs:
    """Defaults measured to give recall@k >= 0.99 against exact MaxSim (see
    :func:`lateinteract_pg.limits.default_knobs`, which SQL ``search()`` shares)."""
    return Knobs(*limits.default_knobs(k, query_vectors))


def estimate_costs(
    n_tokens: int,
    n_documents: int,
    dim: int,
    probes: int,
    knobs: Knobs,
) -> dict[PlanKind, float]:
    """Estimated milliseconds of each plan."""
    width = dim / REFERENCE_DIM
    avg_len = n_tokens / max(n_documents, 1)
    depth = min(knobs.rescore_depth, n_documents)
    index = (
        2 * STATEMENT_MS
        + probes * PROBE_MS_PER_EF * knobs.ef_search * (0.5 + 0.5 * width)
        + depth * avg_len * TOKEN_MS * width
    )
    exhaustive = STATEMENT_MS * (1 + n_documents / 1024) + n_tokens * TOKEN_MS * width
    return {"index": index, "exhaustive": exhaustive}


def choose_plan(costs: dict[PlanKind, float], has_index: bool) -> PlanKind:
    if not has_index or costs["exhaustive"] <= costs["index"]:
        return "exhaustive"
    return "index"


@dataclass(frozen=True)
class Plan:
    """What a late search will do: the plan, its estimated costs, and the iterative scan
    budget of a filtered probe (hnsw.max_scan_tuples)."""

    kind: PlanKind
    costs: dict[PlanKind, float] = field(default_factory=dict)
    scan_tuples: int = limits.SCAN_TUPLES


def plan_search(
    *,
    n_tokens: int,
    n_documents: int,
    has_index: bool,
    dim: int,
    probes: int,
    knobs: Knobs,
    matching: tuple[int, int] | None = None,
    forced: PlanKind | None = None,
) -> Plan:
    """The plan of one late search.

    ``matching``: (documents, tokens) that pass the search's condition, when it has one. The
    exhaustive plan then reads the passing documents only, while the index plan's HNSW scans
    visit about 1/selectivity as many tokens to find k' that pass. ``forced``: the plan the
    caller asked for.

    >>> knobs = default_knobs(10)
    >>> plan_search(n_tokens=6_000, n_documents=80, has_index=True, dim=384, probes=23,
    ...             knobs=knobs).kind
    'exhaustive'
    >>> plan_search(n_tokens=2_000_000, n_documents=20_000, has_index=True, dim=384,
    ...             probes=23, knobs=knobs).kind
    'index'
    """
    costs = estimate_costs(n_tokens, n_documents, dim, probes, knobs)
    scan_tuples = limits.SCAN_TUPLES
    if matching is not None:
        matched_docs, matched_tokens = matching
        passing = estimate_costs(matched_tokens, matched_docs, dim, probes, knobs)
        selectivity = max(matched_docs / max(n_documents, 1), MIN_SELECTIVITY)
        costs = {"index": costs["index"] / selectivity, "exhaustive": passing["exhaustive"]}
        scan_tuples = limits.scan_budget(knobs.ef_search, matched_tokens, n_tokens)
    kind = forced if forced is not None else choose_plan(costs, has_index)
    return Plan(kind, costs, scan_tuples)
