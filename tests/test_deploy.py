"""Installing into existing deployments: roles without superuser, read-only grants, a
database with its own tables and alembic history, the doctor report, SQLAlchemy tables."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import numpy as np
import psycopg
import pytest
from click.testing import CliRunner
from pgvector import HalfVector
from psycopg import sql
from psycopg.conninfo import make_conninfo

import lateinteract_pg as lip
from lateinteract_pg import migrate
from lateinteract_pg.cli import cli
from tests.helpers import (
    DIM,
    assert_same_hits,
    drop_roles,
    drop_schema,
    grant_read_only,
    make_role,
    snapshot,
    unit_docs,
    user_of,
)


@pytest.fixture(scope="module")
def deployment(superuser_dsn: str, database: str) -> Iterator[dict[str, str]]:
    """An owner role (CREATE on the database, no superuser) that installs and writes, and a
    reader role granted read-only access with the CLI."""
    owner = make_role(superuser_dsn, database, "CREATE", "CONNECT")
    reader = make_role(superuser_dsn, database, "CONNECT")
    schema = "search"
    store = lip.connect(owner, schema=schema)
    # unpooled, as a deployment from before index pooling: one test downgrades it to 0004
    coll = store.collection("papers", dim=DIM, storage="unpooled")
    docs = unit_docs(300, seed=1)
    coll.add_embeddings([f"d{i}" for i in range(300)], docs, texts=[f"t{i}" for i in range(300)])
    store.close()
    grant_read_only(owner, reader, schema)
    yield {"owner": owner, "reader": reader, "schema": schema}
    drop_schema(database, schema)
    drop_roles(superuser_dsn, database, owner, reader)


def test_owner_without_superuser_installs_writes_and_searches(deployment: dict) -> None:
    with psycopg.connect(deployment["owner"]) as conn:
        assert conn.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone() == (False,)
    with lip.connect(deployment["owner"], schema=deployment["schema"]) as store:
        coll = store.collection("papers")
        q = unit_docs(1, seed=2)[0][:4]
        assert len(coll.search_embeddings(q, k=5)) == 5
        assert migrate.upgrade(deployment["owner"], deployment["schema"]) == migrate.HEAD


def test_reader_searches_from_python_and_sql(deployment: dict) -> None:
    q = unit_docs(1, seed=3)[0][:4]
    with lip.connect(deployment["owner"], schema=deployment["schema"]) as store:
        expected = [h.id for h in store.collection("papers").search_embeddings(q, k=5)]
    with lip.connect(deployment["reader"], schema=deployment["schema"]) as store:
        coll = store.collection("papers", create=False)
        assert [h.id for h in coll.search_embeddings(q, k=5)] == expected
        assert [h.id for h in coll.search_embeddings(q, k=5, plan="index")] == expected
        rows = store.conn.execute(
            sql.SQL("SELECT id FROM {}('papers', %s, 5)").format(store.table("search")),
            ([HalfVector(v) for v in q],),
        ).fetchall()
        assert [r[0] for r in rows] == expected


def test_reader_is_refused_every_write(deployment: dict) -> None:
    with lip.connect(deployment["reader"], schema=deployment["schema"]) as store:
        coll = store.collection("papers", create=False)
        before = snapshot(store)
        with pytest.raises(lip.PermissionDenied, match="permission denied"):
            coll.add_embeddings(["new"], unit_docs(1, seed=4))
        with pytest.raises(lip.PermissionDenied):
            coll.delete(["d1"])
        with pytest.raises(lip.PermissionDenied):
            store.collection("another", dim=DIM)
        with pytest.raises(lip.PermissionDenied):
            store.drop_collection("papers")
        for statement in (
            "DELETE FROM {}.documents",
            "UPDATE {}.collections SET dim = 1",
            "TRUNCATE {}.tokens",
            "CREATE TABLE {}.sneaky (x int)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                store.conn.execute(sql.SQL(statement).format(sql.Identifier(deployment["schema"])))
        assert snapshot(store) == before


def test_a_reader_granted_before_the_tenants_revision_still_searches_after_it(
    superuser_dsn: str, database: str, deployment: dict
) -> None:
    """Revision 0005's policies read tenant_roles for every reader, also for roles granted
    read access when the table did not exist."""
    owner, schema = deployment["owner"], deployment["schema"]
    late = make_role(superuser_dsn, database, "CONNECT")
    try:
        assert migrate.upgrade(owner, schema, "0004") == "0004"
        migrate.grant_read_only(owner, user_of(late), schema)
        assert migrate.upgrade(owner, schema) == migrate.HEAD
        q = unit_docs(1, seed=6)[0][:4]
        with lip.connect(late, schema=schema) as store:
            hits = store.collection("papers", create=False).search_embeddings(q, k=5)
            assert len(hits) == 5
            rows = store.conn.execute(
                sql.SQL("SELECT id, score FROM {}('papers', %s, 5)").format(store.table("search")),
                ([HalfVector(v) for v in q],),
            ).fetchall()
            assert_same_hits(rows, hits)
    finally:
        drop_roles(superuser_dsn, database, late)


def test_missing_extension_error_says_what_to_run(superuser_dsn: str) -> None:
    name = f"lip_noext_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    database = make_conninfo(superuser_dsn, dbname=name)
    role_dsn = make_role(superuser_dsn, database, "CREATE", "CONNECT")
    try:
        with pytest.raises(lip.ExtensionMissing, match="CREATE EXTENSION vector"):
            migrate.upgrade(role_dsn, "lateinteract")
        result = CliRunner().invoke(cli, ["doctor", "--dsn", role_dsn])
        assert result.exit_code == 1 and "CREATE EXTENSION vector" in result.output
    finally:
        with psycopg.connect(superuser_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(user_of(role_dsn))))


def test_migration_leaves_the_applications_tables_and_alembic_history(database: str) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.alembic_version (version_num varchar(32) PRIMARY KEY)")
        conn.execute("INSERT INTO public.alembic_version VALUES ('app_rev_42')")
        conn.execute("CREATE TABLE public.documents (id serial PRIMARY KEY, title text)")
        conn.execute("INSERT INTO public.documents (title) VALUES ('theirs')")
    try:
        for schema in ("lateinteract", "public_app_side"):
            assert migrate.upgrade(database, schema) == migrate.HEAD
        with psycopg.connect(database) as conn:
            assert conn.execute("SELECT * FROM public.alembic_version").fetchall() == [
                ("app_rev_42",)
            ]
            assert conn.execute("SELECT * FROM public.documents").fetchall() == [(1, "theirs")]
            ours = conn.execute("SELECT version_num FROM lateinteract.lateinteract_alembic_version")
            assert ours.fetchall() == [(migrate.HEAD,)]
    finally:
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("DROP TABLE public.alembic_version, public.documents")
            conn.execute("DROP SCHEMA lateinteract CASCADE")
            conn.execute("DROP SCHEMA public_app_side CASCADE")


def test_doctor_reports_versions_indexes_and_problems(store: lip.Store) -> None:
    coll = store.collection("papers", dim=DIM)
    coll.add_embeddings([f"d{i}" for i in range(10)], unit_docs(10))
    args = ["doctor", "--dsn", store.dsn, "--schema", store.schema]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["schema"]["revision"] == migrate.HEAD
    assert report["server"]["pgvector"] >= "0.7"
    assert report["settings"]["hnsw.ef_search"] is not None
    (papers,) = report["collections"]
    assert papers["tokens"] == sum(len(d) for d in unit_docs(10))
    assert papers["index"]["valid"] and papers["index"]["bytes"] > 0
    text = CliRunner().invoke(cli, args)
    assert text.exit_code == 0 and "pgvector" in text.output and text.output.endswith("ok\n")
    store.conn.execute(sql.SQL("DROP INDEX {}").format(store.table(f"tokens_{coll.id}_hnsw")))
    broken = CliRunner().invoke(cli, args)
    assert broken.exit_code == 1 and "no HNSW index" in broken.output


def test_doctor_warns_when_anyone_may_create_next_to_pgvector(database: str) -> None:
    migrate.upgrade(database, "doctor_check")
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
    try:
        result = CliRunner().invoke(cli, ["doctor", "--dsn", database, "--schema", "doctor_check"])
        assert result.exit_code == 0 and "REVOKE CREATE ON SCHEMA public" in result.output
    finally:
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            conn.execute("DROP SCHEMA doctor_check CASCADE")


def test_dsn_gives_the_connection_in_use(store: lip.Store) -> None:
    result = CliRunner().invoke(cli, ["dsn", "--dsn", store.dsn, "--show-password"])
    assert result.output.strip() == store.dsn
    with psycopg.connect(store.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_encode_query_prints_a_castable_array(store: lip.Store) -> None:
    from lateinteract_pg.cli import array_literal

    q = unit_docs(1, seed=8)[0][:3]
    (value,) = store.conn.execute("SELECT %s::halfvec[]", (array_literal(q),)).fetchone()
    np.testing.assert_allclose(np.stack([v.to_numpy() for v in value]), q, atol=1e-3)
