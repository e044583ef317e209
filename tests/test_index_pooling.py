"""Index pooling (index_pool_factor > 1): pooled token rows for the candidate index, every
vector kept once in the document row; checked against numpy MaxSim through the Python API,
SQL search(), maxsim() and explain(), with filters, tenants, replaces, deletes and the
migration's downgrade. Recall on real vectors: tests/test_search_real.py."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from pgvector import HalfVector
from psycopg import sql

import lateinteract_pg as lip
from lateinteract_pg import migrate
from lateinteract_pg.maxsim import maxsim
from lateinteract_pg.pooling import pool_tokens
from tests.helpers import assert_same_hits, clustered_docs, snapshot, unit

DIM = 24
N_DOCS = 240


def _documents(n: int = N_DOCS, seed: int = 0) -> list[np.ndarray]:
    return clustered_docs(n, seed, DIM, groups=(3, 10), lengths=(4, 40), noise=0.2)


DOCS = _documents()
IDS = [f"d{j}" for j in range(N_DOCS)]


def _stored(vectors: np.ndarray) -> np.ndarray:
    return vectors.astype(np.float16).astype(np.float32)


def _exact(query: np.ndarray, ids: list[str] = IDS) -> list[tuple[str, float]]:
    scores = [(i, maxsim(query, _stored(DOCS[int(i[1:])]))) for i in ids]
    return sorted(scores, key=lambda p: (-p[1], int(p[0][1:])))


def _query(seed: int) -> np.ndarray:
    """Tokens near those of three documents, and noise."""
    rng = np.random.default_rng(seed)
    picks = [DOCS[j][rng.integers(0, len(DOCS[j]))] for j in rng.choice(N_DOCS, 3)]
    noisy = np.stack(picks) + 0.1 * rng.standard_normal((3, DIM))
    return unit(np.concatenate([noisy, rng.standard_normal((3, DIM))])).astype(np.float32)


def _search_sql(coll: lip.Collection, query: np.ndarray, k: int, **knobs: object) -> list:
    names = "".join(f", {name} => %s" for name in knobs)
    return coll.conn.execute(
        sql.SQL("SELECT id, score FROM {}(%s, %s, %s" + names + ")").format(
            coll.store.table("search")
        ),
        (coll.name, [HalfVector(v) for v in query], k, *knobs.values()),
    ).fetchall()


@pytest.fixture
def pooled(store: lip.Store) -> lip.Collection:
    coll = store.collection("pooled", dim=DIM, index_pool_factor=3)
    coll.add_embeddings(IDS, DOCS, metadata=[{"j": j} for j in range(N_DOCS)])
    return coll


def test_token_rows_are_pooled_and_documents_keep_every_vector(pooled: lip.Collection) -> None:
    store = pooled.store
    (info,) = store.collections()
    assert (info.index_pool_factor, info.n_tokens) == (3, sum(len(d) for d in DOCS))
    rows = store.conn.execute(
        sql.SQL("SELECT doc_id, count(*) FROM {} GROUP BY 1 ORDER BY 1").format(
            store.table(f"tokens_{pooled.id}")
        )
    ).fetchall()
    assert [n for _, n in rows] == [max(1, len(d) // 3) for d in DOCS]
    layout = store.conn.execute(
        sql.SQL(
            "SELECT count(*) FILTER (WHERE matrix IS NULL), "
            "sum(array_length(vectors, 1)) FROM {} WHERE collection_id = %s"
        ).format(store.table("documents")),
        (pooled.id,),
    ).fetchone()
    assert layout == (N_DOCS, info.n_tokens)
    # the token rows hold the pooled vectors, in the order pooling gives them
    first = store.conn.execute(
        sql.SQL("SELECT embedding FROM {} WHERE doc_id = %s ORDER BY position").format(
            store.table(f"tokens_{pooled.id}")
        ),
        (rows[0][0],),
    ).fetchall()
    pooled_vectors = pool_tokens(_stored(DOCS[0]), 3)[0]
    np.testing.assert_allclose([r[0].to_numpy() for r in first], pooled_vectors, atol=2e-3)
    for j in (0, 17, 200):
        document = pooled.get(IDS[j], embeddings=True)
        assert document is not None and document.embeddings is not None
        assert document.n_tokens == len(DOCS[j])
        np.testing.assert_array_equal(document.embeddings, _stored(DOCS[j]))
    report = pooled.storage()
    assert report.n_tokens == info.n_tokens
    assert report.rescoring >= info.n_tokens * DIM * 2  # every vector, as float16


def test_scores_are_exact_in_python_and_sql(pooled: lip.Collection) -> None:
    """Every returned score is exact MaxSim of all the vectors (not of the pooled rows);
    Python's plans and SQL search() agree; maxsim() and explain() read every vector."""
    found = 0
    for seed in range(8):
        query = _query(seed)
        reference = _exact(query)
        exact = dict(reference)
        top = {i for i, _ in reference[:10]}
        for plan in ("index", "exhaustive"):
            hits = pooled.search_embeddings(query, k=10, plan=plan)  # type: ignore[arg-type]
            for hit in hits:
                assert hit.score == pytest.approx(exact[hit.id], abs=1e-4)
            if plan == "exhaustive":
                assert [h.id for h in hits] == [i for i, _ in reference[:10]]
        index_hits = pooled.search_embeddings(query, k=10, plan="index", rescore_depth=80)
        found += len({h.id for h in index_hits} & top)
        rows = _search_sql(pooled, query, 10, rescore_depth=80)
        assert_same_hits(rows, index_hits)
        j = int(reference[0][0][1:])
        (score,) = pooled.conn.execute(
            sql.SQL("SELECT {}(%s, %s, %s)").format(pooled.store.table("maxsim")),
            (pooled.name, [HalfVector(v) for v in query], IDS[j]),
        ).fetchone()
        assert score == pytest.approx(exact[IDS[j]], abs=1e-3)
        matches = pooled.explain_embeddings(query, IDS[j])
        assert len(matches) == len(query)
        assert sum(m.similarity for m in matches) == pytest.approx(exact[IDS[j]], abs=1e-3)
        stored = _stored(DOCS[j])
        for m in matches:  # positions index every vector, not the pooled rows
            sims = stored @ query[m.query_token]
            assert sims[m.position] == pytest.approx(sims.max(), abs=2e-3)
    # stage 1 through rows pooled by 3, 80 of 240 documents re-scored: measured 0.95 over
    # 40 such queries (unpooled rows: 0.995)
    assert found / 80 >= 0.9, found


