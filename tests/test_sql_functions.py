"""The SQL functions' sources (sql/functions), their frozen snapshots (migrations/functions)
and the migrations that install them: each revision's functions are its snapshots, up and
down; the head snapshots are the sources; the formulas Python and SQL share agree."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from pgvector import HalfVector
from pgvector.psycopg import register_vector
from psycopg import sql

import lateinteract_pg as lip
from lateinteract_pg import limits, migrate, sql_functions
from lateinteract_pg.migrate import HEAD
from tests.helpers import DIM, drop_schema, unit_docs

SNAPSHOT_COMMAND = sql_functions.SNAPSHOT_COMMAND.format(revision=HEAD)
# every revision, oldest first: alembic's ids are four digits
REVISIONS = sorted(path.name[:4] for path in (migrate.MIGRATIONS_DIR / "versions").glob("*.py"))


@pytest.fixture
def schemas(pg_dsn: str) -> Iterator[list[str]]:
    """Fresh schema names, dropped afterwards."""
    names = [f"lip_fn_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    try:
        yield names
    finally:
        for name in names:
            drop_schema(pg_dsn, name)


def functions(dsn: str, schema: str) -> dict[tuple[str, str], tuple[str, str | None]]:
    """Each function of ``schema`` by (name, arguments): its definition and comment, the
    schema's name replaced by SCHEMA."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT p.proname, pg_get_function_identity_arguments(p.oid), "
            "pg_get_functiondef(p.oid), obj_description(p.oid, 'pg_proc') "
            "FROM pg_proc AS p WHERE p.pronamespace = %s::regnamespace",
            (sql.Identifier(schema).as_string(conn),),
        ).fetchall()
    return {
        (name, arguments): (definition.replace(schema, "SCHEMA"), comment)
        for name, arguments, definition, comment in rows
    }


# --- sources and snapshots, without a server -----------------------------------------------


def test_head_snapshots_are_the_sources() -> None:
    stale = sql_functions.stale()
    sources = ", ".join(f"sql/functions/{name}.sql" for name in stale)
    assert not stale, f"{sources}: not as snapshotted at revision {HEAD}: run `{SNAPSHOT_COMMAND}`"


def test_one_source_per_function() -> None:
    """Each source defines its own name only (every overload), with a comment on each, and
    no two sources define the same name."""
    for name in sql_functions.source_names():
        text = (sql_functions.SOURCES_DIR / f"{name}.sql").read_text()
        defined = sql_functions.signatures(text)
        assert defined and {found for found, _ in defined} == {name}, name
        assert text.count("CREATE OR REPLACE FUNCTION") == len(defined), name
        assert text.count("COMMENT ON FUNCTION") == len(defined), name
        assert "{" + "schema}." + name in text, name


def test_snapshots_name_their_own_function_only() -> None:
    for revision in sql_functions.revisions():
        for path in (sql_functions.SNAPSHOTS_DIR / revision).glob("*.sql"):
            defined = {name for name, _ in sql_functions.signatures(path.read_text())}
            assert defined <= {path.stem}, path


def test_snapshots_of_released_revisions_are_frozen() -> None:
    """SHA256SUMS records every snapshot and step file; those of revisions before the head
    may never change (a fix is a new revision)."""
    recorded = sql_functions.recorded_sums()
    files = sql_functions.frozen_files()
    for path, revision in files.items():
        digest = sql_functions.file_sha256(path)
        if revision < HEAD:
            assert recorded.get(path) == digest, (
                f"migrations/{path} belongs to the released revision {revision}: it is frozen "
                f"(undo the change, and make a new revision instead)"
            )
        else:
            assert recorded.get(path) == digest, f"run `{SNAPSHOT_COMMAND}`"
    gone = sorted(set(recorded) - set(files))
    assert not gone, f"frozen files deleted: {gone}"


