"""ColBERT encoders: trained late-interaction checkpoints, Stanford or PyLate format.

A ColBERT model is a BERT-family transformer followed by a linear projection to a small
``dim``; every token vector is L2-normalised. Queries and documents are marked and shaped
differently, exactly as in Stanford ColBERT (``colbert-ai``) and PyLate:

* query: ``[CLS] [Q] tokens [SEP]`` truncated to ``query_maxlen``, then padded with
  ``[MASK]`` up to ``query_maxlen``. The attention mask covers the real tokens only (unless
  ``attend_to_mask_tokens``), yet all ``query_maxlen`` output vectors are kept: the
  ``[MASK]`` vectors are ColBERT's query augmentation.
* document: ``[CLS] [D] tokens [SEP]`` truncated to ``doc_maxlen``; the vectors of
  punctuation tokens (the ids of :data:`string.punctuation`) and of padding are dropped.

Two on-disk formats are recognised by :meth:`ColBERTEncoder.from_pretrained`:

``stanford``
    A Hugging Face folder saved by ``HF_ColBERT``: ``config.json``, tokenizer files and one
    weights file (``model.safetensors`` or ``pytorch_model.bin``, keys with or without the
    ``bert.`` prefix) that also holds a bias-free ``linear.weight`` of shape (dim, hidden).
    ``artifact.metadata`` (JSON), when present, gives ``query_token_id`` / ``doc_token_id``
    (marker tokens, default ``[unused0]`` / ``[unused1]``), ``query_maxlen`` (32),
    ``doc_maxlen`` (180), ``attend_to_mask_tokens`` (false), ``mask_punctuation`` (true),
    ``dim`` and ``similarity``.
``pylate``
    A sentence-transformers folder: ``modules.json`` lists a Transformer module and one or
    more Dense modules (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``);
    ``config_sentence_transformers.json`` may give ``query_prefix`` / ``document_prefix``
    (default ``"[Q] "`` / ``"[D] "``), ``query_length`` (32), ``document_length`` (180),
    ``attend_to_expansion_tokens`` (false), ``skiplist_words`` (punctuation) and
    ``do_query_expansion`` (true). Pooling and Normalize modules are ignored, as PyLate does.

PyLate inserts the id of the prefix *token* right after ``[CLS]``; it registers the prefix
string with ``tokenizer.add_tokens`` and grows the embedding matrix, so a saved PyLate model
normally carries ``"[Q] "`` / ``"[D] "`` as added tokens with trained embedding rows, and
such a token is used as is. When the prefix is not a token of the saved tokenizer, PyLate
would add it with a freshly, randomly initialised embedding, which cannot be reproduced;
this module instead maps ``"[Q] "`` / ``"[D] "`` to ``[unused0]`` / ``[unused1]`` (the
markers Stanford ColBERT uses for BERT vocabularies, and the prefixes PyLate itself uses for
Stanford checkpoints), with a warning, and refuses any other unknown prefix.

torch and transformers are an optional extra (``pip install 'lateinteract-pg[encoders]'``);
they are imported only when an encoder is built.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import string
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from lateinteract_pg.encoders import import_backend, spans_within
from lateinteract_pg.errors import EncoderUnavailable, InvalidInput

__all__ = ["ColBERTEncoder"]

log = logging.getLogger(__name__)

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_SHARD_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_STANFORD_DEFAULTS: dict[str, Any] = {
    "query_token_id": "[unused0]",
    "doc_token_id": "[unused1]",
    "query_maxlen": 32,
    "doc_maxlen": 180,
    "attend_to_mask_tokens": False,
    "mask_punctuation": True,
    "similarity": "cosine",
}
_PYLATE_DEFAULTS: dict[str, Any] = {
    "query_prefix": "[Q] ",
    "document_prefix": "[D] ",
    "query_length": 32,
    "document_length": 180,
    "attend_to_expansion_tokens": False,
    "skiplist_words": None,  # string.punctuation
    "do_query_expansion": True,
}
# PyLate's default prefixes, and the BERT-vocabulary markers they fall back to here.
_PREFIX_FALLBACK = {
    "[Q] ": "[unused0]",
    "[Q]": "[unused0]",
    "[D] ": "[unused1]",
    "[D]": "[unused1]",
}
_IDENTITY = "torch.nn.modules.linear.Identity"
_EXPECTED = (
    "expected a Stanford ColBERT folder (config.json and model.safetensors or "
    "pytorch_model.bin holding a 'linear.weight' projection) or a PyLate / "
    "sentence-transformers folder (modules.json listing a Transformer and at least one "
    "Dense module)"
)


def _import_backend() -> tuple[Any, Any]:
    return import_backend("ColBERTEncoder")


@dataclass
class _Dense:
    """One projection layer: ``act(x @ weight.T + bias)`` (+ a residual, as in PyLate)."""

    weight: Any
    bias: Any | None = None
    activation: Any | None = None  # a torch module; None is the identity
    activation_name: str = _IDENTITY
    use_residual: bool = False
    residual: Any | None = None  # weight of the bias-free residual projection, if any

    def __call__(self, x: Any) -> Any:
        import torch.nn.functional as F

        y = F.linear(x, self.weight, self.bias)
        if self.activation is not None:
            y = self.activation(y)
        if self.use_residual:
            y = y + (x if self.residual is None else F.linear(x, self.residual))
        return y

    def to(self, device: str) -> _Dense:
        def move(t: Any) -> Any:
            return None if t is None else t.to(device=device, dtype=self.weight.dtype)

        self.weight = self.weight.float().to(device)
        self.bias, self.residual = move(self.bias), move(self.residual)
        if self.activation is not None:
            self.activation = self.activation.to(device)
        return self


@dataclass
class _Config:
    """Everything but the networks; the union of both formats' settings."""

    format: str
    query_maxlen: int
    doc_maxlen: int
    query_marker: str | None
    doc_marker: str | None
    attend_to_mask_tokens: bool
    query_expansion: bool
    mask_punctuation: bool
    skiplist_words: list[str] | None  # PyLate's; None means string.punctuation
    lowercase: bool = False
    strip: bool = False


