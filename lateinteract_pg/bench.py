"""``lateinteract-pg bench``: quality, speed and cost of our search and of its peers, in one run.

One run encodes a BEIR-layout collection (cached on disk by content hash), ingests it, and
measures on the same token vectors, on the same machine:

- exhaustive exact MaxSim in numpy: the ground truth (recall@10 of every other system is
  measured against it) and the brute-force baseline every latency is divided by;
- our search at default settings (Python path) and the SQL function ``search()``;
- Voyager's in-memory per-token HNSW and the SQL-only approach of pgvector-python's ColBERT
  example (see :mod:`lateinteract_pg.peers`);
- quality against the qrels (nDCG@10, MRR@10, recall@100) for every system;
- latency p50/p95/p99 without and with query encoding, QPS with 1, 2 and 4 clients;
- cost: COPY rows/s, HNSW build seconds, bytes per token, server memory;
- with ``sweep``, the recall-latency curve of our knobs and of the peers' k', on the first
  ``sweep_queries`` queries (ratios against numpy's p50 over the same queries).

Results go to NAME.json (every figure), NAME.md (the table) and NAME-recall-latency.png.
Times are medians over the queries, taken warm (an untimed pass over the first queries first);
quote ratios: the machine is shared and noisy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import statistics
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from pgvector import HalfVector
from psycopg import sql

from . import candidates, metrics, planner, rescore
from .datasets import BeirCollection, load_beir, merge_collections
from .maxsim import maxsim_packed, top_k
from .peers import Exhaustive, SqlOnlyPeer, VoyagerPeer
from .store import Store, connect
from .types import Document

__all__ = ["BenchConfig", "run_bench", "run_scaling"]

log = logging.getLogger(__name__)

BENCH_SCHEMA = "lateinteract_bench"
# ef_search is never below k': an index scan returns at most ef_search rows
DEFAULT_SWEEP: list[dict[str, int]] = [
    {"candidates_per_token": k, "ef_search": ef, "rerank_depth": n}
    for k, ef, n in [(40, 40, 50), (40, 40, 100), (64, 64, 100), (100, 100, 100),
                     (100, 100, 200), (100, 200, 200), (150, 150, 200), (150, 300, 200),
                     (150, 150, 300), (200, 200, 300)]
]  # fmt: skip
VOYAGER_PER_TOKEN = 100  # the DESIGN recipe: top-100 document tokens per query token
VOYAGER_SWEEP = [16, 32, 64]
# the binary candidate index: the defaults, then wider probes and deeper re-ranking, which
# Hamming distances over sign bits need for the same recall
BINARY_SWEEP: list[dict[str, int]] = [
    {},
    {"candidates_per_token": 300, "ef_search": 300, "rerank_depth": 200},
    {"candidates_per_token": 300, "ef_search": 300, "rerank_depth": 400},
    {"candidates_per_token": 500, "ef_search": 500, "rerank_depth": 400},
]
POOLED_SWEEP: list[dict[str, int]] = [
    {},
    {"candidates_per_token": 200, "ef_search": 200, "rerank_depth": 300},
]
# query-token clustering: cosine at which query tokens share a probe (on scifact's MiniLM
# queries, 23 tokens: 19.6, 17.5, 16.1 and 14.6 probes)
MERGE_THRESHOLDS = [0.9, 0.8, 0.7, 0.6]
SQL_ONLY_PER_TOKEN = 10
SQL_ONLY_SWEEP = [5, 20]
CLIENTS = (1, 2, 4)
# Filtered searches keep the documents whose metadata "bucket" (crc32 of the id mod 1000) is
# below the threshold: 50%, 5% and 0.5% of them.
SELECTIVITIES = (0.5, 0.05, 0.005)
BUCKETS = 1000
# hybrid fusions measured: (fusion, weight of late interaction)
FUSION_SETTINGS = [
    ("rrf", 0.5),
    ("rrf", 0.7),
    ("weighted", 0.5),
    ("weighted", 0.7),
    ("weighted", 0.85),
]


@dataclass(frozen=True)
class BenchConfig:
    data_dir: Path
    dsn: str | None = None
    out: Path = Path("bench-results")
    model: str = "minilm"
    limit_docs: int | None = None
    max_queries: int | None = None
    k: int = 10
    sweep: bool = False
    keep: bool = True
    sweep_settings: list[dict[str, int]] = field(default_factory=lambda: list(DEFAULT_SWEEP))
    cache_dir: Path | None = None
    peers: bool = True
    peer_queries: int = 100  # the SQL-only peer is slow: the first N queries
    qps_seconds: float = 5.0
    sweep_queries: int = 100  # the sweep and the peers' sweeps run the first N queries
    recall_at_100: bool = True
    collection: BeirCollection | None = None  # given instead of data_dir (the scaling run)
    storage_options: bool = False  # also measure the storage options (copies of the collection)
    binary_settings: list[dict[str, int]] = field(default_factory=lambda: list(BINARY_SWEEP))
    tiers: bool = False  # also measure the dense and rerank tiers
    reranker: str | None = None  # a cross-encoder checkpoint; None: latency only (see _tiers)
    rerank_top: int = 50
    rerank_queries: int = 20  # a CPU cross-encoder reads 50 documents in seconds
    filters: bool = False  # also measure filtered searches at several selectivities
    hybrid: bool = False  # also measure hybrid (late + full text) against late alone
    hash_partitions: tuple[int, ...] = ()  # also measure copies of the token table hashed N ways


@dataclass
class Encoded:
    doc_ids: list[str]
    doc_tokens: np.ndarray  # (total, dim) float16
    doc_offsets: np.ndarray
    query_ids: list[str]
    queries: list[np.ndarray]
    encoder: dict[str, Any]
    query_texts: list[str] = field(default_factory=list)


# the first sweep_queries queries: (vectors, exact top 100 ids, qrels, numpy latencies)
FirstQueries = tuple[list[np.ndarray], list[list[str]], list[dict[str, int]], list[float]]


@dataclass
class Run:
    """One system at one setting: rankings and latencies over the queries."""

    name: str
    settings: dict[str, Any]
    rankings: list[list[str]]
    latencies_ms: list[float]
    extra: dict[str, Any] = field(default_factory=dict)


def _ids(coll: Any, query: np.ndarray, /, **options: Any) -> list[str]:
    return [h.id for h in coll.search_embeddings(query, **options)]


def _probing(coll: Any, probes: list[int], **options: Any) -> Callable[[np.ndarray], list[str]]:
    """A search that also records how many HNSW probes each query ran."""

    def search(query: np.ndarray) -> list[str]:
        ids = _ids(coll, query, **options)
        probes.append(coll.last_search.probes if coll.last_search else 0)
        return ids

    return search


def _timed(search: Callable[[np.ndarray], list[str]], queries: list[np.ndarray]) -> Run:
    rankings, latencies = [], []
    for query in queries:
        started = time.perf_counter()
        rankings.append(search(query))
        latencies.append((time.perf_counter() - started) * 1000)
    return Run("", {}, rankings, latencies)


def _summary(
    run: Run,
    truth: list[list[str]],
    qrels: list[dict[str, int]],
    k: int,
    brute_p50: float,
    encode_ms: list[float] | None = None,
    deep: list[list[str]] | None = None,
) -> dict[str, Any]:
    """The figures of one run: recall against exact MaxSim, latency, quality."""
    n = len(run.rankings)
    lat = run.latencies_ms
    row: dict[str, Any] = {
        "system": run.name,
        "settings": run.settings,
        "queries": n,
        "recall_at_k_vs_exact": round(
            float(np.mean([metrics.overlap_at(r, t, k) for r, t in zip(run.rankings, truth)])), 4
        ),
        "latency_ms": {f"p{p}": round(metrics.percentile(lat, p), 2) for p in (50, 95, 99)},
        "ratio_to_numpy": round(statistics.median(lat) / brute_p50, 3),
        "ndcg_at_10": round(
            float(np.mean([metrics.ndcg_at(r, q) for r, q in zip(run.rankings, qrels)])), 4
        ),
        "mrr_at_10": round(
            float(np.mean([metrics.mrr_at(r, q) for r, q in zip(run.rankings, qrels)])), 4
        ),
        "recall_at_100": None
        if deep is None
        else round(float(np.mean([metrics.recall_at(r, q) for r, q in zip(deep, qrels)])), 4),
    }
    if encode_ms is not None:
        total = [a + b for a, b in zip(lat, encode_ms)]
        row["latency_with_encoding_ms"] = {
            f"p{p}": round(metrics.percentile(total, p), 2) for p in (50, 95, 99)
        }
    row.update(run.extra)
    return row


def _p50(run: Run, n: int | None = None) -> float:
    """Median latency of a run over its first ``n`` queries (all by default)."""
    return statistics.median(run.latencies_ms[:n])


def _cache_dir(config: BenchConfig) -> Path:
    if config.cache_dir is not None:
        return config.cache_dir
    import platformdirs

    return Path(platformdirs.user_cache_dir("lateinteract_pg")) / "encodings"


def _content_key(data: BeirCollection, encoder: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(encoder, sort_keys=True).encode())
    for doc_id, text in data.corpus:
        digest.update(doc_id.encode() + b"\x00" + text.encode() + b"\x01")
    for query_id, text in sorted(data.queries.items()):
        digest.update(query_id.encode() + b"\x00" + text.encode() + b"\x02")
    return digest.hexdigest()[:20]


def encode_collection(
    data: BeirCollection, config: BenchConfig, echo: Callable[[str], None]
) -> Encoded:
    """Token vectors of the corpus and queries, from the on-disk cache when present."""
    from .encoders import load_encoder

    encoder = load_encoder(config.model)
    settings = encoder.settings()
    path = _cache_dir(config) / f"{data.name or 'collection'}-{_content_key(data, settings)}.npz"
    query_ids = sorted(data.queries)
    if path.exists():
        echo(f"encodings: cached {path}")
        z = np.load(path, allow_pickle=False)
        offsets = z["query_offsets"]
        queries = [z["query_vecs"][offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
        cached_ids = [str(x) for x in z["query_ids"]]
        return Encoded(
            [str(x) for x in z["doc_ids"]],
            z["doc_vecs"],
            z["doc_offsets"],
            cached_ids,
            [q.astype(np.float32) for q in queries],
            settings,
            [data.queries[q] for q in cached_ids],
        )
    echo(f"encoding {len(data.corpus)} documents and {len(query_ids)} queries ...")
    docs = encoder.encode_documents([text for _, text in data.corpus], progress=True)
    qs = encoder.encode_queries([data.queries[q] for q in query_ids], progress=True)
    doc_offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    query_offsets = np.concatenate([[0], np.cumsum([len(q) for q in qs])]).astype(np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        doc_ids=np.array([d for d, _ in data.corpus]),
        doc_vecs=np.concatenate(docs).astype(np.float16),
        doc_offsets=doc_offsets,
        query_ids=np.array(query_ids),
        query_vecs=np.concatenate(qs).astype(np.float16),
        query_offsets=query_offsets,
    )
    os.replace(tmp, path)
    echo(f"encodings cached in {path}")
    return encode_collection(data, config, echo)


def _storage(store: Store, coll_id: int, n_tokens: int) -> dict[str, Any]:
    """Bytes of the collection: its token partition and indexes, and its document rows.

    The documents table is shared by all collections, so this collection's share is the
    size of its rows as stored (packed matrix and dense vector included), not the table's
    file size; ``matrices`` and ``dense_vectors`` tell those two parts of the rows apart.
    Per token means per token as encoded (``n_tokens``), also for a pooled collection.
    """
    tokens = store.table(f"tokens_{coll_id}").as_string(store.conn)
    row = store.conn.execute(
        sql.SQL(
            """
            SELECT pg_relation_size(%(heap)s::regclass),
                   pg_relation_size(%(hnsw)s::regclass),
                   pg_relation_size(%(pkey)s::regclass),
                   coalesce(sum(pg_column_size(d.*)), 0),
                   coalesce(sum(pg_column_size(d.matrix)), 0),
                   coalesce(sum(pg_column_size(d.dense)), 0),
                   coalesce(pg_relation_size(to_regclass(%(dense)s)), 0),
                   count(*)
            FROM {documents} AS d WHERE d.collection_id = %(coll)s
            """
        ).format(documents=store.table("documents")),
        {
            "heap": tokens,
            "hnsw": store.table(f"tokens_{coll_id}_hnsw").as_string(store.conn),
            "pkey": store.table(f"tokens_{coll_id}_pkey").as_string(store.conn),
            "dense": store.table(f"documents_{coll_id}_dense_hnsw").as_string(store.conn),
            "coll": coll_id,
        },
    ).fetchone()
    assert row is not None
    names = ["token_heap", "hnsw_index", "token_pkey", "document_rows"]
    sizes = dict(zip(names, (int(v) for v in row[:4])))
    total = sum(sizes.values())
    n_docs = max(1, int(row[7]))
    return {
        "bytes": sizes,
        "bytes_total": total,
        "bytes_per_token": {name: round(v / n_tokens, 1) for name, v in sizes.items()}
        | {"total": round(total / n_tokens, 1)},
        "bytes_per_document": round(total / n_docs, 1),
        "parts_of_document_rows_per_token": {
            "matrices": round(int(row[4]) / n_tokens, 1),
            "dense_vectors": round(int(row[5]) / n_tokens, 1),
        },
        "dense_tier_bytes_per_document": round((int(row[5]) + int(row[6])) / n_docs, 1),
    }


def _ingest(
    store: Store,
    name: str,
    enc: Encoded,
    echo: Callable[[str], None],
    keep: bool,
    texts: list[str] | None = None,
    **options: Any,
) -> tuple[Any, dict[str, Any]]:
    """The collection ``name`` holding the encoded documents (and their texts), created with
    ``options`` (candidate_index, pool_factor, rescore_storage); reused when kept."""
    n_tokens = len(enc.doc_tokens)
    if keep and name in store:
        coll = store.collection(name)
        same = all(getattr(coll, option) == value for option, value in options.items())
        has_texts = texts is None or (coll.get(enc.doc_ids[0]) or Document("", None)).text
        if len(coll) == len(enc.doc_ids) and same and has_texts:
            echo(f"collection {name!r}: reusing {len(coll)} documents")
            return coll, {"reused": True}
        store.drop_collection(name)
    elif name in store:
        store.drop_collection(name)
    coll = store.collection(name, dim=enc.doc_tokens.shape[1], **options)
    echo(f"ingesting {len(enc.doc_ids)} documents, {n_tokens} token rows into {name!r} ...")
    o = enc.doc_offsets
    coll.add_embeddings(
        enc.doc_ids,
        [enc.doc_tokens[o[i] : o[i + 1]] for i in range(len(enc.doc_ids))],
        texts=texts,
    )
    stats = coll.last_ingest
    assert stats is not None
    return coll, {
        "reused": False,
        "token_rows": n_tokens,
        "copy_s": round(stats.copy_s, 2),
        "copy_rows_per_s": round(n_tokens / stats.copy_s) if stats.copy_s else None,
        "hnsw_build_s": round(stats.index_s, 1),
    }


def _client(
    coll: Any, queries: list[np.ndarray], k: int, deadline: float, out: list[float]
) -> None:
    """One QPS client: search ``queries`` round-robin until ``deadline``."""
    i = 0
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        coll.search_embeddings(queries[i % len(queries)], k=k)
        out.append((time.perf_counter() - started) * 1000)
        i += 1


def _qps(config: BenchConfig, name: str, queries: list[np.ndarray], k: int) -> list[dict]:
    """Queries per second of our search with 1, 2 and 4 concurrent clients, each with its own
    Store (connections), for ``qps_seconds`` each."""
    out = []
    for clients in CLIENTS:
        stores = [connect(config.dsn, schema=BENCH_SCHEMA) for _ in range(clients)]
        colls = [s.collection(name, create=False) for s in stores]
        for coll in colls:  # warm each client's connections
            coll.search_embeddings(queries[0], k=k)
        latencies: list[list[float]] = [[] for _ in range(clients)]
        deadline = time.perf_counter() + config.qps_seconds
        started = time.perf_counter()
        threads = [
            threading.Thread(
                target=_client, args=(colls[c], queries[c::clients], k, deadline, latencies[c])
            )
            for c in range(clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        done = [x for per in latencies for x in per]
        out.append(
            {
                "clients": clients,
                "queries": len(done),
                "qps": round(len(done) / elapsed, 2),
                "p50_ms": round(statistics.median(done), 2) if done else None,
                "p95_ms": round(metrics.percentile(done, 95), 2),
            }
        )
        for s in stores:
            s.close()
    return out


def _server(store: Store) -> dict[str, Any]:
    """Version, memory settings and, for a server on this machine, its processes' memory."""
    conn = store.conn
    info: dict[str, Any] = {
        "version": conn.execute("SHOW server_version").fetchone()[0],  # type: ignore[index]
        "shared_buffers": conn.execute("SHOW shared_buffers").fetchone()[0],  # type: ignore[index]
    }
    try:
        import psutil

        data_dir = conn.execute("SHOW data_directory").fetchone()[0]  # type: ignore[index]
        rss = pss = 0
        for proc in psutil.process_iter(["name"]):
            try:
                if proc.info["name"] == "postgres" and proc.cwd() == data_dir:
                    full = proc.memory_full_info()
                    rss += full.rss
                    pss += getattr(full, "pss", full.rss)
            except (psutil.Error, OSError):
                continue
        if rss:
            info["memory_rss_mb"] = round(rss / 2**20, 1)
            info["memory_pss_mb"] = round(pss / 2**20, 1)
    except Exception as exc:  # not superuser, psutil missing, or a remote server
        log.info("server memory not measured: %s", exc)
    return info


