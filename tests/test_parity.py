"""Python and SQL at parity: the Python API and SQL ``search()`` return the same documents with
the same scores (exact MaxSim, within 1e-3) under every storage option, and both agree with
numpy's exact MaxSim of the stored vectors.

SQL receives the query as halfvec (float16) and Python scores the float32 query it is given,
so two documents whose scores are within 1e-3 of each other may come in either order: the
only difference allowed."""

from __future__ import annotations

import numpy as np
import pytest
from pgvector import HalfVector

import lateinteract_pg as lip
from lateinteract_pg import limits
from lateinteract_pg.search.planner import default_knobs
from tests.helpers import assert_same_hits

DIM = 32
N_DOCS = 400  # more than the default rescore depth: SQL search() takes its index plan
OPTIONS = [
    {"candidate_index": "halfvec", "rescore_storage": "float16", "pool_factor": 1},
    {"candidate_index": "binary", "rescore_storage": "float16", "pool_factor": 1},
    {"candidate_index": "halfvec", "rescore_storage": "int8", "pool_factor": 1},
    {"candidate_index": "halfvec", "rescore_storage": "float16", "pool_factor": 2},
    {"candidate_index": "binary", "rescore_storage": "int8", "pool_factor": 2},
]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _sql_search(store: lip.Store, name: str, query: np.ndarray, k: int, exact: bool) -> list:
    return store.conn.execute(
        "SELECT id, score FROM search(%s, %s, %s, exact => %s)",
        (name, [HalfVector(v) for v in query], k, exact),
    ).fetchall()


@pytest.mark.parametrize(
    "options", OPTIONS, ids=["-".join(str(v) for v in o.values()) for o in OPTIONS]
)
def test_python_and_sql_return_the_same_hits(store: lip.Store, options: dict) -> None:
    rng = np.random.default_rng(17)
    topics = _unit(rng.standard_normal((40, DIM)))
    docs = [
        _unit(topics[rng.integers(0, 40, int(rng.integers(4, 16)))]
              + 0.3 * rng.standard_normal((1, DIM)))
        for _ in range(N_DOCS)
    ]  # fmt: skip
    coll = store.collection("parity", dim=DIM, **options)
    ids = [f"d{j}" for j in range(N_DOCS)]
    coll.add_embeddings(ids, docs)
    stored = {i: coll.get(i, embeddings=True).embeddings for i in ids}  # type: ignore[union-attr]
    for seed in range(12):
        # 32 query vectors, as a ColBERT query expanded with [MASK]
        query = _unit(topics[np.random.default_rng(seed).integers(0, 40, 32)] + 0.1)
        for exact in (False, True):
            hits = coll.search_embeddings(query, k=10, exact=exact, plan=None if exact else "index")
            rows = _sql_search(store, "parity", query, 10, exact)
            assert_same_hits(rows, hits)
            # and both are exact MaxSim of what is stored (pooled vectors where it pools)
            for hit in hits:
                reference = lip.maxsim(query.astype(np.float16), stored[hit.id])
                assert hit.score == pytest.approx(reference, abs=1e-3)
        # knobs given explicitly: ef_search follows candidates_per_token on both paths
        hits = coll.search_embeddings(
            query, k=5, plan="index", candidates_per_token=30, rescore_depth=250
        )
        rows = store.conn.execute(
            "SELECT id, score FROM search(%s, %s, 5, candidates_per_token => 30, "
            "rescore_depth => 250)",
            ("parity", [HalfVector(v) for v in query]),
        ).fetchall()
        assert_same_hits(rows, hits)
        if options["rescore_storage"] == "int8":
            assert coll.last_search is not None and coll.last_search.refined > 10


def test_the_shared_formulas_agree_in_sql(store: lip.Store) -> None:
    for k in (1, 9, 10, 11, 66, 67, 500, 5000, 5001, limits.MAX_K):
        row = store.conn.execute(
            "SELECT per_token, ef, depth FROM search_knobs(%s)", (k,)
        ).fetchone()
        assert row == tuple(vars(default_knobs(k)).values()), k
        assert store.conn.execute("SELECT dense_ef_search(%s)", (k,)).fetchone() == (
            limits.dense_ef_search(k),
        )
    for ef, passing, total in [(150, 1, 10**6), (150, 5 * 10**5, 10**6), (1000, 10, 10**9),
                               (40, 10**6, 10**6), (150, 0, 0)]:  # fmt: skip
        row = store.conn.execute("SELECT scan_budget(%s, %s, %s)", (ef, passing, total))
        assert row.fetchone() == (limits.scan_budget(ef, passing, total),)
