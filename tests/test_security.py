"""Security: SQL injection through every string parameter of the public surface (the Python
API, the SQL functions and the command line), least privilege of the read-only and tenant
roles, a local-only embedded server, and passwords kept out of logs, errors and output.

An injection attempt passes when the string is stored or looked up literally (it comes back
equal) or is refused with one of our errors, and afterwards nothing else changed: our tables,
functions, policies and grants, the other schemas, the roles, and a canary table."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import stat
import sys
import tempfile
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import psycopg
import pytest
from click.testing import CliRunner
from pgvector import HalfVector
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

import lateinteract_pg as lip
from lateinteract_pg import cli as cli_module
from lateinteract_pg import doctor, embedded, migrate, sql_functions
from lateinteract_pg.cli import cli
from lateinteract_pg.cli import documents as cli_documents
from lateinteract_pg.migrate import REDACTED, redact_dsn
from tests.helpers import PASSWORD, drop_roles, drop_schema, make_role, user_of

DIM = 16

# {S}: the schema under test, {C}: the canary schema; filled in by payloads()
_PAYLOADS = (
    "'; DROP TABLE {S}.documents; --",
    "x'); DELETE FROM {S}.collections; --",
    "' OR '1'='1",
    'x"; DROP SCHEMA {S} CASCADE; --',
    '"; DROP TABLE {C}.sentinel; --',
    '{S}"."documents',
    "$$; DROP TABLE {C}.sentinel; $$",
    "$body$; DROP TABLE {C}.sentinel; $body$",
    "\\'; DROP TABLE {C}.sentinel; --",
    "back\\slash \\\\ \\x27 \\n E'\\''",
    "%s %(x)s %% %(tenant)s %(q)s %(filter_0)s",
    "{} {0} {schema} {{}} }{ {S!r}",
    "nul\x00'; DROP TABLE {C}.sentinel; --",
    # full-width look-alikes: DROP TABLE ...; -- ' "
    "\uff24\uff32\uff2f\uff30 \uff34\uff21\uff22\uff2c\uff25 {C}.sentinel"
    "\uff1b\uff0d\uff0d \uff07\uff02",
    "\u02bc; DROP TABLE {C}.sentinel; --",  # a modifier letter apostrophe
    "\u2018\u2019\u201c\u201d; DROP TABLE {C}.sentinel; --",  # curly quotes
    "*/ DROP TABLE {C}.sentinel; /*",
    "x\n; DROP TABLE {C}.sentinel;\n--",
    "$1 $2 ? :name @p",
    "\U0001f600 ü ß \u202e",  # an emoji, accents and a right-to-left override
)


def payloads(schema: str, canary: str) -> list[str]:
    return [p.replace("{S}", schema).replace("{C}", canary) for p in _PAYLOADS]


def sendable(value: str) -> bool:
    """Whether libpq can carry ``value`` at all (the SQL surface gets no NUL, no surrogate)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def valid_name(value: str) -> bool:
    """Whether a schema or role name is accepted: at most 63 bytes, no '%', no control
    character."""
    return (
        sendable(value)
        and "%" not in value
        and not any(ord(c) < 32 or ord(c) == 127 for c in value)
        and len(value.encode()) <= 63
    )


def attempt(action: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``action(*args, **kwargs)``, or the LateInteractError it raised; any other exception
    fails the test."""
    try:
        return action(*args, **kwargs)
    except lip.LateInteractError as exc:
        assert str(exc), "an error of ours says what is wrong"
        return exc


def refused(result: Any) -> bool:
    return isinstance(result, lip.LateInteractError)


# --- what must not change ---------------------------------------------------------------


def _rows(conn: psycopg.Connection[Any], query: str, *params: Any) -> list[tuple[Any, ...]]:
    return conn.execute(query, params or None).fetchall()


def fingerprint(dsn: str, schema: str, canary: str) -> dict[str, Any]:
    """Everything an injection could change besides the rows a call writes on purpose."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        ours = "(SELECT oid FROM pg_namespace WHERE nspname = %s)"
        # the tables and functions of the schema (a collection's partition and indexes come
        # and go with it)
        per_collection = r"^(tokens|documents)_[0-9]+(_.*)?$"
        return {
            "schemas": _rows(
                conn,
                "SELECT nspname, nspowner FROM pg_namespace "
                "WHERE nspname !~ '^pg_(toast_)?temp_' ORDER BY 1",
            ),
            "schema grants": _rows(
                conn, "SELECT nspacl::text FROM pg_namespace WHERE nspname = %s", schema
            ),
            "relations": _rows(
                conn,
                "SELECT relname, relkind, relowner, relrowsecurity, relforcerowsecurity "
                f"FROM pg_class WHERE relnamespace = {ours} AND relname !~ %s ORDER BY 1",
                schema,
                per_collection,
            ),
            "table grants": _rows(
                conn,
                f"SELECT relname, relacl::text FROM pg_class WHERE relnamespace = {ours} "
                "AND relname !~ %s ORDER BY 1",
                schema,
                per_collection,
            ),
            "columns": _rows(
                conn,
                "SELECT c.relname, a.attname, a.atttypid FROM pg_attribute AS a "
                f"JOIN pg_class AS c ON c.oid = a.attrelid WHERE c.relnamespace = {ours} "
                "AND c.relkind IN ('r', 'p') AND c.relname !~ %s AND a.attnum > 0 "
                "AND NOT a.attisdropped ORDER BY 1, 2",
                schema,
                per_collection,
            ),
            "functions": _rows(
                conn,
                "SELECT proname, pg_get_function_identity_arguments(oid), md5(prosrc), "
                f"prosecdef, proconfig::text, proowner FROM pg_proc "
                f"WHERE pronamespace = {ours} ORDER BY 1, 2",
                schema,
            ),
            "function grants": _rows(
                conn,
                f"SELECT proname, proacl::text FROM pg_proc WHERE pronamespace = {ours} "
                "ORDER BY 1, 2",
                schema,
            ),
            "policies": _rows(
                conn,
                "SELECT tablename, policyname, roles::text, cmd, qual FROM pg_policies "
                "WHERE schemaname = %s AND tablename !~ %s ORDER BY 1, 2",
                schema,
                per_collection,
            ),
            "triggers": _rows(
                conn,
                "SELECT t.tgname, c.relname FROM pg_trigger AS t JOIN pg_class AS c "
                f"ON c.oid = t.tgrelid WHERE c.relnamespace = {ours} AND NOT t.tgisinternal "
                "ORDER BY 1, 2",
                schema,
            ),
            "version": conn.execute(
                sql.SQL("SELECT version_num FROM {}").format(
                    sql.Identifier(schema, migrate.VERSION_TABLE)
                )
            ).fetchall(),
            "roles": _rows(
                conn,
                "SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, "
                "rolbypassrls FROM pg_roles ORDER BY 1",
            ),
            "members": _rows(
                conn,
                "SELECT roleid::regrole::text, member::regrole::text FROM pg_auth_members "
                "ORDER BY 1, 2",
            ),
            "public": _rows(conn, "SELECT relname FROM pg_class WHERE relnamespace = 2200"),
            "canary": conn.execute(
                sql.SQL("SELECT * FROM {} ORDER BY 1").format(sql.Identifier(canary, "sentinel"))
            ).fetchall(),
        }


class Guard:
    """The payloads of one schema, and the check that nothing else changed."""

    def __init__(self, dsn: str, schema: str, canary: str) -> None:
        self.dsn, self.schema, self.canary = dsn, schema, canary
        self.payloads = payloads(schema, canary)
        self.before = fingerprint(dsn, schema, canary)

    def check(self, what: str = "", grants: bool = True) -> None:
        """Nothing changed (with ``grants=False``: but the grants of our schema)."""
        after = fingerprint(self.dsn, self.schema, self.canary)
        changed = [
            key
            for key in after
            if after[key] != self.before[key] and (grants or not key.endswith("grants"))
        ]
        assert not changed, f"{what}: changed {changed}"


@pytest.fixture
def canary(pg_dsn: str) -> Iterator[str]:
    """A schema with a table the payloads try to drop."""
    name = f"lip_canary_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("CREATE TABLE {} (x integer); INSERT INTO {} VALUES (1)").format(
                sql.Identifier(name, "sentinel"), sql.Identifier(name, "sentinel")
            )
        )
    try:
        yield name
    finally:
        drop_schema(pg_dsn, name)


