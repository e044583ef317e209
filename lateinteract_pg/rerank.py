"""Cross-encoder reranking: one relevance score per (query, text) pair.

A cross-encoder is any Hugging Face ``AutoModelForSequenceClassification`` checkpoint with
one label (the logit is the score) or two (the score is the log-odds ``logit[1] -
logit[0]``). torch and transformers are an optional extra, imported only when one is built.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .encoders import import_backend
from .errors import EncoderUnavailable, InvalidInput

__all__ = ["CrossEncoder"]

log = logging.getLogger(__name__)


class CrossEncoder:
    """A sequence-classification transformer that scores ``(query, text)`` pairs.

    Build with :meth:`from_pretrained`. Texts are truncated to fit ``max_length`` tokens
    together with the query; the query too when it alone leaves no room.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str,
        device: str,
        max_length: int = 512,
        batch_size: int = 32,
    ) -> None:
        num_labels = int(model.config.num_labels)
        if num_labels not in (1, 2):
            raise InvalidInput(f"{name}: a cross-encoder needs 1 or 2 labels, not {num_labels}")
        if max_length < 4 or batch_size < 1:
            raise InvalidInput(
                f"need max_length >= 4 and batch_size >= 1, got {max_length} and {batch_size}"
            )
        limit = int(getattr(model.config, "max_position_embeddings", max_length))
        self._model, self._tokenizer = model, tokenizer
        self.name, self.device, self.num_labels = name, device, num_labels
        self.max_length = min(max_length, limit, tokenizer.model_max_length or limit)
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        *,
        device: str | None = None,
        max_length: int = 512,
        batch_size: int = 32,
    ) -> CrossEncoder:
        """Load a checkpoint from a folder or the hub; ``device`` defaults to CUDA if present.

        Raises
        ------
        EncoderUnavailable
            torch/transformers are missing, or the checkpoint cannot be found or read.
        InvalidInput
            The checkpoint has neither 1 nor 2 labels, or its classifier was not saved.
        """
        torch, transformers = import_backend("CrossEncoder")
        local = os.path.isdir(name_or_path)
        name = Path(name_or_path).resolve().name if local else name_or_path
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(name_or_path)
            model, info = transformers.AutoModelForSequenceClassification.from_pretrained(
                name_or_path, output_loading_info=True
            )
        except (OSError, ValueError) as exc:
            raise EncoderUnavailable(
                f"cannot load the cross-encoder {name_or_path!r} (a local folder, or a hub "
                f"name when online): {exc}"
            ) from exc
        missing = sorted(info.get("missing_keys", ()))
        if missing:  # a base model: its classifier would be random
            raise InvalidInput(f"{name_or_path!r} is not a trained cross-encoder: no {missing}")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = model.to(device).eval()
        log.info("loaded cross-encoder %s on %s", name, device)
        return cls(
            model,
            tokenizer,
            name=name,
            device=device,
            max_length=max_length,
            batch_size=batch_size,
        )

    def settings(self) -> dict[str, Any]:
        """JSON-serialisable description of this cross-encoder."""
        return {
            "kind": "cross",
            "model": self.name,
            "num_labels": self.num_labels,
            "max_length": self.max_length,
        }

    def __repr__(self) -> str:
        return (
            f"CrossEncoder({self.name!r}, num_labels={self.num_labels}, "
            f"max_length={self.max_length}, device={self.device!r})"
        )

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """Relevance of each text to ``query``: float32 array, one score per text, in order."""
        if not isinstance(query, str) or not query.strip():
            raise InvalidInput(f"query is empty or not a string: {query!r:.40}")
        if isinstance(texts, str):
            raise InvalidInput("expected a sequence of texts, got a single str")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidInput(f"text {i} is not a string: {text!r:.40}")
        torch, _ = import_backend("CrossEncoder")
        out = np.empty(len(texts), dtype=np.float32)
        n_query = len(self._tokenizer(query, add_special_tokens=False)["input_ids"])
        room = self.max_length - self._tokenizer.num_special_tokens_to_add(pair=True)
        truncation = "only_second" if n_query < room else "longest_first"
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                batch = self._tokenizer(
                    [query] * len(chunk),
                    [texts[i] for i in chunk],
                    padding=True,
                    truncation=truncation,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                logits = self._model(**batch).logits.float()
                scores = logits[:, 0] if self.num_labels == 1 else logits[:, 1] - logits[:, 0]
                out[chunk] = scores.cpu().numpy()
        return out