def test_filters_and_tenants_see_every_vector(store: lip.Store) -> None:
    coll = store.collection("tenants", dim=DIM, storage="compact")
    assert coll.spec.index_pool_factor > 1
    half = N_DOCS // 2
    coll.add_embeddings(IDS[:half], DOCS[:half], tenant="acme",
                        metadata=[{"j": j} for j in range(half)])  # fmt: skip
    coll.add_embeddings(IDS[half:], DOCS[half:], tenant="globex",
                        metadata=[{"j": j} for j in range(half, N_DOCS)])  # fmt: skip
    for seed in range(4):
        query = _query(100 + seed)
        acme = _exact(query, IDS[:half])
        hits = coll.search_embeddings(query, k=5, tenant="acme", exact=True)
        assert [h.id for h in hits] == [i for i, _ in acme[:5]]
        odd = [i for i in IDS if int(i[1:]) % 2]
        hits = coll.search_embeddings(query, k=5, filter={"j": {"$in": list(range(1, 240, 2))}})
        expected = dict(_exact(query, odd))
        assert all(int(h.id[1:]) % 2 for h in hits)
        for hit in hits:
            assert hit.score == pytest.approx(expected[hit.id], abs=1e-4)
        rows = coll.conn.execute(
            sql.SQL("SELECT id, score FROM {}(%s, %s, 5, filter => '$.j %% 2 == 1')").format(
                store.table("search")
            ),
            (coll.name, [HalfVector(v) for v in query]),
        ).fetchall()
        assert all(int(r[0][1:]) % 2 for r in rows)
        np.testing.assert_allclose([r[1] for r in rows], [expected[r[0]] for r in rows], atol=1e-3)


