"""``lateinteract-pg scaling``: the bench over growing prefixes of one collection (by
default about 1M, 3M and 10M token rows), and how latency, recall, build time and bytes
per token grow with the number of token rows: scaling.json, scaling.md and one PNG per
figure."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .benchmark import run_bench
from .config import BenchConfig
from .datasets import BeirCollection, load_beir, merge_collections
from .encoding import Encoded, encode_collection

__all__ = ["SIZES", "load_collection", "prefix", "run_scaling", "write_scaling"]

SIZES = (1_000_000, 3_000_000, 10_000_000)  # token rows


def load_collection(data_dir: Path) -> BeirCollection:
    """The BEIR collection in ``data_dir``, or every collection under it merged."""
    if (data_dir / "corpus.jsonl").is_file():
        return load_beir(data_dir)
    return merge_collections(
        sorted(p for p in data_dir.iterdir() if (p / "corpus.jsonl").is_file())
    )


def prefix(data: BeirCollection, enc: Encoded, tokens: int) -> tuple[BeirCollection, Encoded]:
    """The first documents that hold at least ``tokens`` token rows (every document when
    the collection holds fewer), with the queries judged relevant to one of them; named
    after the size (``docstrings-3M``). The vectors are views of ``enc``'s."""
    n = max(1, min(len(enc.doc_ids), int(np.searchsorted(enc.doc_offsets, tokens))))
    if n == len(enc.doc_ids):
        return data, enc
    kept = set(enc.doc_ids[:n])
    qrels = {q: {d: g for d, g in judged.items() if d in kept} for q, judged in data.qrels.items()}
    qrels = {q: judged for q, judged in qrels.items() if any(g > 0 for g in judged.values())}
    chosen = [i for i, q in enumerate(enc.query_ids) if q in qrels]
    part = Encoded(
        enc.doc_ids[:n],
        enc.doc_tokens[: enc.doc_offsets[n]],
        enc.doc_offsets[: n + 1],
        [enc.query_ids[i] for i in chosen],
        [enc.queries[i] for i in chosen],
        enc.encoder,
        [enc.query_texts[i] for i in chosen],
    )
    queries = {q: data.queries[q] for q in part.query_ids}
    return BeirCollection(data.corpus[:n], queries, qrels, f"{data.name}-{_label(tokens)}"), part


def _label(tokens: int) -> str:
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if tokens >= size and tokens % (size // 10) == 0:
            return f"{tokens / size:g}{unit}"
    return str(tokens)


def run_scaling(
    data_dir: Path,
    config: BenchConfig,
    sizes: Sequence[int] = SIZES,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The bench (the SQL-only peer on at most 30 queries; cold and warm p50) on
    the first documents of ``data_dir``'s collection holding each of ``sizes`` token rows,
    up to the whole collection; encoded once. Writes scaling.json/.md and the PNGs."""
    data = load_collection(data_dir)
    enc = encode_collection(data, config, echo)
    base = replace(config, cold=True, peer_queries=min(config.peer_queries, 30))
    runs = []
    for size in sorted(set(sizes)):
        part, part_enc = prefix(data, enc, size)
        echo(f"\n== {part.name}: {len(part_enc.doc_ids):,} documents, "
             f"{len(part_enc.doc_tokens):,} token rows ==")  # fmt: skip
        runs.append(run_bench(replace(base, collection=part), echo, encoded=part_enc))
        if part_enc is enc:
            break
    return write_scaling(runs, config.out, echo)


def _build_s(report: dict[str, Any], system: dict[str, Any]) -> float | None:
    if system["system"].startswith("lateinteract"):
        return report["ingest"].get("hnsw_build_s")
    return system.get("build_s")


def _bytes_per_token(report: dict[str, Any], system: dict[str, Any]) -> float | None:
    """Ours: every byte on disk; the SQL-only recipe: its token rows, index and arrays;
    Voyager: its index file; MUVERA: its encodings and the float32 vectors it re-scores from;
    numpy: the float32 vectors it scans."""
    dim = report["dim"]
    if "bytes_per_token" in system:
        return system["bytes_per_token"]
    if system["system"].startswith("lateinteract"):
        return report["storage"]["bytes_per_token"]["total"]
    if "index_bytes_per_token" in system:
        return system["index_bytes_per_token"]
    if "fde_bytes_per_token" in system:
        return round(system["fde_bytes_per_token"] + 4 * dim, 1)
    if system["system"].startswith("exhaustive"):
        return 4 * dim
    return None


def write_scaling(
    runs: list[dict[str, Any]], out: Path, echo: Callable[[str], None] = print
) -> dict[str, Any]:
    """scaling.json, scaling.md and the PNGs (p50/p95, recall, build time and bytes per
    token against token rows) from bench reports of growing size."""
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
                    "build_s": _build_s(r, system),
                    "bytes_per_token": _bytes_per_token(r, system),
                    "plans": system.get("plans"),
                }
            )
    sizes = [
        {
            "collection": r["name"],
            "token_rows": r["token_rows"],
            "copy_rows_per_s": r["ingest"].get("copy_rows_per_s"),
            "server_pss_mb": r["server"].get("memory_pss_mb"),
            "shared_buffers": r["server"].get("shared_buffers"),
            "cold": r.get("cold"),
            "voyager": r["peers"].get("voyager"),
        }
        for r in runs
    ]
    report = {"runs": [r["name"] for r in runs], "rows": rows, "sizes": sizes}
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling.json").write_text(json.dumps(report, indent=2))
    from .plots import metric_vs_size

    for metric, label, file in FIGURES:
        metric_vs_size(rows, metric, label, out / file)
    table = ["| collection | documents | token rows | queries | system | p50 ms | p95 ms "
             "| recall@10 vs exact | p50 / numpy | build s | bytes/token |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in rows:
        table.append(
            f"| {row['collection']} | {row['documents']:,} | {row['token_rows']:,} | "
            f"{row['queries']} | {row['system']} | {row['p50_ms']} | {row['p95_ms']} | "
            f"{row['recall_at_k_vs_exact']:.4f} | {row['ratio_to_numpy']:.2f} | "
            f"{_blank(row['build_s'])} | {_blank(row['bytes_per_token'])} |"
        )
    table += ["", "| collection | token rows | COPY rows/s | server PSS MB | shared_buffers "
              "| cold p50 ms (emptied) | warm p50 ms | Voyager |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for size in sizes:
        cold = size["cold"] or {}
        emptied = " and ".join(cold.get("emptied", [])) or "nothing"
        table.append(
            f"| {size['collection']} | {size['token_rows']:,} | "
            f"{_blank(size['copy_rows_per_s'])} | {_blank(size['server_pss_mb'])} | "
            f"{size['shared_buffers']} | "
            f"{_blank(cold.get('cold_ms', {}).get('p50'))} ({emptied}) | "
            f"{_blank(cold.get('warm_ms', {}).get('p50'))} | {size['voyager'] or 'measured'} |"
        )
    (out / "scaling.md").write_text("\n".join(table) + "\n")
    echo("\n".join(table))
    return report


FIGURES = [
    ("latency", "latency per query (ms; p50 solid, p95 dashed)", "scaling-latency.png"),
    ("recall_at_k_vs_exact", "recall@10 against exact MaxSim", "scaling-recall.png"),
    ("build_s", "index build (s)", "scaling-build.png"),
    ("bytes_per_token", "bytes per token", "scaling-bytes.png"),
]


def _blank(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:,}" if isinstance(value, int | float) else str(value)
