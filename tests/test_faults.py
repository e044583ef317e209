"""Faults: the server killed (SIGKILL) in the middle of an ingest and of searches.

A private embedded server is crashed and restarted here, so these tests never touch the
shared test server. Each checks what a crash may not break: every committed document is
intact with all its tokens, no half-written document is visible, the index answers, the
client got a clear error (never a hang), reads were retried and writes were not.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest

import lateinteract_pg as lip
from lateinteract_pg import embedded
from lateinteract_pg.maxsim import maxsim

psutil = pytest.importorskip("psutil")

DIM = 32
BATCH_DOCS = 100
HANG_S = 60  # a client that has not returned by then hangs
FAULTS_SURVIVED: list[str] = []  # one line per fault, printed by tests/conftest.py


@pytest.fixture(scope="module")
def server() -> Iterator[Path]:
    """The data directory of a private embedded server, removed afterwards."""
    data_dir = Path(tempfile.mkdtemp(prefix="lip-faults-")) / "pgdata"
    try:
        embedded.ensure_server(data_dir)
    except lip.ServerError as exc:
        shutil.rmtree(data_dir.parent, ignore_errors=True)
        pytest.skip(f"no embedded server: {exc}")
    try:
        yield data_dir
    finally:
        embedded.stop_server(data_dir)
        shutil.rmtree(data_dir.parent, ignore_errors=True)


@pytest.fixture
def dsn(server: Path) -> str:
    return embedded.ensure_server(server)  # started again if a test left it down


def crash(data_dir: Path) -> None:
    """SIGKILL the postmaster and every server process, as a power cut would."""
    status = embedded.server_status(data_dir)
    assert status is not None, "the server is not running"
    postmaster = psutil.Process(status["pid"])
    processes = [postmaster, *postmaster.children(recursive=True)]
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):  # a backend may have just ended
            process.send_signal(signal.SIGKILL)
    psutil.wait_procs(processes, timeout=10)


def tokens_of(j: int) -> np.ndarray:
    rng = np.random.default_rng(j)
    vectors = rng.standard_normal((int(rng.integers(20, 120)), DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def batch_ids(b: int) -> list[int]:
    return list(range(b * BATCH_DOCS, (b + 1) * BATCH_DOCS))


def add_batch(coll: lip.Collection, b: int) -> None:
    ids = batch_ids(b)
    coll.add_embeddings(
        [f"d{j}" for j in ids],
        [tokens_of(j) for j in ids],
        texts=[f"document {j}" for j in ids],
        rebuild_index=False,  # the HNSW graph takes every row: a long COPY to be killed in
    )


def wait_for_statement(dsn: str, pid: int, prefix: str, timeout: float = 30) -> None:
    """Wait until backend ``pid`` runs a statement starting with ``prefix``."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT state = 'active' AND query ILIKE %s FROM pg_stat_activity WHERE pid = %s",
                (prefix + "%", pid),
            ).fetchone()
            if row and row[0]:
                return
            time.sleep(0.002)
    pytest.fail(f"backend {pid} never ran {prefix}")


