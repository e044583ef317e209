"""The SQL functions (search, maxsim, explain) called through psycopg on a real server,
checked against numpy MaxSim and against the Python path. Their sources, snapshots and
migrations: tests/test_sql_functions.py."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import psycopg
import pytest
from pgvector import HalfVector, Vector
from pgvector.psycopg import register_vector
from psycopg import sql

import lateinteract_pg as lip
from tests.helpers import DIM, assert_same_hits, numpy_top, snapshot, unit_docs

HOSTILE = [
    "x'); DROP TABLE documents; --",
    'quote"d',
    "dollar $body$ tag",
    "percent %s %(x)s",
    "ünïcödé ☃ \u202eRTL",
]


def halfvecs(query: np.ndarray) -> list[HalfVector]:
    return [HalfVector(v) for v in query]


@pytest.fixture
def coll(store: lip.Store) -> tuple[lip.Collection, list[np.ndarray]]:
    coll = store.collection("papers", dim=DIM)
    docs = unit_docs(300)
    texts = [" ".join(f"w{i}_{j}" for j in range(len(d))) for i, d in enumerate(docs)]
    # token j of document i is the word "w{i}_{j}" of its text
    spans = []
    for text in texts:
        starts = [0]
        for word in text.split(" ")[:-1]:
            starts.append(starts[-1] + len(word) + 1)
        spans.append([(s, s + len(w)) for s, w in zip(starts, text.split(" "))])
    coll.add_embeddings(
        [f"d{i}" for i in range(len(docs))],
        docs,
        texts=texts,
        metadata=[{"i": i} for i in range(len(docs))],
        spans=spans,
    )
    return coll, docs


def call(store: lip.Store, function: str, *args: object) -> list[tuple]:
    placeholders = sql.SQL(", ").join(sql.Placeholder() * len(args))
    return store.conn.execute(
        sql.SQL("SELECT * FROM {}({})").format(store.table(function), placeholders), args
    ).fetchall()


def query(seed: int, m: int = 6) -> np.ndarray:
    return unit_docs(1, seed=seed)[0][:m] if m else unit_docs(1, seed=seed)[0]


def test_search_exact_matches_numpy(store: lip.Store, coll: tuple) -> None:
    _, docs = coll
    for seed in range(100, 105):
        q = query(seed)
        rows = call(store, "search", "papers", halfvecs(q), 10, None, None, None, True)
        expected = numpy_top(q.astype(np.float16).astype(np.float32), docs, 10)
        assert [r[0] for r in rows] == [doc for doc, _ in expected]
        np.testing.assert_allclose([r[1] for r in rows], [s for _, s in expected], atol=1e-3)
        i = int(rows[0][0][1:])
        assert rows[0][3] == {"i": i} and rows[0][2].startswith(f"w{i}_0")


def test_search_index_path_agrees_with_python(store: lip.Store, coll: tuple) -> None:
    collection, docs = coll
    for seed in range(200, 206):
        q = query(seed, m=0)
        knobs = {"candidates_per_token": 20, "ef_search": 40, "rescore_depth": 30}
        hits = collection.search_embeddings(q, k=10, plan="index", **knobs)
        assert collection.last_search is not None and collection.last_search.plan == "index"
        rows = call(store, "search", "papers", halfvecs(q), 10, 20, 40, 30, False)
        assert_same_hits(rows, hits)
        # the scores of what the index path returns are exact MaxSim
        for doc_id, score, *_ in rows:
            exact = lip.maxsim(q.astype(np.float16), docs[int(doc_id[1:])].astype(np.float16))
            assert score == pytest.approx(exact, abs=1e-3)


def test_search_defaults_and_vector_queries(store: lip.Store, coll: tuple) -> None:
    _, docs = coll
    q = query(300)
    register_vector(store.conn)
    as_vector = [Vector(v) for v in q]
    rows_half = call(store, "search", "papers", halfvecs(q), 5)
    rows_vec = call(store, "search", "papers", as_vector, 5)
    assert [r[0] for r in rows_half] == [r[0] for r in rows_vec]
    np.testing.assert_allclose([r[1] for r in rows_half], [r[1] for r in rows_vec], atol=1e-3)
    # 300 documents <= the default rerank depth (200 -> every document is re-scored): exact
    expected = numpy_top(q.astype(np.float16).astype(np.float32), docs, 5)
    assert [r[0] for r in rows_half] == [doc for doc, _ in expected]


def test_search_restores_ef_search_inside_a_transaction(store: lip.Store, coll: tuple) -> None:
    q = query(301)
    conn = store.conn
    with conn.transaction():
        conn.execute("SET LOCAL hnsw.ef_search = 77")
        call(store, "search", "papers", halfvecs(q), 5, 25, 90, 20)
        assert conn.execute("SHOW hnsw.ef_search").fetchone() == ("77",)


def test_maxsim_matches_numpy(store: lip.Store, coll: tuple) -> None:
    _, docs = coll
    register_vector(store.conn)
    q = query(400)
    for i in (0, 17, 299):
        expected = lip.maxsim(q.astype(np.float16), docs[i].astype(np.float16))
        (half,) = call(store, "maxsim", "papers", halfvecs(q), f"d{i}")[0]
        (full,) = call(store, "maxsim", "papers", [Vector(v) for v in q], f"d{i}")[0]
        assert half == pytest.approx(expected, abs=1e-3)
        assert full == pytest.approx(expected, abs=1e-3)
    assert call(store, "maxsim", "papers", halfvecs(q), "no such id") == [(None,)]


def test_deprecated_argument_order_and_name(store: lip.Store, coll: tuple) -> None:
    """maxsim and explain in their order before search()'s, and search()'s rerank_depth,
    still work for one release and give what the new forms give."""
    q = query(402)
    for function in ("maxsim", "explain"):
        new = call(store, function, "papers", halfvecs(q), "d5")
        assert call(store, function, halfvecs(q), "papers", "d5") == new and new
    named = sql.SQL("SELECT id, score FROM {}('papers', %s, 5, {} => 7)")
    rows = {
        name: store.conn.execute(
            named.format(store.table("search"), sql.Identifier(name)), (halfvecs(q),)
        ).fetchall()
        for name in ("rescore_depth", "rerank_depth")
    }
    assert rows["rerank_depth"] == rows["rescore_depth"] and len(rows["rescore_depth"]) == 5
    both = sql.SQL("SELECT * FROM {}('papers', %s, 5, rescore_depth => 7, rerank_depth => 7)")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="give rescore_depth only"):
        store.conn.execute(both.format(store.table("search")), (halfvecs(q),))


def test_explain_per_query_token(store: lip.Store, coll: tuple) -> None:
    collection, docs = coll
    q = query(500)
    doc = docs[42].astype(np.float16).astype(np.float32)
    sims = q.astype(np.float16).astype(np.float32) @ doc.T
    rows = call(store, "explain", "papers", halfvecs(q), "d42")
    assert [r[0] for r in rows] == list(range(1, len(q) + 1))
    assert [r[1] for r in rows] == sims.argmax(axis=1).tolist()
    np.testing.assert_allclose([r[2] for r in rows], sims.max(axis=1), atol=1e-3)
    for _, position, _, start, end, piece in rows:
        assert piece == f"w42_{position}" and end - start == len(piece)
    matches = collection.explain_embeddings(q, "d42")
    assert [m.query_token for m in matches] == list(range(len(q)))
    assert sum(m.similarity for m in matches) == pytest.approx(
        call(store, "maxsim", "papers", halfvecs(q), "d42")[0][0], abs=1e-4
    )
    assert collection.explain_embeddings(q, "missing") == []


def test_explain_without_spans_has_no_piece(store: lip.Store) -> None:
    coll = store.collection("bare", dim=DIM)
    docs = unit_docs(3, seed=9)
    coll.add_embeddings(["a", "b", "c"], docs)
    rows = call(store, "explain", "bare", halfvecs(query(1)), "b")
    assert rows and all(r[3] is None and r[5] is None for r in rows)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nope", "Q", 10), "no collection named 'nope'"),
        (("papers", "WIDE", 10), "has 8 dimensions, collection 'papers' has 16"),
        (("papers", "Q", 0), "k must be in 1..100000"),
        (("papers", "Q", 10, 5000), "candidates_per_token"),
        (("papers", "Q", 10, None, 0), "ef_search"),
        ((None, "Q", 10), "collection must not be NULL"),
    ],
)
def test_search_bad_input_is_refused_clearly(
    store: lip.Store, coll: tuple, args: tuple, message: str
) -> None:
    values = {"Q": halfvecs(query(1)), "WIDE": [HalfVector(np.ones(8))]}
    args = tuple(values.get(a, a) if isinstance(a, str) else a for a in args)
    before = snapshot(store)
    with pytest.raises(psycopg.Error, match=message):
        call(store, "search", *args)
    assert snapshot(store) == before


@pytest.mark.parametrize("literal", ["'{{}}'::halfvec[]", "NULL::halfvec[]"])
def test_empty_query_is_refused(store: lip.Store, coll: tuple, literal: str) -> None:
    statement = sql.SQL("SELECT * FROM {}('papers', " + literal + ", 10)")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="at least one vector"):
        store.conn.execute(statement.format(store.table("search")))


def test_null_vector_in_query(store: lip.Store, coll: tuple) -> None:
    with pytest.raises(psycopg.errors.NullValueNotAllowed, match="query vector 2 is NULL"):
        call(store, "maxsim", "papers", [HalfVector(np.ones(DIM)), None], "d1")


def test_hostile_collection_names_and_ids_are_data(store: lip.Store) -> None:
    docs = unit_docs(len(HOSTILE), seed=3)
    for name in HOSTILE:
        coll = store.collection(name, dim=DIM)
        coll.add_embeddings(HOSTILE, docs, texts=HOSTILE)
    before = snapshot(store)
    q = docs[2][:3]
    for name in HOSTILE:
        rows = call(store, "search", name, halfvecs(q), 3, None, None, None, True)
        assert rows[0][0] == HOSTILE[2] and rows[0][2] == HOSTILE[2]
        for doc_id in HOSTILE:
            (score,) = call(store, "maxsim", name, halfvecs(q), doc_id)[0]
            assert score is not None
            assert len(call(store, "explain", name, halfvecs(q), doc_id)) == 3
    assert snapshot(store) == before


def test_functions_ignore_the_callers_search_path(store: lip.Store, coll: tuple) -> None:
    """The functions pin their own search_path: a caller's cannot break or hijack them."""
    conn = store.conn
    conn.execute("CREATE TEMP TABLE documents (id bigint, external_id text)")
    conn.execute("SET search_path TO pg_catalog")
    q = query(7)
    rows = call(store, "search", "papers", halfvecs(q), 3)
    assert len(rows) == 3 and all(r[0].startswith("d") for r in rows)