def test_revisions_and_head() -> None:
    assert REVISIONS[-1] == HEAD
    assert set(sql_functions.revisions()) <= set(REVISIONS)
    # the DDL of every revision lives under migrations/, sql/ holds hand-edited sources only
    assert sorted(p.name for p in migrate.SQL_DIR.glob("*.sql")) == ["grant_read_only.sql"]


def test_render_source_fills_the_shared_constants() -> None:
    text = "k <= {MAX_K}, ef <= {MAX_EF_SEARCH}; '{{0,8}}', {schema}.f, {search_path}"
    assert sql_functions.render_source(text) == (
        f"k <= {limits.MAX_K}, ef <= {limits.MAX_EF_SEARCH}; '{{{{0,8}}}}', {{schema}}.f, "
        "{search_path}"
    )
    with pytest.raises(ValueError, match="MAX_KAY"):
        sql_functions.render_source("{MAX_KAY}")


def test_signatures_read_the_argument_types() -> None:
    text = (sql_functions.SOURCES_DIR / "search.sql").read_text()
    assert sql_functions.signatures(text) == [
        ("search", ("text", "halfvec[]", "integer", "integer", "integer", "integer", "boolean",
                    "jsonpath", "jsonb", "integer")),
    ]  # fmt: skip
    text = (sql_functions.SOURCES_DIR / "query_collection.sql").read_text()
    assert sql_functions.signatures(text) == [("query_collection", ("text", "halfvec[]"))]


