"""The filter language, compiled to SQL and run by PostgreSQL, against a Python reference."""

from __future__ import annotations

import json
import random
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

import lateinteract_pg as lip
from lateinteract_pg.search.filters import compile_filter

_MISSING = object()


def _get(metadata: dict[str, Any], name: str) -> Any:
    value: Any = metadata
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _same_type(a: Any, b: Any) -> bool:
    def kind(x: Any) -> str:
        if isinstance(x, bool):
            return "bool"
        if isinstance(x, (int, float)):
            return "number"
        return type(x).__name__

    return kind(a) == kind(b)


def _equal(a: Any, b: Any) -> bool:
    return a is not _MISSING and _same_type(a, b) and a == b


def _holds(op: str, field: Any, v: Any) -> bool:
    present = field is not _MISSING
    if op == "$eq":
        return _equal(field, v)
    if op == "$ne":
        return not _equal(field, v)
    if op in ("$in", "$nin"):
        return any(_equal(field, x) for x in v) == (op == "$in")
    if op == "$exists":
        return present == v
    if not (present and _same_type(field, v)):
        return False
    return {"$gt": field > v, "$gte": field >= v, "$lt": field < v, "$lte": field <= v}[op]


def matches(spec: dict[str, Any], metadata: dict[str, Any]) -> bool:
    """The reference: what the documentation of lateinteract_pg.search.filters says, in Python."""
    for key, value in spec.items():
        if key == "$and" and not all(matches(v, metadata) for v in value):
            return False
        if key == "$or" and not any(matches(v, metadata) for v in value):
            return False
        if key == "$not" and matches(value, metadata):
            return False
        if key.startswith("$"):
            continue
        field = _get(metadata, key)
        ops = (
            value
            if isinstance(value, dict) and value and all(k.startswith("$") for k in value)
            else {"$eq": value}
        )
        for op, v in ops.items():
            ok = _holds(op, field, v)
            if not ok:
                return False
    return True


def _random_metadata(rng: random.Random) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if rng.random() < 0.8:
        meta["year"] = rng.choice([2019, 2020, 2021, 2022, 2023.5, "2021"])
    if rng.random() < 0.7:
        meta["kind"] = rng.choice(["a", "b", "c", "ab"])
    if rng.random() < 0.5:
        meta["info"] = {"lang": rng.choice(["en", "de"]), "n": rng.randint(0, 5)}
    if rng.random() < 0.3:
        meta["flag"] = rng.choice([True, False, None])
    return meta


