"""Store and Collection behaviour on a real PostgreSQL: writes, reads, search, bad input."""

from __future__ import annotations

import uuid

import numpy as np
import psycopg
import pytest
from psycopg import sql

import lateinteract_pg as lip
from lateinteract_pg import migrate
from lateinteract_pg.pooling import pooled_length
from tests.helpers import DIM, numpy_top, snapshot, unit_docs


@pytest.fixture
def filled(store: lip.Store) -> tuple[lip.Collection, list[np.ndarray]]:
    coll = store.collection("papers", dim=DIM)
    docs = unit_docs(300)
    coll.add_embeddings(
        [f"d{i}" for i in range(len(docs))],
        docs,
        texts=[f"text {i}" for i in range(len(docs))],
        metadata=[{"i": i, "tags": ["a", "b"]} for i in range(len(docs))],
    )
    return coll, docs


def test_migrate_is_idempotent_and_uses_own_version_table(pg_dsn: str, store: lip.Store) -> None:
    assert migrate.upgrade(pg_dsn, store.schema) == migrate.HEAD
    assert migrate.upgrade(pg_dsn, store.schema) == migrate.HEAD
    row = store.conn.execute(
        sql.SQL("SELECT version_num FROM {}").format(store.table(migrate.VERSION_TABLE))
    ).fetchall()
    assert row == [(migrate.HEAD,)]


def test_collection_create_open_list_drop(store: lip.Store) -> None:
    coll = store.collection("papers", dim=DIM)
    assert coll.dim == DIM and len(coll) == 0
    assert store.collection("papers").dim == DIM  # open without dim
    with pytest.raises(lip.CollectionExists, match="dim=16"):
        store.collection("papers", dim=DIM + 1)
    with pytest.raises(lip.CollectionNotFound):
        store.collection("nope", create=False)
    with pytest.raises(lip.InvalidInput, match="give dim"):
        store.collection("nope")
    assert [c.name for c in store.collections()] == ["papers"]
    assert "papers" in store
    store.drop_collection("papers")
    assert "papers" not in store and store.collections() == []
    with pytest.raises(lip.CollectionNotFound):
        store.drop_collection("papers")


def test_add_get_len_delete(filled: tuple[lip.Collection, list[np.ndarray]]) -> None:
    coll, docs = filled
    assert len(coll) == 300
    doc = coll.get("d7", embeddings=True)
    assert doc is not None
    assert doc.text == "text 7" and doc.metadata == {"i": 7, "tags": ["a", "b"]}
    assert doc.n_tokens == len(docs[7])
    assert doc.embeddings is not None
    np.testing.assert_array_equal(doc.embeddings, docs[7].astype(np.float16).astype(np.float32))
    assert coll.get("missing") is None
    assert "d7" in coll and "missing" not in coll
    assert coll.delete(["d7", "missing"]) == 1
    assert len(coll) == 299 and coll.get("d7") is None
    assert coll.delete("d8") == 1


def test_upsert_replaces_tokens_in_one_transaction(
    filled: tuple[lip.Collection, list[np.ndarray]],
) -> None:
    coll, docs = filled
    store = coll.store
    tokens_before = store.conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(store.table("tokens"))
    ).fetchone()
    new = unit_docs(1, seed=99)[0][:3]
    coll.add_embeddings(["d5"], [new], texts=["replaced"])
    doc = coll.get("d5", embeddings=True)
    assert doc is not None and doc.text == "replaced" and doc.n_tokens == 3
    assert doc.embeddings is not None and doc.embeddings.shape == (3, DIM)
    assert len(coll) == 300
    tokens_after = store.conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(store.table("tokens"))
    ).fetchone()
    assert tokens_before is not None and tokens_after is not None
    per_row = coll.spec.index_pool_factor  # token rows pool the vectors by this
    removed, added = pooled_length(len(docs[5]), per_row), pooled_length(3, per_row)
    assert tokens_after[0] == tokens_before[0] - removed + added
    info = store.collections()[0]  # counts vectors, not token rows
    assert info.n_tokens == sum(map(len, docs)) - len(docs[5]) + 3 and info.n_documents == 300


@pytest.mark.parametrize("plan", [None, "index", "exhaustive"])
def test_search_matches_numpy(
    filled: tuple[lip.Collection, list[np.ndarray]], plan: str | None
) -> None:
    coll, docs = filled
    rng = np.random.default_rng(5)
    for _ in range(5):
        query = unit_docs(1, seed=int(rng.integers(1 << 30)))[0][:8]
        expected = numpy_top(query, docs, 10)
        hits = coll.search_embeddings(query, k=10, plan=plan, rescore_depth=300)  # type: ignore[arg-type]
        assert coll.last_search is not None
        if plan is not None:
            assert coll.last_search.plan == plan
        assert [h.id for h in hits] == [doc for doc, _ in expected]
        for hit, (_, score) in zip(hits, expected):
            assert abs(hit.score - score) < 1e-3
            assert hit.text == f"text {hit.id[1:]}"


