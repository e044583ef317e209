"""Helpers the test modules share (fixtures live in conftest.py)."""

from __future__ import annotations

import uuid

import numpy as np
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

import lateinteract_pg as lip

DIM = 16
PASSWORD = "lip-test-password"


def unit_docs(
    n: int, seed: int = 0, dim: int = DIM, lengths: tuple[int, int] = (1, 30)
) -> list[np.ndarray]:
    """``n`` random documents of unit token vectors, ``lengths`` tokens each (low, high)."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n):
        d = rng.standard_normal((int(rng.integers(*lengths)), dim)).astype(np.float32)
        docs.append(d / np.linalg.norm(d, axis=1, keepdims=True))
    return docs


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length."""
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def clustered_docs(
    n: int,
    seed: int,
    dim: int,
    groups: tuple[int, int],
    lengths: tuple[int, int],
    noise: float,
) -> list[np.ndarray]:
    """``n`` documents whose unit token vectors come in near-duplicate groups, as real token
    vectors do: ``groups`` (low, high) centres each, ``lengths`` tokens each, every token a
    centre plus ``noise``."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n):
        centres = unit(rng.standard_normal((int(rng.integers(*groups)), dim)))
        picks = centres[rng.integers(0, len(centres), int(rng.integers(*lengths)))]
        docs.append(unit(picks + noise * rng.standard_normal(picks.shape)).astype(np.float32))
    return docs


def numpy_top(query: np.ndarray, docs: list[np.ndarray], k: int) -> list[tuple[str, float]]:
    """Reference: exact MaxSim of every document as stored (float16), best first."""
    scores = [(lip.maxsim(query, d.astype(np.float16)), f"d{i}") for i, d in enumerate(docs)]
    scores.sort(key=lambda s: (-s[0], s[1]))
    return [(doc, score) for score, doc in scores[:k]]


def snapshot(store: lip.Store) -> tuple[object, ...]:
    """Everything a failed write must leave unchanged."""
    conn = store.conn
    t = store.table
    return (
        conn.execute(sql.SQL("SELECT * FROM {} ORDER BY id").format(t("collections"))).fetchall(),
        conn.execute(sql.SQL("SELECT * FROM {} ORDER BY id").format(t("documents"))).fetchall(),
        conn.execute(
            sql.SQL("SELECT doc_id, position, embedding::text FROM {} ORDER BY 1, 2").format(
                t("tokens")
            )
        ).fetchall(),
    )


def assert_same_hits(rows: list, hits: list[lip.Hit], tol: float = 1e-3) -> None:
    """SQL ``search()`` rows (id, score, ...) and the Python path's hits agree: rank by rank
    the same scores within ``tol``, and the same documents but where two tie within ``tol``
    (SQL scores the query as halfvec, Python the float32 query it is given)."""
    np.testing.assert_allclose([r[1] for r in rows], [h.score for h in hits], atol=tol)
    python = {h.id: h.score for h in hits}
    for row, hit in zip(rows, hits):
        doc, score = row[0], row[1]
        if doc != hit.id:  # swapped with a document of the same score, within tol
            assert abs(score - hit.score) <= tol, (rows, hits)
            assert doc not in python or abs(python[doc] - score) <= tol, (rows, hits)
    assert len({r[0] for r in rows} ^ set(python)) <= 2 * sum(
        abs(r[1] - rows[-1][1]) <= tol for r in rows
    ), (rows, hits)  # only documents tied with the k-th may be in one list and not the other


def make_role(superuser_dsn: str, database_dsn: str, *privileges: str) -> str:
    """A login role (not superuser) with ``privileges`` on the database; its DSN."""
    role = f"lip_role_{uuid.uuid4().hex[:8]}"
    dbname = psycopg.conninfo.conninfo_to_dict(database_dsn)["dbname"]
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(PASSWORD)
            )
        )
        for privilege in privileges:
            conn.execute(
                sql.SQL("GRANT {} ON DATABASE {} TO {}").format(
                    sql.SQL(privilege), sql.Identifier(str(dbname)), sql.Identifier(role)
                )
            )
    return make_conninfo(database_dsn, user=role, password=PASSWORD)


def user_of(dsn: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(dsn)["user"])


def drop_roles(superuser_dsn: str, database_dsn: str, *role_dsns: str) -> None:
    """Drop the roles of ``role_dsns`` with what they own in the database."""
    with psycopg.connect(database_dsn, autocommit=True) as conn:
        for dsn in role_dsns:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(user_of(dsn))))
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        for dsn in role_dsns:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(user_of(dsn))))


def drop_schema(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def grant_read_only(owner_dsn: str, reader_dsn: str, schema: str) -> None:
    """The owner grants the reader read-only access through the CLI, as an operator would."""
    from click.testing import CliRunner

    from lateinteract_pg.cli import cli

    result = CliRunner().invoke(
        cli, ["grant-read-only", user_of(reader_dsn), "--dsn", owner_dsn, "--schema", schema]
    )
    assert result.exit_code == 0, result.output
