"""Test servers: a real PostgreSQL with pgvector, never a mock.

Server order: ``$LATEINTERACT_PG_TEST_DSN``; else a ``pgvector/pgvector`` container through
testcontainers when a Docker engine answers; else the embedded PostgreSQL from the pip wheel,
in a fresh data directory that is removed afterwards.
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

import pytest

import lateinteract_pg as lip

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
PGVECTOR_IMAGE = os.environ.get("LATEINTERACT_PG_TEST_IMAGE", "pgvector/pgvector:pg17")


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
        _drop_schema(pg_dsn, schema_name)


def _drop_schema(dsn: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


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