@pytest.fixture
def guard(store: lip.Store, canary: str) -> Guard:
    return Guard(store.dsn, store.schema, canary)


def unit(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class WordEncoder:
    """A stand-in text encoder (the database is real, the model is not the subject): one
    vector per word, from a hash of the word."""

    dim = DIM

    def settings(self) -> dict[str, Any]:
        return {"kind": "test-words", "dim": DIM}

    def _encode(self, text: str) -> np.ndarray:
        words = text.split() or [text]
        rows = []
        for word in words[:32]:
            seed = hashlib.sha256(word.encode("utf-8", "replace")).digest()
            rows.append(unit(1, int.from_bytes(seed[:4], "little"))[0])
        return np.stack(rows)

    def encode_documents(self, texts: list[str], progress: bool = False) -> list[np.ndarray]:
        return [self._encode(t) for t in texts]

    def encode_queries(self, texts: list[str]) -> list[np.ndarray]:
        return [self._encode(t) for t in texts]


def halfvecs(q: np.ndarray) -> list[HalfVector]:
    return [HalfVector(v) for v in q]


def sql_call(store: lip.Store, function: str, args: str, *params: Any) -> list[tuple[Any, ...]]:
    """``SELECT * FROM <schema>.function(args)`` on the store's connection."""
    statement = sql.SQL("SELECT * FROM {}(" + args + ")").format(store.table(function))
    return store.conn.execute(statement, params).fetchall()


# --- 1. injection through the Python API -----------------------------------------------


def test_collection_names_are_data(store: lip.Store, guard: Guard) -> None:
    """Collection names: created, found, searched (Python and SQL) and dropped literally."""
    q = unit(2, 1)
    for p in guard.payloads:
        created = attempt(lambda: store.collection(p, dim=DIM))  # noqa: B023
        if refused(created):
            assert not sendable(p), (p, created)
            assert store.collections() == []
        else:
            assert created.name == p and p in store
            assert [c.name for c in store.collections()] == [p]
            created.add_embeddings(["only"], [unit(3, 2)], texts=["only text"])
            again = store.collection(p, create=False)
            assert again.id == created.id and len(again) == 1
            assert [h.id for h in again.search_embeddings(q, k=1)] == ["only"]
            assert [r[0] for r in sql_call(store, "search", "%s, %s, 1", p, halfvecs(q))] == [
                "only"
            ]
            assert [r[0] for r in sql_call(store, "search_dense", "%s, %s, 1", p, halfvecs(q))] == [
                "only"
            ]
            assert [
                r[0]
                for r in sql_call(store, "search_hybrid", "%s, %s, %s, 1", p, halfvecs(q), "text")
            ] == ["only"]
            assert sql_call(store, "maxsim", "%s, %s, 'only'", p, halfvecs(q))[0][0] is not None
            assert len(sql_call(store, "explain", "%s, %s, 'only'", p, halfvecs(q))) == 2
            store.drop_collection(p)
            assert p not in store
        missing = attempt(lambda: store.collection(p + "-missing", create=False))  # noqa: B023
        assert isinstance(missing, (lip.CollectionNotFound, lip.InvalidInput)), p
        if sendable(p):
            with pytest.raises(psycopg.errors.UndefinedObject, match="no collection named"):
                sql_call(store, "search", "%s, %s, 1", p + "-missing", halfvecs(q))
            store.conn.rollback() if not store.conn.autocommit else None
        guard.check(repr(p))


def test_document_ids_texts_and_metadata_are_data(store: lip.Store, guard: Guard) -> None:
    """Ids, texts, metadata keys and values, and tenants: stored and read back equal, found
    by the filter language, by where_params, by the SQL functions' jsonpath variables and by
    tenant."""
    coll = store.collection("docs", dim=DIM, text_search_config="simple")
    for j, p in enumerate(guard.payloads):
        vectors = unit(3, 100 + j)
        added = attempt(
            coll.add_embeddings, [p], [vectors], texts=[p], metadata=[{"k": p, p: "v"}], tenant=p
        )
        if refused(added):
            assert not sendable(p), (p, added)
            guard.check(repr(p))
            continue
        doc = coll.get(p)
        assert doc is not None and doc.text == p and doc.metadata == {"k": p, p: "v"}, p
        assert p in coll
        # the filter language: a value, and a field name (dots reach into objects, so the
        # name is looked up as the path it spells)
        by_value = coll.search_embeddings(vectors, k=5, filter={"k": p}, exact=True)
        assert [h.id for h in by_value] == [p]
        by_in = coll.search_embeddings(vectors, k=5, filter={"k": {"$in": [p, "z"]}}, exact=True)
        assert [h.id for h in by_in] == [p]
        by_range = coll.search_embeddings(
            vectors, k=5, filter={"k": {"$gte": p, "$lte": p}}, plan="index"
        )
        assert [h.id for h in by_range] == [p]
        by_key = attempt(
            lambda: coll.search_embeddings(vectors, k=5, filter={p: "v"}, exact=True)  # noqa: B023
        )
        if refused(by_key):  # a field name starting with $ or with an empty path part
            assert p.startswith("$") or "" in p.split("."), p
        elif "." not in p:
            assert [h.id for h in by_key] == [p]
        by_where = coll.search_embeddings(
            vectors, k=5, where="d.external_id = %(x)s", where_params={"x": p}
        )
        assert [h.id for h in by_where] == [p]
        assert [h.id for h in coll.search_embeddings(vectors, k=1, tenant=p, exact=True)] == [p]
        dense = coll.search_embeddings(vectors, k=1, tier="dense", tenant=p)
        assert [h.id for h in dense] == [p]
        # the SQL functions: the jsonpath's variables are data too
        rows = sql_call(
            store, "search", "%s, %s, 5, filter => '$.k == $v', filter_vars => %s",
            "docs", halfvecs(vectors), psycopg.types.json.Jsonb({"v": p}),
        )  # fmt: skip
        assert [r[0] for r in rows] == [p]
        assert sql_call(store, "maxsim", "'docs', %s, %s", halfvecs(vectors), p)[0][0] > 0
        assert len(sql_call(store, "explain", "'docs', %s, %s", halfvecs(vectors), p)) == 3
        assert coll.delete(p) == 1 and coll.get(p) is None
        guard.check(repr(p))


def test_lookups_of_unknown_ids_and_tenants_find_nothing(store: lip.Store, guard: Guard) -> None:
    coll = store.collection("lookups", dim=DIM)
    coll.add_embeddings(["a", "b"], [unit(3, 1), unit(3, 2)], texts=["a", "b"])
    q = unit(2, 3)
    for p in guard.payloads:
        for result in (
            attempt(lambda: coll.get(p)),  # noqa: B023
            attempt(lambda: p in coll),  # noqa: B023
            attempt(lambda: coll.delete([p])),  # noqa: B023
            attempt(lambda: coll.search_embeddings(q, k=5, filter={"k": p})),  # noqa: B023
            attempt(lambda: coll.explain_embeddings(q, p)),  # noqa: B023
        ):
            assert refused(result) or result in (None, False, 0, []), (p, result)
        # a tenant of that name has no documents: the shared ones only
        shared = attempt(lambda: coll.search_embeddings(q, k=5, tenant=p))  # noqa: B023
        assert refused(shared) or {h.id for h in shared} == {"a", "b"}, p
        assert len(coll) == 2
        guard.check(repr(p))


def test_text_search_configuration_is_a_name(store: lip.Store, guard: Guard) -> None:
    for j, p in enumerate(guard.payloads):
        result = attempt(
            lambda: store.collection(f"ts{j}", dim=DIM, text_search_config=p)  # noqa: B023
        )
        assert isinstance(result, lip.InvalidInput), (p, result)
        assert f"ts{j}" not in store
        guard.check(repr(p))
    # a real name, schema-qualified or not, still works
    real = store.collection("ts", dim=DIM, text_search_config="pg_catalog.simple")
    assert real.text_search_config == "pg_catalog.simple"


def test_query_texts_of_text_search_and_hybrid_search(store: lip.Store, guard: Guard) -> None:
    coll = store.collection("texts", encoder=WordEncoder(), text_search_config="simple")
    coll.add([{"id": f"t{i}", "text": f"alpha beta {i}"} for i in range(20)])
    stored = attempt(lambda: coll.add([{"id": "x", "text": "the payload: " + guard.payloads[0]}]))
    assert stored == ["x"]
    for p in guard.payloads:
        for search in (
            lambda: coll.search(p, k=3),  # noqa: B023
            lambda: coll.search_hybrid(p, k=3),  # noqa: B023
            lambda: coll.search_hybrid(p, k=3, fusion="rrf"),  # noqa: B023
            lambda: coll.search_hybrid_embeddings(unit(2, 5), p, k=3),  # noqa: B023
        ):
            result = attempt(search)
            assert refused(result) or len(result) == 3, (p, result)
            if refused(result):
                assert not sendable(p), (p, result)
        if sendable(p):  # the SQL function takes the same text
            rows = sql_call(store, "search_hybrid", "'texts', %s, %s, 3", halfvecs(unit(2, 5)), p)
            assert len(rows) == 3
        guard.check(repr(p))
    # the words themselves are matched, not executed
    hits = coll.search_hybrid("payload DROP TABLE", k=1)
    assert hits[0].id == "x"


def test_sql_function_options_are_values(store: lip.Store, guard: Guard) -> None:
    """fusion, the jsonpath filter and its variables, as strings of the caller's."""
    coll = store.collection("opts", dim=DIM)
    coll.add_embeddings(
        [f"o{i}" for i in range(5)], [unit(3, i) for i in range(5)], metadata=[{"k": "x"}] * 5
    )
    q = halfvecs(unit(2, 9))
    for p in filter(sendable, guard.payloads):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="fusion must be"):
            sql_call(store, "search_hybrid", "'opts', %s, 'x', 3, %s", q, p)
        try:
            rows = sql_call(store, "search", "'opts', %s, 3, filter => %s::jsonpath", q, p)
        except (psycopg.errors.SyntaxError, psycopg.errors.InvalidTextRepresentation):
            pass  # not a jsonpath
        else:
            assert len(rows) <= 3
        rows = sql_call(
            store, "search", "'opts', %s, 3, filter => '$.k == $v', filter_vars => %s",
            q, psycopg.types.json.Jsonb({"v": p}),
        )  # fmt: skip
        assert rows == []  # no document has that value
        guard.check(repr(p))


