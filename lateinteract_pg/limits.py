"""Limits, defaults and formulas that Python and the SQL functions share.

Defined once here. The SQL function sources (``sql/functions/*.sql``) name them as
upper-case placeholders, filled in from :data:`SQL_CONSTANTS` when a migration's snapshot of
a function is made; a test checks that the head snapshots equal the sources rendered with
these values, so the two paths cannot drift apart.

>>> default_knobs(10)
(150, 150, 200)
>>> default_knobs(10, query_vectors=32)  # a ColBERT query: 32 vectors with [MASK] expansion
(150, 150, 384)
>>> default_knobs(5001)[2] == MAX_K
True
>>> scan_budget(150, 500, 1_000_000)
1200000
"""

from __future__ import annotations

__all__ = [
    "DENSE_EF_MIN",
    "MAX_DENSE_INDEX_K",
    "MAX_EF_SEARCH",
    "MAX_K",
    "MAX_POOL_FACTOR",
    "MAX_QUERY_WORDS",
    "MAX_SCAN_TUPLES",
    "SCAN_TUPLES",
    "SQL_CONSTANTS",
    "default_knobs",
    "dense_ef_search",
    "scan_budget",
]

# k of a search, and every depth derived from it
MAX_K = 100_000
# pgvector's hnsw.ef_search tops out at 1000, and an index scan returns at most ef_search rows
MAX_EF_SEARCH = 1000

# The default knobs of the late tier's index plan, measured to give recall@k >= 0.99 against
# exact MaxSim on scifact (1.24M MiniLM token vectors, 23 query tokens, k=10): 100 candidates
# per token and 200 re-scored documents gave recall 0.988, 150 and 200 gave 0.992, 150 and
# 300 gave 0.996 (docs/benchmarks.md). Both grow with k. The candidate documents also grow
# with the query's vectors: stage 1 ranks documents by a sum over query vectors, whose error
# grows with their number. ColBERT's 32 vectors (128 dims, [MASK] expansion) needed about 400
# re-scored documents for 0.99 on 1M to 10M token rows (docs/benchmarks.md, the scaling run).
CANDIDATES_MIN = 150
CANDIDATES_PER_K = 15
CANDIDATE_DOCUMENTS_MIN = 200
CANDIDATE_DOCUMENTS_PER_K = 20
CANDIDATE_DOCUMENTS_PER_QUERY_VECTOR = 12

# The dense tier: one HNSW scan yields at most ef_search rows, so beyond this k it scans
# exactly; its ef_search is max(DENSE_EF_MIN, 2 k).
MAX_DENSE_INDEX_K = 500
DENSE_EF_MIN = 64

# A filtered probe's iterative HNSW scan (pgvector >= 0.8) visits tokens until k' pass: about
# k' / (share of tokens passing) of them. Its budget: SCAN_FACTOR times that, at least
# pgvector's own default (SCAN_TUPLES), at most MAX_SCAN_TUPLES.
SCAN_TUPLES = 20_000
MAX_SCAN_TUPLES = 2_000_000
SCAN_FACTOR = 4

# token pooling keeps about 1/pool_factor of a document's vectors
MAX_POOL_FACTOR = 16

# a hybrid query's text: the server parses a tsquery recursively (about 20,000 OR-ed words
# exhausted its stack)
MAX_QUERY_WORDS = 1000


def default_knobs(k: int, query_vectors: int = 1) -> tuple[int, int, int]:
    """(candidates per query token, ef_search, candidate documents) for a top-``k`` search
    with a query of ``query_vectors`` vectors."""
    per_token = min(MAX_EF_SEARCH, max(CANDIDATES_MIN, CANDIDATES_PER_K * k))
    depth = min(
        MAX_K,
        max(
            CANDIDATE_DOCUMENTS_MIN,
            CANDIDATE_DOCUMENTS_PER_K * k,
            CANDIDATE_DOCUMENTS_PER_QUERY_VECTOR * query_vectors,
        ),
    )
    return per_token, per_token, depth


def dense_ef_search(k: int) -> int:
    """The dense tier's hnsw.ef_search for a top-``k`` search through its index."""
    return max(DENSE_EF_MIN, 2 * min(k, MAX_DENSE_INDEX_K))


def scan_budget(ef_search: int, passing_tokens: int, total_tokens: int) -> int:
    """hnsw.max_scan_tuples for a filtered probe: ``passing_tokens`` of ``total_tokens``
    pass the filter. Integer arithmetic, so that SQL computes the same number."""
    visits = SCAN_FACTOR * ef_search * max(total_tokens, 1) // max(passing_tokens, 1)
    return min(MAX_SCAN_TUPLES, max(SCAN_TUPLES, visits))


# what the SQL sources may name as {NAME}
SQL_CONSTANTS: dict[str, int] = {
    name: value
    for name, value in globals().items()
    if name.isupper() and isinstance(value, int) and not isinstance(value, bool)
}
