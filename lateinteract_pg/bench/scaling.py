"""``lateinteract-pg scaling``: the bench at growing sizes, and how latency grows with the
number of token rows (scaling.json, scaling.md and scaling-latency.png)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .benchmark import run_bench
from .config import BenchConfig
from .datasets import merge_collections

__all__ = ["run_scaling", "write_scaling"]


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