def test_functions_cannot_be_shadowed_from_pgvectors_schema(store: lip.Store, coll: tuple) -> None:
    """Functions another role could create next to pgvector (public, before PostgreSQL 15)
    with exact-type signatures do not capture our calls to polymorphic built-ins."""
    _, docs = coll
    conn = store.conn
    shadow = sql.Identifier(store.vector_schema, "unnest")
    conn.execute(
        sql.SQL(
            "CREATE FUNCTION {}(halfvec[]) RETURNS SETOF halfvec LANGUAGE sql "
            "AS 'SELECT NULL::halfvec WHERE false'"
        ).format(shadow)
    )
    try:
        q = query(21)
        rows = call(store, "search", "papers", halfvecs(q), 5, None, None, None, True)
        expected = numpy_top(q.astype(np.float16).astype(np.float32), docs, 5)
        assert [r[0] for r in rows] == [doc for doc, _ in expected]
        assert call(store, "maxsim", "papers", halfvecs(q), "d3")[0][0] is not None
        assert len(call(store, "explain", "papers", halfvecs(q), "d3")) == len(q)
    finally:
        conn.execute(sql.SQL("DROP FUNCTION {}(halfvec[])").format(shadow))


@pytest.fixture
def quoted_store(pg_dsn: str) -> Iterator[lip.Store]:
    schema = 'Late "Interact" $body$ schema'
    s = lip.connect(pg_dsn, schema=schema)
    try:
        yield s
    finally:
        s.close()
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def test_schema_name_needing_quoting(quoted_store: lip.Store) -> None:
    coll = quoted_store.collection("x", dim=DIM)
    docs = unit_docs(20, seed=5)
    coll.add_embeddings([f"d{i}" for i in range(20)], docs)
    q = query(11)
    rows = call(quoted_store, "search", "x", halfvecs(q), 3)
    assert [r[0] for r in rows] == [h.id for h in coll.search_embeddings(q, k=3, exact=True)]