def check_intact(dsn: str, schema: str, committed: list[int], in_flight: list[int]) -> str:
    """Every committed document whole; the one batch in flight all there or all gone; no
    token without its document, no document missing tokens; the counters right; the HNSW
    index valid and answering as exact MaxSim does."""
    with lip.connect(dsn, schema=schema) as store:
        coll = store.collection("crash", create=False)
        present = [j for j in in_flight if coll.get(f"d{j}") is not None]
        assert len(present) in (0, len(in_flight)), "half of a batch survived the crash"
        expected = committed + present
        for j in expected:
            doc = coll.get(f"d{j}", embeddings=True)
            assert doc is not None, f"committed document d{j} lost"
            assert doc.text == f"document {j}"
            assert doc.embeddings is not None
            np.testing.assert_allclose(doc.embeddings, tokens_of(j), atol=1e-3)
        conn = store.conn
        documents, tokens = store.table("documents"), store.table(f"tokens_{coll.id}")
        half = conn.execute(
            psycopg.sql.SQL(
                "SELECT count(*) FROM {d} AS d WHERE d.collection_id = %s "
                "AND least(d.n_tokens, greatest(1, d.n_tokens / %s)) "  # pooled_length
                "<> (SELECT count(*) FROM {t} AS t WHERE t.doc_id = d.id)"
            ).format(d=documents, t=tokens),
            (coll.id, coll.spec.index_pool_factor),
        ).fetchone()
        orphans = conn.execute(
            psycopg.sql.SQL(
                "SELECT count(*) FROM {t} AS t WHERE NOT EXISTS "
                "(SELECT FROM {d} AS d WHERE d.id = t.doc_id)"
            ).format(d=documents, t=tokens)
        ).fetchone()
        assert half == (0,) and orphans == (0,)
        n_tokens = sum(len(tokens_of(j)) for j in expected)
        counters = conn.execute(
            psycopg.sql.SQL("SELECT n_documents, n_tokens FROM {} WHERE id = %s").format(
                store.table("collections")
            ),
            (coll.id,),
        ).fetchone()
        assert counters == (len(expected), n_tokens)
        valid = conn.execute(
            "SELECT bool_and(indisvalid) FROM pg_index WHERE indrelid = %s::regclass",
            (tokens.as_string(conn),),
        ).fetchone()
        assert valid == (True,)
        # the index answers: our top 5 against exact MaxSim over what survived
        matrices = {j: tokens_of(j) for j in expected}
        recalls = []
        for q in range(10):
            query = tokens_of(10_000 + q)[:8]
            exact = sorted(matrices, key=lambda j: -maxsim(query, matrices[j]))[:5]
            found = [h.id for h in coll.search_embeddings(query, k=5)]
            recalls.append(len(set(found) & {f"d{j}" for j in exact}) / 5)
            assert coll.last_search is not None
        assert np.mean(recalls) >= 0.9
        return (
            f"{len(committed)} committed documents ({n_tokens} token rows) intact, 0 lost, "
            f"in-flight batch of {len(in_flight)} {'committed whole' if present else 'absent'}, "
            f"no half document, index valid (recall@5 {np.mean(recalls):.2f})"
        )


def test_crash_mid_ingest_keeps_every_committed_document(
    server: Path, dsn: str, schema_name: str
) -> None:
    store = lip.connect(dsn, schema=schema_name)
    coll = store.collection("crash", dim=DIM)
    committed: list[int] = []
    failure: list[BaseException] = []
    batch = [0]

    def ingest() -> None:
        try:
            for b in range(100):
                batch[0] = b
                add_batch(coll, b)
                committed.extend(batch_ids(b))
        except BaseException as exc:
            failure.append(exc)

    writer = threading.Thread(target=ingest)
    writer.start()
    while len(committed) < 3 * BATCH_DOCS and writer.is_alive():
        time.sleep(0.01)
    wait_for_statement(dsn, store.conn.info.backend_pid, "COPY")
    crash(server)
    writer.join(HANG_S)
    assert not writer.is_alive(), "the ingest hung after the server died"
    # read once the writer has stopped: the batch it was writing when the server died (a
    # batch that committed between a read before the crash and the crash would be counted
    # twice, as committed and as in flight)
    in_flight = batch_ids(batch[0])
    assert len(failure) == 1 and isinstance(failure[0], lip.ConnectionLost), failure
    assert "not retried" in str(failure[0])

    embedded.ensure_server(server)  # crash recovery replays the WAL
    outcome = check_intact(dsn, schema_name, committed, in_flight)
    FAULTS_SURVIVED.append(f"server SIGKILLed mid-ingest (in a COPY): {outcome}")
    # the same Store writes again: the next call opens a new connection
    add_batch(coll, 99)
    assert coll.get("d9900") is not None
    store.close()