def test_schema_names_are_identifiers(pg_dsn: str, canary: str) -> None:
    """A schema named by a payload is created with exactly that name, or refused."""
    probe = f"lip_probe_{uuid.uuid4().hex[:6]}"
    migrate.upgrade(pg_dsn, probe)
    guard = Guard(pg_dsn, probe, canary)
    try:
        for p in payloads(probe, canary):
            result = attempt(lambda: lip.connect(pg_dsn, schema=p))  # noqa: B023
            if refused(result):
                assert not valid_name(p), p
                with psycopg.connect(pg_dsn) as conn:
                    assert (
                        conn.execute(
                            "SELECT 1 FROM pg_namespace WHERE nspname = %s",
                            (p.replace("\x00", ""),),
                        ).fetchone()
                        is None
                    )
                guard.check(repr(p))
                continue
            try:
                with result as store:
                    assert store.schema == p
                    coll = store.collection("c", dim=DIM)
                    coll.add_embeddings(["a"], [unit(2, 1)])
                    assert [h.id for h in coll.search_embeddings(unit(1, 1), k=1)] == ["a"]
                    rows = sql_call(store, "search", "'c', %s, 1", halfvecs(unit(1, 1)))
                    assert [r[0] for r in rows] == ["a"]
                    report = doctor.diagnose(pg_dsn, p)
                    assert report["problems"] == [] and report["schema"]["name"] == p
                with psycopg.connect(pg_dsn) as conn:
                    assert conn.execute(
                        "SELECT 1 FROM pg_namespace WHERE nspname = %s", (p,)
                    ).fetchone() == (1,)
            finally:
                drop_schema(pg_dsn, p)
            guard.check(repr(p))
    finally:
        drop_schema(pg_dsn, probe)


def test_sql_files_compose_no_name_into_a_comment() -> None:
    """A quoted identifier may hold a line break, which would end a ``--`` comment and make
    the rest of the name SQL: the files' comments keep their placeholders as they are (the
    function sources' once their constants are filled in, as in their snapshots)."""
    evil = sql.Identifier("x\n; DROP TABLE canary; --")
    parts = {
        "schema": evil, "schema_literal": sql.Literal("x"), "search_path": evil,
        "vector_schema": evil, "role": evil,
    }  # fmt: skip
    for path in sorted([*migrate.SQL_DIR.rglob("*.sql"), *migrate.MIGRATIONS_DIR.rglob("*.sql")]):
        text = path.read_text()
        if path.parent == sql_functions.SOURCES_DIR:
            text = sql_functions.render_source(text)
        rendered = migrate.render_sql(text, **parts).as_string().splitlines()
        for line in text.splitlines():
            if line.lstrip().startswith("--"):
                assert line in rendered, (path.name, line)


def _create_roles(superuser: str, names: list[str]) -> None:
    with psycopg.connect(superuser, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(name)))