def test_functions_migration_up_and_down(pg_dsn: str, schema_name: str) -> None:
    """0001 -> head installs the functions and the offsets column; back to 0001 removes them
    and keeps the data; head again restores them."""
    from lateinteract_pg import migrate, sql_functions

    def installed() -> tuple[set[str], bool]:
        with psycopg.connect(pg_dsn) as conn:
            functions = conn.execute(
                "SELECT proname FROM pg_proc WHERE pronamespace = %s::regnamespace",
                (sql.Identifier(schema_name).as_string(conn),),
            ).fetchall()
            column = conn.execute(
                "SELECT 1 FROM information_schema.columns WHERE table_schema = %s "
                "AND table_name = 'documents' AND column_name = 'offsets'",
                (schema_name,),
            ).fetchone()
        return {name for (name,) in functions}, column is not None

    try:
        assert migrate.upgrade(pg_dsn, schema_name, "0001") == "0001"
        assert installed() == (set(), False)
        assert migrate.upgrade(pg_dsn, schema_name) == migrate.HEAD
        # query_collection, search, maxsim, explain, search_dense, search_hybrid and their helpers
        assert installed() == (set(sql_functions.source_names()), True)
        with lip.connect(pg_dsn, schema=schema_name) as store:
            store.collection("kept", dim=DIM, storage="unpooled").add_embeddings(
                ["a"], unit_docs(1)
            )
        assert migrate.upgrade(pg_dsn, schema_name, "0001") == "0001"
        assert installed() == (set(), False)
        assert migrate.upgrade(pg_dsn, schema_name) == migrate.HEAD
        with lip.connect(pg_dsn, schema=schema_name) as store:
            assert len(store.collection("kept")) == 1
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema_name))
            )


def test_stage1_uses_the_hnsw_index_right_after_a_load(store: lip.Store) -> None:
    """Stage 1 filters the parent table on collection_id: without statistics the planner
    would sort the rows instead of walking the index; the load analyzes the partition."""
    coll = store.collection("fresh", dim=DIM)
    coll.add_embeddings([f"d{i}" for i in range(2000)], unit_docs(2000, seed=12))
    q = query(3, m=1)
    plan = store.conn.execute(
        sql.SQL(
            "EXPLAIN SELECT doc_id FROM {} WHERE collection_id = {} "
            "ORDER BY embedding::halfvec({}) <#> %s LIMIT 150"
        ).format(store.table("tokens"), sql.Literal(coll.id), sql.Literal(DIM)),
        (HalfVector(q[0]),),
    ).fetchall()
    text = "\n".join(r[0] for r in plan)
    assert f"tokens_{coll.id}_hnsw" in text, text
