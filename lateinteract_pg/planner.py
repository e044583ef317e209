"""Choosing how to search: default knobs derived from k, and index vs exhaustive by cost.

The constants are per-unit costs measured with ``lateinteract-pg bench`` on a 2-core machine
(milliseconds); only their ratios matter for the choice.
"""

from __future__ import annotations

from dataclasses import dataclass

from .types import PlanKind

__all__ = ["Knobs", "choose_plan", "default_knobs"]

# cost of one HNSW probe, per unit of ef_search, per 100 dimensions
PROBE_MS_PER_EF = 0.012
# cost of fetching and scoring one stored token, per query token, per 100 dimensions
TOKEN_MS = 0.00006
# fixed cost of a statement round trip
STATEMENT_MS = 0.3


@dataclass(frozen=True)
class Knobs:
    """Tuning knobs of the index plan."""

    candidates_per_token: int
    ef_search: int
    rerank_depth: int


# pgvector's hnsw.ef_search tops out at 1000, and an index scan returns at most ef_search rows
MAX_EF_SEARCH = 1000


def default_knobs(k: int) -> Knobs:
    """Defaults measured to give recall@k >= 0.99 against exact MaxSim."""
    per_token = min(MAX_EF_SEARCH, max(40, 2 * k))
    return Knobs(
        candidates_per_token=per_token,
        ef_search=max(per_token, 40),
        rerank_depth=max(50, 5 * k),
    )


def estimate_costs(
    n_tokens: int,
    n_documents: int,
    dim: int,
    query_tokens: int,
    probes: int,
    knobs: Knobs,
) -> dict[PlanKind, float]:
    """Estimated milliseconds of each plan."""
    width = dim / 100.0
    per_token = TOKEN_MS * width * max(query_tokens, 1)
    avg_len = n_tokens / max(n_documents, 1)
    depth = min(knobs.rerank_depth, n_documents)
    index = (
        2 * STATEMENT_MS
        + probes * PROBE_MS_PER_EF * knobs.ef_search * width
        + depth * avg_len * per_token
    )
    exhaustive = STATEMENT_MS * (1 + n_documents / 512) + n_tokens * per_token
    return {"index": index, "exhaustive": exhaustive}


def choose_plan(costs: dict[PlanKind, float], has_index: bool) -> PlanKind:
    if not has_index or costs["exhaustive"] <= costs["index"]:
        return "exhaustive"
    return "index"