def test_exact_search_is_exhaustive(filled: tuple[lip.Collection, list[np.ndarray]]) -> None:
    coll, docs = filled
    query = unit_docs(1, seed=11)[0][:5]
    hits = coll.search_embeddings(query, k=300, exact=True)
    assert coll.last_search is not None and coll.last_search.plan == "exhaustive"
    assert coll.last_search.rescored_tokens == sum(len(d) for d in docs)
    assert [h.id for h in hits] == [d for d, _ in numpy_top(query, docs, 300)]


def test_k_larger_than_collection(filled: tuple[lip.Collection, list[np.ndarray]]) -> None:
    coll, _ = filled
    hits = coll.search_embeddings(unit_docs(1, seed=3)[0], k=1000, plan="index")
    assert 0 < len(hits) <= 300
    assert len({h.id for h in hits}) == len(hits)


def test_empty_collection_search(store: lip.Store) -> None:
    coll = store.collection("empty", dim=DIM)
    assert coll.search_embeddings(unit_docs(1)[0], k=5) == []


BAD_ADDS = [
    ({"ids": ["a"], "embeddings": [np.ones((2, DIM + 1))]}, lip.DimensionMismatch),
    ({"ids": ["a"], "embeddings": [np.ones((0, DIM))]}, lip.InvalidInput),
    ({"ids": ["a"], "embeddings": [np.full((2, DIM), np.nan)]}, lip.InvalidInput),
    ({"ids": ["a"], "embeddings": [np.full((2, DIM), np.inf)]}, lip.InvalidInput),
    ({"ids": ["a"], "embeddings": [np.full((2, DIM), 1e6)]}, lip.InvalidInput),
    ({"ids": ["a"], "embeddings": [np.ones(DIM)]}, lip.InvalidInput),
    ({"ids": ["a", "a"], "embeddings": [np.ones((1, DIM))] * 2}, lip.InvalidInput),
    ({"ids": [], "embeddings": []}, lip.InvalidInput),
    ({"ids": ["a", "b"], "embeddings": [np.ones((1, DIM))]}, lip.InvalidInput),
    ({"ids": [""], "embeddings": [np.ones((1, DIM))]}, lip.InvalidInput),
    ({"ids": ["a\x00b"], "embeddings": [np.ones((1, DIM))]}, lip.InvalidInput),
    ({"ids": [7], "embeddings": [np.ones((1, DIM))]}, lip.InvalidInput),
    ({"ids": "ab", "embeddings": [np.ones((1, DIM))] * 2}, lip.InvalidInput),
    ({"ids": ["a"], "embeddings": [[["x"] * DIM]]}, lip.InvalidInput),
    ({"ids": ["a"], "embeddings": [np.ones((1, DIM))], "texts": ["t\x00"]}, lip.InvalidInput),
    ({"ids": ["a"], "embeddings": [np.ones((1, DIM))], "texts": ["x", "y"]}, lip.InvalidInput),
    ({"ids": ["a"], "embeddings": [np.ones((1, DIM))], "metadata": [[1]]}, lip.InvalidInput),
    (
        {"ids": ["a"], "embeddings": [np.ones((1, DIM))], "metadata": [{"x": {1, 2}}]},
        lip.InvalidInput,
    ),
    (
        {"ids": ["a"], "embeddings": [np.ones((1, DIM))], "metadata": [{"x": float("nan")}]},
        lip.InvalidInput,
    ),
    ({"ids": ["\ud800"], "embeddings": [np.ones((1, DIM))]}, lip.InvalidInput),
    # character spans: one (start, end) per token, inside the text, and only with a text
    ({"ids": ["a"], "embeddings": [np.ones((1, DIM))], "spans": [[(0, 1)]]}, lip.InvalidInput),
    (
        {"ids": ["a"], "embeddings": [np.ones((2, DIM))], "texts": ["ab"], "spans": [[(0, 1)]]},
        lip.InvalidInput,
    ),
    (
        {"ids": ["a"], "embeddings": [np.ones((1, DIM))], "texts": ["ab"], "spans": [[(1, 5)]]},
        lip.InvalidInput,
    ),
    (
        {"ids": ["a"], "embeddings": [np.ones((1, DIM))], "texts": ["ab"], "spans": [[(1, 1)]]},
        lip.InvalidInput,
    ),
    (
        {"ids": ["a"], "embeddings": [np.ones((1, DIM))], "texts": ["ab"], "spans": [[(0.5, 1)]]},
        lip.InvalidInput,
    ),
    (
        {"ids": ["a"], "embeddings": [np.ones((1, DIM))], "texts": ["ab"], "spans": []},
        lip.InvalidInput,
    ),
    # a valid document after an invalid one: nothing of the call is written
    (
        {"ids": ["ok", "bad"], "embeddings": [np.ones((1, DIM)), np.ones((1, 3))]},
        lip.DimensionMismatch,
    ),
]


