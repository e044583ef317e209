"""A bench report as files: NAME.json (every figure), NAME.md (the tables docs/benchmarks.md
quotes) and NAME-recall-latency.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["markdown", "write_report"]


def write_report(report: dict[str, Any], out: Path) -> str:
    """Write the report's three files into ``out``; returns the Markdown."""
    from .plots import recall_latency

    name = report["name"]
    text = markdown(report)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=2))
    (out / f"{name}.md").write_text(text)
    recall_latency(report, out / f"{name}-recall-latency.png")
    return text


def markdown(r: dict[str, Any]) -> str:
    """The report as Markdown: the systems and sweep, then one table per optional measurement
    that ran."""
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
    if "hnsw_build_s" in ingest:
        lines.append(
            f"ingest{' (by the run that built the kept collection)' if ingest['reused'] else ''}"
            f": COPY {ingest['copy_rows_per_s']} rows/s, HNSW build {ingest['hnsw_build_s']} s"
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
                    f"{per_token['candidate_index']} | {row['recall_at_k_vs_exact']:.4f} | "
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
    if r.get("cold"):
        c = r["cold"]
        lines.append(
            f"After emptying {' and '.join(c['emptied']) or 'no cache'}: p50 {c['cold_ms']['p50']} "
            f"ms, p95 {c['cold_ms']['p95']} ms over the first {c['queries']} queries; warm "
            f"again: p50 {c['warm_ms']['p50']} ms, p95 {c['warm_ms']['p95']} ms"
        )
    if r["peers"].get("voyager"):
        lines.append(f"Voyager and the SQL-only recipe: {r['peers']['voyager']}")
    if r["peers"].get("fast_plaid"):
        lines.append(f"fast-plaid: {r['peers']['fast_plaid']}")
    return "\n".join(lines) + "\n"
