"""Stage 1's SQL against a numpy reference: per probe the k' nearest document tokens, per
(probe, document) the best similarity, per document the weighted sum, with a missed probe
counting 0 ("zero") or its k'-th similarity ("kth", as XTR imputes)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from psycopg import sql

import lateinteract_pg as lip
from lateinteract_pg.search import candidates

DIM = 16
PER_TOKEN = 12


def reference(
    probes: np.ndarray, weights: np.ndarray, docs: list[np.ndarray], imputation: str
) -> dict[int, float]:
    """Stage-1 scores by position in ``docs``, from the vectors as stored (float16)."""
    owner = np.concatenate([np.full(len(d), j) for j, d in enumerate(docs)])
    tokens = np.concatenate(docs).astype(np.float16).astype(np.float32)
    scores: dict[int, float] = defaultdict(float)
    for probe, weight in zip(probes.astype(np.float16).astype(np.float32), weights):
        sims = tokens @ probe
        nearest = np.argsort(-sims, kind="stable")[:PER_TOKEN]
        kth = sims[nearest[-1]] if imputation == "kth" else 0.0
        best: dict[int, float] = {}
        for t in nearest.tolist():
            best[int(owner[t])] = max(best.get(int(owner[t]), -np.inf), float(sims[t]))
        for doc, sim in best.items():
            scores[doc] += weight * (sim - kth)
    return scores


@pytest.mark.parametrize("imputation", ["zero", "kth"])
def test_stage1_scores_equal_the_reference(store: lip.Store, imputation: str) -> None:
    rng = np.random.default_rng(11)
    docs = [rng.standard_normal((int(rng.integers(2, 12)), DIM)) for _ in range(60)]
    docs = [(d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32) for d in docs]
    coll = store.collection("stage1", dim=DIM, storage="unpooled")  # a token row per vector
    coll.add_embeddings([f"d{j}" for j in range(len(docs))], docs)
    # without the HNSW index the probes are exact scans: the reference's nearest tokens
    store.conn.execute(sql.SQL("DROP INDEX {}").format(coll.spec.token_index))
    internal = dict(
        store.conn.execute(
            sql.SQL("SELECT id, external_id FROM {} WHERE collection_id = %s").format(
                coll.spec.documents
            ),
            (coll.id,),
        ).fetchall()
    )
    query = rng.standard_normal((6, DIM)).astype(np.float32)
    query /= np.linalg.norm(query, axis=1, keepdims=True)
    query[5] = query[4] + 0.01 * query[3]  # merged with its neighbour: a weight of 2
    probes, weights = candidates.merge_query_tokens(query, 0.99)
    assert weights.max() == 2
    statement = candidates.candidate_sql(
        coll.spec.tokens,
        coll.id,
        DIM,
        imputation,
        coll.candidate_index,  # type: ignore[arg-type]
    )
    ids, scores = candidates.stage1(store.conn, statement, probes, weights, PER_TOKEN, 100)
    expected = reference(probes, weights, docs, imputation)
    got = {int(internal[int(i)][1:]): float(s) for i, s in zip(ids, scores)}
    assert set(got) == set(expected)
    for doc, score in expected.items():
        assert got[doc] == pytest.approx(score, abs=1e-3)
    # best first, ties by internal id
    assert list(scores) == sorted(scores, reverse=True)


def test_kth_imputation_searches_return_exact_scores(store: lip.Store) -> None:
    rng = np.random.default_rng(5)
    docs = [rng.standard_normal((8, DIM)).astype(np.float32) for _ in range(300)]
    docs = [d / np.linalg.norm(d, axis=1, keepdims=True) for d in docs]
    coll = store.collection("kth", dim=DIM, storage="unpooled")
    coll.add_embeddings([f"d{j}" for j in range(len(docs))], docs)
    query = docs[7][:3] + 0.05
    hits = coll.search_embeddings(query, k=5, plan="index", imputation="kth")
    assert hits[0].id == "d7"
    for hit in hits:
        stored = docs[int(hit.id[1:])].astype(np.float16)
        assert hit.score == pytest.approx(lip.maxsim(query.astype(np.float16), stored), abs=1e-3)
