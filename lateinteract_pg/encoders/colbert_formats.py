"""Reading ColBERT checkpoints from disk: the Stanford and the PyLate folder layouts.

:func:`read_checkpoint` recognises two formats:

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

How the markers and lengths are then used is :mod:`lateinteract_pg.encoders.colbert`'s.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lateinteract_pg.errors import InvalidInput

from .base import import_backend
from .sources import WEIGHT_FILES

__all__ = ["Checkpoint", "ColBERTConfig", "Dense", "read_checkpoint"]

log = logging.getLogger(__name__)

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
PREFIX_FALLBACK = {
    "[Q] ": "[unused0]",
    "[Q]": "[unused0]",
    "[D] ": "[unused1]",
    "[D]": "[unused1]",
}
IDENTITY = "torch.nn.modules.linear.Identity"
EXPECTED = (
    "expected a Stanford ColBERT folder (config.json and model.safetensors or "
    "pytorch_model.bin holding a 'linear.weight' projection) or a PyLate / "
    "sentence-transformers folder (modules.json listing a Transformer and at least one "
    "Dense module)"
)


def _import_backend() -> tuple[Any, Any]:
    return import_backend("ColBERTEncoder")


@dataclass
class Dense:
    """One projection layer: ``act(x @ weight.T + bias)`` (+ a residual, as in PyLate)."""

    weight: Any
    bias: Any | None = None
    activation: Any | None = None  # a torch module; None is the identity
    activation_name: str = IDENTITY
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

    def to(self, device: str) -> Dense:
        def move(t: Any) -> Any:
            return None if t is None else t.to(device=device, dtype=self.weight.dtype)

        self.weight = self.weight.float().to(device)
        self.bias, self.residual = move(self.bias), move(self.residual)
        if self.activation is not None:
            self.activation = self.activation.to(device)
        return self


@dataclass
class ColBERTConfig:
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
    for name in WEIGHT_FILES:
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


def _load_stanford(folder: Path, linear: Any) -> tuple[Any, Any, list[Dense], ColBERTConfig]:
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
    config = ColBERTConfig(
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
    return tokenizer, model, [Dense(weight=linear.float())], config


def _activation(name: str | None) -> tuple[Any | None, str]:
    """The activation module for a Dense ``activation_function`` path (PyLate's rules)."""
    torch, _ = _import_backend()
    if not name or name == IDENTITY:
        return None, IDENTITY
    if not name.startswith("torch."):
        log.warning("untrusted activation %r: using the identity, as PyLate does", name)
        return None, IDENTITY
    module_name, _, attr = name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
        act = cls()
    except (ImportError, AttributeError, TypeError) as exc:
        raise InvalidInput(f"unknown activation_function {name!r}") from exc
    if not isinstance(act, torch.nn.Module):
        raise InvalidInput(f"activation_function {name!r} is not a torch module")
    return (None, IDENTITY) if isinstance(act, torch.nn.Identity) else (act, name)


def _load_dense(folder: Path) -> Dense:
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
    return Dense(
        weight=weight.float(),
        bias=None if bias is None else bias.float(),
        activation=activation,
        activation_name=activation_name,
        use_residual=use_residual,
        residual=residual if use_residual else None,
    )


def _load_pylate(
    folder: Path, modules: list[dict[str, Any]]
) -> tuple[Any, Any, list[Dense], ColBERTConfig]:
    kinds = [_module_kind(m) for m in modules]
    if not kinds or kinds[0] != "Transformer":
        raise InvalidInput(f"{folder}/modules.json should start with a Transformer module")
    dense: list[Dense] = []
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
    config = ColBERTConfig(
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


@dataclass(frozen=True)
class Checkpoint:
    """A ColBERT checkpoint read from disk, in either format."""

    tokenizer: Any
    model: Any  # the transformer, float32, in eval mode, on the CPU
    projection: list[Dense]
    config: ColBERTConfig


def read_checkpoint(folder: Path, label: str) -> Checkpoint:
    """The ColBERT checkpoint in ``folder`` (``label`` names it in errors).

    Raises
    ------
    InvalidInput
        The folder is neither format, or its files are inconsistent.
    """
    modules = _modules(folder)
    if modules is not None and "Dense" in [_module_kind(m) for m in modules]:
        return Checkpoint(*_load_pylate(folder, modules))
    base = folder
    if modules and _module_kind(modules[0]) == "Transformer":
        base = folder / str(modules[0].get("path", ""))
    linear = _stanford_projection(base) if (base / "config.json").is_file() else None
    if linear is None:
        raise InvalidInput(f"{label} is not a ColBERT checkpoint: {EXPECTED}")
    return Checkpoint(*_load_stanford(base, linear))