# ----------------------------------------------------------------------------- loading


def _read_json(path: Path, expect: type = dict) -> Any:
    """The JSON ``expect`` (an object, or a list) stored in ``path``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, expect):
        raise InvalidInput(f"{path} should hold a JSON {expect.__name__}")
    return data


def _weights_file(folder: Path, key: str | None = None) -> Path | None:
    """The weights file of ``folder`` (the shard holding ``key`` when sharded), if any."""
    for name in _WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    for name in _SHARD_INDEXES:
        if (folder / name).is_file():
            weight_map = _read_json(folder / name).get("weight_map", {})
            shard = weight_map.get(key) if key else next(iter(weight_map.values()), None)
            return folder / shard if shard else None
    return None


def _read_tensors(path: Path, keys: Sequence[str]) -> dict[str, Any]:
    """The tensors named ``keys`` that ``path`` holds (absent ones are left out)."""
    torch, _ = _import_backend()
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt", device="cpu") as fh:
                present = set(fh.keys())
                return {k: fh.get_tensor(k) for k in keys if k in present}
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or foreign file: report it as bad input
        raise InvalidInput(f"cannot read weights {path}: {exc}") from exc
    if not isinstance(state, dict):
        raise InvalidInput(f"{path} does not hold a state dict")
    return {k: state[k] for k in keys if k in state}


def _stanford_projection(folder: Path) -> Any | None:
    """``linear.weight`` of a Stanford checkpoint folder, or None when it has none."""
    path = _weights_file(folder, "linear.weight")
    if path is None or not path.is_file():
        return None
    return _read_tensors(path, ["linear.weight"]).get("linear.weight")


def _modules(folder: Path) -> list[dict[str, Any]] | None:
    path = folder / "modules.json"
    if not path.is_file():
        return None
    modules = _read_json(path, list)
    if not all(isinstance(m, dict) for m in modules):
        raise InvalidInput(f"{path} should be a JSON list of modules")
    return sorted(modules, key=lambda m: int(m.get("idx", 0)))


def _module_kind(module: dict[str, Any]) -> str:
    return str(module.get("type", "")).rsplit(".", 1)[-1]


def _resolve(name_or_path: str) -> tuple[Path, str]:
    """A local folder for ``name_or_path`` (downloading a hub snapshot) and the model name."""
    if os.path.isdir(name_or_path):
        return Path(name_or_path), Path(name_or_path).resolve().name
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(
            repo_id=name_or_path,
            ignore_patterns=["*.onnx", "onnx/*", "openvino/*", "*.h5", "*.msgpack", "*.ot"],
        )
    except ImportError as exc:
        raise EncoderUnavailable("downloading a model needs huggingface_hub") from exc
    except (OSError, ValueError) as exc:
        raise InvalidInput(
            f"{name_or_path!r} is neither a local folder nor a model that could be fetched "
            f"from the Hugging Face hub ({type(exc).__name__}: {exc}); {_EXPECTED}"
        ) from exc
    return Path(folder), name_or_path


@contextmanager
def _quiet_transformers(transformers: Any) -> Iterator[None]:
    """Silence transformers' load report (``linear.weight`` is expectedly unused)."""
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)


