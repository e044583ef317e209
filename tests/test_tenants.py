"""Tenants: row-level security hides other tenants' documents and token rows from a role,
in every search path (Python plans and tiers, hybrid, the SQL functions) and in plain SQL."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from click.testing import CliRunner
from pgvector import HalfVector
from psycopg import sql

import lateinteract_pg as lip
from lateinteract_pg.cli import cli
from lateinteract_pg.pooling import pooled_length
from tests.helpers import drop_roles, drop_schema, grant_read_only, make_role, user_of

DIM = 16
SCHEMA = "tenants"
TENANT_OF = {"acme": range(0, 100), "globex": range(100, 250), None: range(250, 300)}


def _documents() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    docs = []
    for _ in range(300):
        d = rng.standard_normal((int(rng.integers(3, 10)), DIM)).astype(np.float32)
        docs.append(d / np.linalg.norm(d, axis=1, keepdims=True))
    return docs


DOCS = _documents()


@pytest.fixture(scope="module")
def tenancy(superuser_dsn: str, database: str) -> Iterator[dict[str, str]]:
    """An owner that writes three groups of documents (acme, globex, shared), alice granted
    acme, and bob granted read-only access without a tenant."""
    owner = make_role(superuser_dsn, database, "CREATE", "CONNECT")
    alice = make_role(superuser_dsn, database, "CONNECT")
    bob = make_role(superuser_dsn, database, "CONNECT")
    with lip.connect(owner, schema=SCHEMA) as store:
        coll = store.collection("mt", dim=DIM, text_search_config="simple")
        for tenant, members in TENANT_OF.items():
            coll.add_embeddings(
                [f"d{j}" for j in members], [DOCS[j] for j in members],
                texts=[f"document {j} of {tenant or 'everyone'}" for j in members],
                metadata=[{"j": j} for j in members], tenant=tenant,
            )  # fmt: skip
        store.grant_tenant(user_of(alice), "acme")
    grant_read_only(owner, bob, SCHEMA)
    yield {"owner": owner, "alice": alice, "bob": bob}
    drop_schema(database, SCHEMA)
    drop_roles(superuser_dsn, database, owner, alice, bob)


def visible_ids(*tenants: str | None) -> set[str]:
    return {f"d{j}" for t in tenants for j in TENANT_OF[t]}


def exact_top(query: np.ndarray, ids: set[str], k: int) -> list[str]:
    scores = {i: lip.maxsim(query, DOCS[int(i[1:])].astype(np.float16)) for i in ids}
    return sorted(scores, key=lambda i: (-scores[i], int(i[1:])))[:k]


def globex_query() -> np.ndarray:
    """Tokens of globex documents: without the policies, globex would fill the top k."""
    return np.concatenate([DOCS[120][:2], DOCS[130][:2]])


def test_a_tenant_role_sees_its_tenant_and_shared_documents_only(tenancy: dict) -> None:
    query = globex_query()
    with lip.connect(tenancy["owner"], schema=SCHEMA) as store:
        unrestricted = store.collection("mt").search_embeddings(query, k=10, exact=True)
        assert {h.id for h in unrestricted[:2]} == {"d120", "d130"}
    allowed = visible_ids("acme", None)
    expected = exact_top(query, allowed, 10)
    with lip.connect(tenancy["alice"], schema=SCHEMA) as store:
        coll = store.collection("mt", create=False)
        assert len(coll) == 150
        for plan in ("index", "exhaustive"):
            hits = coll.search_embeddings(query, k=10, plan=plan)  # type: ignore[arg-type]
            assert len(hits) == 10 and {h.id for h in hits} <= allowed, plan
            if plan == "exhaustive":
                assert [h.id for h in hits] == expected
            else:
                assert len({h.id for h in hits} & set(expected)) >= 8
        dense = coll.search_embeddings(query, k=10, tier="dense")
        assert len(dense) == 10 and {h.id for h in dense} <= allowed
        hybrid = coll.search_hybrid_embeddings(query, "document globex everyone", k=10)
        assert len(hybrid) == 10 and {h.id for h in hybrid} <= allowed
        assert coll.get("d120") is None and coll.get("d5") is not None
        rows = store.conn.execute(
            sql.SQL("SELECT id FROM {}('mt', %s, 10)").format(store.table("search")),
            ([HalfVector(v) for v in query],),
        ).fetchall()
        assert [r[0] for r in rows] == expected
        rows = store.conn.execute(
            sql.SQL("SELECT id FROM {}('mt', %s, 'globex', 10)").format(
                store.table("search_hybrid")
            ),
            ([HalfVector(v) for v in query],),
        ).fetchall()
        assert len(rows) == 10 and {r[0] for r in rows} <= allowed
        # plain SQL: the parent table and the partition both hide the other tenant's rows
        per_row = coll.spec.index_pool_factor  # the defaults pool the token rows by 3
        n_tokens = sum(pooled_length(len(DOCS[int(i[1:])]), per_row) for i in allowed)
        for table in ("tokens", f"tokens_{coll.id}"):
            count = store.conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(store.table(table))
            ).fetchone()
            assert count == (n_tokens,), table
        with pytest.raises(lip.PermissionDenied):
            coll.add_embeddings(["intruder"], [DOCS[0]], tenant="acme")


def test_a_role_without_tenant_sees_shared_documents_only(tenancy: dict) -> None:
    query = globex_query()
    with lip.connect(tenancy["bob"], schema=SCHEMA) as store:
        coll = store.collection("mt", create=False)
        hits = coll.search_embeddings(query, k=10, plan="index")
        assert [h.id for h in hits] == exact_top(query, visible_ids(None), 10)
        assert len(coll) == 50


def tenant_command(command: str, tenancy: dict) -> None:
    """``lateinteract-pg grant-tenant`` or ``revoke-tenant`` of acme for alice, by the owner."""
    result = CliRunner().invoke(
        cli,
        [command, user_of(tenancy["alice"]), "acme", "--dsn", tenancy["owner"],
         "--schema", SCHEMA],
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def test_revoking_a_tenant_hides_it_again(tenancy: dict) -> None:
    tenant_command("revoke-tenant", tenancy)
    try:
        with lip.connect(tenancy["alice"], schema=SCHEMA) as store:
            coll = store.collection("mt", create=False)
            assert len(coll) == 50
            hits = coll.search_embeddings(globex_query(), k=10)
            assert {h.id for h in hits} <= visible_ids(None)
    finally:
        tenant_command("grant-tenant", tenancy)


def test_owner_searches_one_tenant_and_cannot_move_documents_between_tenants(
    tenancy: dict,
) -> None:
    query = globex_query()
    with lip.connect(tenancy["owner"], schema=SCHEMA) as store:
        coll = store.collection("mt")
        hits = coll.search_embeddings(query, k=10, tenant="acme", plan="index")
        assert {h.id for h in hits} <= visible_ids("acme", None) and len(hits) == 10
        exact = coll.search_embeddings(query, k=10, tenant="acme", exact=True)
        assert [h.id for h in exact] == exact_top(query, visible_ids("acme", None), 10)
        before = coll.get("d3", embeddings=True)
        with pytest.raises(lip.InvalidInput, match="another tenant"):
            coll.add_embeddings(["d3"], [DOCS[200]], tenant="globex")
        after = coll.get("d3", embeddings=True)
        assert after is not None and before is not None
        assert np.array_equal(after.embeddings, before.embeddings)
        with pytest.raises(lip.InvalidInput, match="tenant"):
            coll.add_embeddings(["x"], [DOCS[0]], tenant="")