def _random_filter(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    if depth < 2 and rng.random() < 0.3:
        op = rng.choice(["$and", "$or", "$not"])
        if op == "$not":
            return {"$not": _random_filter(rng, depth + 1)}
        return {op: [_random_filter(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    field = rng.choice(["year", "kind", "info.lang", "info.n", "flag", "missing"])
    value = {
        "year": lambda: rng.choice([2020, 2021, "2021", 2023.5]),
        "kind": lambda: rng.choice(["a", "b", "ab", "z"]),
        "info.lang": lambda: rng.choice(["en", "de"]),
        "info.n": lambda: rng.randint(0, 5),
        "flag": lambda: rng.choice([True, False, None]),
        "missing": lambda: 1,
    }[field]
    op = rng.choice(["=", "$eq", "$ne", "$in", "$nin", "$exists", "$gt", "$gte", "$lt", "$lte"])
    if op == "=":
        return {field: value()}
    if op in ("$in", "$nin"):
        return {field: {op: [value() for _ in range(rng.randint(0, 3))]}}
    if op == "$exists":
        return {field: {op: rng.random() < 0.5}}
    v = value()
    if op in ("$gt", "$gte", "$lt", "$lte") and (isinstance(v, bool) or v is None):
        v = 2021
    return {field: {op: v}}


def test_compiled_filters_agree_with_the_reference(pg_dsn: str) -> None:
    rng = random.Random(7)
    rows = [_random_metadata(rng) for _ in range(300)]
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE TEMP TABLE docs (id int, metadata jsonb)")
        with conn.cursor().copy("COPY docs (id, metadata) FROM STDIN") as copy:
            for i, meta in enumerate(rows):
                copy.write_row((i, json.dumps(meta)))
        for _ in range(400):
            spec = _random_filter(rng)
            where, params = compile_filter(spec, sql.Identifier("metadata"))
            got = {
                r[0]
                for r in conn.execute(
                    sql.SQL("SELECT id FROM docs WHERE {}").format(where), params
                ).fetchall()
            }
            expected = {i for i, meta in enumerate(rows) if matches(spec, meta)}
            assert got == expected, spec


@pytest.mark.parametrize(
    "spec, message",
    [
        ({}, "non-empty dict"),
        ([], "non-empty dict"),
        ({"$or": []}, "non-empty list"),
        ({"$xor": [{"a": 1}]}, "unknown filter operator"),
        ({"a": {"$regex": "x"}}, "unknown operator"),
        ({"a": {"$in": "x"}}, "takes a list"),
        ({"a": {"$exists": 1}}, "true or false"),
        ({"a": {"$gt": [1]}}, "number or a str"),
        ({"a..b": 1}, "empty part"),
        ({"a": float("nan")}, "not JSON"),
    ],
)
def test_bad_filters_are_refused(spec: Any, message: str) -> None:
    with pytest.raises(lip.InvalidInput, match=message):
        compile_filter(spec, sql.Identifier("metadata"))


def test_filtered_search_returns_the_exact_top_k_of_matching_documents(store: lip.Store) -> None:
    import numpy as np

    from lateinteract_pg.maxsim import maxsim

    rng = np.random.default_rng(3)
    dim, n = 32, 400

    def unit(x: np.ndarray) -> np.ndarray:
        return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)

    docs = [unit(rng.standard_normal((int(rng.integers(5, 20)), dim))) for _ in range(n)]
    metadata = [{"group": j % 20, "rare": j in (7, 311)} for j in range(n)]
    ids = [f"d{j}" for j in range(n)]
    coll = store.collection("filtered", dim=dim)
    coll.add_embeddings(ids, docs, metadata=metadata)
    stored = [d.astype(np.float16).astype(np.float32) for d in docs]
    for spec, plans in [
        ({"group": {"$in": [1, 2]}}, ("index", "exhaustive", None)),  # 10%
        ({"group": 3}, ("index", "exhaustive", None)),  # 5%
        ({"rare": True}, ("index", "exhaustive", None)),  # 0.5%: HNSW alone would starve
    ]:
        query = unit(rng.standard_normal((6, dim)))
        passing = [j for j in range(n) if matches(spec, metadata[j])]
        scores = {ids[j]: maxsim(query, stored[j]) for j in passing}
        expected = sorted(scores, key=lambda i: -scores[i])[:10]
        for plan in plans:
            hits = coll.search_embeddings(query, k=10, filter=spec, plan=plan)  # type: ignore[arg-type]
            assert len(hits) == min(10, len(passing)), (spec, plan)
            assert {h.id for h in hits} <= set(scores)
            if plan != "index":
                assert [h.id for h in hits] == expected
            else:
                assert len({h.id for h in hits} & set(expected)) >= 0.8 * len(expected)
        assert coll.last_search is not None
    assert coll.last_search.plan == "exhaustive"  # the planner picks it for 2 documents


def test_filtered_dense_tier_keeps_k_results(store: lip.Store) -> None:
    import numpy as np

    rng = np.random.default_rng(5)
    dim, n = 16, 300
    docs = [rng.standard_normal((4, dim)).astype(np.float32) for _ in range(n)]
    metadata = [{"group": j % 30} for j in range(n)]
    coll = store.collection("dense-filtered", dim=dim)
    coll.add_embeddings([f"d{j}" for j in range(n)], docs, metadata=metadata)
    query = rng.standard_normal((3, dim)).astype(np.float32)
    hits = coll.search_embeddings(query, k=10, tier="dense", filter={"group": 4})
    assert len(hits) == 10 and all(h.metadata == {"group": 4} for h in hits)  # 10 of 10
    exact = coll.search_embeddings(query, k=10, tier="dense", filter={"group": 4}, exact=True)
    assert [h.id for h in hits] == [h.id for h in exact]


def test_where_fragment_with_bound_parameters(store: lip.Store) -> None:
    import numpy as np

    rng = np.random.default_rng(8)
    dim, n = 16, 120
    docs = [rng.standard_normal((5, dim)).astype(np.float32) for _ in range(n)]
    metadata = [{"group": j % 12, "lang": "en" if j % 2 else "fr"} for j in range(n)]
    texts = [f"document number {j}" for j in range(n)]
    coll = store.collection("where-fragment", dim=dim)
    coll.add_embeddings([f"d{j}" for j in range(n)], docs, texts=texts, metadata=metadata)
    query = rng.standard_normal((3, dim)).astype(np.float32)
    hostile = "en' OR true --"
    for plan in ("index", "exhaustive"):
        hits = coll.search_embeddings(
            query, k=20, plan=plan, filter={"group": {"$in": [1, 3, 5]}},
            where="d.metadata ->> 'lang' = %(lang)s AND d.text LIKE %(pattern)s",
            where_params={"lang": "en", "pattern": "document%"},
        )  # fmt: skip
        assert len(hits) == 20  # 30 documents pass
        assert all(h.metadata["group"] in (1, 3, 5) and h.metadata["lang"] == "en" for h in hits)
        # values are bound, never spliced into the statement
        hostile_hits = coll.search_embeddings(
            query, k=5, plan=plan, where="d.metadata ->> 'lang' = %(l)s",
            where_params={"l": hostile},
        )  # fmt: skip
        assert hostile_hits == []
    for where, params, message in [
        ("d.no_such_column = 1", None, "where condition failed"),
        ("d.metadata ->> 'lang' = %(missing)s", {}, "where condition failed"),
        ("d.metadata ->> 'lang' = %(k)s", {"k": "en"}, "names"),
        ("   ", None, "non-empty"),
    ]:
        with pytest.raises(lip.InvalidInput, match=message):
            coll.search_embeddings(query, k=5, where=where, where_params=params)
    with pytest.raises(lip.InvalidInput, match="without where"):
        coll.search_embeddings(query, k=5, where_params={"a": 1})
    assert len(coll.search_embeddings(query, k=5)) == 5  # the connection is still usable


def test_sql_search_filters_with_a_jsonpath_predicate(store: lip.Store) -> None:
    import numpy as np
    from pgvector import HalfVector

    from lateinteract_pg.maxsim import maxsim

    rng = np.random.default_rng(21)
    dim, n = 16, 500
    docs = [rng.standard_normal((int(rng.integers(3, 9)), dim)) for _ in range(n)]
    docs = [(d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32) for d in docs]
    metadata = [{"group": j % 50, "year": 2000 + j % 25} for j in range(n)]
    ids = [f"d{j}" for j in range(n)]
    coll = store.collection("sql-filtered", dim=dim)
    coll.add_embeddings(ids, docs, metadata=metadata)
    stored = [d.astype(np.float16).astype(np.float32) for d in docs]
    query = rng.standard_normal((5, dim)).astype(np.float32)
    cases = [  # jsonpath, its variables, the same filter in our language
        ("$.group == 7", None, {"group": 7}),  # 2%: 10 documents, all scored
        ("$.year >= $y", {"y": 2010}, {"year": {"$gte": 2010}}),  # 60%: stage 1 with the join
        ("$.group == 3 || $.group == 4", None, {"group": {"$in": [3, 4]}}),
    ]
    for path, variables, spec in cases:
        passing = [j for j in range(n) if matches(spec, metadata[j])]
        scores = {ids[j]: maxsim(query, stored[j]) for j in passing}
        expected = sorted(scores, key=lambda i: -scores[i])[:10]
        rows = store.conn.execute(
            sql.SQL("SELECT id FROM {}('sql-filtered', %s, 10, filter => %s, filter_vars => %s)")
            .format(store.table("search")),
            ([HalfVector(v) for v in query], path, None if variables is None else Jsonb(variables)),
        ).fetchall()  # fmt: skip
        found = [r[0] for r in rows]
        assert len(found) == min(10, len(passing)) and set(found) <= set(scores), path
        assert len(set(found) & set(expected)) >= 9, path
        python = coll.search_embeddings(query, k=10, filter=spec, exact=True)
        assert [h.id for h in python] == expected


def test_where_fragments_keep_json_literals(store: lip.Store) -> None:
    import numpy as np

    rng = np.random.default_rng(30)
    docs = [rng.standard_normal((3, 8)).astype(np.float32) for _ in range(20)]
    coll = store.collection("where-json", dim=8)
    metadata = [{"lang": "en" if j % 4 == 0 else "de", "tags": ["a", "b"]} for j in range(20)]
    coll.add_embeddings([f"d{j}" for j in range(20)], docs, metadata=metadata)
    hits = coll.search_embeddings(docs[0], k=20, where="""d.metadata @> '{"lang": "en"}'""")
    assert sorted(h.id for h in hits) == sorted(f"d{j}" for j in range(0, 20, 4))


def test_fuse_gives_nothing_for_a_list_a_document_is_missing_from(store: lip.Store) -> None:
    rows = store.conn.execute(
        sql.SQL("SELECT id, score FROM {}(%s, %s, %s, %s, %s, 0.7, 60, 10)").format(
            store.table("fuse")
        ),
        (["a", "b"], [2.0, 1.0], ["c"], [0.5], "weighted"),
    ).fetchall()
    assert dict(rows) == pytest.approx({"a": 0.7, "c": 0.3, "b": 0.0})
    rows = store.conn.execute(
        sql.SQL("SELECT id, score FROM {}(%s, %s, %s, %s, %s, 0.5, 60, 10)").format(
            store.table("fuse")
        ),
        (["a", "b"], [2.0, 1.0], ["b"], [0.5], "rrf"),
    ).fetchall()
    assert dict(rows) == pytest.approx({"b": 0.5 / 62 + 0.5 / 61, "a": 0.5 / 61})
