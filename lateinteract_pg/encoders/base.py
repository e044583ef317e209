"""What every model shares: the :class:`Encoder` protocol, the optional torch/transformers
import, input checks, fingerprints and the one batching loop.

The loop (:func:`run_batches`) sorts texts longest first so that a batch pads little,
right-pads each batch, runs the model under ``torch.inference_mode`` and cuts every output
back to its own text's tokens, in input order. Token encoders, ColBERT encoders and
cross-encoders differ only in how they tokenise and in their ``forward``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from tqdm.auto import tqdm

from lateinteract_pg.errors import EncoderUnavailable, InvalidInput

__all__ = ["Encoder", "Fingerprint", "Row", "check_texts", "import_backend", "run_batches"]

FINGERPRINT_CHARS = 16


@runtime_checkable
class Encoder(Protocol):
    """What a collection needs of an encoder: token vectors for queries and documents.

    Every vector is ``dim`` wide with unit L2 norm. ``settings()`` is a JSON-serialisable
    identity stored with a collection; reopening it with an encoder whose settings differ
    raises :class:`~lateinteract_pg.errors.EncoderMismatch`. An encoder may also offer
    ``document_spans(texts) -> list[np.ndarray | None]``: for each text, the (start, end)
    character offsets of its document vectors, (-1, -1) where a vector names no characters.
    """

    @property
    def dim(self) -> int: ...

    def settings(self) -> dict[str, Any]: ...

    def encode_queries(
        self, texts: Sequence[str], *, progress: bool = False
    ) -> list[np.ndarray]: ...

    def encode_documents(
        self, texts: Sequence[str], *, progress: bool = False
    ) -> list[np.ndarray]: ...


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


def pick_device(torch: Any, device: str | None) -> str:
    """``device``, or CUDA when available, else CPU."""
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def check_texts(texts: Sequence[str]) -> None:
    """Refuse a lone string, and any text that is not a non-blank string.

    >>> check_texts(["a", " "])
    Traceback (most recent call last):
    ...
    lateinteract_pg.errors.InvalidInput: text 1 is empty or not a string: ' '
    """
    if isinstance(texts, str):
        raise InvalidInput("expected a sequence of strings, got a single str")
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput(f"text {i} is empty or not a string: {text!r:.40}")


def spans_within(spans: np.ndarray, length: int) -> np.ndarray:
    """(start, end) pairs that do not name characters of a text of ``length`` become
    (-1, -1): special tokens, and any span a tokenizer's offsets push outside the text.

    >>> spans_within(np.array([[0, 0], [0, 5], [-1, 3], [4, 9]]), 8).tolist()
    [[-1, -1], [0, 5], [-1, -1], [-1, -1]]
    """
    bad = (spans[:, 0] < 0) | (spans[:, 1] <= spans[:, 0]) | (spans[:, 1] > length)
    spans[bad] = -1
    return spans


# ----------------------------------------------------------------------------- fingerprints


def file_fingerprint(path: Path) -> str:
    """sha256 of a file's bytes, shortened to the fingerprint length."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:FINGERPRINT_CHARS]


class Fingerprint:
    """sha256 over labelled float32 tensors and tags, in the order they are added.

    The same weights give the same fingerprint whatever file, format or dtype they were
    read from; any changed value changes it.
    """

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def tensor(self, label: str, tensor: Any) -> None:
        array = tensor.detach().float().cpu().contiguous().numpy()
        self._digest.update(f"{label}:{tuple(array.shape)};".encode())
        self._digest.update(array.tobytes())

    def tag(self, text: str) -> None:
        self._digest.update(text.encode())

    def parameters(self, model: Any, skip: Iterable[str] = ()) -> None:
        """Every parameter of a torch module by name, except names containing ``skip``."""
        skip = tuple(skip)
        for name, param in sorted(model.named_parameters(), key=lambda pair: pair[0]):
            if not any(part in name for part in skip):
                self.tensor(name, param)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()[:FINGERPRINT_CHARS]


# ----------------------------------------------------------------------------- batching


@dataclass(frozen=True)
class Row:
    """One input as the model sees it, unpadded.

    ``attention_mask`` defaults to all ones; ``token_type_ids`` is passed to the model only
    when the rows have it; ``keep`` picks the output positions to return (per-token
    outputs), all of the row's tokens when None.
    """

    input_ids: Sequence[int]
    attention_mask: Sequence[int] | None = None
    token_type_ids: Sequence[int] | None = None
    keep: Sequence[bool] | None = None


def pad_rows(rows: Sequence[Row], pad_id: int) -> dict[str, np.ndarray]:
    """int64 ``input_ids`` / ``attention_mask`` (and ``token_type_ids`` when any row has
    them), right-padded to the longest row with ``pad_id``, mask 0 and type 0.

    >>> out = pad_rows([Row([5, 6, 7]), Row([8], attention_mask=[0])], pad_id=0)
    >>> out["input_ids"].tolist(), out["attention_mask"].tolist()
    ([[5, 6, 7], [8, 0, 0]], [[1, 1, 1], [0, 0, 0]])
    """
    width = max((len(row.input_ids) for row in rows), default=0)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    types = np.zeros_like(mask) if any(r.token_type_ids is not None for r in rows) else None
    for r, row in enumerate(rows):
        n = len(row.input_ids)
        ids[r, :n] = row.input_ids
        mask[r, :n] = 1 if row.attention_mask is None else row.attention_mask
        if types is not None and row.token_type_ids is not None:
            types[r, :n] = row.token_type_ids
    out = {"input_ids": ids, "attention_mask": mask}
    if types is not None:
        out["token_type_ids"] = types
    return out


def run_batches(
    rows: Sequence[Row],
    forward: Callable[[dict[str, Any]], Any],
    *,
    batch_size: int,
    device: str,
    pad_id: int,
    per_token: bool = True,
    progress: bool = False,
    desc: str = "encoding",
    who: str = "an encoder",
) -> list[np.ndarray]:
    """Run ``forward`` over ``rows`` in batches; one float32 array per row, in input order.

    Rows are sorted longest first (stable) and cut into batches of ``batch_size``; each
    batch is padded (:func:`pad_rows`), moved to ``device`` as torch tensors and passed to
    ``forward``, under ``torch.inference_mode``. ``forward`` returns a tensor of shape
    (batch, width, ...) when ``per_token``, cut back here to each row's own tokens (and
    its ``keep`` positions), else (batch, ...), one output per row.
    """
    torch, _ = import_backend(who)
    out: list[np.ndarray] = [np.empty(0, np.float32)] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i].input_ids))
    with (
        torch.inference_mode(),
        tqdm(total=len(rows), disable=not progress, unit="text", desc=desc) as bar,
    ):
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            inputs = pad_rows([rows[i] for i in chunk], pad_id)
            result = forward({k: torch.from_numpy(v).to(device) for k, v in inputs.items()})
            values = result.float().cpu().numpy()
            for r, i in enumerate(chunk):
                if not per_token:
                    out[i] = np.asarray(values[r], dtype=np.float32)
                    continue
                own = values[r, : len(rows[i].input_ids)]
                keep = rows[i].keep
                if keep is not None:
                    own = own[np.flatnonzero(np.asarray(keep, dtype=bool))]
                out[i] = np.ascontiguousarray(own, dtype=np.float32)
            bar.update(len(chunk))
    return out