@pytest.mark.parametrize(("kwargs", "error"), BAD_ADDS)
def test_bad_adds_raise_and_change_nothing(
    filled: tuple[lip.Collection, list[np.ndarray]], kwargs: dict, error: type[Exception]
) -> None:
    coll, _ = filled
    before = snapshot(coll.store)
    with pytest.raises(error):
        coll.add_embeddings(**kwargs)
    assert snapshot(coll.store) == before


@pytest.mark.parametrize(
    ("query", "kwargs"),
    [
        (np.ones((0, DIM)), {}),
        (np.ones((2, DIM + 1)), {}),
        (np.full((2, DIM), np.nan), {}),
        (np.ones((2, DIM)), {"k": 0}),
        (np.ones((2, DIM)), {"k": -3}),
        (np.ones((2, DIM)), {"k": 2.5}),
        (np.ones((2, DIM)), {"k": 10**9}),
        (np.ones((2, DIM)), {"candidates_per_token": 0}),
        (np.ones((2, DIM)), {"rescore_depth": -1}),
        (np.ones((2, DIM)), {"plan": "magic"}),
        (np.ones((2, DIM)), {"imputation": "mean"}),
        (np.ones((2, DIM)), {"merge_threshold": "high"}),
        (np.ones((2, DIM)), {"merge_threshold": 0.0}),
        ("not a vector", {}),
    ],
)
def test_bad_queries_raise(
    filled: tuple[lip.Collection, list[np.ndarray]], query: object, kwargs: dict
) -> None:
    coll, _ = filled
    with pytest.raises(lip.InvalidInput):
        coll.search_embeddings(query, **kwargs)


HOSTILE = [
    "'; DROP TABLE documents; --",
    'quote"d',
    "with space",
    "Robert'); DROP SCHEMA public CASCADE;--",
    "ünïcödé ∑ 🙂",
    "%s %(x)s {}",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_and_ids_are_data(store: lip.Store, name: str) -> None:
    coll = store.collection(name, dim=DIM)
    docs = unit_docs(3, seed=1)
    coll.add_embeddings([name, name + "2", "plain"], docs, texts=[name, None, "x"])
    assert store.collection(name).id == coll.id
    got = coll.get(name)
    assert got is not None and got.text == name
    hits = coll.search_embeddings(docs[0], k=3)
    assert {h.id for h in hits} == {name, name + "2", "plain"}
    assert hits[0].id == name  # a document is its own best match
    assert coll.delete([name]) == 1
    store.drop_collection(name)
    assert name not in store


def test_schema_name_needing_quotes(pg_dsn: str) -> None:
    schema = f'Odd "Schema" {uuid.uuid4().hex[:6]}'
    try:
        with lip.connect(pg_dsn, schema=schema) as s:
            coll = s.collection("c", dim=DIM)
            coll.add_embeddings(["x"], unit_docs(1))
            assert len(coll) == 1
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def test_bad_names_rejected(store: lip.Store) -> None:
    for bad in ["", "   ", "x" * 201, "a\x00b", 7]:
        with pytest.raises(lip.InvalidInput):
            store.collection(bad, dim=DIM)  # type: ignore[arg-type]
    for dim in [0, -1, 4001, 2.0, True]:
        with pytest.raises(lip.InvalidInput):
            store.collection("x", dim=dim)  # type: ignore[arg-type]
    for schema in ["", "a%sb", "x" * 64, "a\x00"]:
        with pytest.raises(lip.InvalidInput):
            lip.connect("postgresql://unused", schema=schema)


def test_missing_pgvector_names_the_fix(pg_dsn: str) -> None:
    """A role that may not create the extension gets an error that says what to run."""
    suffix = uuid.uuid4().hex[:8]
    db, role = f"lip_noext_{suffix}", f"lip_user_{suffix}"
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'pw'").format(sql.Identifier(role)))
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db), sql.Identifier(role))
        )
    try:
        user_dsn = psycopg.conninfo.make_conninfo(pg_dsn, dbname=db, user=role, password="pw")
        with pytest.raises(lip.ExtensionMissing, match="CREATE EXTENSION vector"):
            lip.connect(user_dsn)
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(db)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_concurrent_store_sees_committed_documents_only(
    pg_dsn: str, filled: tuple[lip.Collection, list[np.ndarray]]
) -> None:
    coll, _ = filled
    with lip.connect(pg_dsn, schema=coll.store.schema) as other:
        view = other.collection("papers")
        assert len(view) == 300
        with coll.store.conn.transaction():
            coll.store.conn.execute(
                sql.SQL("DELETE FROM {} WHERE external_id = 'd1'").format(
                    coll.store.table("documents")
                )
            )
            assert view.get("d1") is not None  # not committed yet
        assert view.get("d1") is None


