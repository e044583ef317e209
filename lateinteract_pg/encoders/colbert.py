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

The two on-disk formats are read by :mod:`lateinteract_pg.encoders.colbert_formats`.

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

import logging
import string
from collections.abc import Sequence
from typing import Any

import numpy as np

from lateinteract_pg.errors import InvalidInput

from .base import (
    Fingerprint,
    Row,
    check_texts,
    import_backend,
    pad_rows,
    pick_device,
    run_batches,
    spans_within,
)
from .colbert_formats import (
    EXPECTED,
    IDENTITY,
    PREFIX_FALLBACK,
    ColBERTConfig,
    Dense,
    read_checkpoint,
)
from .sources import snapshot_folder

__all__ = ["ColBERTEncoder"]

log = logging.getLogger(__name__)


class ColBERTEncoder:
    """A trained ColBERT model: ``dim``-wide, L2-normalised vectors per query/document token.

    Build with :meth:`from_pretrained`; see the module docstring for the exact
    tokenisation, and :mod:`~lateinteract_pg.encoders.colbert_formats` for the formats.
    Queries yield ``query_maxlen`` vectors each (the ``[MASK]`` expansion included);
    documents yield one vector per kept token (punctuation and padding dropped).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        projection: Sequence[Dense],
        config: ColBERTConfig,
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
            fallback = PREFIX_FALLBACK.get(token)
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
        torch, _ = import_backend("ColBERTEncoder")
        folder, name = snapshot_folder(name_or_path, EXPECTED)
        checkpoint = read_checkpoint(folder, name_or_path)
        config = checkpoint.config
        if query_maxlen is not None:
            config.query_maxlen = query_maxlen
        if doc_maxlen is not None:
            config.doc_maxlen = doc_maxlen
        device = pick_device(torch, device)
        encoder = cls(
            checkpoint.model.to(device),
            checkpoint.tokenizer,
            checkpoint.projection,
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
        fingerprint = Fingerprint()
        fingerprint.parameters(self._model, skip=("pooler",))
        for i, layer in enumerate(self._projection):
            fingerprint.tensor(f"projection.{i}.weight", layer.weight)
            if layer.bias is not None:
                fingerprint.tensor(f"projection.{i}.bias", layer.bias)
            if layer.activation_name != IDENTITY:
                fingerprint.tag(f"projection.{i}.activation:{layer.activation_name};")
            if layer.use_residual:
                fingerprint.tag(f"projection.{i}.residual;")
                if layer.residual is not None:
                    fingerprint.tensor(f"projection.{i}.residual", layer.residual)
        return fingerprint.hexdigest()

    # ------------------------------------------------------------------------- tokens

    def _check(self, texts: Sequence[str]) -> list[str]:
        check_texts(texts)
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

    def _rows(self, texts: Sequence[str], query: bool) -> list[Row]:
        """Unpadded ids, attention mask and kept positions per text (queries padded with
        [MASK] when expanded; only their real tokens kept when not)."""
        texts = self._check(texts)
        if not texts:
            return []
        cfg = self._config
        out = []
        for ids in self._marked(texts, query)[0]:
            ids = [int(i) for i in ids]
            mask = [1] * len(ids)
            if query and cfg.query_expansion:
                fill = cfg.query_maxlen - len(ids)
                ids += [self._expansion_id] * fill
                mask += [int(cfg.attend_to_mask_tokens)] * fill
            if query:
                keep = [True] * len(ids) if cfg.query_expansion else [m == 1 for m in mask]
            else:
                keep = [i not in self._skiplist for i in ids]
            out.append(Row(ids, mask, keep=keep))
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

    def _pad(self, rows: Sequence[Row]) -> tuple[np.ndarray, np.ndarray]:
        padded = pad_rows(rows, self._pad_id)
        return padded["input_ids"], padded["attention_mask"]

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
        return self._encode(self._rows(texts, query=True), progress, "queries")

    def encode_documents(self, texts: Sequence[str], *, progress: bool = False) -> list[np.ndarray]:
        """Encode documents.

        Returns
        -------
        list of float32 arrays of shape (n_kept_tokens, dim), unit norm, in input order;
        ``[CLS]``, ``[D]`` and ``[SEP]`` are kept, punctuation tokens are not.
        """
        return self._encode(self._rows(texts, query=False), progress, "documents")

    def _encode(self, rows: Sequence[Row], progress: bool, what: str) -> list[np.ndarray]:
        if not rows:
            return []
        torch, _ = import_backend("ColBERTEncoder")

        def forward(inputs: dict[str, Any]) -> Any:
            hidden = self._model(**inputs).last_hidden_state.float()
            for layer in self._projection:
                hidden = layer(hidden)
            return torch.nn.functional.normalize(hidden, p=2, dim=-1)

        return run_batches(
            rows,
            forward,
            batch_size=self.batch_size,
            device=self.device,
            pad_id=self._pad_id,
            progress=progress,
            desc=f"encoding {what}",
            who="ColBERTEncoder",
        )
