"""The load test: concurrent searchers and writers sharing a connection pool for a bounded
time, then a check that every acknowledged write is in the database, whole.

Searchers alternate between the Python API (``search_embeddings``) and the SQL function
``search()``; writers add new documents, replace and delete their own, one transaction
each. Every operation borrows a connection from one ``psycopg_pool`` pool for its duration,
as a web application's request handlers do, so the latencies include waiting for one.
"""

from __future__ import annotations

import json
import logging
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pgvector import HalfVector
from psycopg import sql
from psycopg_pool import ConnectionPool

from ..errors import InvalidInput
from ..pool import open_pool, pooled_store
from ..pooling import pooled_length
from ..store import Store, connect
from .config import BENCH_SCHEMA, BenchConfig
from .datasets import load_beir
from .encoding import encode_collection
from .ingest import ingest
from .metrics import percentile

__all__ = ["LoadConfig", "load_failures", "load_markdown", "load_test", "run_load"]

log = logging.getLogger(__name__)

WRITE_KINDS = ["add", "replace", "delete"]
WRITE_SHARES = [0.6, 0.25, 0.15]
ID_PREFIX = "load:"  # the writers' documents, removed after the run
READBACK_SAMPLE = 20  # written documents searched for afterwards
READBACK_K = 100  # ... among this many hits: other writes may have copied the same matrix


@dataclass(frozen=True)
class LoadConfig:
    """Who runs and for how long."""

    searchers: int = 8
    writers: int = 2
    seconds: float = 60.0
    pool_size: int = 4
    k: int = 10
    docs_per_write: int = 2
    statement_timeout: float | None = 30.0
    seed: int = 0


@dataclass
class _Worker:
    """What one client did: latencies by operation, errors, acknowledged writes."""

    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    first_error: str | None = None
    expected: dict[str, tuple[int, int] | None] = field(default_factory=dict)  # id -> state
    uncertain: set[str] = field(default_factory=set)  # ids of writes that failed

    def timed(self, operation: str, run: Callable[[], Any]) -> bool:
        started = time.perf_counter()
        try:
            run()
        except Exception as exc:  # counted and reported: the run must show zero
            self.errors[f"{operation}: {type(exc).__name__}"] += 1
            self.first_error = self.first_error or f"{operation}: {exc!r}"
            log.warning("load: %s failed: %r", operation, exc)
            return False
        self.latencies_ms.setdefault(operation, []).append((time.perf_counter() - started) * 1000)
        return True


