"""Cross-encoder reranking: one relevance score per (query, text) pair.

A cross-encoder is any Hugging Face ``AutoModelForSequenceClassification`` checkpoint with
one label (the logit is the score) or two (the score is the log-odds ``logit[1] -
logit[0]``). torch and transformers are an optional extra, imported only when one is built.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from lateinteract_pg.errors import EncoderUnavailable, InvalidInput

from .base import Fingerprint, Row, import_backend, pick_device, run_batches
from .sources import model_name

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
        self._fingerprint: str | None = None

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
        name, _ = model_name(name_or_path)
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
        device = pick_device(torch, device)
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
        """JSON-serialisable description of this cross-encoder; ``sha256`` hashes every
        weight, so two fine-tunes of one architecture differ whatever their names."""
        if self._fingerprint is None:
            fingerprint = Fingerprint()
            fingerprint.parameters(self._model)
            self._fingerprint = fingerprint.hexdigest()
        return {
            "kind": "cross",
            "model": self.name,
            "sha256": self._fingerprint,
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
        if not texts:
            return np.empty(0, dtype=np.float32)
        n_query = len(self._tokenizer(query, add_special_tokens=False)["input_ids"])
        room = self.max_length - self._tokenizer.num_special_tokens_to_add(pair=True)
        pairs = self._tokenizer(
            [query] * len(texts),
            list(texts),
            truncation="only_second" if n_query < room else "longest_first",
            max_length=self.max_length,
        )
        types = pairs.get("token_type_ids")
        rows = [
            Row(ids, mask, None if types is None else types[i])
            for i, (ids, mask) in enumerate(zip(pairs["input_ids"], pairs["attention_mask"]))
        ]

        def forward(inputs: dict[str, Any]) -> Any:
            logits = self._model(**inputs).logits.float()
            return logits[:, 0] if self.num_labels == 1 else logits[:, 1] - logits[:, 0]

        scores = run_batches(
            rows,
            forward,
            batch_size=self.batch_size,
            device=self.device,
            pad_id=self._tokenizer.pad_token_id or 0,
            per_token=False,
            who="CrossEncoder",
        )
        return np.array(scores, dtype=np.float32)