def test_replace_and_delete_move_vectors_and_pooled_rows(pooled: lip.Collection) -> None:
    store = pooled.store
    table = store.table(f"tokens_{pooled.id}")
    count = sql.SQL("SELECT count(*) FROM {}").format(table)
    before = store.conn.execute(count).fetchone()[0]
    new = _documents(1, seed=99)[0]
    pooled.add_embeddings([IDS[5]], [new])  # a replace
    rows = store.conn.execute(count).fetchone()[0]
    assert rows == before - max(1, len(DOCS[5]) // 3) + max(1, len(new) // 3)
    document = pooled.get(IDS[5], embeddings=True)
    assert document is not None and document.embeddings is not None
    np.testing.assert_array_equal(document.embeddings, _stored(new))
    hits = pooled.search_embeddings(new, k=1, plan="index")
    assert hits[0].id == IDS[5] and hits[0].score == pytest.approx(maxsim(new, _stored(new)), 1e-4)
    assert pooled.delete([IDS[5], IDS[6]]) == 2
    assert store.conn.execute(count).fetchone()[0] == rows - max(1, len(new) // 3) - max(
        1, len(DOCS[6]) // 3
    )
    (info,) = store.collections()
    assert info.n_tokens == sum(len(d) for d in DOCS) - len(DOCS[5]) - len(DOCS[6])
    assert IDS[5] not in {h.id for h in pooled.search_embeddings(new, k=5)}


def test_bad_storage_options_are_refused_and_change_nothing(
    store: lip.Store, pooled: lip.Collection
) -> None:
    before = snapshot(store)
    for bad in ({"index_pool_factor": 0}, {"index_pool_factor": 17},
                {"index_pool_factor": True}, {"index_pool_factor": "2"},
                {"index_pool_factor": 2, "rescore_storage": "int8"},
                {"storage": "tiny"}, {"storage": 4}):  # fmt: skip
        with pytest.raises(lip.InvalidInput):
            store.collection("other", dim=DIM, **bad)  # type: ignore[arg-type]
    with pytest.raises(lip.CollectionMismatch, match="index_pool_factor"):
        store.collection("pooled", dim=DIM, storage="unpooled")
    with pytest.raises(lip.CollectionMismatch, match="index_pool_factor=3"):
        store.collection("pooled", dim=DIM, index_pool_factor=2)
    with pytest.raises(lip.InvalidInput, match="pooled"):
        pooled.search_embeddings(DOCS[0], rescore_from="tokens")
    assert snapshot(store) == before
    assert store.collection("pooled", dim=DIM, index_pool_factor=3).name == "pooled"


def test_presets_and_the_default_layout(store: lip.Store) -> None:
    compact = store.collection("c", dim=DIM, storage="compact")
    balanced = store.collection("b", dim=DIM, storage="balanced")
    default = store.collection("d", dim=DIM, storage="default")
    unpooled = store.collection("u", dim=DIM, storage="unpooled")
    assert compact.spec.index_pool_factor > balanced.spec.index_pool_factor > 1
    assert default.spec == replace(balanced.spec, id=default.id, name="d")
    assert store.collection("n", dim=DIM).spec.index_pool_factor == 3  # nothing asked
    assert unpooled.spec.index_pool_factor == 1 and unpooled.spec.matrix_layout == "float16"
    # index pooling keeps float16 vectors: asking for int8 or pooled vectors unpools the rows
    int8 = store.collection("i", dim=DIM, rescore_storage="int8")
    assert (int8.spec.index_pool_factor, int8.spec.matrix_layout) == (1, "int8")
    assert store.collection("p", dim=DIM, pool_factor=2).spec.index_pool_factor == 1
    # a named option overrides the preset
    mixed = store.collection("m", dim=DIM, storage="compact", index_pool_factor=2)
    assert mixed.spec.index_pool_factor == 2
    assert store.collection("c", dim=DIM, storage="compact").spec == compact.spec


def test_downgrade_is_refused_while_a_collection_pools_its_rows(
    pg_dsn: str, store: lip.Store, pooled: lip.Collection
) -> None:
    before = snapshot(store)
    with pytest.raises(lip.InvalidInput, match="index_pool_factor"):
        migrate.upgrade(pg_dsn, store.schema, "0007")
    assert migrate.current_revision(store.conn, store.schema) == migrate.HEAD
    assert snapshot(store) == before
    store.drop_collection("pooled")
    store.collection("plain", dim=DIM, storage="unpooled").add_embeddings(IDS[:3], DOCS[:3])
    assert migrate.upgrade(pg_dsn, store.schema, "0007") == "0007"
    assert migrate.upgrade(pg_dsn, store.schema) == migrate.HEAD
    assert store.collection("plain", dim=DIM).search_embeddings(DOCS[1], k=1)[0].id == IDS[1]