def run_load(
    dsn: str,
    schema: str,
    collection: str,
    queries: Sequence[np.ndarray],
    documents: Sequence[np.ndarray],
    config: LoadConfig = LoadConfig(),
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the load on ``collection`` (existing, with its dim); writers copy matrices of
    ``documents`` (real token vectors) into documents of their own. Returns the report."""
    if config.searchers < 0 or config.writers < 0 or config.searchers + config.writers == 0:
        raise InvalidInput("the load needs at least one searcher or writer")
    pool = open_pool(
        dsn,
        schema=schema,
        min_size=config.pool_size,
        max_size=config.pool_size,
        statement_timeout=config.statement_timeout,
    )
    try:
        with pooled_store(pool, schema) as store:
            _remove_written(store, collection)  # a previous run's, if it was interrupted
            before = len(store.collection(collection, create=False))
        workers = [_Worker() for _ in range(config.searchers + config.writers)]
        deadline = time.monotonic() + config.seconds
        threads = [
            threading.Thread(
                target=_search_loop,
                args=(pool, schema, collection, queries, config, i, deadline, workers[i]),
                name=f"searcher-{i}",
            )
            for i in range(config.searchers)
        ] + [
            threading.Thread(
                target=_write_loop,
                args=(pool, schema, collection, documents, config, w, deadline, workers[n]),
                name=f"writer-{w}",
            )
            for w, n in enumerate(range(config.searchers, len(workers)))
        ]
        echo(
            f"load: {config.searchers} searchers, {config.writers} writers, pool of "
            f"{config.pool_size} connections, {config.seconds:g} s on {collection!r} "
            f"({before} documents) ..."
        )
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        pool_stats = pool.get_stats()
        with pooled_store(pool, schema) as store:
            check = _check_writes(store, collection, workers, documents, config.k)
            _remove_written(store, collection)
    finally:
        pool.close()
    return _report(config, collection, before, elapsed, workers, check, pool_stats)


def _search_loop(
    pool: ConnectionPool,
    schema: str,
    collection: str,
    queries: Sequence[np.ndarray],
    config: LoadConfig,
    i: int,
    deadline: float,
    worker: _Worker,
) -> None:
    """Searcher ``i``: the Python API when even, the SQL function when odd, until the
    deadline; each search on a connection borrowed for it."""
    api = "python" if i % 2 == 0 else "sql"
    n = i
    while time.monotonic() < deadline:
        query = queries[n % len(queries)]
        n += config.searchers

        def search(query: np.ndarray = query) -> None:
            with pooled_store(pool, schema) as store:
                if api == "python":
                    hits = store.collection(collection, create=False).search_embeddings(
                        query, k=config.k
                    )
                else:
                    hits = store.conn.execute(
                        sql.SQL("SELECT id FROM {}(%s, %s, %s)").format(store.table("search")),
                        (collection, [HalfVector(v) for v in query], config.k),
                    ).fetchall()
            if len(hits) != config.k:
                raise AssertionError(f"{len(hits)} hits, not {config.k}")

        worker.timed(f"search ({api})", search)


def _write_loop(
    pool: ConnectionPool,
    schema: str,
    collection: str,
    documents: Sequence[np.ndarray],
    config: LoadConfig,
    w: int,
    deadline: float,
    worker: _Worker,
) -> None:
    """Writer ``w``: adds, replaces and deletes its own documents, one transaction each."""
    rng = np.random.default_rng(config.seed + w)
    live: list[str] = []
    seq = 0
    while time.monotonic() < deadline:
        kind = str(rng.choice(WRITE_KINDS, p=WRITE_SHARES)) if live else "add"
        if kind in ("delete", "replace"):
            ids = [live[int(rng.integers(len(live)))]]
        else:
            ids = [f"{ID_PREFIX}w{w}:{seq + j}" for j in range(config.docs_per_write)]
            seq += config.docs_per_write
        sources = [int(rng.integers(len(documents))) for _ in ids]

        def write(kind: str = kind, ids: list[str] = ids, sources: list[int] = sources) -> None:
            with pooled_store(pool, schema) as store:
                coll = store.collection(collection, create=False)
                if kind == "delete":
                    coll.delete(ids)
                else:
                    coll.add_embeddings(
                        ids,
                        [documents[s] for s in sources],
                        metadata=[{"writer": w, "source": s} for s in sources],
                    )

        if worker.timed(f"write ({kind})", write):
            for doc_id, source in zip(ids, sources):
                state = None if kind == "delete" else (len(documents[source]), source)
                worker.expected[doc_id] = state
            if kind == "add":
                live.extend(ids)
            elif kind == "delete":
                live.remove(ids[0])
        else:
            worker.uncertain.update(ids)


def _check_writes(
    store: Store,
    collection: str,
    workers: list[_Worker],
    documents: Sequence[np.ndarray],
    k: int,
) -> dict[str, Any]:
    """Every acknowledged write as the database holds it: documents present or gone as
    written, with their token count, source and every token row; the counters right; a
    sample of written documents found by searching for their own vectors."""
    coll = store.collection(collection, create=False)
    expected = {
        doc_id: state
        for worker in workers
        for doc_id, state in worker.expected.items()
        if doc_id not in worker.uncertain
    }
    rows = store.conn.execute(
        sql.SQL(
            "SELECT d.external_id, d.n_tokens, (d.metadata ->> 'source')::int, "
            "(SELECT count(*) FROM {tokens} AS t WHERE t.doc_id = d.id) "
            "FROM {documents} AS d WHERE d.collection_id = %s AND d.external_id LIKE %s"
        ).format(documents=store.table("documents"), tokens=store.table(f"tokens_{coll.id}")),
        (coll.id, ID_PREFIX + "%"),
    ).fetchall()
    found = {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}
    lost = [i for i, s in expected.items() if s is not None and i not in found]
    resurrected = [i for i, s in expected.items() if s is None and i in found]
    pooled = coll.pool_factor > 1  # then a document keeps fewer vectors than written
    per_row = coll.spec.index_pool_factor  # its token rows pool its vectors by this

    def intact(doc_id: str, written: tuple[int, int]) -> bool:
        n_tokens, source, rows = found[doc_id]
        return (
            source == written[1]
            and rows == pooled_length(n_tokens, per_row)
            and (pooled or n_tokens == written[0])
        )

    wrong = [i for i, s in expected.items() if s is not None and i in found and not intact(i, s)]
    counters = store.conn.execute(
        sql.SQL(
            "SELECT (c.n_documents, c.n_tokens) = (SELECT count(*), coalesce(sum(n_tokens), 0) "
            "FROM {d} WHERE collection_id = c.id) FROM {c} AS c WHERE c.id = %s"
        ).format(d=store.table("documents"), c=store.table("collections")),
        (coll.id,),
    ).fetchone()
    alive = sorted(i for i, s in expected.items() if s is not None)
    sample = alive[:: max(1, len(alive) // READBACK_SAMPLE)][:READBACK_SAMPLE]
    readable = 0
    for doc_id in sample:
        source = documents[expected[doc_id][1]]  # type: ignore[index]
        hits = coll.search_embeddings(source[:32], k=max(k, READBACK_K))
        readable += any(h.id == doc_id for h in hits)
    return {
        "writes_acknowledged": sum(len(w.expected) for w in workers),
        "documents_checked": len(expected),
        "lost": len(lost),
        "deleted_but_present": len(resurrected),
        "wrong_content": len(wrong),
        "uncertain": sum(len(w.uncertain) for w in workers),
        "counters_match": bool(counters and counters[0]),
        "found_by_search": f"{readable}/{len(sample)}",
        "examples": (lost + resurrected + wrong)[:5],
    }


def _remove_written(store: Store, collection: str) -> None:
    coll = store.collection(collection, create=False)
    ids = [
        r[0]
        for r in store.conn.execute(
            sql.SQL(
                "SELECT external_id FROM {} WHERE collection_id = %s AND external_id LIKE %s"
            ).format(store.table("documents")),
            (coll.id, ID_PREFIX + "%"),
        ).fetchall()
    ]
    if ids:
        coll.delete(ids)


def _report(
    config: LoadConfig,
    collection: str,
    documents: int,
    elapsed: float,
    workers: list[_Worker],
    check: dict[str, Any],
    pool_stats: dict[str, int],
) -> dict[str, Any]:
    by_operation: dict[str, list[float]] = {}
    errors: Counter[str] = Counter()
    for worker in workers:
        errors.update(worker.errors)
        for operation, latencies in worker.latencies_ms.items():
            by_operation.setdefault(operation, []).extend(latencies)
    operations = {
        operation: {
            "count": len(latencies),
            "per_s": round(len(latencies) / elapsed, 2),
            "p50_ms": round(statistics.median(latencies), 1),
            "p99_ms": round(percentile(latencies, 99), 1),
        }
        for operation, latencies in sorted(by_operation.items())
    }
    searches = sum(v["count"] for o, v in operations.items() if o.startswith("search"))
    writes = sum(v["count"] for o, v in operations.items() if o.startswith("write"))
    return {
        "collection": collection,
        "documents": documents,
        "config": vars(config),
        "seconds": round(elapsed, 1),
        "searches": searches,
        "writes": writes,
        "searches_per_s": round(searches / elapsed, 2),
        "writes_per_s": round(writes / elapsed, 2),
        "operations": operations,
        "errors": sum(errors.values()),
        "errors_by_kind": dict(errors),
        "first_error": next((w.first_error for w in workers if w.first_error), None),
        "writes_check": check,
        "pool": {
            "borrows": pool_stats.get("requests_num", 0),
            "mean_wait_ms": round(
                pool_stats.get("requests_wait_ms", 0) / max(1, pool_stats.get("requests_num", 0)), 1
            ),
            "connections_lost": pool_stats.get("connections_lost", 0),
        },
    }


def load_test(
    data_dir: Path,
    config: LoadConfig,
    *,
    dsn: str | None = None,
    limit_docs: int | None = None,
    model: str = "minilm",
    out: Path = Path("bench-results"),
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The load test on a BEIR-layout collection: its documents (encoded once, cached as
    the benchmark caches them) in the collection ``load-<name>`` of the benchmark's schema,
    its queries as the searchers' queries. Writes ``load-<name>.json`` and ``.md`` to
    ``out``."""
    data = load_beir(data_dir, limit_docs=limit_docs)
    bench = BenchConfig(data_dir=data_dir, dsn=dsn, model=model, limit_docs=limit_docs)
    enc = encode_collection(data, bench, echo)
    name = f"load-{data.name}" + (f"-{limit_docs}" if limit_docs else "")
    with connect(dsn, schema=BENCH_SCHEMA) as store:
        ingest(store, name, enc, echo, keep=True)
        resolved = store.dsn
    report = run_load(resolved, BENCH_SCHEMA, name, enc.queries, enc.documents(), config, echo)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"{name}.md").write_text(load_markdown(report))
    return report