def _load_transformer(folder: Path) -> tuple[Any, Any]:
    """Tokenizer and base model (all weights but the pooler must be in the checkpoint)."""
    _, transformers = _import_backend()
    try:
        with _quiet_transformers(transformers):
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
            model, info = transformers.AutoModel.from_pretrained(
                str(folder), output_loading_info=True
            )
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise InvalidInput(f"cannot load the transformer in {folder}: {exc}") from exc
    missing = sorted(k for k in info.get("missing_keys", ()) if "pooler" not in k)
    if missing:
        raise InvalidInput(
            f"the weights in {folder} do not fit {type(model).__name__}: "
            f"{len(missing)} missing, e.g. {missing[:3]}"
        )
    unexpected = sorted(set(info.get("unexpected_keys", ())) - {"linear.weight"})
    if unexpected:
        log.debug("ignored %d unexpected weights in %s: %s", len(unexpected), folder, unexpected)
    return tokenizer, model.float().eval()


def _load_stanford(folder: Path, linear: Any) -> tuple[Any, Any, list[_Dense], _Config]:
    meta_path = folder / "artifact.metadata"
    meta = dict(_STANFORD_DEFAULTS)
    if meta_path.is_file():
        found = _read_json(meta_path)
        meta.update({k: v for k, v in found.items() if k in meta or k == "dim"})
    else:
        log.info("%s has no artifact.metadata: using ColBERT defaults", folder)
    tokenizer, model = _load_transformer(folder)
    hidden = int(model.config.hidden_size)
    if linear.ndim != 2 or linear.shape[1] != hidden:
        raise InvalidInput(
            f"linear.weight in {folder} has shape {tuple(linear.shape)}, expected (dim, {hidden})"
        )
    if "dim" in meta and int(meta["dim"]) != linear.shape[0]:
        raise InvalidInput(
            f"artifact.metadata says dim {meta['dim']} but linear.weight has {linear.shape[0]}"
        )
    if meta["similarity"] != "cosine":
        log.warning(
            "%s was trained with %r similarity; vectors are scored by dot product (cosine)",
            folder,
            meta["similarity"],
        )
    config = _Config(
        format="stanford",
        query_maxlen=int(meta["query_maxlen"]),
        doc_maxlen=int(meta["doc_maxlen"]),
        query_marker=str(meta["query_token_id"]),
        doc_marker=str(meta["doc_token_id"]),
        attend_to_mask_tokens=bool(meta["attend_to_mask_tokens"]),
        query_expansion=True,
        mask_punctuation=bool(meta["mask_punctuation"]),
        skiplist_words=None,
    )
    return tokenizer, model, [_Dense(weight=linear.float())], config


