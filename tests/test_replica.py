"""A streaming replica of the embedded server (pg_basebackup, both on this machine's unix
sockets) serves searches while the primary ingests, and answers as the primary does once it
has replayed the primary's WAL."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from pgvector import HalfVector
from psycopg import sql

import lateinteract_pg as lip
from lateinteract_pg.cli import cli
from lateinteract_pg.embedded import ensure_replica, ensure_server, stop_server

DIM = 16


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[str, str]]:
    root = Path(tempfile.mkdtemp(prefix="lip-replica-"))
    try:
        primary = ensure_server(root / "primary")
        yield primary, ensure_replica(root / "replica", root / "primary")
    finally:
        stop_server(root / "replica")
        stop_server(root / "primary")
        shutil.rmtree(root, ignore_errors=True)


def test_replica_serves_searches_during_ingest_and_agrees_once_caught_up(
    servers: tuple[str, str],
) -> None:
    primary_dsn, replica_dsn = servers
    rng = np.random.default_rng(4)
    with lip.connect(primary_dsn) as primary:
        coll = primary.collection("replicated", dim=DIM)
        coll.add_embeddings([f"d{j}" for j in range(300)], [unit(rng, 8) for _ in range(300)])
        position = primary.wal_position()
        with lip.connect(replica_dsn, migrate_schema=False) as replica:
            replica.wait_for_replay(position)
            replayed = replica.conn.execute(
                "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (position,)
            ).fetchone()
            assert replayed == (True,)
            mirror = replica.collection("replicated", create=False)
            assert len(mirror) == 300
            errors: list[BaseException] = []

            def ingest() -> None:
                try:
                    with lip.connect(primary_dsn) as writer:
                        target = writer.collection("replicated")
                        for batch in range(10):
                            ids = [f"n{batch}-{j}" for j in range(30)]
                            target.add_embeddings(ids, [unit(rng, 8) for _ in ids])
                except BaseException as exc:
                    errors.append(exc)

            writer = threading.Thread(target=ingest)
            writer.start()
            searched = 0
            while writer.is_alive() or searched < 5:
                hits = mirror.search_embeddings(unit(rng, 4), k=10)
                assert len(hits) == 10
                searched += 1
            writer.join()
            assert not errors, errors
            caught_up = replica.wait_for_replay(primary.wal_position())
            print(f"{searched} searches during the ingest; caught up in {caught_up:.3f} s")
            assert len(mirror) == 600
            for _ in range(5):
                query = unit(rng, 4)
                for options in ({"plan": "index"}, {"exact": True}):
                    here = coll.search_embeddings(query, k=10, **options)
                    there = mirror.search_embeddings(query, k=10, **options)
                    assert [(h.id, h.score) for h in there] == [(h.id, h.score) for h in here]
                statement = sql.SQL("SELECT id, score FROM {}('replicated', %s, 10)")
                params = ([HalfVector(v) for v in query],)
                assert (
                    replica.conn.execute(
                        statement.format(replica.table("search")), params
                    ).fetchall()
                    == primary.conn.execute(
                        statement.format(primary.table("search")), params
                    ).fetchall()
                )
            with pytest.raises(lip.PermissionDenied, match="replica"):
                mirror.add_embeddings(["x"], [unit(rng, 3)])
            with pytest.raises(lip.ServerError, match="not a replica"):
                primary.wait_for_replay(position)


def test_replica_command_prints_the_replica_dsn(servers: tuple[str, str]) -> None:
    primary_dsn, replica_dsn = servers
    data_dir = replica_dsn.split("host=")[1].split("&")[0]
    primary_dir = primary_dsn.split("host=")[1].split("&")[0]
    result = CliRunner().invoke(cli, ["server", "replica", data_dir, "--primary", primary_dir])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == replica_dsn