def load_failures(report: dict[str, Any]) -> list[str]:
    """What the run got wrong: errors, lost or wrong writes, counters, unreadable documents."""
    check = report["writes_check"]
    found, sample = (int(n) for n in check["found_by_search"].split("/"))
    problems = {
        f"{report['errors']} errors (first: {report['first_error']})": report["errors"] > 0,
        f"{check['lost']} acknowledged writes lost": check["lost"] > 0,
        f"{check['deleted_but_present']} deleted documents present": check["deleted_but_present"],
        f"{check['wrong_content']} documents with wrong content": check["wrong_content"] > 0,
        "the collection's counters disagree with its rows": not check["counters_match"],
        f"only {found} of {sample} written documents found by search": found < sample,
    }
    return [problem for problem, failed in problems.items() if failed]


def load_markdown(report: dict[str, Any]) -> str:
    """The report as the table docs/reliability.md quotes."""
    c, check = report["config"], report["writes_check"]
    lines = [
        f"Load on `{report['collection']}` ({report['documents']} documents): "
        f"{c['searchers']} searchers, {c['writers']} writers, a pool of {c['pool_size']} "
        f"connections, {report['seconds']} s.",
        "",
        "| operation | count | per s | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
    ]
    for operation, v in report["operations"].items():
        lines.append(
            f"| {operation} | {v['count']} | {v['per_s']} | {v['p50_ms']} | {v['p99_ms']} |"
        )
    lines += [
        "",
        f"Latencies include the wait for a pooled connection: {report['pool']['mean_wait_ms']} "
        f"ms on average over {report['pool']['borrows']} borrows.",
        "",
        f"Errors: {report['errors']}. Writes acknowledged: {check['writes_acknowledged']}; "
        f"documents checked: {check['documents_checked']}; lost: {check['lost']}; deleted but "
        f"present: {check['deleted_but_present']}; wrong content: {check['wrong_content']}; "
        f"counters match: {check['counters_match']}; written documents found by searching "
        f"for their own vectors: {check['found_by_search']}.",
    ]
    return "\n".join(lines) + "\n"
