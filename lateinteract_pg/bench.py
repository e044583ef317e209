"""``lateinteract-pg bench``: recall against exact MaxSim, latency against exhaustive numpy.

One run encodes a BEIR-layout collection (cached on disk by content hash), ingests it,
and measures on the same token vectors:

- exhaustive exact MaxSim in numpy over an in-memory float32 matrix: the ground truth and
  the brute-force baseline;
- our search at default settings (and optionally a sweep of the knobs): recall@k against
  that ground truth, latency p50/p95 and its ratio to the baseline;
- the SQL function ``search()`` at defaults: the same, and how often its ranking equals the
  Python path's;
- cost: COPY rows/s, HNSW build seconds, bytes per token (heap, each index, total);
- quality against the qrels: nDCG@10 of exact MaxSim and of our search.

Times are medians over the queries; quote ratios, the machine is shared and noisy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from psycopg import sql

from .datasets import BeirCollection, load_beir
from .maxsim import maxsim_packed
from .store import Store, connect

__all__ = ["BenchConfig", "run_bench"]

log = logging.getLogger(__name__)

BENCH_SCHEMA = "lateinteract_bench"
DEFAULT_SWEEP: list[dict[str, int]] = [
    {"candidates_per_token": k, "ef_search": k, "rerank_depth": n}
    for k, n in [(40, 50), (40, 100), (64, 100), (100, 100), (100, 200), (150, 100),
                 (150, 200), (150, 300), (200, 300)]
]  # fmt: skip


@dataclass(frozen=True)
class BenchConfig:
    data_dir: Path
    dsn: str | None = None
    out: Path = Path("bench-results")
    limit_docs: int | None = None
    max_queries: int | None = None
    k: int = 10
    sweep: bool = False
    keep: bool = True
    sweep_settings: list[dict[str, int]] = field(default_factory=lambda: list(DEFAULT_SWEEP))
    cache_dir: Path | None = None


@dataclass
class Encoded:
    doc_ids: list[str]
    doc_tokens: np.ndarray  # (total, dim) float16
    doc_offsets: np.ndarray
    query_ids: list[str]
    queries: list[np.ndarray]
    encoder: dict[str, Any]


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
    from .encoders import TokenEncoder

    encoder = TokenEncoder.from_pretrained()
    settings = encoder.settings()
    path = _cache_dir(config) / f"{data.name or 'collection'}-{_content_key(data, settings)}.npz"
    query_ids = sorted(data.queries)
    if path.exists():
        echo(f"encodings: cached {path}")
        z = np.load(path, allow_pickle=False)
        offsets = z["query_offsets"]
        queries = [z["query_vecs"][offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
        return Encoded(
            [str(x) for x in z["doc_ids"]],
            z["doc_vecs"],
            z["doc_offsets"],
            [str(x) for x in z["query_ids"]],
            [q.astype(np.float32) for q in queries],
            settings,
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


def _ndcg_at_10(ranked: list[str], relevant: dict[str, int]) -> float:
    gains = [relevant.get(doc, 0) for doc in ranked[:10]]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    ideal = sorted(relevant.values(), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def _percentile(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p)) if values else float("nan")


def _storage(store: Store, coll_id: int, n_tokens: int) -> dict[str, Any]:
    """Bytes of the collection: its token partition and indexes, and its document rows.

    The documents table is shared by all collections, so this collection's share is the
    size of its rows as stored (packed matrix included), not the table's file size.
    """
    tokens = store.table(f"tokens_{coll_id}").as_string(store.conn)
    row = store.conn.execute(
        sql.SQL(
            """
            SELECT pg_relation_size(%(heap)s::regclass),
                   pg_relation_size(%(hnsw)s::regclass),
                   pg_relation_size(%(pkey)s::regclass),
                   (SELECT coalesce(sum(pg_column_size(d.*)), 0) FROM {documents} AS d
                    WHERE d.collection_id = %(coll)s)
            """
        ).format(documents=store.table("documents")),
        {
            "heap": tokens,
            "hnsw": store.table(f"tokens_{coll_id}_hnsw").as_string(store.conn),
            "pkey": store.table(f"tokens_{coll_id}_pkey").as_string(store.conn),
            "coll": coll_id,
        },
    ).fetchone()
    assert row is not None
    names = ["token_heap", "hnsw_index", "token_pkey", "document_rows"]
    sizes = dict(zip(names, (int(v) for v in row)))
    total = sum(sizes.values())
    return {
        "bytes": sizes,
        "bytes_total": total,
        "bytes_per_token": {name: round(v / n_tokens, 1) for name, v in sizes.items()}
        | {"total": round(total / n_tokens, 1)},
    }


def _ingest(
    store: Store, name: str, enc: Encoded, echo: Callable[[str], None], keep: bool
) -> tuple[Any, dict[str, Any]]:
    n_tokens = len(enc.doc_tokens)
    if keep and name in store:
        coll = store.collection(name)
        if len(coll) == len(enc.doc_ids):
            echo(f"collection {name!r}: reusing {len(coll)} documents")
            return coll, {"reused": True}
        store.drop_collection(name)
    elif name in store:
        store.drop_collection(name)
    coll = store.collection(name, dim=enc.doc_tokens.shape[1])
    echo(f"ingesting {len(enc.doc_ids)} documents, {n_tokens} token rows ...")
    o = enc.doc_offsets
    coll.add_embeddings(
        enc.doc_ids, [enc.doc_tokens[o[i] : o[i + 1]] for i in range(len(enc.doc_ids))]
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


def _run_queries(
    coll: Any, queries: list[np.ndarray], truth: list[list[str]], k: int, **knobs: Any
) -> dict[str, Any]:
    latencies, recalls, stage1, stage2, plans, rankings = [], [], [], [], [], []
    for query, expected in zip(queries, truth):
        t0 = time.perf_counter()
        hits = coll.search_embeddings(query, k=k, **knobs)
        latencies.append((time.perf_counter() - t0) * 1000)
        ids = [h.id for h in hits]
        rankings.append(ids)
        recalls.append(len(set(ids) & set(expected[:k])) / max(1, min(k, len(expected))))
        stats = coll.last_search
        stage1.append(stats.stage1_ms)
        stage2.append(stats.stage2_ms)
        plans.append(stats.plan)
    return {
        "knobs": knobs,
        "recall_at_k": round(float(np.mean(recalls)), 4),
        "p50_ms": round(statistics.median(latencies), 2),
        "p95_ms": round(_percentile(latencies, 95), 2),
        "p99_ms": round(_percentile(latencies, 99), 2),
        "stage1_p50_ms": round(statistics.median(stage1), 2),
        "stage2_p50_ms": round(statistics.median(stage2), 2),
        "plans": {p: plans.count(p) for p in sorted(set(plans))},
        "rankings": rankings,
    }


def _run_sql_queries(
    store: Store,
    coll: Any,
    queries: list[np.ndarray],
    truth: list[list[str]],
    k: int,
    python_rankings: list[list[str]],
) -> dict[str, Any]:
    """The SQL function ``search()`` on the same queries: latency, recall, and how often it
    returned exactly the Python path's ranking."""
    from pgvector import HalfVector

    statement = sql.SQL("SELECT id FROM {}(%s, %s, %s)").format(store.table("search"))
    latencies, recalls, same = [], [], 0
    for query, expected, python_ids in zip(queries, truth, python_rankings):
        t0 = time.perf_counter()
        rows = store.conn.execute(
            statement, (coll.name, [HalfVector(v) for v in query], k)
        ).fetchall()
        latencies.append((time.perf_counter() - t0) * 1000)
        ids = [r[0] for r in rows]
        recalls.append(len(set(ids) & set(expected[:k])) / max(1, min(k, len(expected))))
        same += ids == python_ids
    return {
        "recall_at_k": round(float(np.mean(recalls)), 4),
        "p50_ms": round(statistics.median(latencies), 2),
        "p95_ms": round(_percentile(latencies, 95), 2),
        "same_ranking_as_python": round(same / max(1, len(queries)), 4),
    }


