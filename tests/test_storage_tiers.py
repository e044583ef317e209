"""Storage options (pooling, int8 matrices, stage 2 from token rows) and the dense tier,
on a real PostgreSQL, checked against numpy."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest
from pgvector import HalfVector
from psycopg import sql

import lateinteract_pg as lip
from lateinteract_pg import migrate
from lateinteract_pg.maxsim import maxsim
from lateinteract_pg.pooling import pool_tokens
from tests.helpers import clustered_docs, unit

DIM = 32


def _documents(n: int, seed: int = 0) -> tuple[list[str], list[np.ndarray]]:
    docs = clustered_docs(n, seed, DIM, groups=(3, 12), lengths=(6, 30), noise=0.15)
    return [f"doc-{j}" for j in range(n)], docs


def _stored(vectors: np.ndarray) -> np.ndarray:
    return vectors.astype(np.float16).astype(np.float32)


def test_pooled_collection_stores_fewer_tokens_and_finds_its_documents(store: lip.Store) -> None:
    ids, docs = _documents(40)
    coll = store.collection("pooled", dim=DIM, pool_factor=2)
    coll.add_embeddings(ids, docs)
    expected_tokens = sum(max(1, len(d) // 2) for d in docs)
    assert store.collections()[0].n_tokens == expected_tokens
    assert store.collections()[0].pool_factor == 2
    rng = np.random.default_rng(1)
    for j in rng.choice(len(ids), 10, replace=False):
        stored = coll.get(ids[j], embeddings=True)
        assert stored is not None and stored.embeddings is not None
        assert stored.n_tokens == len(docs[j]) // 2
        pooled = pool_tokens(_stored(docs[j]), 2)[0]  # ingest pools the float16 vectors
        np.testing.assert_allclose(stored.embeddings, _stored(pooled))
        # a document's own tokens find it first, under its own id, with the MaxSim of the
        # pooled vectors as stored
        for plan in ("index", "exhaustive"):
            hits = coll.search_embeddings(docs[j][:8], k=3, plan=plan)  # type: ignore[arg-type]
            assert hits[0].id == ids[j]
            assert hits[0].score == pytest.approx(maxsim(docs[j][:8], stored.embeddings), abs=1e-4)


def test_int8_matrices_score_within_half_a_percent(store: lip.Store) -> None:
    ids, docs = _documents(60, seed=2)
    exact = store.collection("f16", dim=DIM, storage="unpooled")  # float16 matrices
    small = store.collection("i8", dim=DIM, rescore_storage="int8")
    exact.add_embeddings(ids, docs)
    small.add_embeddings(ids, docs)
    sizes = dict(
        store.conn.execute(
            sql.SQL(
                "SELECT c.rescore_storage, sum(octet_length(d.matrix)) FROM {} d JOIN {} c "
                "ON c.id = d.collection_id GROUP BY 1"
            ).format(store.table("documents"), store.table("collections"))
        ).fetchall()
    )
    n_tokens = sum(len(d) for d in docs)
    assert sizes == {"float16": n_tokens * DIM * 2, "int8": n_tokens * (DIM + 4)}
    rng = np.random.default_rng(3)
    for _ in range(5):
        query = unit(rng.standard_normal((6, DIM))).astype(np.float32)
        reference = {i: maxsim(query, _stored(d)) for i, d in zip(ids, docs)}
        for plan in ("index", "exhaustive"):
            hits = small.search_embeddings(query, k=10, plan=plan)  # type: ignore[arg-type]
            for hit in hits:
                assert hit.score == pytest.approx(reference[hit.id], rel=5e-3, abs=5e-3)
            top = sorted(reference, key=lambda i: -reference[i])[:10]
            assert len({h.id for h in hits} & set(top)) >= 9
    got = small.get(ids[0], embeddings=True)
    assert got is not None and got.embeddings is not None
    np.testing.assert_allclose(got.embeddings, docs[0], atol=0.01)


def test_rescoring_from_token_rows_gives_the_same_results(store: lip.Store) -> None:
    ids, docs = _documents(50, seed=4)
    coll = store.collection("rows", dim=DIM, storage="unpooled")  # a token row per vector
    coll.add_embeddings(ids, docs)
    rng = np.random.default_rng(5)
    for _ in range(5):
        query = unit(rng.standard_normal((5, DIM))).astype(np.float32)
        packed = coll.search_embeddings(query, k=10, plan="index")
        rows = coll.search_embeddings(query, k=10, plan="index", rescore_from="tokens")
        assert [h.id for h in rows] == [h.id for h in packed]
        np.testing.assert_allclose([h.score for h in rows], [h.score for h in packed], atol=1e-5)
    with pytest.raises(lip.InvalidInput, match="rescore_from"):
        coll.search_embeddings(query, rescore_from="nowhere")


def test_dense_tier_ranks_by_mean_vectors(store: lip.Store) -> None:
    ids, docs = _documents(80, seed=6)
    coll = store.collection("dense", dim=DIM, pool_factor=3)
    coll.add_embeddings(ids, docs)
    means = unit(np.array([d.mean(axis=0) for d in docs]))  # before pooling
    rng = np.random.default_rng(7)
    for k in (5, 20):
        query = unit(rng.standard_normal((7, DIM))).astype(np.float32)
        expected = means @ unit(query.mean(axis=0))
        order = np.argsort(-expected)[:k]
        hits = coll.search_embeddings(query, k=k, tier="dense")
        assert coll.last_search is not None and coll.last_search.tier == "dense"
        assert [h.id for h in hits] == [ids[j] for j in order]
        np.testing.assert_allclose([h.score for h in hits], expected[order], atol=3e-3)
    # past k = 500 an exact scan: every document, in the same order as numpy's
    everything = coll.search_embeddings(query, k=501, tier="dense")
    assert [h.id for h in everything] == [ids[j] for j in np.argsort(-expected)]
    exact = coll.search_embeddings(query, k=7, tier="dense", exact=True)
    assert [h.id for h in exact] == [h.id for h in everything[:7]]
    # the SQL function is the same search
    rows = store.conn.execute(
        sql.SQL("SELECT id FROM {}('dense', %s, 5)").format(store.table("search_dense")),
        ([HalfVector(v) for v in query],),
    ).fetchall()
    assert [r[0] for r in rows] == [h.id for h in everything[:5]]
    with pytest.raises(lip.InvalidInput, match="no reranker"):
        coll.search_embeddings(query, tier="rerank")
    with pytest.raises(lip.InvalidInput, match="tier"):
        coll.search_embeddings(query, tier="sparse")  # type: ignore[arg-type]


def test_storage_options_are_checked_and_fixed_at_creation(store: lip.Store) -> None:
    for bad in (0, 17, True, 1.5, "2"):
        with pytest.raises(lip.InvalidInput, match="pool_factor"):
            store.collection("bad", dim=DIM, pool_factor=bad)  # type: ignore[arg-type]
    with pytest.raises(lip.InvalidInput, match="rescore_storage"):
        store.collection("bad", dim=DIM, rescore_storage="int4")  # type: ignore[arg-type]
    assert "bad" not in store
    coll = store.collection("fixed", dim=DIM, pool_factor=2, rescore_storage="int8")
    assert "pool_factor=2" in repr(coll) and "rescore_storage='int8'" in repr(coll)
    with pytest.raises(lip.CollectionExists, match="pool_factor=2"):
        store.collection("fixed", pool_factor=3)
    with pytest.raises(lip.CollectionExists, match="rescore_storage"):
        store.collection("fixed", rescore_storage="float16")
    with pytest.raises(lip.InvalidInput, match="pool_factor"):
        store.collection("fixed", pool_factor=0)
    assert store.collection("fixed").pool_factor == 2


def test_migration_0004_backfills_dense_vectors_and_refuses_to_lose_int8(
    pg_dsn: str, store: lip.Store
) -> None:
    ids, docs = _documents(30, seed=8)
    coll = store.collection("kept", dim=DIM, storage="unpooled")  # 0003 cannot hold pooled rows
    coll.add_embeddings(ids, docs)
    query = unit(np.random.default_rng(9).standard_normal((4, DIM))).astype(np.float32)
    before = [(h.id, round(h.score, 3)) for h in coll.search_embeddings(query, tier="dense")]
    for options in ({"rescore_storage": "int8"}, {"pool_factor": 2}):
        store.collection("small", dim=DIM, **options)  # type: ignore[arg-type]
        with pytest.raises(lip.InvalidInput, match=r"int8.*pool_factor"):
            migrate.upgrade(pg_dsn, store.schema, "0003")
        assert migrate.upgrade(pg_dsn, store.schema) == migrate.HEAD
        store.drop_collection("small")
    migrate.upgrade(pg_dsn, store.schema, "0003")
    with psycopg.connect(pg_dsn) as conn:
        columns = conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'documents'",
            (store.schema,),
        ).fetchall()
    assert ("dense",) not in columns
    assert migrate.upgrade(pg_dsn, store.schema) == migrate.HEAD
    store.close()
    with lip.connect(pg_dsn, schema=store.schema) as again:
        after = again.collection("kept").search_embeddings(query, tier="dense")
        assert [(h.id, round(h.score, 3)) for h in after] == before
