"""Stage 1: candidate documents from per-token HNSW probes, aggregated in one SQL statement."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pgvector import HalfVector
from psycopg import sql

from ..types import CandidateIndex

__all__ = ["Imputation", "candidate_sql", "merge_partial_scores", "merge_query_tokens", "stage1"]

Imputation = Literal["zero", "kth"]

# For each probe vector q_i (weight w_i = how many query tokens it stands for), the HNSW
# index yields the k' nearest document tokens (by inner product, or by Hamming distance of
# sign bits for a binary index), each scored with its full vector. Per (probe, document)
# the best similarity counts; a probe that found no token of a document contributes 0
# ("zero"), or that probe's k'-th similarity ("kth", as XTR does). Documents are ranked by
# the weighted sum.
_STAGE1 = """
WITH hits AS (
    SELECT q.i, q.w, t.doc_id, -t.dist AS sim
    FROM unnest({probes}::halfvec[], {weights}::real[]) WITH ORDINALITY AS q(v, w, i)
    CROSS JOIN LATERAL (
        SELECT x.doc_id, (embedding::halfvec({dim}) <#> q.v) AS dist
        FROM {tokens} AS x{join}
        WHERE x.collection_id = {collection_id}{where}
        ORDER BY {probe_order}
        LIMIT {per_token}
    ) AS t
), best AS (
    SELECT i, w, doc_id, max(sim) AS sim FROM hits GROUP BY i, w, doc_id
), floor AS (
    SELECT i, min(sim) AS kth FROM hits GROUP BY i
)
SELECT best.doc_id, sum(best.w * (best.sim - {impute})) AS score
FROM best JOIN floor USING (i)
GROUP BY best.doc_id
ORDER BY score DESC, best.doc_id
LIMIT {depth}
"""


# ORDER BY expressions that match each candidate index's expression (catalog.INDEX_EXPRESSION)
PROBE_ORDER = {
    "halfvec": "embedding::halfvec({dim}) <#> q.v",
    "binary": "binary_quantize(embedding::halfvec({dim}))::bit({dim}) <~> binary_quantize(q.v)",
}


def candidate_sql(
    tokens: sql.Composable,
    collection_id: int,
    dim: int,
    imputation: Imputation,
    candidate_index: CandidateIndex = "halfvec",
    documents: sql.Composable | None = None,
    where: sql.Composable | None = None,
) -> sql.Composed:
    """The stage-1 statement for one collection; parameters: probes, weights, k', N.

    With ``where`` (a condition on the documents table, aliased ``d``), each probe joins
    the tokens it finds to their documents and keeps those that pass: with pgvector's
    iterative index scans the HNSW scan goes on until k' tokens pass.

    It reads the partitioned parent table with the collection id as a literal: the planner
    prunes to that collection's partition and uses its HNSW index, and a role needs SELECT
    on the parent only (not on each partition). SQL ``search_candidates()`` runs this
    statement with weights of 1 (no merged probes) and ``"zero"`` imputation, the defaults
    here; it takes a jsonpath filter instead of a composed condition.
    """
    impute = sql.SQL("floor.kth") if imputation == "kth" else sql.SQL("0")
    return sql.SQL(_STAGE1).format(
        tokens=tokens,
        collection_id=sql.Literal(collection_id),
        dim=sql.Literal(dim),
        probe_order=sql.SQL(PROBE_ORDER[candidate_index]).format(dim=sql.Literal(dim)),
        probes=sql.Placeholder("probes"),
        weights=sql.Placeholder("weights"),
        per_token=sql.Placeholder("per_token"),
        depth=sql.Placeholder("depth"),
        impute=impute,
        join=sql.SQL("")
        if where is None
        else sql.SQL(" JOIN {} AS d ON d.id = x.doc_id").format(documents),
        where=sql.SQL("") if where is None else sql.SQL(" AND {}").format(where),
    )


def merge_query_tokens(query: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedily merge query tokens whose cosine similarity is >= threshold.

    Returns the probe vectors (first member of each group) and their weights (group sizes).
    Stage 1 then probes once per group; exact re-scoring still uses every query token.

    >>> q = np.array([[1.0, 0.0], [0.999, 0.045], [0.0, 1.0]])
    >>> probes, weights = merge_query_tokens(q, 0.99)
    >>> len(probes), weights.tolist()
    (2, [2.0, 1.0])
    """
    if threshold >= 1.0 or len(query) < 2:
        return query, np.ones(len(query), dtype=np.float32)
    unit = query / np.maximum(np.linalg.norm(query, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit.T
    group = np.full(len(query), -1)
    leaders: list[int] = []
    for i in range(len(query)):
        if group[i] >= 0:
            continue
        members = np.flatnonzero((group < 0) & (sims[i] >= threshold))
        group[members] = len(leaders)
        group[i] = len(leaders)
        leaders.append(i)
    weights = np.bincount(group, minlength=len(leaders)).astype(np.float32)
    return query[leaders], weights


def stage1(
    conn: Any,
    statement: sql.Composed,
    probes: np.ndarray,
    weights: np.ndarray,
    per_token: int,
    depth: int | None,
    params: dict[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run stage 1; returns candidate document ids and approximate scores, best first.

    ``depth=None`` returns every document any probe found (to merge partial sums).
    """
    rows = conn.execute(
        statement,
        {
            "probes": [HalfVector(p) for p in probes],
            "weights": [float(w) for w in weights],
            "per_token": per_token,
            "depth": depth,
            **(params or {}),
        },
        binary=True,
        # planned for its k' every time, as SQL search_candidates() plans it: a prepared
        # statement's generic plan may pick another scan than the index for a small
        # partition, and the two paths would return different candidates
        prepare=False,
    ).fetchall()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    scores = np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows))
    return ids, scores


def merge_partial_scores(parts: list[tuple[np.ndarray, np.ndarray]], depth: int) -> np.ndarray:
    """Sum the per-document scores of stage 1 run over disjoint sets of probes; top ``depth``.

    Both imputations are sums over probes, so partial sums add up to the full score.

    >>> a = (np.array([1, 2]), np.array([0.9, 0.5]))
    >>> b = (np.array([2, 3]), np.array([0.6, 0.2]))
    >>> merge_partial_scores([a, b], 2).tolist()
    [2, 1]
    """
    ids = np.concatenate([p[0] for p in parts])
    scores = np.concatenate([p[1] for p in parts])
    unique, inverse = np.unique(ids, return_inverse=True)
    totals = np.bincount(inverse, weights=scores, minlength=len(unique))
    order = np.lexsort((unique, -totals))[:depth]
    return unique[order]
