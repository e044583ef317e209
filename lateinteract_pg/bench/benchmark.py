"""``lateinteract-pg bench``: quality, speed and cost of our search and of its peers, in one run.

One run encodes a BEIR-layout collection (cached on disk by content hash), ingests it, and
measures on the same token vectors, on the same machine:

- exhaustive exact MaxSim in numpy: the ground truth (recall@10 of every other system is
  measured against it) and the brute-force baseline every latency is divided by;
- our search at default settings (Python path) and the SQL function ``search()``;
- Voyager's in-memory per-token HNSW, MUVERA's fixed-dimensional encodings with exact
  re-scoring, and the SQL-only approach of pgvector-python's ColBERT example (see
  :mod:`lateinteract_pg.bench.peers`);
- quality against the qrels (nDCG@10, MRR@10, recall@100) for every system;
- latency p50/p95/p99 without and with query encoding, QPS with 1, 2 and 4 clients;
- cost: COPY rows/s, HNSW build seconds, bytes per token, server memory;
- with ``sweep``, the recall-latency curve of our knobs and of the peers' k', on the first
  ``sweep_queries`` queries (ratios against numpy's p50 over the same queries);
- with the optional flags, the measurements of :mod:`lateinteract_pg.bench.experiments`.

Results go to NAME.json (every figure), NAME.md (the table) and NAME-recall-latency.png.
Times are medians over the queries, taken warm (an untimed pass over the first queries first);
quote ratios: the machine is shared and noisy.
"""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from pgvector import HalfVector
from psycopg import sql

from ..collection import Collection
from ..search import planner
from ..store import Store, connect
from .config import BENCH_SCHEMA, CLIENTS, BenchConfig
from .datasets import load_beir
from .encoding import Encoded, encode_collection, query_encoding_ms
from .experiments import (
    measure_cold,
    measure_filters,
    measure_hash_partitions,
    measure_hybrid,
    measure_storage_options,
    measure_tiers,
)
from .ingest import ingest, server_info, storage_bytes
from .metrics import percentile
from .peers import Exhaustive, PeerRun, measure_peers
from .qps import measure_qps
from .report import write_report
from .runs import Run, line, p50, search_ids, summary, timed

__all__ = ["run_bench"]

log = logging.getLogger(__name__)