def _activation(name: str | None) -> tuple[Any | None, str]:
    """The activation module for a Dense ``activation_function`` path (PyLate's rules)."""
    torch, _ = _import_backend()
    if not name or name == _IDENTITY:
        return None, _IDENTITY
    if not name.startswith("torch."):
        log.warning("untrusted activation %r: using the identity, as PyLate does", name)
        return None, _IDENTITY
    module_name, _, attr = name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
        act = cls()
    except (ImportError, AttributeError, TypeError) as exc:
        raise InvalidInput(f"unknown activation_function {name!r}") from exc
    if not isinstance(act, torch.nn.Module):
        raise InvalidInput(f"activation_function {name!r} is not a torch module")
    return (None, _IDENTITY) if isinstance(act, torch.nn.Identity) else (act, name)


def _load_dense(folder: Path) -> _Dense:
    cfg = _read_json(folder / "config.json")
    path = _weights_file(folder)
    if path is None:
        raise InvalidInput(f"Dense module {folder} has no model.safetensors or pytorch_model.bin")
    tensors = _read_tensors(path, ["linear.weight", "linear.bias", "residual.weight"])
    if "linear.weight" not in tensors:
        raise InvalidInput(f"{path} holds no 'linear.weight'")
    weight = tensors["linear.weight"]
    shape = (int(cfg.get("out_features", weight.shape[0])), int(cfg.get("in_features", -1)))
    if weight.ndim != 2 or (shape[1] != -1 and tuple(weight.shape) != shape):
        raise InvalidInput(f"{path}: linear.weight has shape {tuple(weight.shape)}, config {shape}")
    bias = tensors.get("linear.bias")
    if bool(cfg.get("bias", bias is not None)) != (bias is not None):
        raise InvalidInput(f"{folder}: config bias={cfg.get('bias')} but weights disagree")
    activation, activation_name = _activation(cfg.get("activation_function"))
    use_residual = bool(cfg.get("use_residual", False))
    residual = tensors.get("residual.weight")
    if use_residual and residual is None and weight.shape[0] != weight.shape[1]:
        raise InvalidInput(f"{path}: use_residual needs 'residual.weight'")
    return _Dense(
        weight=weight.float(),
        bias=None if bias is None else bias.float(),
        activation=activation,
        activation_name=activation_name,
        use_residual=use_residual,
        residual=residual if use_residual else None,
    )


def _load_pylate(
    folder: Path, modules: list[dict[str, Any]]
) -> tuple[Any, Any, list[_Dense], _Config]:
    kinds = [_module_kind(m) for m in modules]
    if not kinds or kinds[0] != "Transformer":
        raise InvalidInput(f"{folder}/modules.json should start with a Transformer module")
    dense: list[_Dense] = []
    for module, kind in zip(modules[1:], kinds[1:]):
        if kind == "Dense":
            dense.append(_load_dense(folder / str(module.get("path", ""))))
        else:
            log.info(
                "ignoring module %s (%s) of %s, as PyLate does", module.get("path"), kind, folder
            )
    base = folder / str(modules[0].get("path", ""))
    tokenizer, model = _load_transformer(base)
    width = int(model.config.hidden_size)
    for layer in dense:
        if layer.weight.shape[1] != width:
            raise InvalidInput(
                f"Dense layers in {folder} do not chain: expected in_features {width}, "
                f"got {layer.weight.shape[1]}"
            )
        width = layer.weight.shape[0]
    st_config: dict[str, Any] = {}
    if (folder / "config_sentence_transformers.json").is_file():
        st_config = _read_json(folder / "config_sentence_transformers.json")
    cfg = {k: st_config.get(k, v) for k, v in _PYLATE_DEFAULTS.items()}
    cfg = {k: (_PYLATE_DEFAULTS[k] if v is None else v) for k, v in cfg.items()}
    bert_cfg: dict[str, Any] = {}
    if (base / "sentence_bert_config.json").is_file():
        bert_cfg = _read_json(base / "sentence_bert_config.json")
    expansion = bool(cfg["do_query_expansion"])
    skiplist = cfg["skiplist_words"]
    config = _Config(
        format="pylate",
        query_maxlen=int(cfg["query_length"]),
        doc_maxlen=int(cfg["document_length"]),
        query_marker=str(cfg["query_prefix"]) or None,
        doc_marker=str(cfg["document_prefix"]) or None,
        # PyLate never attends to expansion tokens it does not add
        attend_to_mask_tokens=expansion and bool(cfg["attend_to_expansion_tokens"]),
        query_expansion=expansion,
        mask_punctuation=skiplist is None or bool(skiplist),
        skiplist_words=None if skiplist is None else [str(w) for w in skiplist],
        lowercase=bool(bert_cfg.get("do_lower_case", False)),
        strip=True,  # sentence-transformers' Transformer strips every text
    )
    return tokenizer, model, dense, config