@pytest.fixture
def scratch_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of sql/functions and migrations/ that the snapshot command may change."""
    sources = tmp_path / "sql" / "functions"
    shutil.copytree(sql_functions.SOURCES_DIR, sources)
    migrations = tmp_path / "migrations"
    for part in ("functions", "steps"):
        shutil.copytree(migrate.MIGRATIONS_DIR / part, migrations / part)
    shutil.copy(sql_functions.SUMS_FILE, migrations / "SHA256SUMS")
    monkeypatch.setattr(sql_functions, "SOURCES_DIR", sources)
    monkeypatch.setattr(sql_functions, "MIGRATIONS_DIR", migrations)
    monkeypatch.setattr(sql_functions, "SNAPSHOTS_DIR", migrations / "functions")
    monkeypatch.setattr(sql_functions, "STEPS_DIR", migrations / "steps")
    monkeypatch.setattr(sql_functions, "SUMS_FILE", migrations / "SHA256SUMS")
    return tmp_path


def test_snapshot_command(scratch_tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sources, snapshots = sql_functions.SOURCES_DIR, sql_functions.SNAPSHOTS_DIR
    assert sql_functions.main(["check"]) == 0
    # an edit of a function unchanged since 0002 is snapshotted into the head revision
    edited = sources / "query_collection.sql"
    edited.write_text(edited.read_text().replace("'lateinteract: checks", "'lateinteract: tests"))
    assert sql_functions.main(["check"]) == 1
    assert f"run: {SNAPSHOT_COMMAND}" in capsys.readouterr().out
    assert sql_functions.main(["snapshot", HEAD]) == 0
    assert (snapshots / HEAD / "query_collection.sql").read_text() == edited.read_text()
    assert sql_functions.main(["check"]) == 0
    assert sql_functions.recorded_sums()[f"functions/{HEAD}/query_collection.sql"] == (
        sql_functions.file_sha256(f"functions/{HEAD}/query_collection.sql")
    )
    # undone: the head revision no longer carries it
    edited.write_text((snapshots / "0002" / "query_collection.sql").read_text())
    sql_functions.main(["snapshot", HEAD])
    assert not (snapshots / HEAD / "query_collection.sql").exists()
    assert f"functions/{HEAD}/query_collection.sql" not in sql_functions.recorded_sums()
    # a source removed: the head revision drops the function
    (sources / "passes.sql").unlink()
    sql_functions.main(["snapshot", HEAD])
    assert (snapshots / HEAD / "passes.sql").read_text() == sql_functions.DROPPED
    assert sql_functions.main(["check"]) == 0
    # released revisions take no new snapshots
    with pytest.raises(ValueError, match="frozen"):
        sql_functions.write_snapshots(sql_functions.revisions()[0])


def test_a_changed_past_snapshot_is_caught(scratch_tree: Path) -> None:
    past = sql_functions.SNAPSHOTS_DIR / "0005" / "passes.sql"
    past.write_text(past.read_text() + "\n")
    sql_functions.write_snapshots(HEAD)  # the command keeps the recorded sum
    with pytest.raises(AssertionError, match="frozen"):
        test_snapshots_of_released_revisions_are_frozen()


# --- the migrations on a server -------------------------------------------------------------


def test_upgrade_from_0001_equals_a_fresh_install(pg_dsn: str, schemas: list[str]) -> None:
    stepwise, fresh = schemas
    assert migrate.upgrade(pg_dsn, stepwise, REVISIONS[0]) == REVISIONS[0]
    assert functions(pg_dsn, stepwise) == {}
    assert migrate.upgrade(pg_dsn, stepwise) == HEAD
    assert migrate.upgrade(pg_dsn, fresh) == HEAD
    installed = functions(pg_dsn, stepwise)
    assert installed == functions(pg_dsn, fresh)
    # every function at head comes from a source, and every source is installed
    assert {name for name, _ in installed} == set(sql_functions.source_names())
    assert all(comment for _, comment in installed.values())


def _search(dsn: str, schema: str, query: np.ndarray) -> list[str]:
    with psycopg.connect(dsn) as conn:
        register_vector(conn)
        rows = conn.execute(
            sql.SQL("SELECT id FROM {}('kept', %s, 3)").format(sql.Identifier(schema, "search")),
            ([HalfVector(v) for v in query],),
        ).fetchall()
    return [row[0] for row in rows]


def test_downgrade_to_each_revision_and_back(pg_dsn: str, schemas: list[str]) -> None:
    """From head down to each revision (a collection of a few documents kept throughout):
    the functions are that revision's, as a fresh install of it has them; up again, head's."""
    schema, reference = schemas
    docs = unit_docs(5, seed=31)
    with lip.connect(pg_dsn, schema=schema) as store:
        store.collection("kept", dim=DIM, storage="unpooled").add_embeddings(
            [f"d{i}" for i in range(5)], docs
        )
    head = functions(pg_dsn, schema)
    expected = _search(pg_dsn, schema, docs[2][:2])
    assert expected[0] == "d2"
    for revision in reversed(REVISIONS[:-1]):
        assert migrate.upgrade(pg_dsn, schema, revision) == revision
        drop_schema(pg_dsn, reference)
        assert migrate.upgrade(pg_dsn, reference, revision) == revision
        assert functions(pg_dsn, schema) == functions(pg_dsn, reference), revision
        snapshotted = {
            path.stem
            for carrier in sql_functions.revisions()
            if carrier <= revision
            for path in (sql_functions.SNAPSHOTS_DIR / carrier).glob("*.sql")
        }
        assert {name for name, _ in functions(pg_dsn, schema)} == {
            name
            for name in snapshotted
            if sql_functions.snapshot_at(revision, name) != sql_functions.DROPPED
        }, revision
        assert migrate.upgrade(pg_dsn, schema) == HEAD
        assert functions(pg_dsn, schema) == head, revision
        assert _search(pg_dsn, schema, docs[2][:2]) == expected, revision


def test_install_function_replaces_changed_signatures(pg_dsn: str, schemas: list[str]) -> None:
    """A snapshot that renames a parameter (which CREATE OR REPLACE refuses) or changes the
    argument types leaves exactly the overloads it defines; an empty one drops them all."""
    schema = schemas[0]
    create = (
        "CREATE OR REPLACE FUNCTION {schema}.toy({parameters}) RETURNS integer\n"
        "LANGUAGE sql IMMUTABLE AS $body$ SELECT 1 $body$;\n"
    )
    versions = [
        create.replace("{parameters}", "a integer") + create.replace("{parameters}", "a text"),
        create.replace("{parameters}", "b integer"),  # renamed
        create.replace("{parameters}", "b bigint, c integer DEFAULT NULL"),
        "",
    ]
    expected: list[set[str]] = [
        {"a integer", "a text"},
        {"b integer"},
        {"b bigint, c integer"},
        set(),
    ]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    for text, arguments in zip(versions, expected):
        with psycopg.connect(pg_dsn) as conn:
            conn.execute("SELECT 1")  # inside a transaction, as in a migration
            sql_functions.install_function(conn, schema, "toy", text)
        assert {args for _, args in functions(pg_dsn, schema)} == arguments


# --- the formulas Python and SQL share ------------------------------------------------------


@pytest.fixture
def installed(pg_dsn: str, schemas: list[str]) -> Iterator[psycopg.Connection[Any]]:
    """A connection whose search_path is a schema at head."""
    migrate.upgrade(pg_dsn, schemas[0])
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schemas[0])))
        yield conn


def test_search_knobs_are_default_knobs(installed: psycopg.Connection[Any]) -> None:
    ks = sorted({*range(1, 120), 133, 134, 499, 500, 1000, 4999, 5000, 5001, 99_999, limits.MAX_K})
    rows = installed.execute(
        "SELECT k, n.per_token, n.ef, n.depth "
        "FROM unnest(%s::integer[]) AS k CROSS JOIN LATERAL search_knobs(k) AS n ORDER BY k",
        (ks,),
    ).fetchall()
    assert rows == [(k, *limits.default_knobs(k)) for k in ks]
    # the candidate documents grow with the query's vectors, as in Python
    grid = [(k, m) for k in (1, 10, 20, 21, 500) for m in (1, 16, 17, 32, 33, 300, 10_000)]
    rows = installed.execute(
        "SELECT g.k, g.m, n.per_token, n.ef, n.depth "
        "FROM unnest(%s::integer[], %s::integer[]) AS g(k, m) "
        "CROSS JOIN LATERAL search_knobs(g.k, NULL, NULL, NULL, g.m) AS n ORDER BY g.k, g.m",
        ([k for k, _ in grid], [m for _, m in grid]),
    ).fetchall()
    assert rows == [(k, m, *limits.default_knobs(k, m)) for k, m in grid]
    assert limits.default_knobs(10, 32)[2] > limits.default_knobs(10, 16)[2]
    # given knobs are kept; ef_search is raised to candidates_per_token
    row = installed.execute("SELECT * FROM search_knobs(10, 300, 200, 50)").fetchone()
    assert row == (300, 300, 50)


def test_scan_budget_is_the_python_budget(installed: psycopg.Connection[Any]) -> None:
    grid = [
        (ef, passing, total)
        for ef in (1, 40, 150, 333, limits.MAX_EF_SEARCH)
        for passing in (0, 1, 7, 500, 12_345, 10**6, 3 * 10**9)
        for total in (0, 1, 500, 99_999, 10**6, 3 * 10**9)
    ]
    rows = installed.execute(
        "SELECT scan_budget(e, p, t) FROM unnest(%s::integer[], %s::bigint[], %s::bigint[]) "
        "WITH ORDINALITY AS g(e, p, t, i) ORDER BY i",
        [list(column) for column in zip(*grid)],
    ).fetchall()
    assert [row[0] for row in rows] == [limits.scan_budget(*inputs) for inputs in grid]


def test_dense_ef_search_is_the_python_one(installed: psycopg.Connection[Any]) -> None:
    ks = [1, 2, 31, 32, 33, 100, 499, 500, 501, 5000, limits.MAX_K]
    rows = installed.execute(
        "SELECT dense_ef_search(k) FROM unnest(%s::integer[]) WITH ORDINALITY AS g(k, i) "
        "ORDER BY i",
        (ks,),
    ).fetchall()
    assert [row[0] for row in rows] == [limits.dense_ef_search(k) for k in ks]