def run_bench(
    config: BenchConfig, echo: Callable[[str], None] = print, encoded: Encoded | None = None
) -> dict[str, Any]:
    """Run the benchmark; writes NAME.json, NAME.md and NAME-recall-latency.png.

    ``encoded``: the collection's encodings when the caller holds them (the scaling run's
    prefixes of one encoded corpus); else they are read from the cache or encoded.
    """
    data = config.collection or load_beir(config.data_dir, limit_docs=config.limit_docs)
    enc = encoded if encoded is not None else encode_collection(data, config, echo)
    query_ids, queries, texts = enc.query_ids, enc.queries, enc.query_texts
    if config.max_queries is not None:
        query_ids, queries = query_ids[: config.max_queries], queries[: config.max_queries]
        texts = texts[: config.max_queries]
    qrels = [data.qrels.get(q, {}) for q in query_ids]
    name = data.name + (f"-{config.limit_docs}" if config.limit_docs else "")
    k, n = config.k, config.sweep_queries
    systems: list[dict[str, Any]] = []
    sweep: list[dict[str, Any]] = []
    with connect(
        config.dsn, schema=BENCH_SCHEMA, maintenance_work_mem=config.maintenance_work_mem
    ) as store:
        doc_texts = None
        if config.tiers or config.hybrid:  # the rerank tier and full text read the texts
            by_id = dict(data.corpus)
            doc_texts = [by_id[d] for d in enc.doc_ids]
        coll, ingested = ingest(store, f"bench-{name}", enc, echo, config.keep, doc_texts)
        n_tokens = len(enc.doc_tokens)
        storage = storage_bytes(coll, n_tokens)

        echo("exhaustive numpy MaxSim (ground truth) ...")
        exhaustive = Exhaustive(enc.doc_tokens, enc.doc_offsets, enc.doc_ids)
        brute = timed(partial(exhaustive.search, k=100), queries)
        brute.name = exhaustive.name
        truth = brute.rankings
        brute_p50 = p50(brute)
        del exhaustive

        echo("encoding each query alone (for latency with encoding) ...")
        encode_ms = query_encoding_ms(config, texts)

        echo("our search at defaults ...")
        ours = _ours_at_defaults(coll, queries, k, warm=n)
        deep = None
        if config.recall_at_100:
            echo("  (recall@100 pass, untimed) ...")
            deep = [search_ids(coll, q, k=100) for q in queries]
        systems.append(summary(ours, truth, qrels, k, brute_p50, encode_ms, deep))
        echo(line(systems[-1]))

        echo("the SQL function search() at defaults ...")
        in_sql = _sql_function_at_defaults(store, coll, queries, k, ours)
        systems.append(summary(in_sql, truth, qrels, k, brute_p50, encode_ms))
        echo(line(systems[-1]))

        echo(f"QPS with {', '.join(map(str, CLIENTS))} clients ...")
        qps = measure_qps(config, coll.name, queries, k)
        for row in qps:
            echo(f"  {row['clients']} clients: {row['qps']} queries/s, p50 {row['p50_ms']} ms")

        if config.sweep:
            for knobs in config.sweep_settings:
                run = timed(partial(search_ids, coll, k=k, plan="index", **knobs), queries[:n])
                run.name, run.settings = "lateinteract_pg", dict(knobs)
                sweep.append(summary(run, truth[:n], qrels[:n], k, p50(brute, n)))
                echo("  sweep " + line(sweep[-1]))

        peers: dict[str, Any] = {}
        if config.peers:
            run_on = PeerRun(config, enc, queries, truth, qrels, brute, encode_ms, echo)
            peers = measure_peers(run_on, store, coll)
            systems.extend(peers.pop("systems"))
            sweep.extend(peers.pop("sweep"))
        first = (queries[:n], truth[:n], qrels[:n], brute.latencies_ms[:n])
        storage_options = []
        if config.storage_options:
            storage_options = measure_storage_options(
                config, store, name, enc, coll, storage, first, echo
            )
        tiers = []
        if config.tiers:
            tiers = measure_tiers(config, store, coll, storage, texts[:n], first, echo)
        filtered = []
        if config.filters:
            filtered = measure_filters(config, coll, enc, first, echo)
        hybrid = []
        if config.hybrid:
            hybrid = measure_hybrid(config, coll, queries, texts, truth, qrels, brute_p50, echo)
        partitioned = []
        if config.hash_partitions:
            partitioned = measure_hash_partitions(config, store, coll, first, echo)
        cold = measure_cold(store, coll, queries[:n], k) if config.cold else None
        server = server_info(store)
        if not config.keep:
            store.drop_collection(coll.name)

    # exact MaxSim ranks by definition what it is measured against: its row gives the
    # quality of exact MaxSim and the latency every ratio divides by
    brute_row = summary(
        Run(brute.name, {}, [t[:k] for t in truth], brute.latencies_ms), truth, qrels, k,
        brute_p50, encode_ms, truth,
    )  # fmt: skip
    systems.insert(0, brute_row)
    report: dict[str, Any] = {
        "name": name,
        "data_dir": str(config.data_dir),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "server": server,
        "encoder": enc.encoder,
        "documents": len(enc.doc_ids),
        "token_rows": n_tokens,
        "dim": int(enc.doc_tokens.shape[1]),
        "queries": len(queries),
        "query_tokens_mean": round(float(np.mean([len(q) for q in queries])), 1),
        "k": k,
        "ingest": ingested,
        "storage": storage,
        "encoding_ms": {f"p{p}": round(percentile(encode_ms, p), 2) for p in (50, 95, 99)},
        "systems": systems,
        "qps": qps,
        "sweep": sweep,
        "peers": peers,
        "storage_options": storage_options,
        "tiers": tiers,
        "filtered": filtered,
        "hybrid": hybrid,
        "hash_partitions": partitioned,
        "cold": cold,
    }
    echo(write_report(report, config.out))
    return report


def _ours_at_defaults(coll: Collection, queries: list[np.ndarray], k: int, warm: int) -> Run:
    """Our search at the default knobs, timed after an untimed pass over the first ``warm``
    queries, with the plan each query took."""
    # The peers hold everything in process memory, so we are timed with the index and token
    # pages in shared_buffers too (a collection measured after a larger one otherwise starts
    # from evicted pages).
    timed(partial(search_ids, coll, k=k), queries[:warm])
    plans: list[str] = []

    def search(q: np.ndarray) -> list[str]:
        ids = search_ids(coll, q, k=k)
        plans.append(coll.last_search.plan if coll.last_search else "?")
        return ids

    run = timed(search, queries)
    run.name = "lateinteract_pg (defaults)"
    run.settings = _default_settings(k, queries)
    run.extra = {"plans": {p: plans.count(p) for p in sorted(set(plans))}}
    return run


def _default_settings(k: int, queries: list[np.ndarray]) -> dict[str, Any]:
    """The default knobs of ``queries``' searches: a value, or its range where the number of
    query vectors sets it."""
    lengths = [len(q) for q in queries]
    low = vars(planner.default_knobs(k, min(lengths)))
    high = vars(planner.default_knobs(k, max(lengths)))
    return {name: low[name] if low[name] == high[name] else f"{low[name]}-{high[name]}"
            for name in low}  # fmt: skip


def _sql_function_at_defaults(
    store: Store, coll: Collection, queries: list[np.ndarray], k: int, ours: Run
) -> Run:
    """The SQL function ``search()`` at its defaults, and the share of queries it ranks
    exactly as the Python path (``ours``) did."""
    statement = sql.SQL("SELECT id FROM {}(%s, %s, %s)").format(store.table("search"))

    def search(q: np.ndarray) -> list[str]:
        params = (coll.name, [HalfVector(v) for v in q], k)
        return [r[0] for r in store.conn.execute(statement, params).fetchall()]

    run = timed(search, queries)
    run.name, run.settings = "lateinteract.search() in SQL (defaults)", ours.settings
    same = sum(a == b for a, b in zip(run.rankings, ours.rankings))
    run.extra = {"same_ranking_as_python": round(same / max(1, len(queries)), 4)}
    return run