def test_head_constant_matches_migration_scripts() -> None:
    from alembic.script import ScriptDirectory

    assert ScriptDirectory(str(migrate.MIGRATIONS_DIR)).get_current_head() == migrate.HEAD


def test_parallel_and_single_connection_searches_agree(
    pg_dsn: str, filled: tuple[lip.Collection, list[np.ndarray]]
) -> None:
    coll, _ = filled
    query = unit_docs(1, seed=21)[0][:9]
    with lip.connect(pg_dsn, schema=coll.store.schema, parallel=1) as single:
        one = single.collection("papers").search_embeddings(query, k=10, plan="index")
        assert single.collection("papers").last_search is None  # a fresh handle
    two = coll.search_embeddings(query, k=10, plan="index")
    assert coll.last_search is not None and coll.last_search.connections == 2
    assert [(h.id, round(h.score, 5)) for h in one] == [(h.id, round(h.score, 5)) for h in two]


def test_search_inside_a_transaction_sees_its_own_writes(
    filled: tuple[lip.Collection, list[np.ndarray]],
) -> None:
    coll, _ = filled
    new = unit_docs(1, seed=77)[0]
    with coll.store.conn.transaction(force_rollback=True):
        coll.add_embeddings(["fresh"], [new])
        hits = coll.search_embeddings(new, k=1, plan="index")
        assert coll.last_search is not None and coll.last_search.connections == 1
        assert hits[0].id == "fresh"
    assert coll.get("fresh") is None


def test_parallel_must_be_positive(pg_dsn: str, store: lip.Store) -> None:
    with pytest.raises(lip.InvalidInput):
        lip.Store(pg_dsn, store.schema, parallel=0)


def test_index_rebuild_or_insert(filled: tuple[lip.Collection, list[np.ndarray]]) -> None:
    coll, _ = filled
    few, many = unit_docs(2, seed=31), unit_docs(300, seed=32)
    coll.add_embeddings(["x1", "x2"], few)
    assert coll.last_ingest is not None and not coll.last_ingest.index_rebuilt
    coll.add_embeddings([f"m{i}" for i in range(300)], many)  # doubles the collection
    assert coll.last_ingest is not None and coll.last_ingest.index_rebuilt
    coll.add_embeddings(["x3"], few[:1], rebuild_index=True)
    assert coll.last_ingest.index_rebuilt and coll.last_ingest.token_rows == len(few[0])
    coll.add_embeddings(["y"], many[:1] * 1, rebuild_index=False)
    assert not coll.last_ingest.index_rebuilt
    hits = coll.search_embeddings(many[7], k=1, plan="index")
    assert hits[0].id == "m7"


def test_concurrent_connects_migrate_once(pg_dsn: str, schema_name: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def open_close(_: int) -> str:
        with lip.connect(pg_dsn, schema=schema_name) as s:
            return s.collection("shared", dim=DIM).name

    try:
        with ThreadPoolExecutor(6) as pool:
            assert list(pool.map(open_close, range(6))) == ["shared"] * 6
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema_name))
            )


def test_search_settings_survive_a_rolled_back_transaction(
    filled: tuple[lip.Collection, list[np.ndarray]],
) -> None:
    """ef_search set inside a transaction that rolls back must be set again afterwards."""
    coll, _ = filled
    query = unit_docs(1, seed=5)[0]
    with coll.store.conn.transaction(force_rollback=True):
        coll.search_embeddings(query, k=3, plan="index", candidates_per_token=60, ef_search=77)
    coll.search_embeddings(query, k=3, plan="index", candidates_per_token=60, ef_search=77)
    row = coll.store.conn.execute("SHOW hnsw.ef_search").fetchone()
    assert row == ("77",)
