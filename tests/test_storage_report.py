"""Collection.storage(): the bytes of each part of a collection on disk."""

from __future__ import annotations

import lateinteract_pg as lip
from tests.helpers import DIM, unit_docs


def _filled(store: lip.Store, name: str, n: int, seed: int, **options: object) -> lip.Collection:
    coll = store.collection(name, dim=DIM, **options)
    docs = unit_docs(n, seed=seed, lengths=(20, 40))
    coll.add_embeddings([f"d{i}" for i in range(n)], docs, texts=["some text"] * n)
    return coll


def test_parts_add_up_and_rescoring_is_the_matrices(store: lip.Store) -> None:
    coll = _filled(store, "parts", 60, seed=1, storage="unpooled")
    report = coll.storage()
    n_tokens = store.conn.execute(
        "SELECT n_tokens FROM collections WHERE name = 'parts'"
    ).fetchone()[0]
    assert report.n_tokens == n_tokens
    # float16 matrices, stored uncompressed, each with its 4-byte length
    assert report.rescoring == n_tokens * DIM * 2 + 4 * 60
    for part in ("token_heap", "token_keys", "candidate_index", "document_heap",
                 "document_keys", "dense_index", "full_text_index"):  # fmt: skip
        assert report.parts[part] > 0, part
    assert report.total == sum(report.parts.values())
    assert report.bytes_per_token == report.total / n_tokens
    assert report.per_token()["total"] == round(report.total / n_tokens, 1)


def test_int8_matrices_take_a_byte_a_value_and_a_scale(store: lip.Store) -> None:
    coll = _filled(store, "int8", 30, seed=2, rescore_storage="int8")
    report = coll.storage()
    assert report.rescoring == report.n_tokens * (DIM + 4) + 4 * 30


def test_shares_of_the_documents_table_add_up_to_its_files(store: lip.Store) -> None:
    small = _filled(store, "small", 20, seed=3)
    large = _filled(store, "large", 80, seed=4)
    heap = store.conn.execute("SELECT pg_relation_size('documents')").fetchone()[0]
    a, b = small.storage(), large.storage()
    assert abs(a.parts["document_heap"] + b.parts["document_heap"] - heap) <= 1
    assert b.parts["document_heap"] > 2 * a.parts["document_heap"]
    assert a.parts["token_heap"] < b.parts["token_heap"]  # own files count whole


def test_an_empty_collection_costs_its_empty_files(store: lip.Store) -> None:
    report = store.collection("empty", dim=DIM).storage()
    assert report.n_tokens == 0 and report.rescoring == 0
    assert report.bytes_per_token == 0.0
    assert report.parts["document_heap"] == 0