def run_bench(config: BenchConfig, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the benchmark; writes NAME.json, NAME.md and NAME-recall-latency.png."""
    data = config.collection or load_beir(config.data_dir, limit_docs=config.limit_docs)
    enc = encode_collection(data, config, echo)
    query_ids, queries, texts = enc.query_ids, enc.queries, enc.query_texts
    if config.max_queries is not None:
        query_ids, queries = query_ids[: config.max_queries], queries[: config.max_queries]
        texts = texts[: config.max_queries]
    qrels = [data.qrels.get(q, {}) for q in query_ids]
    name = data.name + (f"-{config.limit_docs}" if config.limit_docs else "")
    k = config.k
    deep_k = 100 if config.recall_at_100 else None
    systems: list[dict[str, Any]] = []
    sweep: list[dict[str, Any]] = []
    with connect(config.dsn, schema=BENCH_SCHEMA) as store:
        doc_texts = None
        if config.tiers or config.hybrid:  # the rerank tier and full text read the texts
            by_id = dict(data.corpus)
            doc_texts = [by_id[d] for d in enc.doc_ids]
        coll, ingest = _ingest(store, f"bench-{name}", enc, echo, config.keep, doc_texts)
        n_tokens = len(enc.doc_tokens)
        storage = _storage(store, coll.id, n_tokens)

        echo("exhaustive numpy MaxSim (ground truth) ...")
        exhaustive = Exhaustive(enc.doc_tokens, enc.doc_offsets, enc.doc_ids)
        brute = _timed(partial(exhaustive.search, k=100), queries)
        brute.name, brute.settings = exhaustive.name, {}
        truth = brute.rankings
        brute_p50 = _p50(brute)
        del exhaustive

        echo("encoding each query alone (for latency with encoding) ...")
        encode_ms = _encode_latency(config, texts)

        echo("our search at defaults ...")
        # An untimed pass over the first sweep_queries queries: the peers hold everything in
        # process memory, so we are timed with the index and token pages in shared_buffers
        # too (a collection measured after a larger one otherwise starts from evicted pages).
        _timed(partial(_ids, coll, k=k), queries[: config.sweep_queries])
        plans: list[str] = []

        def ours_search(q: np.ndarray) -> list[str]:
            ids = [h.id for h in coll.search_embeddings(q, k=k)]
            plans.append(coll.last_search.plan if coll.last_search else "?")
            return ids

        ours = _timed(ours_search, queries)
        ours.name = "lateinteract_pg (defaults)"
        ours.settings = dict(vars(planner.default_knobs(k)))
        ours.extra = {"plans": {p: plans.count(p) for p in sorted(set(plans))}}
        deep = None
        if deep_k:
            echo("  (recall@100 pass, untimed) ...")
            deep = [[h.id for h in coll.search_embeddings(q, k=deep_k)] for q in queries]
        systems.append(_summary(ours, truth, qrels, k, brute_p50, encode_ms, deep))
        echo(_line(systems[-1]))

        echo("the SQL function search() at defaults ...")
        statement = sql.SQL("SELECT id FROM {}(%s, %s, %s)").format(store.table("search"))
        from pgvector import HalfVector

        def sql_search(q: np.ndarray) -> list[str]:
            params = (coll.name, [HalfVector(v) for v in q], k)
            return [r[0] for r in store.conn.execute(statement, params).fetchall()]

        sql_run = _timed(sql_search, queries)
        sql_run.name, sql_run.settings = "lateinteract.search() in SQL (defaults)", ours.settings
        same = sum(a == b for a, b in zip(sql_run.rankings, ours.rankings))
        sql_run.extra = {"same_ranking_as_python": round(same / max(1, len(queries)), 4)}
        systems.append(_summary(sql_run, truth, qrels, k, brute_p50, encode_ms))
        echo(_line(systems[-1]))

        echo(f"QPS with {', '.join(map(str, CLIENTS))} clients ...")
        qps = _qps(config, coll.name, queries, k)
        for row in qps:
            echo(f"  {row['clients']} clients: {row['qps']} queries/s, p50 {row['p50_ms']} ms")

        n = config.sweep_queries
        if config.sweep:
            for knobs in config.sweep_settings:
                run = _timed(partial(_ids, coll, k=k, plan="index", **knobs), queries[:n])
                run.name, run.settings = "lateinteract_pg", dict(knobs)
                sweep.append(_summary(run, truth[:n], qrels[:n], k, _p50(brute, n)))
                echo("  sweep " + _line(sweep[-1]))

        peers: dict[str, Any] = {}
        if config.peers:
            peers = _run_peers(
                config, store, coll, enc, queries, truth, qrels, brute, encode_ms, echo
            )
            systems.extend(peers.pop("systems"))
            sweep.extend(peers.pop("sweep"))
        first = (queries[:n], truth[:n], qrels[:n], brute.latencies_ms[:n])
        storage_options = []
        if config.storage_options:
            storage_options = _storage_options(config, store, name, enc, coll, storage, first, echo)
        tiers = []
        if config.tiers:
            tiers = _tiers(config, store, coll, storage, texts[:n], first, echo)
        filtered = []
        if config.filters:
            filtered = _filtered(config, coll, enc, first, echo)
        hybrid = []
        if config.hybrid:
            hybrid = _hybrid(config, coll, queries, texts, truth, qrels, brute_p50, echo)
        partitioned = []
        if config.hash_partitions:
            partitioned = _hash_partitions(config, store, coll, first, echo)
        server = _server(store)
        if not config.keep:
            store.drop_collection(coll.name)

    brute_row = _summary(
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
        "queries": len(queries),
        "query_tokens_mean": round(float(np.mean([len(q) for q in queries])), 1),
        "k": k,
        "ingest": ingest,
        "storage": storage,
        "encoding_ms": {f"p{p}": round(metrics.percentile(encode_ms, p), 2) for p in (50, 95, 99)},
        "systems": systems,
        "qps": qps,
        "sweep": sweep,
        "peers": peers,
        "storage_options": storage_options,
        "tiers": tiers,
        "filtered": filtered,
        "hybrid": hybrid,
        "hash_partitions": partitioned,
    }
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / f"{name}.json").write_text(json.dumps(report, indent=2))
    (config.out / f"{name}.md").write_text(_markdown(report))
    _plot_recall_latency(report, config.out / f"{name}-recall-latency.png")
    echo(_markdown(report))
    return report


def _storage_options(
    config: BenchConfig,
    store: Store,
    name: str,
    enc: Encoded,
    coll: Any,
    storage: dict[str, Any],
    first: FirstQueries,
    echo: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Each storage option's recall against exact MaxSim (of the vectors as encoded),
    latency and bytes per token, on the first ``sweep_queries`` queries.

    Query-time options run on the collection itself; the others on a copy of it built with
    that option (kept like the collection, under ``bench-NAME-OPTION``).
    """
    queries, truth, qrels, numpy_ms = first
    numpy_p50 = statistics.median(numpy_ms)
    options: list[tuple[str, dict[str, Any], list[dict[str, Any]]]] = [
        ("halfvec index, float16 matrices (defaults)", {}, [{}]),
        ("query-token clustering", {}, [{"merge_threshold": t} for t in MERGE_THRESHOLDS]),
        ("stage 2 from token rows", {}, [{"rescore_from": "tokens"}]),
        ("binary candidate index", {"candidate_index": "binary"}, config.binary_settings),
        ("int8 matrices", {"rescore_storage": "int8"}, [{}]),
        ("pool factor 2", {"pool_factor": 2}, POOLED_SWEEP),
        ("pool factor 3", {"pool_factor": 3}, POOLED_SWEEP),
    ]
    out = []
    for option, collection_options, settings_list in options:
        echo(f"storage option: {option} ...")
        target, ingest, option_storage = coll, {"reused": True}, storage
        if collection_options:
            suffix = "-".join(str(v) for v in collection_options.values())
            target, ingest = _ingest(
                store, f"bench-{name}-{suffix}", enc, echo, config.keep, **collection_options
            )
            option_storage = _storage(store, target.id, len(enc.doc_tokens))
            _timed(partial(_ids, target, k=config.k), queries)  # warm, as the collection was
        runs = []
        for knobs in settings_list:
            probes: list[int] = []
            run = _timed(_probing(target, probes, k=config.k, plan="index", **knobs), queries)
            run.name, run.settings = f"lateinteract_pg, {option}", knobs or {"defaults": True}
            run.extra = {"probes_mean": round(float(np.mean(probes)), 1)}
            runs.append(_summary(run, truth, qrels, config.k, numpy_p50))
            echo("  " + _line(runs[-1]))
        out.append(
            {
                "option": option,
                "collection": collection_options,
                "ingest": ingest,
                "storage": option_storage,
                "runs": runs,
            }
        )
        if collection_options and not config.keep:
            store.drop_collection(target.name)
    return out


def _bucket(doc_id: str) -> int:
    return zlib.crc32(doc_id.encode("utf-8")) % BUCKETS


def _filtered(
    config: BenchConfig,
    coll: Any,
    enc: Encoded,
    first: FirstQueries,
    echo: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Filtered searches at each selectivity: recall@k against exact MaxSim over the passing
    documents, the share of queries answered with k documents, and latency, for the planner's
    choice, each plan forced, and post-filtering (the unfiltered top 100, then the filter)."""
    queries, _, qrels, numpy_ms = first
    k = config.k
    buckets = np.array([_bucket(d) for d in enc.doc_ids])
    stored = coll.conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE collection_id = %s AND metadata ? 'bucket'").format(
            coll.store.table("documents")
        ),
        (coll.id,),
    ).fetchone()
    if stored is None or stored[0] < len(enc.doc_ids):
        echo("filters: writing each document's bucket into its metadata ...")
        with coll.conn.transaction():
            coll.conn.execute(
                sql.SQL(
                    "UPDATE {} AS d SET metadata = coalesce(d.metadata, '{{}}') || "
                    "jsonb_build_object('bucket', m.b) "
                    "FROM unnest(%s::text[], %s::int[]) AS m(id, b) "
                    "WHERE d.collection_id = %s AND d.external_id = m.id"
                ).format(coll.store.table("documents")),
                (enc.doc_ids, buckets.tolist(), coll.id),
            )
        coll.conn.execute(sql.SQL("VACUUM ANALYZE {}").format(coll.store.table("documents")))
    echo("filters: exact MaxSim of every document (ground truth) ...")
    scores = [maxsim_packed(q, enc.doc_tokens, enc.doc_offsets) for q in queries]
    rows = []
    for selectivity in SELECTIVITIES:
        threshold = round(selectivity * BUCKETS)
        passing = buckets < threshold
        spec = {"bucket": {"$lt": threshold}}
        truth = []
        for s in scores:
            masked = np.where(passing, s, -np.inf)
            top = np.argsort(-masked, kind="stable")[: min(k, int(passing.sum()))]
            truth.append([enc.doc_ids[j] for j in top])
        allowed = {d for d, ok in zip(enc.doc_ids, passing) if ok}

        def post_filter(q: np.ndarray, allowed: set[str] = allowed) -> list[str]:
            return [i for i in _ids(coll, q, k=100) if i in allowed][:k]

        filtered = partial(_ids, coll, k=k, filter=spec)
        runs: list[tuple[str, Callable[[np.ndarray], list[str]]]] = [
            ("planner's choice", filtered),
            ("index plan (iterative HNSW scans)", partial(filtered, plan="index")),
            ("exhaustive plan (passing documents)", partial(filtered, plan="exhaustive")),
            ("post-filter: unfiltered top 100, then the filter", post_filter),
        ]
        echo(f"filter at {selectivity:.1%} selectivity ({int(passing.sum())} documents) ...")
        for label, search in runs:
            plans: list[str] = []

            def planned(q: np.ndarray, search: Any = search, plans: list[str] = plans) -> list[str]:
                ids = search(q)
                plans.append(coll.last_search.plan if coll.last_search else "?")
                return ids

            run = _timed(planned, queries)
            run.name, run.settings = label, {"selectivity": selectivity}
            row = _summary(run, truth, qrels, k, statistics.median(numpy_ms))
            row["full_k"] = round(
                float(np.mean([len(r) == len(t) for r, t in zip(run.rankings, truth)])), 4
            )
            row["documents_passing"] = int(passing.sum())
            if label == "planner's choice":
                row["plans"] = {p: plans.count(p) for p in sorted(set(plans))}
            rows.append(row)
            echo("  " + _line(row) + f" full k {row['full_k']:.2f}")
    return rows


def _hybrid(
    config: BenchConfig,
    coll: Any,
    queries: list[np.ndarray],
    texts: list[str],
    truth: list[list[str]],
    qrels: list[dict[str, int]],
    numpy_p50: float,
    echo: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Late interaction alone, full text alone and their fusions, over every query."""
    k = config.k
    lexical = sql.SQL(
        "SELECT d.external_id FROM {documents} AS d, "
        "(SELECT {lexical_query}(c.text_search_config::regconfig, %s) AS q FROM {collections} AS c "
        " WHERE c.id = {id}) AS w "
        "WHERE d.collection_id = {id} AND d.tsv @@ w.q "
        "ORDER BY ts_rank(d.tsv, w.q, 1) DESC, d.id LIMIT %s"
    ).format(
        documents=coll.store.table("documents"),
        lexical_query=coll.store.table("lexical_query"),
        collections=coll.store.table("collections"),
        id=sql.Literal(coll.id),
    )
    text_of = {id(q): t for q, t in zip(queries, texts)}

    def full_text(query: np.ndarray) -> list[str]:
        rows = coll.conn.execute(lexical, (text_of[id(query)], k)).fetchall()
        return [r[0] for r in rows]

    def fused(query: np.ndarray, fusion: str, weight: float) -> list[str]:
        hits = coll.search_hybrid_embeddings(
            query, text_of[id(query)], k=k, fusion=fusion, weight=weight
        )
        return [h.id for h in hits]

    systems: list[tuple[str, dict[str, Any], Callable[[np.ndarray], list[str]]]] = [
        ("late interaction alone", {}, partial(_ids, coll, k=k)),
        ("full text alone (ts_rank, any query word)", {}, full_text),
    ]
    for fusion, weight in FUSION_SETTINGS:
        settings = {"fusion": fusion, "weight": weight}
        systems.append(("hybrid", settings, partial(fused, fusion=fusion, weight=weight)))
    rows = []
    for label, settings, search in systems:
        echo(f"hybrid: {label} {settings} ...")
        run = _timed(search, queries)
        run.name, run.settings = label, settings or {"defaults": True}
        rows.append(_summary(run, truth, qrels, k, numpy_p50))
        echo("  " + _line(rows[-1]))
    return rows


def _hash_partitions(
    config: BenchConfig,
    store: Store,
    coll: Any,
    first: FirstQueries,
    echo: Callable[[str], None],
) -> list[dict[str, Any]]:
    """The collection's token rows hashed by document into N partitions, each with its own
    HNSW index (the layout of N shards of a distributed table), against the one partition
    the collection has: the same search (stage 1 over the partitioned copy, stage 2 from the
    collection's matrices) on one connection, at the default knobs."""
    queries, truth, qrels, numpy_ms = first
    k, dim = config.k, coll.dim
    knobs = planner.default_knobs(k)
    conn = store.conn
    fetch = rescore.fetch_sql(store.table("documents"))
    rows = []
    for n in (1, *config.hash_partitions):
        table = f"tokens_{coll.id}" if n == 1 else f"hashed_{coll.id}_{n}"
        build_s = None
        if n > 1 and not _hashed_copy_ready(store, table, coll):
            echo(f"hash partitions: copying {coll.name!r}'s tokens into {n} partitions ...")
            build_s = _build_hashed_copy(store, table, coll, n)
        statement = candidates.candidate_sql(store.table(table), coll.id, dim, "zero")
        store.set_session("hnsw.ef_search", str(knobs.ef_search))
        store.set_session("hnsw.iterative_scan", "off")
        stage1_ms: list[float] = []

        def search(
            query: np.ndarray, statement: Any = statement, times: Any = stage1_ms
        ) -> list[str]:
            started = time.perf_counter()
            ids, _ = candidates.stage1(
                conn, statement, query, np.ones(len(query), np.float32),
                knobs.candidates_per_token, knobs.rerank_depth,
            )  # fmt: skip
            times.append((time.perf_counter() - started) * 1000)
            doc_ids, scores, _ = rescore.score_candidates(
                conn, fetch, query, ids, dim, coll.rescore_storage
            )
            best = top_k(scores, doc_ids.tolist(), k)
            return [h.id for h in coll._hits([(int(d), s) for d, s in best])]

        _timed(search, queries)  # warm: the copy's pages into shared_buffers
        stage1_ms.clear()
        run = _timed(search, queries)
        run.name, run.settings = "hash partitions", {"partitions": n}
        row = _summary(run, truth, qrels, k, statistics.median(numpy_ms))
        index_bytes = conn.execute(
            "SELECT coalesce(sum(pg_relation_size(i.indexrelid)), 0) "
            "FROM pg_partition_tree(%s) AS p JOIN pg_index AS i ON i.indrelid = p.relid "
            "JOIN pg_class AS c ON c.oid = i.indexrelid JOIN pg_am AS a ON a.oid = c.relam "
            "WHERE a.amname = 'hnsw'",
            (store.table(table).as_string(conn),),
        ).fetchone()
        plan = conn.execute(
            sql.SQL("EXPLAIN (FORMAT JSON) ") + statement,
            {"probes": [HalfVector(queries[0][0])], "weights": [1.0],
             "per_token": knobs.candidates_per_token, "depth": knobs.rerank_depth},
        ).fetchone()  # fmt: skip
        row.update(
            partitions=n,
            stage1_ms_p50=round(statistics.median(stage1_ms), 2),
            index_scans_per_probe=json.dumps(plan[0] if plan else "").count('"Index Scan"'),
            build_s=build_s,
            hnsw_bytes=int(index_bytes[0]) if index_bytes else 0,
        )
        rows.append(row)
        echo("  " + _line(row) + f" stage 1 p50 {row['stage1_ms_p50']} ms")
    return rows


def _hashed_copy_ready(store: Store, table: str, coll: Any) -> bool:
    ident = store.table(table).as_string(store.conn)
    row = store.conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NOT NULL",
        (ident, store.table(table + "_hnsw").as_string(store.conn)),
    ).fetchone()
    if not row or not row[0]:
        return False
    count = store.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(store.table(table)))
    return count.fetchone() == (coll._sizes()[1],)


