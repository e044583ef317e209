"""Live updates: documents replaced and deleted while searches run, seen whole or not at all."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner

import lateinteract_pg as lip
from lateinteract_pg.cli import cli

DIM = 16
N_DOCS = 60


def version_of(j: int, version: int) -> np.ndarray:
    """Document j's tokens in its version ``version``: a different matrix each time."""
    rng = np.random.default_rng(1000 * version + j)
    tokens = rng.standard_normal((int(rng.integers(3, 12)), DIM)).astype(np.float32)
    return tokens / np.linalg.norm(tokens, axis=1, keepdims=True)


def write(coll: lip.Collection, ids: list[int], version: int) -> None:
    coll.add_embeddings(
        [f"d{j}" for j in ids],
        [version_of(j, version) for j in ids],
        texts=[f"d{j} version {version}" for j in ids],
        metadata=[{"version": version} for _ in ids],
        rebuild_index=False,
    )


def check_hits(hits: list[lip.Hit], query: np.ndarray, expected: int) -> None:
    """Each hit is one whole version of its document: its score, text and metadata agree."""
    assert len(hits) == expected
    assert len({h.id for h in hits}) == len(hits), "a document seen twice"
    for hit in hits:
        version = hit.metadata["version"]
        assert hit.text == f"{hit.id} version {version}"
        stored = version_of(int(hit.id[1:]), version).astype(np.float16)
        assert hit.score == pytest.approx(lip.maxsim(query, stored), abs=2e-3)


def test_searches_during_replacements_see_whole_documents(
    pg_dsn: str, schema_name: str, store: lip.Store
) -> None:
    coll = store.collection("live", dim=DIM)
    write(coll, list(range(N_DOCS)), 0)
    stop = threading.Event()
    writes = [0]
    errors: list[BaseException] = []
    searches = {"index": 0, "exhaustive": 0, "sql": 0, "filtered": 0}

    def writer() -> None:
        rng = np.random.default_rng(0)
        with lip.connect(pg_dsn, schema=schema_name) as own:
            live = own.collection("live")
            version = 0
            while not stop.is_set():
                version += 1
                write(live, sorted(rng.choice(N_DOCS, 8, replace=False).tolist()), version)
                writes[0] += 1

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            with lip.connect(pg_dsn, schema=schema_name, parallel=2) as own:
                live = own.collection("live")
                while not stop.is_set():
                    query = version_of(int(rng.integers(N_DOCS)), 9999)[:4]
                    for plan in ("index", "exhaustive"):
                        hits = live.search_embeddings(query, k=N_DOCS, plan=plan)
                        check_hits(hits, query, N_DOCS)  # every document, each once
                        searches[plan] += 1
                    hits = live.search_embeddings(
                        query, k=10, filter={"version": {"$gte": 1}}, plan="index"
                    )
                    assert all(h.metadata["version"] >= 1 for h in hits)
                    check_hits(hits, query, len(hits))
                    searches["filtered"] += 1
                    # The SQL function runs several statements: under READ COMMITTED each
                    # sees the newest commits, so a document replaced in between may be
                    # missing (never half there); in one REPEATABLE READ transaction, none is.
                    statement = "SELECT id, score, text, metadata FROM search('live', %s, %s)"
                    rows = own.conn.execute(statement, (array_of(query), N_DOCS)).fetchall()
                    check_hits([lip.Hit(*r) for r in rows], query, len(rows))
                    own.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    rows = own.conn.execute(statement, (array_of(query), N_DOCS)).fetchall()
                    own.conn.execute("COMMIT")
                    check_hits([lip.Hit(*r) for r in rows], query, N_DOCS)
                    searches["sql"] += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader, args=(seed,)) for seed in (1, 2)
    ]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    while not stop.is_set() and time.monotonic() - started < 60:  # 8 s, longer on a slow machine
        done = writes[0] >= 5 and min(searches.values()) >= 3
        if done and time.monotonic() - started >= 8:
            break
        time.sleep(0.2)
    stop.set()
    for thread in threads:
        thread.join(60)
    if errors:
        raise errors[0]
    assert writes[0] >= 5 and min(searches.values()) >= 3, (writes, searches)
    assert len(coll) == N_DOCS


def array_of(query: np.ndarray) -> str:
    from lateinteract_pg.cli import array_literal

    return array_literal(query)


def snapshot_holders(store: lip.Store) -> int:
    """Other sessions of the server holding a snapshot, which keeps rows from VACUUM."""
    row = store.conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_xmin IS NOT NULL "
        "AND pid <> pg_backend_pid()"
    ).fetchone()
    return int(row[0]) if row else 0


def test_compact_reclaims_replaced_documents_and_keeps_results(store: lip.Store) -> None:
    coll = store.collection("churn", dim=DIM)
    write(coll, list(range(N_DOCS)), 0)
    for version in range(1, 6):  # every document replaced five times
        write(coll, list(range(N_DOCS)), version)
    coll.delete([f"d{j}" for j in range(0, N_DOCS, 2)])
    query = version_of(3, 9999)[:4]
    before = coll.search_embeddings(query, k=10, exact=True)
    others_before = snapshot_holders(store)
    # the writes' statistics (dead rows) reach shared memory now, not a second later
    store.conn.execute("SELECT pg_stat_force_next_flush()")
    stats = coll.compact()
    assert stats.reindexed and stats.bytes_after["hnsw"] < stats.bytes_before["hnsw"]
    assert stats.bytes_after["tokens"] <= stats.bytes_before["tokens"]
    assert stats.dead_token_rows > 0  # five versions of every document were replaced
    dead = store.conn.execute(
        "SELECT n_dead_tup FROM pg_stat_all_tables WHERE relid = %s::regclass",
        (f'"{store.schema}"."tokens_{coll.id}"',),
    ).fetchone()
    # VACUUM removes every dead row no transaction can still see: all of them, unless another
    # session of the server holds an older snapshot (then fewer than before)
    assert dead is not None
    if others_before + snapshot_holders(store) == 0:
        assert dead[0] == 0
    else:
        assert dead[0] < stats.dead_token_rows
    assert coll.search_embeddings(query, k=10, exact=True) == before
    assert coll.search_embeddings(query, k=10, plan="index") == before
    check_hits(before, query, 10)
    result = CliRunner().invoke(
        cli, ["compact", "churn", "--no-reindex", "--dsn", store.dsn, "--schema", store.schema]
    )
    assert result.exit_code == 0, result.output
    assert "hnsw" in result.output and "dead token rows" in result.output