# ----------------------------------------------------------------------------- encoder


class ColBERTEncoder:
    """A trained ColBERT model: ``dim``-wide, L2-normalised vectors per query/document token.

    Build with :meth:`from_pretrained`; see the module docstring for the formats and the
    exact tokenisation. Queries yield ``query_maxlen`` vectors each (the ``[MASK]``
    expansion included); documents yield one vector per kept token (punctuation and
    padding dropped).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        projection: Sequence[_Dense],
        config: _Config,
        *,
        name: str,
        device: str,
        batch_size: int,
    ) -> None:
        if not projection:
            raise InvalidInput("a ColBERT model needs at least one projection layer")
        limit = int(getattr(model.config, "max_position_embeddings", 512))
        if 0 < (tokenizer.model_max_length or 0) < 1_000_000:
            limit = min(limit, int(tokenizer.model_max_length))
        for what, value in (
            ("query_maxlen", config.query_maxlen),
            ("doc_maxlen", config.doc_maxlen),
        ):
            if not 4 <= value <= limit:
                raise InvalidInput(f"{what} must be within [4, {limit}], got {value}")
        if batch_size < 1:
            raise InvalidInput(f"batch_size must be >= 1, got {batch_size}")
        self._model, self._tokenizer = model, tokenizer
        self._projection = [layer.to(device) for layer in projection]
        self._config = config
        self.name, self.device, self.batch_size = name, device, batch_size
        self._fingerprint: str | None = None

        rows = int(model.get_input_embeddings().num_embeddings)
        self._query_marker = self._marker(config.query_marker, rows)
        self._doc_marker = self._marker(config.doc_marker, rows)
        expansion = tokenizer.mask_token_id
        if expansion is None:  # PyLate's choice for models without [MASK]
            expansion = tokenizer.eos_token_id
        if expansion is None and config.query_expansion:
            raise InvalidInput(f"{name}: the tokenizer has no [MASK] token to expand queries with")
        self._expansion_id = int(expansion) if expansion is not None else 0
        pad = tokenizer.pad_token_id
        self._pad_id = int(pad) if pad is not None else self._expansion_id
        self._skiplist = self._skiplist_ids() if config.mask_punctuation else frozenset()

    def _marker(self, token: str | None, rows: int) -> tuple[str, int] | None:
        """Resolve a marker/prefix string to a (vocabulary token, id) pair."""
        if token is None:
            return None
        vocab = self._tokenizer.get_vocab()
        resolved = token
        if token not in vocab and self._config.format == "pylate":
            fallback = _PREFIX_FALLBACK.get(token)
            if fallback is not None and fallback in vocab:
                log.warning(
                    "prefix %r is not a token of %s: using %s, as Stanford ColBERT does",
                    token,
                    self.name,
                    fallback,
                )
                resolved = fallback
        if resolved not in vocab:
            raise InvalidInput(f"marker {token!r} is not a token of the {self.name} tokenizer")
        ident = int(vocab[resolved])
        if ident >= rows:
            raise InvalidInput(
                f"marker {resolved!r} has id {ident} but the model has only {rows} embeddings"
            )
        return resolved, ident

    def _skiplist_ids(self) -> frozenset[int]:
        if self._config.format == "stanford":  # ColBERT: first id of each symbol's encoding
            ids = (
                self._tokenizer.encode(symbol, add_special_tokens=False)
                for symbol in string.punctuation
            )
            return frozenset(int(i[0]) for i in ids if i)
        words = self._config.skiplist_words
        vocab = self._tokenizer.get_vocab()  # PyLate: words that are single tokens
        return frozenset(int(vocab[w]) for w in (words or string.punctuation) if w in vocab)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        *,
        device: str | None = None,
        batch_size: int = 32,
        query_maxlen: int | None = None,
        doc_maxlen: int | None = None,
    ) -> ColBERTEncoder:
        """Load a ColBERT checkpoint, Stanford or PyLate format, from a folder or the hub.

        ``query_maxlen`` / ``doc_maxlen`` override the checkpoint's; ``device`` defaults to
        CUDA when available, else CPU.

        Raises
        ------
        InvalidInput
            The folder is neither format, or its files are inconsistent.
        EncoderUnavailable
            torch or transformers is not installed.
        """
        torch, _ = _import_backend()
        folder, name = _resolve(name_or_path)
        modules = _modules(folder)
        if modules is not None and "Dense" in [_module_kind(m) for m in modules]:
            tokenizer, model, projection, config = _load_pylate(folder, modules)
        else:
            base = folder
            if modules and _module_kind(modules[0]) == "Transformer":
                base = folder / str(modules[0].get("path", ""))
            linear = _stanford_projection(base) if (base / "config.json").is_file() else None
            if linear is None:
                raise InvalidInput(f"{name_or_path} is not a ColBERT checkpoint: {_EXPECTED}")
            tokenizer, model, projection, config = _load_stanford(base, linear)
        if query_maxlen is not None:
            config.query_maxlen = query_maxlen
        if doc_maxlen is not None:
            config.doc_maxlen = doc_maxlen
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        encoder = cls(
            model.to(device),
            tokenizer,
            projection,
            config,
            name=name,
            device=device,
            batch_size=batch_size,
        )
        log.info(
            "loaded ColBERT %s (%s format) on %s: dim %d, query %d / doc %d tokens",
            name,
            config.format,
            device,
            encoder.dim,
            config.query_maxlen,
            config.doc_maxlen,
        )
        return encoder

    # ------------------------------------------------------------------------- identity

    @property
    def dim(self) -> int:
        """Width of every token vector (the last projection's output)."""
        return int(self._projection[-1].weight.shape[0])

    @property
    def format(self) -> str:
        """``"stanford"`` or ``"pylate"``: the layout the checkpoint was read from."""
        return self._config.format

    @property
    def query_maxlen(self) -> int:
        """Tokens per query, markers and ``[MASK]`` expansion included."""
        return self._config.query_maxlen

    @property
    def doc_maxlen(self) -> int:
        """Most tokens per document, markers included, before punctuation is dropped."""
        return self._config.doc_maxlen

    def settings(self) -> dict[str, Any]:
        """JSON-serialisable identity of this encoder, to record with a collection.

        The same checkpoint saved in both formats gives settings that differ only in
        ``format``: ``sha256`` hashes the tensors, not the files.
        """
        if self._fingerprint is None:
            self._fingerprint = self._hash()
        q, d = self._query_marker, self._doc_marker
        return {
            "kind": "colbert",
            "format": self._config.format,
            "model": self.name,
            "sha256": self._fingerprint,
            "dim": self.dim,
            "query_maxlen": self._config.query_maxlen,
            "doc_maxlen": self._config.doc_maxlen,
            "markers": {
                "query": q[0] if q else None,
                "query_id": q[1] if q else None,
                "doc": d[0] if d else None,
                "doc_id": d[1] if d else None,
            },
            "attend_to_mask_tokens": self._config.attend_to_mask_tokens,
            "query_expansion": self._config.query_expansion,
            "mask_punctuation": bool(self._skiplist),
            "skiplist": sorted(self._skiplist),
            "lowercase": self._config.lowercase,
        }

    def _hash(self) -> str:
        """sha256 over the float32 tensors (pooler excluded: it never reaches a vector)."""
        digest = hashlib.sha256()

        def add(label: str, tensor: Any) -> None:
            array = tensor.detach().float().cpu().contiguous().numpy()
            digest.update(f"{label}:{tuple(array.shape)};".encode())
            digest.update(array.tobytes())

        for key, param in sorted(self._model.named_parameters()):
            if "pooler" not in key:
                add(key, param)
        for i, layer in enumerate(self._projection):
            add(f"projection.{i}.weight", layer.weight)
            if layer.bias is not None:
                add(f"projection.{i}.bias", layer.bias)
            if layer.activation_name != _IDENTITY:
                digest.update(f"projection.{i}.activation:{layer.activation_name};".encode())
            if layer.use_residual:
                digest.update(f"projection.{i}.residual;".encode())
                if layer.residual is not None:
                    add(f"projection.{i}.residual", layer.residual)
        return digest.hexdigest()[:16]

    # ------------------------------------------------------------------------- tokens

    def _check(self, texts: Sequence[str]) -> list[str]:
        if isinstance(texts, str):
            raise InvalidInput("expected a sequence of strings, got a single str")
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise InvalidInput(f"text {i} is empty or not a string: {text!r:.40}")
        cfg = self._config
        out = [t.strip() if cfg.strip else t for t in texts]
        return [t.lower() for t in out] if cfg.lowercase else out

    def _marked(
        self, texts: list[str], query: bool
    ) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
        """Token ids with the marker placed as the checkpoint's format does, and each
        token's character span in its text ((0, 0) for [CLS], markers, [SEP])."""
        maxlen = self._config.query_maxlen if query else self._config.doc_maxlen
        marker = self._query_marker if query else self._doc_marker
        tok = self._tokenizer
        if marker is None:
            enc = tok(texts, truncation=True, max_length=maxlen, return_offsets_mapping=True)
            return enc["input_ids"], enc["offset_mapping"]
        none = (0, 0)
        if self._config.format == "stanford":
            # ColBERT tokenises ". " + text and overwrites the "." with the marker
            enc = tok(
                [". " + t for t in texts],
                truncation=True,
                max_length=maxlen,
                return_offsets_mapping=True,
            )
            ids = [[r[0], marker[1], *r[2:]] for r in enc["input_ids"]]
            spans = [
                [none, none, *((a - 2, b - 2) if b > a else none for a, b in o[2:])]
                for o in enc["offset_mapping"]
            ]
            return ids, spans
        # PyLate tokenises to maxlen - 1 and inserts the marker after [CLS]
        enc = tok(texts, truncation=True, max_length=maxlen - 1, return_offsets_mapping=True)
        ids = [[r[0], marker[1], *r[1:]] for r in enc["input_ids"]]
        spans = [[none, none, *o[1:]] for o in enc["offset_mapping"]]
        return ids, spans

    def _rows(self, texts: Sequence[str], query: bool) -> list[tuple[list[int], list[int]]]:
        """Unpadded ids and attention mask per text (queries padded with [MASK])."""
        texts = self._check(texts)
        if not texts:
            return []
        maxlen = self._config.query_maxlen if query else self._config.doc_maxlen
        out = []
        for ids in self._marked(texts, query)[0]:
            ids = [int(i) for i in ids]
            mask = [1] * len(ids)
            if query and self._config.query_expansion:
                fill = maxlen - len(ids)
                ids += [self._expansion_id] * fill
                mask += [int(self._config.attend_to_mask_tokens)] * fill
            out.append((ids, mask))
        return out

    def document_spans(self, texts: Sequence[str]) -> list[np.ndarray | None]:
        """Where in each text the vectors of :meth:`encode_documents` come from.

        Returns
        -------
        list of int32 arrays of shape (n_kept_tokens, 2): (start, end) character offsets
        into the text as given, end exclusive; (-1, -1) for ``[CLS]``, the marker and
        ``[SEP]``. ``None`` for a text whose lowercasing changes its length (the offsets
        would not map back).
        """
        processed = self._check(texts)
        if not processed:
            return []
        ids, spans = self._marked(processed, query=False)
        out: list[np.ndarray | None] = []
        for original, text, row_ids, row_spans in zip(texts, processed, ids, spans):
            shift = len(original) - len(original.lstrip()) if self._config.strip else 0
            if len(text) != len(original.strip() if self._config.strip else original):
                out.append(None)  # lowercasing changed the length
                continue
            keep = [i not in self._skiplist for i in row_ids]
            array = np.array(row_spans, dtype=np.int32).reshape(-1, 2)[keep] + shift
            out.append(spans_within(array, len(original)))
        return out

    def _pad(self, rows: Sequence[tuple[list[int], list[int]]]) -> tuple[np.ndarray, np.ndarray]:
        width = max((len(ids) for ids, _ in rows), default=0)
        ids = np.full((len(rows), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for r, (row_ids, row_mask) in enumerate(rows):
            ids[r, : len(row_ids)] = row_ids
            mask[r, : len(row_mask)] = row_mask
        return ids, mask

    def tokenize_queries(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention masks the model sees for ``texts`` as queries.

        Returns
        -------
        ids, mask : int64 arrays of shape (len(texts), query_maxlen), e.g.
            ``[CLS] [Q] what is ... [SEP] [MASK] ... [MASK]`` with mask 1 on the real tokens.
        """
        return self._pad(self._rows(texts, query=True))

    def tokenize_documents(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention masks for ``texts`` as documents.

        Returns
        -------
        ids, mask : int64 arrays of shape (len(texts), longest), right-padded with the pad
            id and mask 0; ``[CLS] [D] tokens [SEP]`` truncated to ``doc_maxlen``.
        """
        return self._pad(self._rows(texts, query=False))

    # ------------------------------------------------------------------------- vectors

    def encode_queries(self, texts: Sequence[str], *, progress: bool = False) -> list[np.ndarray]:
        """Encode queries.

        Returns
        -------
        list of float32 arrays of shape (query_maxlen, dim), unit norm, in input order
        (without query expansion, PyLate's ``do_query_expansion=false``: one per real token).
        """
        rows = self._rows(texts, query=True)
        keep = [
            [True] * len(ids) if self._config.query_expansion else [m == 1 for m in mask]
            for ids, mask in rows
        ]
        return self._encode(rows, keep, progress, "queries")

    def encode_documents(self, texts: Sequence[str], *, progress: bool = False) -> list[np.ndarray]:
        """Encode documents.

        Returns
        -------
        list of float32 arrays of shape (n_kept_tokens, dim), unit norm, in input order;
        ``[CLS]``, ``[D]`` and ``[SEP]`` are kept, punctuation tokens are not.
        """
        rows = self._rows(texts, query=False)
        keep = [[i not in self._skiplist for i in ids] for ids, _ in rows]
        return self._encode(rows, keep, progress, "documents")

    def _encode(
        self,
        rows: Sequence[tuple[list[int], list[int]]],
        keep: Sequence[Sequence[bool]],
        progress: bool,
        what: str,
    ) -> list[np.ndarray]:
        torch, _ = _import_backend()
        out: list[np.ndarray] = [np.empty((0, self.dim), np.float32)] * len(rows)
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
        with (
            torch.inference_mode(),
            tqdm(
                total=len(rows), disable=not progress, unit="text", desc=f"encoding {what}"
            ) as bar,
        ):
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                ids, mask = self._pad([rows[i] for i in chunk])
                hidden = self._model(
                    input_ids=torch.from_numpy(ids).to(self.device),
                    attention_mask=torch.from_numpy(mask).to(self.device),
                ).last_hidden_state.float()
                for layer in self._projection:
                    hidden = layer(hidden)
                vectors = torch.nn.functional.normalize(hidden, p=2, dim=-1).cpu().numpy()
                for r, i in enumerate(chunk):
                    kept = np.flatnonzero(np.asarray(keep[i], dtype=bool))
                    out[i] = np.ascontiguousarray(vectors[r, kept], dtype=np.float32)
                bar.update(len(chunk))
        return out