def test_reads_are_retried_across_a_restart(
    server: Path, dsn: str, schema_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = lip.connect(dsn, schema=schema_name, retry_reads=60)
    coll = store.collection("crash", dim=DIM)
    add_batch(coll, 0)
    queries = [tokens_of(10_000 + q)[:8] for q in range(5)]
    before = [[h.id for h in coll.search_embeddings(q, k=5)] for q in queries]
    stop = threading.Event()
    errors: list[BaseException] = []
    results: list[tuple[int, list[str]]] = []

    def search() -> None:
        i = 0
        while not stop.is_set():
            try:
                hits = coll.search_embeddings(queries[i % 5], k=5)
                results.append((i % 5, [h.id for h in hits]))
            except BaseException as exc:
                errors.append(exc)
                return
            i += 1

    caplog.set_level(logging.WARNING, logger="lateinteract_pg")
    searcher = threading.Thread(target=search)
    searcher.start()
    time.sleep(0.3)
    crashed_after = len(results)
    crash(server)
    time.sleep(1.0)  # down for a second: reads wait
    embedded.ensure_server(server)
    time.sleep(0.5)
    stop.set()
    searcher.join(HANG_S)
    assert not searcher.is_alive()
    assert errors == []
    assert len(results) > crashed_after, "no search completed after the restart"
    assert all(ids == before[q] for q, ids in results), "a retried read answered differently"
    assert any("retrying" in r.getMessage() for r in caplog.records)
    FAULTS_SURVIVED.append(
        f"server SIGKILLed during searches, down 1 s, restarted: {len(results)} searches, 0 "
        "errors, the interrupted one retried, every answer the same as before the crash"
    )
    store.close()


def test_a_read_gives_up_with_a_clear_error_while_the_server_is_down(
    server: Path, dsn: str, schema_name: str
) -> None:
    store = lip.connect(dsn, schema=schema_name, retry_reads=1.0)
    coll = store.collection("crash", dim=DIM)
    add_batch(coll, 0)
    query = tokens_of(10_000)[:8]
    crash(server)
    started = time.monotonic()
    with pytest.raises(lip.ConnectionLost, match="retry_reads"):
        coll.search_embeddings(query, k=5)
    waited = time.monotonic() - started
    assert waited < 10
    with pytest.raises(lip.ConnectionLost):  # a write: at once, not retried
        add_batch(coll, 1)
    embedded.ensure_server(server)
    assert len(coll.search_embeddings(query, k=5)) == 5  # the same Store, a new connection
    FAULTS_SURVIVED.append(
        f"server down: a read raised ConnectionLost after {waited:.1f} s (retry_reads=1), a "
        "write at once; after the restart the same Store answered"
    )
    store.close()


def test_a_killed_backend_fails_its_write_and_the_server_recovers(
    server: Path, dsn: str, schema_name: str
) -> None:
    """One backend SIGKILLed (as the OOM killer does): PostgreSQL ends every session and
    recovers by itself. The write in flight fails and is not retried; a search on another
    Store during the recovery is retried and answers."""
    store = lip.connect(dsn, schema=schema_name)
    coll = store.collection("crash", dim=DIM)
    add_batch(coll, 0)
    reader = lip.connect(dsn, schema=schema_name, retry_reads=60)
    reading = reader.collection("crash")
    query = tokens_of(10_000)[:8]
    expected = [h.id for h in reading.search_embeddings(query, k=5)]
    failure: list[BaseException] = []

    def write() -> None:
        try:
            add_batch(coll, 1)
        except BaseException as exc:
            failure.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    wait_for_statement(dsn, store.conn.info.backend_pid, "COPY")
    os.kill(store.conn.info.backend_pid, signal.SIGKILL)
    writer.join(HANG_S)
    assert not writer.is_alive()
    assert len(failure) == 1 and isinstance(failure[0], lip.ConnectionLost), failure
    assert [h.id for h in reading.search_embeddings(query, k=5)] == expected  # retried
    assert coll.get("d100") is None, "the failed write was applied (retried?)"
    outcome = check_intact(dsn, schema_name, batch_ids(0), batch_ids(1))
    FAULTS_SURVIVED.append(
        "one backend SIGKILLed mid-COPY (the server recovered by itself): the write raised "
        f"ConnectionLost and was not retried, a search on another Store was; {outcome}"
    )
    store.close()
    reader.close()


def terminate(dsn: str, pid: int) -> None:
    """End one session as an administrator would (pg_terminate_backend)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_a_lost_reader_connection_is_replaced_and_nested_reads_retry_once(
    dsn: str, schema_name: str
) -> None:
    """A search's second connection (the probes split across two) lost: retried when
    allowed, else ConnectionLost and the next search opens a new one; a hybrid search (a
    read calling another read) is retried as a whole."""
    store = lip.connect(dsn, schema=schema_name, parallel=2, retry_reads=0)
    coll = store.collection("crash", dim=DIM)
    add_batch(coll, 0)
    query = tokens_of(10_000)[:8]
    expected = [h.id for h in coll.search_embeddings(query, k=5, plan="index")]
    hybrid = [h.id for h in coll.search_hybrid_embeddings(query, "document 7", k=5)]
    terminate(dsn, store._readers[0].info.backend_pid)
    with pytest.raises(lip.ConnectionLost, match="retry_reads"):
        coll.search_embeddings(query, k=5, plan="index")
    assert [h.id for h in coll.search_embeddings(query, k=5, plan="index")] == expected
    store.retry_reads = 30
    for search, answer in (
        (lambda: coll.search_embeddings(query, k=5, plan="index"), expected),
        (lambda: coll.search_hybrid_embeddings(query, "document 7", k=5), hybrid),
    ):
        terminate(dsn, store._readers[0].info.backend_pid)
        assert [h.id for h in search()] == answer
        terminate(dsn, store.conn.info.backend_pid)
        assert [h.id for h in search()] == answer
    FAULTS_SURVIVED.append(
        "a search's second connection terminated: with retry_reads=0 ConnectionLost, then the "
        "next search answered on a new one; with retries, searches and hybrid searches "
        "answered as before after either connection was terminated"
    )
    store.close()


def test_a_write_whose_connection_died_while_idle_begins_on_a_new_one(
    dsn: str, schema_name: str
) -> None:
    """The first write after the server dropped an idle connection: nothing of it had been
    sent when BEGIN failed, so it is begun on a new connection and succeeds."""
    store = lip.connect(dsn, schema=schema_name)
    coll = store.collection("crash", dim=DIM)
    add_batch(coll, 0)
    terminate(dsn, store.conn.info.backend_pid)
    assert coll.delete(["d1"]) == 1
    terminate(dsn, store.conn.info.backend_pid)
    with store.transaction():
        coll.delete(["d2"])
        coll.delete(["d3"])
    assert len(coll) == BATCH_DOCS - 3
    store.close()


def test_a_transaction_that_lost_its_connection_writes_nothing(dsn: str, schema_name: str) -> None:
    """A connection lost inside store.transaction(): ConnectionLost, none of the block's
    writes committed, none carried on over a new connection; the next call opens one."""
    store = lip.connect(dsn, schema=schema_name)
    coll = store.collection("crash", dim=DIM)
    add_batch(coll, 0)
    with pytest.raises(lip.ConnectionLost), store.transaction():
        coll.add_embeddings(["t1"], [tokens_of(5000)])
        terminate(dsn, store.conn.info.backend_pid)
        coll.add_embeddings(["t2"], [tokens_of(5001)])
    assert coll.get("t1") is None and coll.get("t2") is None
    with store.transaction():  # a new connection; both writes commit together
        coll.add_embeddings(["t1"], [tokens_of(5000)])
        coll.delete(["d0"])
    assert coll.get("t1") is not None and coll.get("d0") is None
    assert len(coll) == BATCH_DOCS
    FAULTS_SURVIVED.append(
        "connection terminated inside store.transaction() between two writes: ConnectionLost, "
        "neither write committed, the second never ran on a new connection"
    )
    store.close()
    with pytest.raises(lip.InvalidInput, match="closed"):
        coll.get("t1")


def test_statement_timeouts_cancel_reads_and_writes(dsn: str, schema_name: str) -> None:
    """A statement over the Store's statement_timeout is cancelled with StatementTimeout and
    nothing is written; a lock held elsewhere makes each wait past it."""
    with lip.connect(dsn, schema=schema_name) as owner:
        coll = owner.collection("timeouts", dim=DIM)
        add_batch(coll, 0)
        tables = [owner.table("documents"), owner.table(f"tokens_{coll.id}")]
    with lip.connect(dsn, schema=schema_name, statement_timeout=0.2) as store:
        assert store.conn.execute("SHOW statement_timeout").fetchone() == ("200ms",)
        coll = store.collection("timeouts")
        with psycopg.connect(dsn, autocommit=True) as blocker, blocker.transaction():
            blocker.execute(
                psycopg.sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                    psycopg.sql.SQL(", ").join(tables)
                )
            )
            with pytest.raises(lip.StatementTimeout, match="statement timeout"):
                coll.search_embeddings(tokens_of(10_000)[:8], k=5)
            with pytest.raises(lip.StatementTimeout, match="rolled back"):
                add_batch(coll, 1)
        assert len(coll) == BATCH_DOCS and coll.get("d100") is None
        assert len(coll.search_embeddings(tokens_of(10_000)[:8], k=5)) == 5
    with pytest.raises(lip.InvalidInput):
        lip.connect(dsn, schema=schema_name, statement_timeout=-1)