def _build_hashed_copy(store: Store, table: str, coll: Any, n: int) -> float:
    """A copy of the collection's token rows, hash-partitioned by document id into ``n``
    partitions, with an HNSW index like the collection's; returns the build seconds."""
    started = time.perf_counter()
    conn, parent = store.conn, store.table(table)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(parent))
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (collection_id integer NOT NULL, doc_id bigint NOT NULL, "
            "position integer NOT NULL, embedding halfvec NOT NULL, tenant text) "
            "PARTITION BY HASH (doc_id)"
        ).format(parent)
    )
    for j in range(n):
        conn.execute(
            sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES WITH (MODULUS {}, REMAINDER {})")
            .format(store.table(f"{table}_{j}"), parent, sql.Literal(n), sql.Literal(j))
        )  # fmt: skip
    conn.execute(
        sql.SQL("INSERT INTO {} SELECT collection_id, doc_id, position, embedding, tenant FROM {}")
        .format(parent, store.table(f"tokens_{coll.id}"))
    )  # fmt: skip
    if store.maintenance_work_mem:
        conn.execute("SET maintenance_work_mem = %s", (store.maintenance_work_mem,))
    conn.execute(
        sql.SQL(
            "CREATE INDEX {} ON {} USING hnsw ((embedding::halfvec({})) halfvec_ip_ops) "
            "WITH (m = {}, ef_construction = {})"
        ).format(
            sql.Identifier(table + "_hnsw"), parent, sql.Literal(coll.dim),
            sql.Literal(coll.hnsw_m), sql.Literal(coll.hnsw_ef_construction),
        )
    )  # fmt: skip
    conn.execute(sql.SQL("ANALYZE {}").format(parent))
    return round(time.perf_counter() - started, 1)


