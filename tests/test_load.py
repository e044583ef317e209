"""The load test: searchers and writers through one connection pool, zero errors and zero
lost writes. A short run is part of the default suite; the full one is marked ``load``
(``pytest -m load``, or ``lateinteract-pg load``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import psycopg
import pytest
from click.testing import CliRunner

import lateinteract_pg as lip
from lateinteract_pg.bench.load import (
    ID_PREFIX,
    LoadConfig,
    _check_writes,
    _Worker,
    load_failures,
    run_load,
)
from lateinteract_pg.cli import cli
from tests.helpers import unit_docs

DIM = 16


def matrices(n: int, seed: int) -> list[np.ndarray]:
    return unit_docs(n, seed, DIM, lengths=(5, 40))


def test_pooled_stores_share_connections_and_reset_settings(pg_dsn: str, schema_name: str) -> None:
    with lip.connect(pg_dsn, schema=schema_name) as store:
        store.collection("pooled", dim=DIM).add_embeddings(["a", "b"], matrices(2, 0))
    with lip.open_pool(
        pg_dsn, schema=schema_name, min_size=2, max_size=2, statement_timeout=5
    ) as pool:
        pool.wait()
        with lip.pooled_store(pool, schema_name) as store:
            coll = store.collection("pooled", create=False)
            assert len(coll.search_embeddings(matrices(1, 1)[0], k=2)) == 2
            store.conn.execute("SET work_mem = '7MB'")
            store.conn.execute("CREATE TEMP TABLE leftover ()")
            store.conn.execute("SELECT set_config('role', current_user, false)")  # SET ROLE
            assert store.parallel == 1
        seen = set()
        for _ in range(4):  # every connection of the pool: reset, the timeout kept
            with lip.pooled_store(pool, schema_name) as store:
                seen.add(store.conn.info.backend_pid)
                assert store.conn.execute("SHOW work_mem").fetchone() != ("7MB",)
                assert store.conn.execute("SELECT to_regclass('pg_temp.leftover')").fetchone() == (
                    None,
                )
                assert store.conn.execute("SHOW role").fetchone() == ("none",)
                assert store.conn.execute("SHOW statement_timeout").fetchone() == ("5s",)
        assert len(seen) == 2  # the pool hands its connections round
        with lip.pooled_store(pool, schema_name) as store:
            returned = store.collection("pooled", create=False)
        with pytest.raises(lip.InvalidInput, match="closed"):  # its connection is lent again
            returned.get("a")
    with psycopg.connect(pg_dsn) as conn, pytest.raises(lip.InvalidInput, match="autocommit"):
        lip.Store.over(conn, schema_name)


def test_a_short_load_loses_no_write(pg_dsn: str, schema_name: str) -> None:
    documents = matrices(200, 2)
    with lip.connect(pg_dsn, schema=schema_name) as store:
        coll = store.collection("load", dim=DIM)
        coll.add_embeddings([f"d{i}" for i in range(len(documents))], documents)
    config = LoadConfig(searchers=3, writers=2, seconds=3, pool_size=3, k=5)
    report = run_load(
        pg_dsn, schema_name, "load", matrices(10, 3), documents, config, echo=lambda _: None
    )
    check = report["writes_check"]
    assert load_failures(report) == []
    assert report["errors"] == 0, report["first_error"]
    assert report["searches"] > 0 and report["writes"] > 0
    assert {"search (python)", "search (sql)"} <= set(report["operations"])
    assert check["lost"] == check["deleted_but_present"] == check["wrong_content"] == 0
    assert check["documents_checked"] > 0 and check["counters_match"]
    found, sample = map(int, check["found_by_search"].split("/"))
    assert found == sample > 0
    with lip.connect(pg_dsn, schema=schema_name) as store:  # the writers' documents removed
        coll = store.collection("load")
        assert len(coll) == len(documents) and coll.get(f"{ID_PREFIX}w0:0") is None


def test_the_write_check_finds_lost_resurrected_and_wrong_documents(
    pg_dsn: str, schema_name: str
) -> None:
    """The check the load test relies on sees each way a write can go wrong."""
    documents = matrices(4, 5)
    with lip.connect(pg_dsn, schema=schema_name) as store:
        coll = store.collection("checked", dim=DIM)
        coll.add_embeddings(["d0"], documents[:1])
        coll.add_embeddings(
            [f"{ID_PREFIX}kept", f"{ID_PREFIX}undead", f"{ID_PREFIX}swapped"],
            documents[1:],
            metadata=[{"source": 1}, {"source": 2}, {"source": 1}],
        )
        worker = _Worker()  # what the writers were told, against what the database holds
        worker.expected = {
            f"{ID_PREFIX}kept": (len(documents[1]), 1),
            f"{ID_PREFIX}lost": (len(documents[0]), 0),  # acknowledged, never stored
            f"{ID_PREFIX}undead": None,  # acknowledged as deleted, still there
            f"{ID_PREFIX}swapped": (len(documents[3]), 3),  # stored with another source
        }
        check = _check_writes(store, "checked", [worker], documents, k=5)
    assert check["documents_checked"] == 4 and check["counters_match"]
    assert check["lost"] == check["deleted_but_present"] == check["wrong_content"] == 1
    assert check["found_by_search"] == "2/3"  # the lost document is not found
    problems = load_failures({"errors": 0, "first_error": None, "writes_check": check})
    assert len(problems) == 4, problems
    assert load_failures(
        {
            "errors": 1,
            "first_error": "x",
            "writes_check": check
            | {"lost": 0, "deleted_but_present": 0, "wrong_content": 0, "found_by_search": "3/3"},
        }
    ) == ["1 errors (first: x)"]


@pytest.mark.load
def test_load_on_scifact(data_dir: Path, tmp_path: Path) -> None:
    """The figures of docs/reliability.md: 8 searchers and 2 writers on scifact for
    $LATEINTERACT_PG_LOAD_SECONDS (default 60) through a pool of 4 connections."""
    seconds = os.environ.get("LATEINTERACT_PG_LOAD_SECONDS", "60")
    result = CliRunner().invoke(
        cli,
        ["load", str(data_dir / "scifact"), "--seconds", seconds, "--out", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "load-scifact.json").read_text())
    assert report["errors"] == 0 and report["writes_check"]["lost"] == 0
    assert report["searches"] > 0 and report["writes"] > 0