def run_bench(config: BenchConfig, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the benchmark; writes NAME.json and NAME.md under ``config.out``."""
    data = load_beir(config.data_dir, limit_docs=config.limit_docs)
    enc = encode_collection(data, config, echo)
    query_ids, queries = enc.query_ids, enc.queries
    if config.max_queries is not None:
        query_ids, queries = query_ids[: config.max_queries], queries[: config.max_queries]
    name = data.name + (f"-{config.limit_docs}" if config.limit_docs else "")
    k = config.k
    with connect(config.dsn, schema=BENCH_SCHEMA) as store:
        coll, ingest = _ingest(store, f"bench-{name}", enc, echo, config.keep)
        n_tokens = len(enc.doc_tokens)
        storage = _storage(store, coll.id, n_tokens)

        echo("exhaustive numpy MaxSim (ground truth) ...")
        matrix = enc.doc_tokens.astype(np.float32)
        brute_ms, truth = [], []
        for query in queries:
            t0 = time.perf_counter()
            scores = maxsim_packed(query, matrix, enc.doc_offsets)
            top = np.argsort(-scores, kind="stable")[: max(k, 10)]
            brute_ms.append((time.perf_counter() - t0) * 1000)
            truth.append([enc.doc_ids[j] for j in top])
        del matrix
        brute_p50 = statistics.median(brute_ms)

        echo("our search at defaults ...")
        _run_queries(coll, queries[:5], truth[:5], k)  # warm the caches
        ours = _run_queries(coll, queries, truth, k)
        ours["ratio_to_numpy"] = round(ours["p50_ms"] / brute_p50, 3)
        defaults = coll.last_search
        echo(
            f"  recall@{k} {ours['recall_at_k']:.4f}  p50 {ours['p50_ms']:.1f} ms  "
            f"({ours['ratio_to_numpy']:.2f}x exhaustive numpy at {brute_p50:.1f} ms)"
        )
        echo("the SQL function search() at defaults ...")
        sql_path = _run_sql_queries(store, coll, queries, truth, k, ours["rankings"])
        sql_path["ratio_to_numpy"] = round(sql_path["p50_ms"] / brute_p50, 3)
        echo(
            f"  recall@{k} {sql_path['recall_at_k']:.4f}  p50 {sql_path['p50_ms']:.1f} ms  "
            f"same ranking as Python for {sql_path['same_ranking_as_python']:.0%} of queries"
        )
        sweep = []
        if config.sweep:
            for knobs in config.sweep_settings:
                row = _run_queries(coll, queries, truth, k, plan="index", **knobs)
                row["ratio_to_numpy"] = round(row["p50_ms"] / brute_p50, 3)
                echo(
                    f"  sweep {knobs}: recall {row['recall_at_k']:.4f} "
                    f"p50 {row['p50_ms']:.1f} ms ({row['ratio_to_numpy']:.2f}x)"
                )
                row.pop("rankings")
                sweep.append(row)
        quality = {
            "ndcg_at_10_exact": round(
                float(
                    np.mean(
                        [_ndcg_at_10(t, data.qrels.get(q, {})) for q, t in zip(query_ids, truth)]
                    )
                ),
                4,
            ),
            "ndcg_at_10_ours": round(
                float(
                    np.mean(
                        [
                            _ndcg_at_10(r, data.qrels.get(q, {}))
                            for q, r in zip(query_ids, ours["rankings"])
                        ]
                    )
                ),
                4,
            ),
        }
        ours.pop("rankings")
        if not config.keep:
            store.drop_collection(coll.name)
    report: dict[str, Any] = {
        "name": name,
        "data_dir": str(config.data_dir),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "encoder": enc.encoder,
        "documents": len(enc.doc_ids),
        "token_rows": n_tokens,
        "queries": len(queries),
        "query_tokens_mean": round(float(np.mean([len(q) for q in queries])), 1),
        "k": k,
        "ingest": ingest,
        "storage": storage,
        "exhaustive_numpy": {
            "p50_ms": round(brute_p50, 2),
            "p95_ms": round(_percentile(brute_ms, 95), 2),
        },
        "ours_default": ours,
        "sql_search_default": sql_path,
        "default_knobs": {
            "candidates_per_token": defaults.candidates_per_token if defaults else None,
            "ef_search": defaults.ef_search if defaults else None,
            "rerank_depth": defaults.rerank_depth if defaults else None,
        },
        "sweep": sweep,
        "quality": quality,
    }
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / f"{name}.json").write_text(json.dumps(report, indent=2))
    (config.out / f"{name}.md").write_text(_markdown(report))
    echo(_markdown(report))
    return report


def _markdown(r: dict[str, Any]) -> str:
    o, b, s = r["ours_default"], r["exhaustive_numpy"], r["storage"]
    q = r["sql_search_default"]
    lines = [
        f"## {r['name']}: {r['documents']} documents, {r['token_rows']} token rows, "
        f"{r['queries']} queries ({r['query_tokens_mean']} tokens each)",
        "",
        "| system | recall@{k} vs exact | p50 ms | p95 ms | p50 / exhaustive numpy |".format(
            k=r["k"]
        ),
        "|---|---|---|---|---|",
        f"| exhaustive numpy MaxSim | 1.0000 | {b['p50_ms']} | {b['p95_ms']} | 1.00 |",
        f"| lateinteract_pg (defaults) | {o['recall_at_k']:.4f} | {o['p50_ms']} | "
        f"{o['p95_ms']} | {o['ratio_to_numpy']:.2f} |",
        f"| SQL search() (defaults) | {q['recall_at_k']:.4f} | {q['p50_ms']} | "
        f"{q['p95_ms']} | {q['ratio_to_numpy']:.2f} |",
    ]
    for row in r["sweep"]:
        lines.append(
            f"| lateinteract_pg {row['knobs']} | {row['recall_at_k']:.4f} | {row['p50_ms']} | "
            f"{row['p95_ms']} | {row['ratio_to_numpy']:.2f} |"
        )
    ingest = r["ingest"]
    lines += [
        "",
        f"default knobs: {r['default_knobs']}; plans used: {o['plans']}; SQL search() "
        f"returned the Python path's ranking for {q['same_ranking_as_python']:.0%} of queries",
        f"nDCG@10: exact {r['quality']['ndcg_at_10_exact']}, "
        f"ours {r['quality']['ndcg_at_10_ours']}",
        f"storage: {s['bytes_per_token']['total']} bytes/token "
        f"({', '.join(f'{k} {v}' for k, v in s['bytes_per_token'].items() if k != 'total')})",
    ]
    if not ingest.get("reused"):
        lines.append(
            f"ingest: COPY {ingest['copy_rows_per_s']} rows/s, "
            f"HNSW build {ingest['hnsw_build_s']} s"
        )
    return "\n".join(lines) + "\n"