def _latency_only_cross_encoder(config: BenchConfig) -> Any:
    """all-MiniLM-L6-v2's encoder under a freshly initialised one-logit head: the size and
    shape of the common MS MARCO MiniLM-L-6 cross-encoder, so its cost is real; its
    scores are not (it was never trained), so quality is not reported with it."""
    import torch
    import transformers

    from .encoders import default_model_path
    from .rerank import CrossEncoder

    path = _cache_dir(config) / "latency-only-cross-encoder"
    if not (path / "config.json").exists():
        torch.manual_seed(0)
        model = transformers.BertForSequenceClassification.from_pretrained(
            default_model_path(), num_labels=1
        )
        model.save_pretrained(path)
        transformers.AutoTokenizer.from_pretrained(default_model_path()).save_pretrained(path)
    return CrossEncoder.from_pretrained(str(path))


def _tiers(
    config: BenchConfig,
    store: Store,
    coll: Any,
    storage: dict[str, Any],
    texts: list[str],
    first: FirstQueries,
    echo: Callable[[str], None],
) -> list[dict[str, Any]]:
    """One row per tier on the first ``sweep_queries`` queries: quality, recall against
    exact MaxSim, p50 latency (query encoding excluded) and bytes per document."""
    from .rerank import CrossEncoder

    queries, truth, qrels, numpy_ms = first
    k = config.k
    trained = config.reranker is not None
    if config.reranker is not None:
        reranker = CrossEncoder.from_pretrained(config.reranker)
    else:
        reranker = _latency_only_cross_encoder(config)
    coll.attach_reranker(reranker)
    late_bytes = storage["bytes_per_document"]
    # warm again: the storage options' collections were read since the first warm-up
    _timed(partial(_ids, coll, k=k), queries)
    rows = []
    for tier, options, per_doc in [
        ("dense", {}, storage["dense_tier_bytes_per_document"]),
        ("late", {}, late_bytes),
        ("rerank", {"rerank_top": config.rerank_top}, late_bytes),
    ]:
        echo(f"tier {tier} ...")
        m = config.rerank_queries if tier == "rerank" else len(queries)

        texts_left = iter(texts)

        def search(
            query: np.ndarray,
            tier: str = tier,
            options: dict[str, Any] = options,
            texts_left: Iterator[str] = texts_left,
        ) -> list[str]:
            hits = coll.search_embeddings(
                query, k=k, tier=tier, query_text=next(texts_left), **options
            )
            return [h.id for h in hits]

        run = _timed(search, queries[:m])
        run.name, run.settings = f"tier {tier}", options or {"defaults": True}
        row = _summary(run, truth[:m], qrels[:m], k, statistics.median(numpy_ms[:m]))
        row.update(tier=tier, bytes_per_document=per_doc)
        if tier == "rerank":
            row["reranker"] = reranker.settings()
            if not trained:
                row["quality_meaningful"] = False
                row["note"] = (
                    "latency only: an untrained MS MARCO MiniLM-L-6-sized cross-encoder "
                    "(no trained checkpoint given; pass --reranker)"
                )
        rows.append(row)
        echo("  " + _line(row))
    return rows


