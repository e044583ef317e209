"""Token encoders: any transformer's last hidden states, one L2-normalised vector per token.

torch and transformers are an optional extra (``pip install 'lateinteract-pg[encoders]'``);
they are imported only when an encoder is built.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lateinteract_pg.errors import InvalidInput

from .base import (
    Fingerprint,
    Row,
    check_texts,
    file_fingerprint,
    import_backend,
    pick_device,
    run_batches,
    spans_within,
)
from .sources import DEFAULT_MODEL_NAME, default_model_path, model_name, single_weights_file

__all__ = ["TokenEncoder"]

log = logging.getLogger(__name__)


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
        name, folder = model_name(path)
        if name_or_path is None:
            name = DEFAULT_MODEL_NAME
        device = pick_device(torch, device)
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        model = transformers.AutoModel.from_pretrained(path).to(device).eval()
        log.info("loaded %s on %s (dim %d)", name, device, model.config.hidden_size)
        return cls(
            model,
            tokenizer,
            name=name,
            path=path if folder is not None else None,
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
        """sha256 of the weights file of a local folder with one (collections built since
        the first release record that); otherwise of the loaded tensors, as for a hub
        name or a sharded checkpoint. The pooler never reaches a token vector: skipped."""
        weights = single_weights_file(Path(self.path)) if self.path else None
        if weights is not None:
            return file_fingerprint(weights)
        fingerprint = Fingerprint()
        fingerprint.parameters(self._model, skip=("pooler",))
        return fingerprint.hexdigest()

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
        check_texts(texts)
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

    def _encode(self, texts: Sequence[str], max_length: int, progress: bool) -> list[np.ndarray]:
        check_texts(texts)
        if not texts:
            return []
        torch, _ = import_backend()
        ids = self._tokenizer(
            list(texts), truncation=True, max_length=max_length, add_special_tokens=True
        )["input_ids"]

        def forward(inputs: dict[str, Any]) -> Any:
            hidden = self._model(**inputs).last_hidden_state
            return torch.nn.functional.normalize(hidden.float(), dim=-1)

        return run_batches(
            [Row(row) for row in ids],
            forward,
            batch_size=self.batch_size,
            device=self.device,
            pad_id=self._tokenizer.pad_token_id or 0,
            progress=progress,
            who="TokenEncoder",
        )