def _drop_role_names(superuser: str, database_dsn: str, names: list[str]) -> None:
    with psycopg.connect(database_dsn, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
    with psycopg.connect(superuser, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_role_names_of_the_grants_are_identifiers(
    superuser_dsn: str,
    store: lip.Store,
    guard: Guard,
) -> None:
    """grant_read_only, grant_tenant and revoke_tenant act on the role named exactly so, or
    refuse; "public" is no way to grant everyone."""
    roles = [p for p in guard.payloads if valid_name(p)]
    _create_roles(superuser_dsn, roles)
    documents = store.table("documents").as_string(store.conn)
    try:
        with_roles = Guard(store.dsn, store.schema, guard.canary)
        for p in guard.payloads:
            tenant = "t-" + p
            for grant in (
                lambda: store.grant_tenant(p, tenant),  # noqa: B023
                lambda: migrate.grant_read_only(store.dsn, p, store.schema),  # noqa: B023
                lambda: store.revoke_tenant(p, tenant),  # noqa: B023
            ):
                result = attempt(grant)
                if p in roles:
                    assert not refused(result) or "tenant" in str(result), (p, result)
                else:
                    assert isinstance(result, lip.InvalidInput), (p, result)
            if p in roles:
                row = store.conn.execute(
                    "SELECT has_table_privilege(oid, %s, 'SELECT'), "
                    "has_table_privilege(oid, %s, 'INSERT') FROM pg_roles WHERE rolname = %s",
                    (documents, documents, p),
                ).fetchone()
                assert row == (True, False), p
        tenants = store.conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(store.table("tenant_roles"))
        ).fetchone()
        assert tenants == (0,)  # every grant revoked again
        # nobody else got anything: the grantees of our table are the owner and these roles
        grantees = {
            r[0]
            for r in store.conn.execute(
                "SELECT grantee FROM information_schema.role_table_grants "
                "WHERE table_schema = %s AND table_name = 'documents'",
                (store.schema,),
            ).fetchall()
        }
        owner = store.conn.execute("SELECT current_user").fetchone()
        assert owner is not None and grantees == {owner[0], *roles}
        for name in ("public", "PUBLIC", "none", "lip_no_such_role", "a" * 64):
            for grant in (
                lambda: store.grant_tenant(name, "acme"),  # noqa: B023
                lambda: migrate.grant_read_only(store.dsn, name, store.schema),  # noqa: B023
            ):
                assert isinstance(attempt(grant), lip.InvalidInput), name
        with_roles.check("after the grants", grants=False)
    finally:
        _drop_role_names(superuser_dsn, store.dsn, roles)
    guard.check("roles dropped", grants=False)


def test_a_refused_tenant_grants_nothing(
    superuser_dsn: str,
    store: lip.Store,
) -> None:
    role = f"lip_sec_{uuid.uuid4().hex[:8]}"
    _create_roles(superuser_dsn, [role])
    try:
        for tenant in ("", "x" * 201, "nul\x00", "lone \udcff"):
            with pytest.raises(lip.InvalidInput):
                store.grant_tenant(role, tenant)
        row = store.conn.execute(
            "SELECT has_schema_privilege(%s, %s, 'USAGE')", (role, store.schema)
        ).fetchone()
        assert row == (False,)
    finally:
        _drop_role_names(superuser_dsn, store.dsn, [role])


# text PostgreSQL cannot store: refused with InvalidInput wherever it is given
UNSTORABLE = {"nul": "nul\x00'; DROP TABLE x; --", "surrogate": "lone \udcff surrogate"}
# (parameter, payload) pairs that still raise a driver error (psycopg.DataError or
# UnicodeEncodeError) instead of ours: the checks live in store.py and collection.py


def test_text_postgresql_cannot_store_is_refused_with_our_error(
    store: lip.Store, guard: Guard
) -> None:
    coll = store.collection("c", dim=DIM)
    coll.add_embeddings(["a"], [unit(3, 1)], texts=["a"], metadata=[{"k": 1}])
    words = store.collection("w", encoder=WordEncoder())
    words.add(["hello world"])
    q = unit(2, 3)
    calls: dict[str, Callable[[str], Any]] = {
        "collection name: create": lambda p: store.collection(p, dim=DIM),
        "collection name: open": lambda p: store.collection(p, create=False),
        "collection name: in": lambda p: p in store,
        "collection name: drop": lambda p: store.drop_collection(p),
        "text_search_config": lambda p: store.collection("z", dim=DIM, text_search_config=p),
        "document id: add": lambda p: coll.add_embeddings([p], [unit(2, 1)]),
        "document id: get": lambda p: coll.get(p),
        "document id: in": lambda p: p in coll,
        "document id: delete": lambda p: coll.delete(p),
        "document id: explain": lambda p: coll.explain_embeddings(q, p),
        "text": lambda p: coll.add_embeddings(["n"], [unit(2, 1)], texts=[p]),
        "metadata key": lambda p: coll.add_embeddings(["n"], [unit(2, 1)], metadata=[{p: 1}]),
        "metadata value": lambda p: coll.add_embeddings(["n"], [unit(2, 1)], metadata=[{"k": p}]),
        "tenant: add": lambda p: coll.add_embeddings(["n"], [unit(2, 1)], tenant=p),
        "tenant: search": lambda p: coll.search_embeddings(q, tenant=p),
        "filter key": lambda p: coll.search_embeddings(q, filter={p: 1}),
        "filter value": lambda p: coll.search_embeddings(q, filter={"k": {"$in": [p]}}),
        "where_params value": lambda p: coll.search_embeddings(
            q, where="d.text = %(x)s", where_params={"x": p}
        ),
        "hybrid query_text": lambda p: coll.search_hybrid_embeddings(q, p),
        "hybrid query text (encoded)": lambda p: words.search_hybrid(p),
        "document text (encoded)": lambda p: words.add([{"id": "q", "text": p}]),
        "schema": lambda p: lip.connect(store.dsn, schema=p),
        "role": lambda p: store.grant_tenant(p, "acme"),
        "tenant: grant": lambda p: store.grant_tenant("postgres", p),
        "tenant: revoke": lambda p: store.revoke_tenant("postgres", p),
    }
    gaps = set()
    for name, call in calls.items():
        for kind, payload in UNSTORABLE.items():
            try:
                result = call(payload)
            except lip.InvalidInput:
                continue
            except (psycopg.DataError, UnicodeEncodeError):
                gaps.add((name, kind))
                continue
            assert result is False, (name, kind, result)  # "in": just not there
    assert len(coll) == 1 and [c.name for c in store.collections()] == ["c", "w"]
    guard.check()
    assert not gaps, f"refused with a driver error, not InvalidInput: {sorted(gaps)}"


# --- the where fragment: code, not data ------------------------------------------------


def test_a_where_fragment_runs_read_only_in_a_search(store: lip.Store, canary: str) -> None:
    """Outside the caller's own transaction a search reads in a read-only transaction, so a
    fragment that calls a function which writes is refused and writes nothing."""
    coll = store.collection("w", dim=DIM)
    coll.add_embeddings(["a", "b"], [unit(3, 1), unit(3, 2)])
    writer = sql.Identifier(canary, "write")
    store.conn.execute(
        sql.SQL(
            "CREATE FUNCTION {}() RETURNS boolean LANGUAGE sql VOLATILE AS "
            "$$ INSERT INTO {} VALUES (2) RETURNING true $$"
        ).format(writer, sql.Identifier(canary, "sentinel"))
    )
    where = writer.as_string(store.conn) + "()"
    for options in ({}, {"tier": "dense"}, {"exact": True}):
        with pytest.raises((lip.LateInteractError, psycopg.errors.ReadOnlySqlTransaction)):
            coll.search_embeddings(unit(2, 3), k=1, where=where, **options)
    rows = store.conn.execute(
        sql.SQL("SELECT * FROM {}").format(sql.Identifier(canary, "sentinel"))
    ).fetchall()
    assert rows == [(1,)]


def test_a_where_fragment_cannot_smuggle_a_second_statement(store: lip.Store, canary: str) -> None:
    coll = store.collection("w2", dim=DIM)
    coll.add_embeddings(["a", "b"], [unit(3, 1), unit(3, 2)])
    sentinel = sql.Identifier(canary, "sentinel").as_string(store.conn)
    where = f"true); COMMIT; INSERT INTO {sentinel} VALUES (3); SELECT (true"
    with contextlib.suppress(lip.LateInteractError, psycopg.Error):
        coll.search_embeddings(unit(2, 3), k=1, where=where)
    rows = store.conn.execute(f"SELECT * FROM {sentinel}").fetchall()
    assert rows == [(1,)]


# --- injection through the command line ------------------------------------------------


@pytest.fixture
def words(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_documents, "load_model", lambda model: WordEncoder())


def run_cli(*args: str) -> Any:
    """Run the command line; it either succeeds, refuses with our error or with a usage
    error (exit 2), never with anything else."""
    result = CliRunner().invoke(cli, list(args))
    if result.exit_code != 0:
        exc = result.exception
        assert isinstance(exc, lip.LateInteractError) or (
            isinstance(exc, SystemExit) and result.exit_code in (1, 2)
        ), (args, result.output, exc, "".join(traceback.format_exception(exc)) if exc else "")
    return result


def test_command_line_options_are_data(
    store: lip.Store,
    guard: Guard,
    words: None,
    tmp_path: Path,
) -> None:
    dsn, schema = store.dsn, store.schema
    base = ["--dsn", dsn, "--schema", schema]
    # argv holds no NUL and no lone surrogate
    for j, p in enumerate(filter(sendable, guard.payloads)):
        corpus = tmp_path / f"corpus{j}.jsonl"
        corpus.write_text(
            json.dumps({"id": p, "text": "gamma " + p, "metadata": {"k": p}}) + "\n"
            + json.dumps({"id": "plain", "text": "delta"}) + "\n"
        )  # fmt: skip
        added = run_cli("ingest", str(corpus), "--collection", p, "--model", "words", *base)
        assert added.exit_code == 0, added.output
        assert p in store
        found = run_cli("search", "gamma " + p, "--collection", p, "--model", "w", "--json", *base)
        assert found.exit_code == 0 and json.loads(found.output.splitlines()[0])["id"] == p
        for extra in (
            ["--filter", json.dumps({"k": p})],
            ["--filter", json.dumps({p: {"$ne": p}})],
            ["--tenant", p],
            ["--hybrid", "rrf"],
            ["--tier", "dense"],
        ):
            run_cli("search", p, "--collection", p, "--model", "w", *extra, *base)
        run_cli("encode-query", p, "--model", "w", "--collection", p, *base)
        missing = run_cli("search", "x", "--collection", p + "?", "--model", "w", *base)
        assert isinstance(missing.exception, lip.CollectionNotFound)
        listed = run_cli("collections", *base)
        assert p in [json.loads(line)["name"] for line in listed.output.splitlines()]
        assert run_cli("compact", p, "--no-reindex", *base).exit_code == 0
        assert run_cli("doctor", *base).exit_code in (0, 1)
        for command in ("grant-read-only", "grant-tenant", "revoke-tenant"):
            tail = [] if command == "grant-read-only" else [p]
            result = run_cli(command, p, *tail, *base)
            assert isinstance(result.exception, lip.InvalidInput), (command, p)  # no such role
        store.drop_collection(p)
        guard.check(repr(p))
    for p in filter(sendable, guard.payloads):
        for words_ in (["migrate"], ["collections"], ["doctor"]):
            run_cli(*words_, "--dsn", dsn, "--schema", p)
            drop_schema(dsn, p) if valid_name(p) else None
        result = run_cli("server", "stop", str(tmp_path / p))
        assert result.exit_code != 0 or result.output.strip() == "not running"
        guard.check(repr(p))


# --- 3. least privilege ----------------------------------------------------------------

SCHEMA = "sec"
TENANTS = {"acme": range(0, 60), "globex": range(60, 120), None: range(120, 150)}


def _doc_vectors() -> list[np.ndarray]:
    return [unit(int(3 + i % 5), 1000 + i) for i in range(150)]


DOCS = _doc_vectors()


def doc_id(j: int) -> str:
    return f"d{j}"


def ids_of(*tenants: str | None) -> set[str]:
    return {doc_id(j) for t in tenants for j in TENANTS[t]}


@pytest.fixture(scope="module")
def roles(superuser_dsn: str, database: str) -> Iterator[dict[str, str]]:
    """An owner that installs and writes three groups of documents (acme, globex, shared),
    alice granted tenant acme, bob granted read-only access, eve granted nothing."""
    owner = make_role(superuser_dsn, database, "CREATE", "CONNECT")
    alice = make_role(superuser_dsn, database, "CONNECT")
    bob = make_role(superuser_dsn, database, "CONNECT")
    eve = make_role(superuser_dsn, database, "CONNECT")
    with lip.connect(owner, schema=SCHEMA) as store:
        coll = store.collection("mt", dim=DIM, text_search_config="simple")
        for tenant, members in TENANTS.items():
            coll.add_embeddings(
                [doc_id(j) for j in members], [DOCS[j] for j in members],
                texts=[f"document {j} of {tenant or 'everyone'}" for j in members],
                metadata=[{"j": j} for j in members], tenant=tenant,
            )  # fmt: skip
        store.grant_tenant(user_of(alice), "acme")
        migrate.grant_read_only(owner, user_of(bob), SCHEMA)
    yield {"owner": owner, "alice": alice, "bob": bob, "eve": eve, "database": database}
    drop_schema(database, SCHEMA)
    drop_roles(superuser_dsn, database, alice, bob, eve, owner)


def role_conn(dsn: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute(sql.SQL("SET search_path = {}, public").format(sql.Identifier(SCHEMA)))
    register_vector(conn)
    return conn


def collection_id(roles: dict[str, str]) -> int:
    with psycopg.connect(roles["owner"]) as conn:
        row = conn.execute(
            sql.SQL("SELECT id FROM {} WHERE name = 'mt'").format(
                sql.Identifier(SCHEMA, "collections")
            )
        ).fetchone()
    assert row is not None
    return int(row[0])


def our_tables(roles: dict[str, str]) -> list[str]:
    cid = collection_id(roles)
    return [
        "collections", "documents", "tokens", f"tokens_{cid}", "tenant_roles",
        migrate.VERSION_TABLE,
    ]  # fmt: skip


# a column of each of our tables, for an UPDATE
_COLUMN = {"collections": "name", "documents": "text", "tenant_roles": "tenant",
           migrate.VERSION_TABLE: "version_num"}  # fmt: skip


def denied(conn: psycopg.Connection[Any], statement: str, *params: Any) -> None:
    """``statement`` is refused for lack of a privilege (and rolled back)."""
    with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
        conn.execute(statement, params or None)


def privileges(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """The grants on our schema, tables and functions."""
    return conn.execute(
        "SELECT nspacl::text FROM pg_namespace WHERE nspname = %s UNION ALL "
        "SELECT relname || relacl::text FROM pg_class WHERE relnamespace = %s::regnamespace "
        "UNION ALL SELECT proname || proacl::text FROM pg_proc "
        "WHERE pronamespace = %s::regnamespace ORDER BY 1",
        (SCHEMA, SCHEMA, SCHEMA),
    ).fetchall()


@pytest.mark.parametrize("who", ["alice", "bob", "eve"])
def test_readers_cannot_write_lock_or_change_our_tables(roles: dict[str, str], who: str) -> None:
    with psycopg.connect(roles["owner"]) as conn:
        granted = privileges(conn)
    with role_conn(roles[who]) as conn:
        for table in our_tables(roles):
            t = f"{SCHEMA}.{table}"
            for statement in (
                f"INSERT INTO {t} DEFAULT VALUES",
                f"UPDATE {t} SET {_COLUMN.get(table, 'position')} = NULL",
                f"DELETE FROM {t}",
                f"TRUNCATE {t}",
                f"LOCK TABLE {t} IN EXCLUSIVE MODE",
                f"SELECT 1 FROM {t} FOR UPDATE",
                f"ALTER TABLE {t} DISABLE ROW LEVEL SECURITY",
                f"ALTER TABLE {t} OWNER TO CURRENT_USER",
                f"ALTER TABLE {t} ADD COLUMN mine integer",
                f"DROP TABLE {t}",
                f"CREATE INDEX ON {t} ((1))",
                f"CREATE POLICY everything ON {t} USING (true)",
                f"CREATE TRIGGER t BEFORE INSERT ON {t} "
                f"FOR EACH ROW EXECUTE FUNCTION {SCHEMA}.documents_tsv()",
                f"COMMENT ON TABLE {t} IS 'mine'",
            ):
                denied(conn, statement)
            # a GRANT without the grant option grants nothing (a warning, or an error for
            # a role with no privilege at all)
            for statement in (f"GRANT SELECT ON {t} TO PUBLIC", f"GRANT ALL ON {t} TO PUBLIC"):
                with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
        for policy, table in (("tenant_documents", "documents"), ("own_tenants", "tenant_roles")):
            denied(conn, f"DROP POLICY {policy} ON {SCHEMA}.{table}")
            denied(conn, f"ALTER POLICY {policy} ON {SCHEMA}.{table} USING (true)")
        for function in (
            "search(text, halfvec[], integer, integer, integer, integer, boolean, jsonpath, jsonb,"
            " integer)",
            "search_candidates(integer, halfvec[], integer, integer, integer, boolean, jsonpath,"
            " jsonb)",
            "has_tenants(integer)",
            "passes(jsonb, jsonpath, jsonb)",
        ):
            denied(conn, f"ALTER FUNCTION {SCHEMA}.{function} SECURITY DEFINER")
            denied(conn, f"ALTER FUNCTION {SCHEMA}.{function} SET search_path = pg_temp")
            denied(conn, f"DROP FUNCTION {SCHEMA}.{function}")
        # the invoker's rights: only the owner may protect (ALTER) a table
        denied(conn, f"SELECT {SCHEMA}.protect_tokens('{SCHEMA}.tokens'::regclass)")
    with psycopg.connect(roles["owner"]) as conn:  # all still there, with their documents
        count = conn.execute(f"SELECT count(*) FROM {SCHEMA}.documents").fetchone()
        assert count == (150,)
        assert privileges(conn) == granted


@pytest.mark.parametrize("who", ["alice", "bob"])
def test_readers_cannot_create_objects_where_searches_look(roles: dict[str, str], who: str) -> None:
    with role_conn(roles[who]) as conn:
        vector_schema = conn.execute(
            "SELECT n.nspname FROM pg_extension AS e JOIN pg_namespace AS n "
            "ON n.oid = e.extnamespace WHERE e.extname = 'vector'"
        ).fetchone()
        assert vector_schema is not None
        schemas = [SCHEMA]
        public_writable = conn.execute(
            "SELECT has_schema_privilege('public', %s, 'CREATE')", (vector_schema[0],)
        ).fetchone()
        if public_writable == (False,):  # the default since PostgreSQL 15; doctor warns else
            schemas.append(vector_schema[0])
        for schema in schemas:
            row = conn.execute(
                "SELECT has_schema_privilege(current_user, %s, 'CREATE')", (schema,)
            ).fetchone()
            assert row == (False,), schema
            for statement in (
                f"CREATE TABLE {schema}.documents (id bigint)",
                f"CREATE VIEW {schema}.tenant_roles AS SELECT 'globex'::text AS tenant",
                f"CREATE FUNCTION {schema}.has_tenants(bigint) RETURNS boolean "
                "LANGUAGE sql AS 'SELECT false'",
                f"CREATE FUNCTION {schema}.unnest(text[]) RETURNS SETOF text "
                "LANGUAGE sql AS 'SELECT 1::text'",
                f"CREATE TYPE {schema}.shadow AS (x integer)",
                f"CREATE OPERATOR {schema}.|| (LEFTARG = text, RIGHTARG = integer, "
                "FUNCTION = pg_catalog.textanycat)",
            ):
                denied(conn, statement)
        denied(conn, f"CREATE SCHEMA {SCHEMA}_mine")
        denied(conn, f"ALTER SCHEMA {SCHEMA} OWNER TO CURRENT_USER")
        denied(conn, f"DROP SCHEMA {SCHEMA} CASCADE")
        conn.execute(f"GRANT CREATE ON SCHEMA {SCHEMA} TO CURRENT_USER")  # a warning, no grant
        row = conn.execute(
            "SELECT has_schema_privilege(current_user, %s, 'CREATE')", (SCHEMA,)
        ).fetchone()
        assert row == (False,)


@pytest.mark.parametrize("who", ["alice", "bob", "eve"])
def test_readers_cannot_become_the_owner_or_gain_attributes(
    roles: dict[str, str], who: str
) -> None:
    owner = user_of(roles["owner"])
    with role_conn(roles[who]) as conn:
        denied(conn, f'SET ROLE "{owner}"')
        denied(conn, f'SET SESSION AUTHORIZATION "{owner}"')
        denied(conn, f'GRANT "{owner}" TO CURRENT_USER')
        for attribute in ("SUPERUSER", "BYPASSRLS", "CREATEROLE", "CREATEDB"):
            denied(conn, f"ALTER ROLE CURRENT_USER {attribute}")
        denied(conn, "CREATE ROLE lip_sneaky")
        denied(conn, "SET row_security = off; SELECT 1 FROM sec.documents")  # never bypasses
        conn.execute("RESET row_security")
        assert conn.execute("SELECT current_user").fetchone() == (user_of(roles[who]),)


def test_a_tenant_role_cannot_grant_itself_another_tenant(roles: dict[str, str]) -> None:
    alice = user_of(roles["alice"])
    with role_conn(roles["alice"]) as conn:
        oid = conn.execute("SELECT oid FROM pg_roles WHERE rolname = current_user").fetchone()
        assert oid is not None
        denied(conn, f"INSERT INTO {SCHEMA}.tenant_roles VALUES ('globex', %s)", oid[0])
        denied(conn, f"UPDATE {SCHEMA}.tenant_roles SET tenant = 'globex'")
        denied(conn, f"DELETE FROM {SCHEMA}.tenant_roles")
        # its own row only; no one else's
        rows = conn.execute(f"SELECT tenant, role FROM {SCHEMA}.tenant_roles").fetchall()
        assert rows == [("acme", oid[0])]
    for grant in (
        lambda: migrate.grant_tenant(roles["alice"], alice, "globex", SCHEMA),
        lambda: migrate.revoke_tenant(roles["alice"], alice, "acme", SCHEMA),
    ):
        with pytest.raises(lip.PermissionDenied):
            grant()
    with role_conn(roles["bob"]) as conn:  # granted no tenant: sees no row at all
        assert conn.execute(f"SELECT count(*) FROM {SCHEMA}.tenant_roles").fetchone() == (0,)
    with lip.connect(roles["alice"], schema=SCHEMA) as store:
        assert len(store.collection("mt", create=False)) == 90  # acme's 60 and 30 shared


def _every_sql_function(
    conn: psycopg.Connection[Any], q: list[HalfVector], tables: bool = True
) -> set[str]:
    """The ids of documents every SQL function of ours gives this role (and, with
    ``tables``, plain SELECTs of our tables on its search_path)."""
    seen: set[str] = set()
    statements = [
        ("SELECT id FROM search('mt', %s, 150)", (q,)),
        ("SELECT id FROM search('mt', %s, 150, exact => true)", (q,)),
        ("SELECT id FROM search('mt', %s, 5, rescore_depth => 5)", (q,)),
        ("SELECT id FROM search('mt', %s, 150, filter => '$.j >= 0')", (q,)),
        ("SELECT id FROM search_dense('mt', %s, 150)", (q,)),
        ("SELECT id FROM search_hybrid('mt', %s, 'document globex acme everyone', 150, "
         "depth => 150)", (q,)),
        ("SELECT id FROM search_hybrid('mt', %s, 'globex', 150, 'rrf', depth => 150)", (q,)),
        # search()'s stage 2 given every id a role could guess
        ("SELECT id FROM search_rescore((SELECT id FROM collections WHERE name = 'mt'), %s, "
         "150, ARRAY(SELECT pg_catalog.generate_series(1, 100000)::bigint))", (q,)),
    ]  # fmt: skip
    for statement, params in statements:
        seen |= {r[0] for r in conn.execute(statement, params).fetchall()}
    for j in range(150):
        score = conn.execute("SELECT maxsim('mt', %s, %s)", (q, doc_id(j))).fetchone()
        assert score is not None
        if score[0] is not None:
            seen.add(doc_id(j))
        if conn.execute("SELECT 1 FROM explain('mt', %s, %s)", (q, doc_id(j))).fetchone():
            seen.add(doc_id(j))
    if not tables:
        return seen
    seen |= {r[0] for r in conn.execute("SELECT external_id FROM documents").fetchall()}
    tokens = conn.execute(
        "SELECT DISTINCT d.external_id FROM tokens AS t JOIN documents AS d ON d.id = t.doc_id"
    ).fetchall()
    seen |= {r[0] for r in tokens}
    hidden = conn.execute(
        "SELECT count(*) FROM tokens WHERE tenant IS NOT NULL AND tenant <> ALL(%s)",
        (["acme"],),
    ).fetchone()
    assert hidden is not None
    if hidden[0]:
        seen.add("token rows of another tenant")
    return seen


@pytest.mark.parametrize("who", ["alice", "bob"])
def test_no_sql_function_shows_another_tenants_documents(roles: dict[str, str], who: str) -> None:
    allowed = ids_of("acme", None) if who == "alice" else ids_of(None)
    q = halfvecs(np.concatenate([DOCS[70][:2], DOCS[80][:2]]))  # globex tokens
    with role_conn(roles[who]) as conn:
        seen = _every_sql_function(conn, q)
        assert seen == allowed
        # has_tenants tells whether a collection has tenants, nothing else
        assert conn.execute("SELECT has_tenants(id) FROM collections").fetchall() == [(True,)]
    with role_conn(roles["owner"]) as conn:
        assert _every_sql_function(conn, q) >= ids_of("acme", "globex", None)


def test_a_role_without_grants_reaches_nothing(roles: dict[str, str]) -> None:
    with role_conn(roles["eve"]) as conn:
        for statement in (
            "SELECT sec.has_tenants(1)",
            "SELECT * FROM sec.search('mt', ARRAY['[1]'::halfvec], 1)",
            "SELECT * FROM sec.collections",
            "SELECT * FROM sec.tenant_roles",
        ):
            denied(conn, statement)


def test_temporary_objects_do_not_hijack_our_functions(roles: dict[str, str]) -> None:
    """A role's temporary tables and functions (pg_temp) shadow nothing our SQL functions or
    the Python API use: the functions search pg_temp last, the Python API names our
    schema."""
    q = np.concatenate([DOCS[70][:2], DOCS[80][:2]])
    allowed = ids_of("acme", None)
    with role_conn(roles["alice"]) as conn:
        before = _every_sql_function(conn, halfvecs(q))
        oid = conn.execute("SELECT oid FROM pg_roles WHERE rolname = current_user").fetchone()
        assert oid is not None
        for statement in (
            "CREATE TEMP TABLE tenant_roles AS SELECT 'globex'::text AS tenant, %s::oid AS role",
            "CREATE TEMP TABLE documents AS SELECT * FROM sec.documents WHERE false",
            "CREATE TEMP TABLE collections AS SELECT * FROM sec.collections",
            "CREATE TEMP TABLE tokens AS SELECT * FROM sec.tokens WHERE false",
            "CREATE FUNCTION pg_temp.has_tenants(integer) RETURNS boolean LANGUAGE sql "
            "AS 'SELECT false'",
            "CREATE FUNCTION pg_temp.passes(jsonb, jsonpath, jsonb) RETURNS boolean "
            "LANGUAGE sql AS 'SELECT true'",
        ):
            conn.execute(statement, (oid[0],) if "%s" in statement else None)
        conn.execute("UPDATE pg_temp.collections SET dim = 3")
        conn.execute("SET search_path = pg_temp, sec, public")  # the temporary schema first
        assert _every_sql_function(conn, halfvecs(q), tables=False) == allowed
        conn.execute("SET search_path = sec, public")
        assert _every_sql_function(conn, halfvecs(q)) == before == allowed
    with lip.connect(roles["alice"], schema=SCHEMA) as store:
        for statement in (
            "CREATE TEMP TABLE tenant_roles AS SELECT 'globex'::text AS tenant, %s::oid AS role",
            "CREATE TEMP TABLE documents AS SELECT * FROM sec.documents WHERE false",
        ):
            store.conn.execute(statement, (oid[0],) if "%s" in statement else None)
        coll = store.collection("mt", create=False)
        for options in ({"plan": "index"}, {"plan": "exhaustive"}, {"tier": "dense"}):
            hits = coll.search_embeddings(q, k=20, **options)
            assert len(hits) == 20 and {h.id for h in hits} <= allowed, options
        hybrid = coll.search_hybrid_embeddings(q, "document globex", k=20)
        assert {h.id for h in hybrid} <= allowed
        assert len(coll) == 90


def test_security_definer_functions_are_few_pinned_and_harmless(roles: dict[str, str]) -> None:
    """has_tenants alone runs with its owner's rights: its search_path is fixed (pg_temp
    last) and it returns one boolean. Every plpgsql function has a fixed search_path too."""
    with psycopg.connect(roles["owner"]) as conn:
        rows = conn.execute(
            "SELECT p.proname, p.prosecdef, l.lanname, p.proconfig, p.provolatile "
            "FROM pg_proc AS p JOIN pg_language AS l ON l.oid = p.prolang "
            "WHERE p.pronamespace = %s::regnamespace ORDER BY 1",
            (SCHEMA,),
        ).fetchall()
        vector_schema = migrate.ensure_pgvector(conn)
    definers = [r[0] for r in rows if r[1]]
    assert definers == ["has_tenants"]
    expected_path = f"search_path={SCHEMA}, {vector_schema}, pg_temp"
    for name, definer, language, config, volatility in rows:
        if definer or language == "plpgsql":
            assert config == [expected_path], name
        else:  # inlined SQL helpers: pure, their built-ins named pg_catalog.* where it matters
            assert language == "sql" and volatility == "i", name
    # PUBLIC may run it (it needs USAGE on the schema first); it says one boolean
    with role_conn(roles["alice"]) as conn:
        row = conn.execute(
            "SELECT pg_get_function_result(oid) FROM pg_proc WHERE proname = 'has_tenants' "
            "AND pronamespace = %s::regnamespace",
            (SCHEMA,),
        ).fetchone()
        assert row == ("boolean",)


_SHADOWS = (
    "CREATE TABLE public.eve_log (who text)",
    "GRANT INSERT ON public.eve_log TO PUBLIC",
    "CREATE FUNCTION public.format(text, text, text) RETURNS text LANGUAGE plpgsql AS "
    "$$ BEGIN INSERT INTO public.eve_log VALUES (current_user); "
    "RETURN pg_catalog.format($1, $2, $3); END $$",
    "CREATE FUNCTION public.eve_cat(text, integer) RETURNS text LANGUAGE plpgsql AS "
    "$$ BEGIN INSERT INTO public.eve_log VALUES (current_user); RETURN $1 || $2::text; END $$",
    "CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = integer, FUNCTION = public.eve_cat)",
)


def test_where_others_may_create_next_to_pgvector_we_warn_refuse_grants_and_doctor_reads_safely(
    roles: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """With CREATE on pgvector's schema for everyone (public before PostgreSQL 15), a role's
    function or operator of exact argument types wins over the built-in a statement means.
    migrate warns; the doctor, often run by an administrator, reads with built-ins only."""
    admin = roles["database"]  # the superuser's
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT extnamespace = 2200 FROM pg_extension WHERE extname = 'vector'")\
                .fetchone() != (True,):  # fmt: skip
            pytest.skip("pgvector is not in schema public here")
        conn.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
    try:
        caplog.set_level(logging.WARNING, logger="lateinteract_pg.migrate")
        migrate.upgrade(roles["owner"], "sec_warned")
        assert "REVOKE CREATE ON SCHEMA public FROM PUBLIC" in caplog.text
        with psycopg.connect(roles["eve"], autocommit=True) as conn:
            for statement in _SHADOWS:
                conn.execute(statement)
        report = doctor.diagnose(roles["owner"], SCHEMA)
        assert any("REVOKE CREATE ON SCHEMA public" in w for w in report["warnings"])
        assert [c["name"] for c in report["collections"]] == ["mt"]
        with psycopg.connect(admin) as conn:
            assert conn.execute("SELECT count(*) FROM public.eve_log").fetchone() == (0,)
        # nor is a role that may plant such shadows granted read access: it would escalate
        eve = conninfo_to_dict(roles["eve"])["user"]
        acl = "SELECT nspacl::text FROM pg_namespace WHERE nspname = %s"
        with psycopg.connect(admin) as conn:
            before = conn.execute(acl, (SCHEMA,)).fetchone()
        for grant in (
            lambda: migrate.grant_read_only(admin, eve, SCHEMA),
            lambda: migrate.grant_tenant(admin, eve, "acme", SCHEMA),
        ):
            with pytest.raises(lip.InsecureSetup, match="REVOKE CREATE ON SCHEMA"):
                grant()
        with psycopg.connect(admin) as conn:
            assert conn.execute(acl, (SCHEMA,)).fetchone() == before
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                "DROP OPERATOR IF EXISTS public.|| (text, integer); "
                "DROP FUNCTION IF EXISTS public.eve_cat(text, integer); "
                "DROP FUNCTION IF EXISTS public.format(text, text, text); "
                "DROP TABLE IF EXISTS public.eve_log; DROP SCHEMA IF EXISTS sec_warned CASCADE"
            )
            conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")


# --- 4. the embedded server is local only ---------------------------------------------


def _is_loopback(address: str | None) -> bool:
    return address in ("127.0.0.1", "::1")


def check_local_only(uri: str) -> None:
    with psycopg.connect(uri) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
        (directories,) = conn.execute("SHOW unix_socket_directories").fetchone()  # type: ignore[misc]
        (data_dir,) = conn.execute("SHOW data_directory").fetchone()  # type: ignore[misc]
        rules = conn.execute(
            "SELECT type, address, auth_method, error FROM pg_hba_file_rules"
        ).fetchall()
    assert all(error is None for *_, error in rules)
    for kind, address, _method, _ in rules:
        assert kind == "local" or (kind.startswith("host") and _is_loopback(address)), rules
    for directory in str(directories).split(","):
        mode = os.stat(directory.strip()).st_mode
        assert stat.S_IMODE(mode) == 0o700, directory
    assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700


def test_the_embedded_server_listens_on_a_private_socket_only() -> None:
    # not under pytest's tmp_path: a concurrent pytest session makes its root 0700 again,
    # which the server's user (as root: embedded_postgres) may then not traverse
    data_dir = Path(tempfile.mkdtemp(prefix="lip-sec-")) / "pgdata"
    try:
        uri = embedded.ensure_server(data_dir)
        assert conninfo_to_dict(uri)["host"] == str(data_dir)  # a socket directory, no host
        check_local_only(uri)
        with psycopg.connect(uri) as conn:
            configured = conn.execute(
                "SELECT name, setting FROM pg_file_settings WHERE applied AND name IN "
                "('listen_addresses', 'unix_socket_permissions') ORDER BY 1"
            ).fetchall()
            methods = {r[0] for r in conn.execute(
                "SELECT auth_method FROM pg_hba_file_rules WHERE type LIKE 'host%'"
            ).fetchall()}  # fmt: skip
        # also when started from the data directory by hand
        assert configured == [("listen_addresses", ""), ("unix_socket_permissions", "0700")]
        assert methods == {"reject"}
        assert (data_dir / ".s.PGSQL.5432").is_socket()
    finally:
        embedded.stop_server(data_dir)
        shutil.rmtree(data_dir.parent, ignore_errors=True)


def test_the_test_server_if_embedded_is_local_only(pg_dsn: str) -> None:
    if not str(conninfo_to_dict(pg_dsn).get("host", "")).startswith("/"):
        pytest.skip("the test server is not the embedded one")
    check_local_only(pg_dsn)


# --- 5. secrets are never shown --------------------------------------------------------

SECRET = "s3cret-Pa55"


def test_redact_dsn_masks_every_form_of_password() -> None:
    cases = {
        f"postgresql://app:{SECRET}@db:5432/prod": "postgresql://app:****@db:5432/prod",
        f"postgres://app:{SECRET}@h1,h2:5433/prod?sslmode=require":
            "postgres://app:****@h1,h2:5433/prod?sslmode=require",
        f"postgresql://app@db/prod?password={SECRET}&sslmode=require":
            "postgresql://app@db/prod?password=****&sslmode=require",
        f"host=db user=app password={SECRET} dbname=prod":
            "host=db user=app password=**** dbname=prod",
        f"host=db password = '{SECRET} with spaces' dbname=prod":
            "host=db password = **** dbname=prod",
        f"sslpassword={SECRET} host=db": "sslpassword=**** host=db",
        f"{{'password': '{SECRET}', 'host': 'db'}}": "{'password': '****', 'host': 'db'}",
        f'in URI: "postgresql://u:{SECRET}@[bad/db"': 'in URI: "postgresql://u:****@[bad/db"',
        "postgresql://postgres@/postgres?host=/var/run/postgresql&port=5432":
            "postgresql://postgres@/postgres?host=/var/run/postgresql&port=5432",
        "host=/var/run/postgresql port=5432 user=postgres":
            "host=/var/run/postgresql port=5432 user=postgres",
    }  # fmt: skip
    for dsn, expected in cases.items():
        assert redact_dsn(dsn) == expected
        assert SECRET not in redact_dsn(dsn)


# a closed port on this machine: refused at once; the password never reaches a server
BAD_DSNS = (
    f"postgresql://lip_user:{SECRET}@127.0.0.1:1/db?connect_timeout=3",
    f"host=127.0.0.1 port=1 user=lip_user password={SECRET} dbname=db connect_timeout=3",
    f"host=127.0.0.1 port=1 user=lip_user password='{SECRET} x' connect_timeout=3",
    f"postgresql://lip_user@127.0.0.1:1/db?password={SECRET}&connect_timeout=3",
    f"postgresql://lip_user:{SECRET}@[::1/db",  # malformed: libpq quotes it whole
    f"postgresql://lip_user:{SECRET}@127.0.0.1:notaport/db",
    f"user=lip_user password {SECRET}",  # malformed keyword string
)


def no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text and PASSWORD not in text, text


def test_connection_failures_never_show_the_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for dsn in BAD_DSNS:
        for call in (
            lambda: lip.connect(dsn),  # noqa: B023
            lambda: migrate.upgrade(dsn),  # noqa: B023
            lambda: migrate.grant_read_only(dsn, "someone"),  # noqa: B023
            lambda: migrate.grant_tenant(dsn, "someone", "acme"),  # noqa: B023
            lambda: migrate.revoke_tenant(dsn, "someone", "acme"),  # noqa: B023
            lambda: doctor.diagnose(dsn),  # noqa: B023
        ):
            with pytest.raises((lip.ServerError, lip.InvalidInput)) as info:
                call()
            shown = "".join(traceback.format_exception(info.value))
            no_secret(str(info.value), repr(info.value), shown)
    no_secret(*(r.getMessage() for r in caplog.records), caplog.text)


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    """The installed ``lateinteract-pg`` entry point, in this process."""
    monkeypatch.setattr(sys, "argv", ["lateinteract-pg", *args])
    with pytest.raises(SystemExit) as info:
        cli_module.main()
    out = capsys.readouterr()
    return info.value.code, out.out + out.err


def test_the_command_line_never_shows_the_password(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    for dsn in BAD_DSNS:
        printed = CliRunner().invoke(cli, ["dsn", "--dsn", dsn])
        assert printed.exit_code == 0 or isinstance(printed.exception, lip.InvalidInput)
        no_secret(printed.output, str(printed.exception))
        for command in (
            ["doctor"], ["migrate"], ["collections"], ["grant-read-only", "r"],
            ["grant-tenant", "r", "t"], ["revoke-tenant", "r", "t"], ["compact", "c"],
        ):  # fmt: skip
            code, output = _main(monkeypatch, capsys, "-vv", *command, "--dsn", dsn)
            assert code == 2 and output.startswith("error: "), (command, output)
            no_secret(output)
        monkeypatch.setenv("LATEINTERACT_PG_DSN", dsn)
        code, output = _main(monkeypatch, capsys, "doctor")
        assert code == 2
        no_secret(output, CliRunner().invoke(cli, ["dsn"]).output)
        monkeypatch.delenv("LATEINTERACT_PG_DSN")
    no_secret(*(r.getMessage() for r in caplog.records), caplog.text)
    # asked for, it is shown
    shown = CliRunner().invoke(cli, ["dsn", "--dsn", BAD_DSNS[0], "--show-password"])
    assert shown.output.strip() == BAD_DSNS[0]


def test_a_role_with_a_password_works_without_it_being_shown(
    roles: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Everything a user with a password DSN does: no log record (at DEBUG), no output and
    no message of ours holds the password."""
    caplog.set_level(logging.DEBUG)
    owner = roles["owner"]
    parts = conninfo_to_dict(owner)
    assert parts["password"] == PASSWORD
    as_uri = (
        f"postgresql://{parts['user']}:{PASSWORD}@/{parts['dbname']}"
        f"?host={quote(str(parts['host']), safe='')}&port={parts.get('port', 5432)}"
    )
    q = np.concatenate([DOCS[3][:2], DOCS[4][:2]])
    for dsn in (owner, as_uri):
        with lip.connect(dsn, schema=SCHEMA) as store:
            coll = store.collection("mt")
            assert coll.search_embeddings(q, k=3)
            assert coll.search_hybrid_embeddings(q, "acme", k=3)
            no_secret(repr(store), repr(coll), str(coll.last_search))
            with pytest.raises(lip.CollectionNotFound) as info:
                store.collection("nope", create=False)
            no_secret(str(info.value))
        migrate.upgrade(dsn, SCHEMA)
        migrate.grant_read_only(dsn, user_of(roles["bob"]), SCHEMA)
        no_secret(json.dumps(doctor.diagnose(dsn, SCHEMA), default=str))
        for command in (["doctor"], ["collections"], ["migrate"]):
            code, output = _main(
                monkeypatch, capsys, "-vv", *command, "--dsn", dsn, "--schema", SCHEMA
            )
            assert code == 0, output
            no_secret(output)
        code, output = _main(monkeypatch, capsys, "dsn", "--dsn", dsn)
        assert code == 0 and REDACTED in output
        no_secret(output)
    no_secret(*(r.getMessage() for r in caplog.records), caplog.text)