def _encode_latency(config: BenchConfig, texts: list[str]) -> list[float]:
    from .encoders import load_encoder

    encoder = load_encoder(config.model)
    encoder.encode_queries([texts[0]])  # warm
    out = []
    for text in texts:
        started = time.perf_counter()
        encoder.encode_queries([text])
        out.append((time.perf_counter() - started) * 1000)
    return out


def _run_peers(
    config: BenchConfig,
    store: Store,
    coll: Any,
    enc: Encoded,
    queries: list[np.ndarray],
    truth: list[list[str]],
    qrels: list[dict[str, int]],
    brute: Run,
    encode_ms: list[float],
    echo: Callable[[str], None],
) -> dict[str, Any]:
    k = config.k
    brute_p50 = _p50(brute)
    systems, sweep = [], []
    echo("voyager: building (or loading) the in-memory per-token HNSW ...")
    voyager = VoyagerPeer(
        enc.doc_tokens, enc.doc_offsets, enc.doc_ids, cache_dir=_cache_dir(config)
    )
    voyager.build()
    echo(
        "  loaded from cache"
        if voyager.loaded_from_cache
        else f"  built in {voyager.build_s:.1f} s"
    )
    run = _timed(partial(voyager.search, k=k, per_token=VOYAGER_PER_TOKEN), queries)
    run.name = voyager.name
    run.settings = {"M": voyager.m, "ef_construction": voyager.ef_construction,
                    "per_token": VOYAGER_PER_TOKEN}  # fmt: skip
    deep = [voyager.search(q, 100, VOYAGER_PER_TOKEN) for q in queries]
    index_bytes = voyager.index_bytes()
    run.extra = {
        "build_s": None if voyager.build_s is None else round(voyager.build_s, 1),
        "index_bytes_per_token": None
        if index_bytes is None
        else round(index_bytes / len(enc.doc_tokens), 1),
    }
    systems.append(_summary(run, truth, qrels, k, brute_p50, encode_ms, deep))
    echo(_line(systems[-1]))
    if config.sweep:
        m = config.sweep_queries
        for per_token in VOYAGER_SWEEP:
            run = _timed(partial(voyager.search, k=k, per_token=per_token), queries[:m])
            run.name, run.settings = voyager.name, {"per_token": per_token}
            sweep.append(_summary(run, truth[:m], qrels[:m], k, _p50(brute, m)))
            echo("  sweep " + _line(sweep[-1]))
    del voyager

    subset = queries[: config.peer_queries]
    echo(f"SQL only (pgvector-python's ColBERT example), first {len(subset)} queries ...")
    sql_only = SqlOnlyPeer(store, coll)
    arrays_s = sql_only.build()
    run = _timed(partial(sql_only.search, k=k, per_token=SQL_ONLY_PER_TOKEN), subset)
    run.name, run.settings = sql_only.name, {"per_token": SQL_ONLY_PER_TOKEN}
    run.extra = {
        "arrays_build_s": round(arrays_s, 1),
        "arrays_bytes_per_token": round(sql_only.bytes() / len(enc.doc_tokens), 1),
    }
    n = len(subset)
    run.extra["exact_on_same_queries"] = {
        "ndcg_at_10": round(
            float(np.mean([metrics.ndcg_at(t, q) for t, q in zip(truth, qrels[:n])])), 4
        ),
        "mrr_at_10": round(
            float(np.mean([metrics.mrr_at(t, q) for t, q in zip(truth, qrels[:n])])), 4
        ),
    }
    systems.append(_summary(run, truth[:n], qrels[:n], k, _p50(brute, n), encode_ms[:n]))
    echo(_line(systems[-1]))
    if config.sweep:
        for per_token in SQL_ONLY_SWEEP:
            run = _timed(partial(sql_only.search, k=k, per_token=per_token), subset)
            run.name, run.settings = sql_only.name, {"per_token": per_token}
            sweep.append(_summary(run, truth[:n], qrels[:n], k, _p50(brute, n)))
            echo("  sweep " + _line(sweep[-1]))
    return {
        "systems": systems,
        "sweep": sweep,
        "fast_plaid": (
            "not run: the fast-plaid wheel (1.7.0) requires torch==2.11.0 exactly; with this "
            "project's CPU torch 2.13.0 its compiled extension crashes (SIGSEGV) in "
            "FastPlaid.create(), and no CPU build of torch 2.11.0 is available to this machine"
        ),
    }


