"""One call from a model name to an encoder, as the CLI and the bench name models."""

from __future__ import annotations

from .base import Encoder
from .colbert import ColBERTEncoder
from .token import TokenEncoder

__all__ = ["load_encoder"]


def load_encoder(model: str = "minilm") -> Encoder:
    """``"minilm"``: the packaged all-MiniLM-L6-v2 as a plain :class:`TokenEncoder`; anything
    else: a ColBERT checkpoint (hub name or folder) through :class:`ColBERTEncoder`."""
    if model == "minilm":
        return TokenEncoder.from_pretrained()
    return ColBERTEncoder.from_pretrained(model)
