"""The candidate index of a collection: halfvec (inner product) or binary (sign bits, Hamming).

Stage 1 must walk whichever index the collection has, stage 2 must stay exact, and switching
the index is one transaction. Recall of the binary index on real vectors: test_search_real.py.
"""

from __future__ import annotations

import numpy as np
import psycopg
import pytest
from pgvector import HalfVector
from psycopg import sql

import lateinteract_pg as lip
from lateinteract_pg import migrate
from lateinteract_pg.search import candidates
from tests.helpers import DIM, assert_same_hits, numpy_top, snapshot, unit_docs


def index_definition(coll: lip.Collection) -> str | None:
    row = coll.conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = %s",
        (coll.store.schema, f"tokens_{coll.id}_hnsw"),
    ).fetchone()
    return None if row is None else str(row[0])


def stage1_plan(coll: lip.Collection, query: np.ndarray) -> str:
    """EXPLAIN of the statement the Python path runs for stage 1, with sequential and bitmap
    scans off: the index it can walk, also where a small table's pooled rows make a scan and
    a sort cheaper."""
    statement = candidates.candidate_sql(
        coll.store.table("tokens"), coll.id, coll.dim, "zero", coll.candidate_index
    )
    with coll.conn.transaction():
        coll.conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
        rows = coll.conn.execute(
            sql.SQL("EXPLAIN ") + statement,
            {
                "probes": [HalfVector(v) for v in query],
                "weights": [1.0] * len(query),
                "per_token": 50,
                "depth": 20,
            },
        ).fetchall()
    return "\n".join(r[0] for r in rows)


def sql_search(coll: lip.Collection, query: np.ndarray, k: int, **knobs: int) -> list[tuple]:
    named = [
        sql.SQL("{} => {}").format(sql.Identifier(name), sql.Literal(value))
        for name, value in knobs.items()
    ]
    statement = sql.SQL("SELECT id, score FROM {}({})").format(
        coll.store.table("search"),
        sql.SQL(", ").join([sql.Placeholder(), sql.Placeholder(), sql.Literal(k), *named]),
    )
    return coll.conn.execute(statement, (coll.name, [HalfVector(v) for v in query])).fetchall()


@pytest.fixture
def binary(store: lip.Store) -> tuple[lip.Collection, list[np.ndarray]]:
    coll = store.collection("bits", dim=DIM, candidate_index="binary")
    docs = unit_docs(2000, seed=5)
    coll.add_embeddings([f"d{i}" for i in range(len(docs))], docs)
    return coll, docs


def test_binary_index_is_the_one_stage1_walks(binary: tuple) -> None:
    coll, docs = binary
    assert coll.candidate_index == "binary"
    definition = index_definition(coll)
    assert definition is not None
    assert "binary_quantize" in definition and "bit_hamming_ops" in definition
    plan = stage1_plan(coll, docs[7][:3])
    assert f"Index Scan using tokens_{coll.id}_hnsw" in plan, plan


def test_binary_index_search_returns_exact_scores(binary: tuple) -> None:
    """Candidates come from Hamming distances; every returned score is the exact MaxSim, a
    document's own tokens find it, and the SQL function agrees with the Python path."""
    coll, docs = binary
    knobs = {"candidates_per_token": 100, "ef_search": 100, "rescore_depth": 100}
    for i in (3, 42, 1999):
        q = docs[i]
        hits = coll.search_embeddings(q, k=5, plan="index", **knobs)
        assert coll.last_search is not None and coll.last_search.plan == "index"
        assert hits[0].id == f"d{i}"
        exact = dict(numpy_top(q, docs, len(docs)))
        np.testing.assert_allclose([h.score for h in hits], [exact[h.id] for h in hits], atol=1e-3)
        rows = sql_search(coll, q, 5, **knobs)
        assert_same_hits(rows, hits)


def test_switching_the_candidate_index(store: lip.Store) -> None:
    coll = store.collection("switch", dim=DIM)
    docs = unit_docs(400, seed=8)
    coll.add_embeddings([f"d{i}" for i in range(len(docs))], docs)
    q = docs[11][:4]
    before = coll.search_embeddings(q, k=5, plan="index")
    assert "halfvec_ip_ops" in (index_definition(coll) or "")

    coll.set_candidate_index("binary")
    assert "bit_hamming_ops" in (index_definition(coll) or "")
    assert store.collection("switch").candidate_index == "binary"
    assert [c.candidate_index for c in store.collections()] == ["binary"]
    assert f"tokens_{coll.id}_hnsw" in stage1_plan(coll, q)
    after = coll.search_embeddings(q, k=5, plan="index", rescore_depth=400)
    assert [h.id for h in after] == [h.id for h in before]  # every document re-scored

    coll.set_candidate_index("halfvec")
    assert "halfvec_ip_ops" in (index_definition(coll) or "")
    assert [h.id for h in coll.search_embeddings(q, k=5, plan="index")] == [h.id for h in before]


def test_bad_candidate_index_changes_nothing(store: lip.Store) -> None:
    coll = store.collection("kept", dim=DIM)
    coll.add_embeddings(["a", "b"], unit_docs(2))
    before = snapshot(store)
    definition = index_definition(coll)
    for bad in ("ivfflat", "", None, 1, "BINARY"):
        with pytest.raises(lip.InvalidInput):
            coll.set_candidate_index(bad)  # type: ignore[arg-type]
        with pytest.raises(lip.InvalidInput):
            store.collection("new", dim=DIM, candidate_index=bad or "x")  # type: ignore[arg-type]
    with pytest.raises(lip.CollectionExists):
        store.collection("kept", candidate_index="binary")
    assert snapshot(store) == before
    assert index_definition(coll) == definition and coll.candidate_index == "halfvec"
    assert "new" not in store


def test_empty_binary_collection_builds_its_index_on_the_first_load(store: lip.Store) -> None:
    coll = store.collection("later", dim=DIM)
    coll.set_candidate_index("binary")  # nothing to index yet
    assert index_definition(coll) is None
    coll.add_embeddings(["a", "b"], unit_docs(2, seed=3))
    assert "bit_hamming_ops" in (index_definition(coll) or "")


def test_downgrade_to_0002_drops_binary_indexes(pg_dsn: str, schema_name: str) -> None:
    try:
        with lip.connect(pg_dsn, schema=schema_name) as store:
            # unpooled: revisions before 0008 have no pooled token rows
            store.collection(
                "b", dim=DIM, candidate_index="binary", storage="unpooled"
            ).add_embeddings(["x", "y"], unit_docs(2))
        assert migrate.upgrade(pg_dsn, schema_name, "0002") == "0002"
        with psycopg.connect(pg_dsn) as conn:
            left = conn.execute(
                "SELECT count(*) FROM pg_indexes WHERE schemaname = %s AND indexdef LIKE %s",
                (schema_name, "%bit_hamming_ops%"),
            ).fetchone()
            assert left == (0,)
        assert migrate.upgrade(pg_dsn, schema_name) == migrate.HEAD
        with lip.connect(pg_dsn, schema=schema_name) as store:
            coll = store.collection("b")
            assert coll.candidate_index == "halfvec" and len(coll) == 2
            assert coll.search_embeddings(unit_docs(1, seed=9)[0], k=1)
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema_name))
            )