def _line(row: dict[str, Any]) -> str:
    return (
        f"  {row['system']} {row['settings']}: recall@10 {row['recall_at_k_vs_exact']:.4f} "
        f"p50 {row['latency_ms']['p50']:.1f} ms ({row['ratio_to_numpy']:.2f}x numpy) "
        f"nDCG@10 {row['ndcg_at_10']:.4f}"
    )


def _markdown(r: dict[str, Any]) -> str:
    s = r["storage"]
    lines = [
        f"## {r['name']}: {r['documents']} documents, {r['token_rows']} token rows, "
        f"{r['queries']} queries ({r['query_tokens_mean']} tokens each)",
        "",
        f"| system | settings | queries | recall@{r['k']} vs exact | p50 ms | p95 ms | p99 ms "
        "| p50 / numpy | nDCG@10 | MRR@10 | recall@100 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in [*r["systems"], *r["sweep"]]:
        lat = row["latency_ms"]
        r100 = "" if row["recall_at_100"] is None else f"{row['recall_at_100']:.4f}"
        settings = ", ".join(f"{k}={v}" for k, v in row["settings"].items())
        lines.append(
            f"| {row['system']} | {settings} | {row['queries']} | "
            f"{row['recall_at_k_vs_exact']:.4f} | {lat['p50']} | {lat['p95']} | {lat['p99']} | "
            f"{row['ratio_to_numpy']:.2f} | {row['ndcg_at_10']:.4f} | {row['mrr_at_10']:.4f} | "
            f"{r100} |"
        )
    ingest = r["ingest"]
    lines += [
        "",
        "query encoding alone: p50 {p50} ms, p95 {p95} ms, p99 {p99} ms".format(**r["encoding_ms"]),
        "QPS (our search, defaults): "
        + ", ".join(
            f"{q['clients']} clients {q['qps']}/s (p50 {q['p50_ms']} ms)" for q in r["qps"]
        ),
        f"storage: {s['bytes_per_token']['total']} bytes/token "
        f"({', '.join(f'{k} {v}' for k, v in s['bytes_per_token'].items() if k != 'total')})",
        f"server: PostgreSQL {r['server'].get('version')}, shared_buffers "
        f"{r['server'].get('shared_buffers')}, processes' PSS "
        f"{r['server'].get('memory_pss_mb', '?')} MB",
    ]
    if not ingest.get("reused"):
        lines.append(
            f"ingest: COPY {ingest['copy_rows_per_s']} rows/s, "
            f"HNSW build {ingest['hnsw_build_s']} s"
        )
    if r.get("storage_options"):
        lines += [
            "",
            f"Storage options (first {r['storage_options'][0]['runs'][0]['queries']} queries; "
            "bytes per token as encoded):",
            "",
            "| option | settings | bytes/token | of which index | recall@10 vs exact | probes "
            "| p50 ms | p50 / numpy | nDCG@10 |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for option in r["storage_options"]:
            per_token = option["storage"]["bytes_per_token"]
            for row in option["runs"]:
                settings = ", ".join(f"{k}={v}" for k, v in row["settings"].items())
                lines.append(
                    f"| {option['option']} | {settings} | {per_token['total']} | "
                    f"{per_token['hnsw_index']} | {row['recall_at_k_vs_exact']:.4f} | "
                    f"{row['probes_mean']} | {row['latency_ms']['p50']} | "
                    f"{row['ratio_to_numpy']:.2f} | {row['ndcg_at_10']:.4f} |"
                )
    if r.get("tiers"):
        lines += [
            "",
            "| tier | settings | queries | recall@10 vs exact MaxSim | nDCG@10 | p50 ms "
            "| p50 / numpy | bytes/document |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in r["tiers"]:
            settings = ", ".join(f"{k}={v}" for k, v in row["settings"].items())
            quality = f"{row['ndcg_at_10']:.4f}"
            if row.get("quality_meaningful") is False:
                quality = "n/a (untrained)"
            lines.append(
                f"| {row['tier']} | {settings} | {row['queries']} | "
                f"{row['recall_at_k_vs_exact']:.4f} | {quality} | {row['latency_ms']['p50']} | "
                f"{row['ratio_to_numpy']:.2f} | {row['bytes_per_document']} |"
            )
        lines += [f"\n{row['tier']}: {row['note']}" for row in r["tiers"] if row.get("note")]
    if r.get("filtered"):
        lines += [
            "",
            "Filtered searches (metadata bucket < threshold; recall@10 against exact MaxSim of "
            "the passing documents; full k: share of queries answered with k documents):",
            "",
            "| selectivity | documents passing | search | recall@10 vs exact | full k | p50 ms "
            "| p50 / numpy | plans |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in r["filtered"]:
            plans = ", ".join(f"{p} {n}" for p, n in row.get("plans", {}).items())
            lines.append(
                f"| {row['settings']['selectivity']:.1%} | {row['documents_passing']} | "
                f"{row['system']} | {row['recall_at_k_vs_exact']:.4f} | {row['full_k']:.2f} | "
                f"{row['latency_ms']['p50']} | {row['ratio_to_numpy']:.2f} | {plans} |"
            )
    if r.get("hash_partitions"):
        lines += [
            "",
            "Token rows hashed by document into N partitions, one HNSW index each (one "
            "connection, default knobs):",
            "",
            "| partitions | HNSW scans per probe | recall@10 vs exact | stage 1 p50 ms "
            "| p50 ms | p50 / numpy | HNSW bytes | build s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in r["hash_partitions"]:
            lines.append(
                f"| {row['partitions']} | {row['index_scans_per_probe']} | "
                f"{row['recall_at_k_vs_exact']:.4f} | {row['stage1_ms_p50']} | "
                f"{row['latency_ms']['p50']} | {row['ratio_to_numpy']:.2f} | "
                f"{row['hnsw_bytes']:,} | {row['build_s'] or ''} |"
            )
    if r.get("hybrid"):
        lines += [
            "",
            f"Hybrid search ({r['hybrid'][0]['queries']} queries):",
            "",
            "| search | settings | nDCG@10 | MRR@10 | recall@10 vs exact MaxSim | p50 ms |",
            "|---|---|---|---|---|---|",
        ]
        for row in r["hybrid"]:
            settings = ", ".join(f"{k}={v}" for k, v in row["settings"].items())
            lines.append(
                f"| {row['system']} | {settings} | {row['ndcg_at_10']:.4f} | "
                f"{row['mrr_at_10']:.4f} | {row['recall_at_k_vs_exact']:.4f} | "
                f"{row['latency_ms']['p50']} |"
            )
    for row in r["systems"]:
        if "exact_on_same_queries" in row:
            same = row["exact_on_same_queries"]
            lines.append(
                f"{row['system']} ran the first {row['queries']} queries; exact MaxSim on those: "
                f"nDCG@10 {same['ndcg_at_10']}, MRR@10 {same['mrr_at_10']}"
            )
    if r["peers"].get("fast_plaid"):
        lines.append(f"fast-plaid: {r['peers']['fast_plaid']}")
    return "\n".join(lines) + "\n"


def _plot_recall_latency(report: dict[str, Any], path: Path) -> None:
    from .plots import recall_latency

    recall_latency(report, path)


def run_scaling(
    data_root: Path,
    config: BenchConfig,
    sizes: Sequence[int] = (1000,),
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The same measurement at growing sizes: the first ``sizes`` documents of scifact, all
    of scifact, then every collection under ``data_root`` merged. Writes scaling.json/.md/.png.
    """
    runs = []
    base = replace(config, sweep=False, peer_queries=min(config.peer_queries, 30))
    for size in sizes:
        runs.append(run_bench(replace(base, data_dir=data_root / "scifact", limit_docs=size), echo))
    runs.append(run_bench(replace(base, data_dir=data_root / "scifact"), echo))
    merged = merge_collections(
        sorted(p for p in data_root.iterdir() if (p / "corpus.jsonl").is_file())
    )
    runs.append(run_bench(replace(base, data_dir=data_root, collection=merged), echo))
    return write_scaling(runs, config.out, echo)


def write_scaling(
    runs: list[dict[str, Any]], out: Path, echo: Callable[[str], None] = print
) -> dict[str, Any]:
    """scaling.json, scaling.md and scaling-latency.png from bench reports of growing size."""
    rows = []
    for r in runs:
        for system in r["systems"]:
            rows.append(
                {
                    "collection": r["name"],
                    "documents": r["documents"],
                    "token_rows": r["token_rows"],
                    "queries": system["queries"],
                    "system": system["system"],
                    "p50_ms": system["latency_ms"]["p50"],
                    "p95_ms": system["latency_ms"]["p95"],
                    "recall_at_k_vs_exact": system["recall_at_k_vs_exact"],
                    "ratio_to_numpy": system["ratio_to_numpy"],
                    "bytes_per_token": r["storage"]["bytes_per_token"]["total"],
                    "plans": system.get("plans"),
                }
            )
    report = {"runs": [r["name"] for r in runs], "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling.json").write_text(json.dumps(report, indent=2))
    from .plots import latency_vs_size

    latency_vs_size(rows, out / "scaling-latency.png")
    table = ["| collection | documents | token rows | queries | system | p50 ms | p95 ms "
             "| recall@10 vs exact | p50 / numpy | bytes/token |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in rows:
        table.append(
            f"| {row['collection']} | {row['documents']} | {row['token_rows']} | "
            f"{row['queries']} | {row['system']} | {row['p50_ms']} | {row['p95_ms']} | "
            f"{row['recall_at_k_vs_exact']:.4f} | {row['ratio_to_numpy']:.2f} | "
            f"{row['bytes_per_token']} |"
        )
    (out / "scaling.md").write_text("\n".join(table) + "\n")
    echo("\n".join(table))
    return report
