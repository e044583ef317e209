"""Choosing how to search: default knobs derived from k, and index vs exhaustive by cost.

The constants are per-unit costs measured with ``lateinteract-pg bench`` on a 2-core machine
(milliseconds); only their ratios matter for the choice.
"""

from __future__ import annotations

from dataclasses import dataclass

from .types import PlanKind

__all__ = ["Knobs", "choose_plan", "default_knobs"]

# One HNSW probe costs about PROBE_MS_PER_EF * ef_search at 384 dimensions; re-scoring
# costs about TOKEN_MS per stored token read, fetch included (scifact, 2 cores, 23 query
# tokens). Both scale with the vector width; only their ratio decides the plan.
PROBE_MS_PER_EF = 0.013
TOKEN_MS = 0.0011
STATEMENT_MS = 0.3
REFERENCE_DIM = 384


@dataclass(frozen=True)
class Knobs:
    """Tuning knobs of the index plan."""

    candidates_per_token: int
    ef_search: int
    rerank_depth: int


# pgvector's hnsw.ef_search tops out at 1000, and an index scan returns at most ef_search rows
MAX_EF_SEARCH = 1000


def default_knobs(k: int) -> Knobs:
    """Defaults measured to give recall@k >= 0.99 against exact MaxSim.

    Measured on scifact (1.24M MiniLM token vectors, 23 query tokens, k=10): 100
    candidates per token and 200 re-scored documents gave recall 0.988, 150 and 200 gave
    0.992, 150 and 300 gave 0.996 (docs/benchmarks.md). Both grow with k.
    """
    per_token = min(MAX_EF_SEARCH, max(150, 15 * k))
    return Knobs(candidates_per_token=per_token, ef_search=per_token, rerank_depth=max(200, 20 * k))


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
    depth = min(knobs.rerank_depth, n_documents)
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
