"""Ingest: validate a batch, then write it in one transaction with binary COPY."""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import DimensionMismatch, InvalidInput

__all__ = [
    "Batch",
    "check_id",
    "check_metadata",
    "check_text",
    "json_text",
    "pack_token_rows",
    "validate_batch",
    "validate_query",
]

HALF_MAX = 65504.0
# UTF-8 bytes of a document id: the unique btree index on (collection_id, external_id) takes
# at most about 2700 bytes a row, and a longer id fails inside the COPY
MAX_ID_BYTES = 1024
# a JSON escape of NUL that is not itself an escaped backslash followed by "u0000"
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
COPY_TRAILER = b"\xff\xff"


@dataclass(frozen=True)
class Batch:
    """A validated batch: ids, texts, metadata and the token matrices as one fp16 block."""

    ids: list[str]
    texts: list[str | None]
    metadata: list[dict[str, Any] | None]
    tokens: np.ndarray  # (total, dim) float16
    offsets: np.ndarray  # (n + 1,) int64
    spans: list[np.ndarray | None]  # per document: (n_tokens, 2) int32 character spans

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def short_repr(value: Any) -> str:
    """``repr(value)``, cut to 80 characters for a message."""
    try:
        text = repr(value)
    except Exception:  # nested too deeply, an int of too many digits, a repr that fails
        text = f"<a {type(value).__name__} that repr() refuses>"
    return text if len(text) <= 80 else text[:77] + "..."


def check_text(value: Any, what: str) -> str:
    """``value`` if it is a str PostgreSQL text can store (no NUL, no lone surrogate)."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a str, got {type(value).__name__}")
    if "\x00" in value:
        raise InvalidInput(f"{what} contains a NUL byte, which PostgreSQL text cannot store")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{what} is not valid unicode: {exc.reason}") from exc
    return value


def check_id(value: Any) -> str:
    """A document id: a non-empty str PostgreSQL can store, of at most 1024 UTF-8 bytes."""
    check_text(value, "document id")
    if not value:
        raise InvalidInput("document id must not be empty")
    size = len(value.encode("utf-8"))
    if size > MAX_ID_BYTES:
        raise InvalidInput(
            f"document id {value[:40]!r}... is {size} bytes long in UTF-8, at most "
            f"{MAX_ID_BYTES} fit the index"
        )
    return str(value)


def check_tenant(value: Any) -> str | None:
    """A tenant name (1..200 chars, no NUL), or None for shared documents."""
    if value is None:
        return None
    check_text(value, "tenant")
    if not 1 <= len(value) <= 200:
        raise InvalidInput(f"tenant must be 1..200 characters, got {value!r}")
    return str(value)


def _float32(value: Any, what: str) -> np.ndarray:
    """``value`` as a float32 array; real numbers only (no complex, strings or dates)."""
    try:
        raw = np.asarray(value)
        if raw.dtype.kind not in "biufO" or (
            raw.dtype.kind == "O" and not all(isinstance(x, numbers.Real) for x in raw.flat)
        ):
            raise InvalidInput(f"{what} must hold real numbers, got an array of {raw.dtype}")
        with np.errstate(over="ignore", invalid="ignore"):  # found by the isfinite check
            return raw.astype(np.float32)
    except (TypeError, ValueError, OverflowError) as exc:
        if isinstance(exc, InvalidInput):
            raise
        raise InvalidInput(f"{what} is not a numeric array: {exc}") from exc


def _as_matrix(value: Any, dim: int, what: str) -> np.ndarray:
    matrix = _float32(value, what)
    if matrix.ndim != 2:
        raise InvalidInput(f"{what} must be a 2-D array (tokens, dim), got shape {matrix.shape}")
    if matrix.shape[0] == 0:
        raise InvalidInput(f"{what} has no token vectors")
    if matrix.shape[1] != dim:
        raise DimensionMismatch(f"{what} has vectors of width {matrix.shape[1]}, expected {dim}")
    if not np.isfinite(matrix).all():
        raise InvalidInput(f"{what} contains NaN or infinite values")
    if np.abs(matrix).max() > HALF_MAX:
        raise InvalidInput(f"{what} has values beyond the float16 range (|x| > {HALF_MAX:g})")
    return matrix


def json_text(value: Any, what: str) -> str:
    """``value`` as JSON text that jsonb stores: no NaN or infinity, no NUL character, no
    lone surrogate, no object json cannot write, not nested past Python's recursion limit."""
    try:
        encoded = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise InvalidInput(f"{what} is not JSON-serialisable: {reason}") from exc
    if _JSON_NUL.search(encoded):
        raise InvalidInput(f"{what} contains a NUL character, which jsonb cannot store")
    check_text(encoded, what)
    return encoded


def check_metadata(value: Any, what: str) -> dict[str, Any] | None:
    """``value`` if it is None or a dict that jsonb stores (see :func:`json_text`)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a dict or None, got {type(value).__name__}")
    json_text(value, what)
    return value


def _per_id(value: Any, n: int, what: str) -> list[Any]:
    """One entry per id: ``value`` as a list of ``n`` (``[None] * n`` for None)."""
    if value is None:
        return [None] * n
    if isinstance(value, (str, bytes, dict)):
        raise InvalidInput(
            f"{what} must be a list with one entry per id, got a {type(value).__name__}"
        )
    try:
        entries = list(value)
    except TypeError as exc:
        raise InvalidInput(f"{what} must be a list with one entry per id: {exc}") from exc
    if len(entries) != n:
        raise InvalidInput(f"got {n} ids but {len(entries)} {what}")
    return entries


def _check_spans(value: Any, n_tokens: int, text: str | None, what: str) -> np.ndarray | None:
    """Character spans (n_tokens, 2) into ``text``: 0 <= start < end <= len(text), or -1, -1."""
    if value is None:
        return None
    if text is None:
        raise InvalidInput(f"{what} given without a text to point into")
    try:
        spans = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{what} is not an integer array: {exc}") from exc
    if spans.shape != (n_tokens, 2) or (spans.size and spans.dtype.kind not in "iu"):
        raise InvalidInput(f"{what} must be an integer array of shape ({n_tokens}, 2)")
    start, end = spans[:, 0].astype(np.int64), spans[:, 1].astype(np.int64)
    none = (start == -1) & (end == -1)
    valid = (start >= 0) & (start < end) & (end <= len(text))
    if not (none | valid).all():
        raise InvalidInput(f"{what} must be (start, end) with 0 <= start < end <= len(text), or -1")
    return spans.astype(np.int32)


def validate_batch(
    ids: Sequence[str],
    embeddings: Sequence[Any],
    dim: int,
    texts: Sequence[str | None] | None = None,
    metadata: Sequence[dict[str, Any] | None] | None = None,
    spans: Sequence[Any] | None = None,
) -> Batch:
    """Check every argument of ``add_embeddings`` before anything is written."""
    if isinstance(ids, str) or not isinstance(ids, Sequence):
        raise InvalidInput("ids must be a list of str")
    n = len(ids)
    if n == 0:
        raise InvalidInput("ids is empty: nothing to add")
    clean_ids = [check_id(i) for i in ids]
    if len(set(clean_ids)) != n:
        seen: set[str] = set()
        dup = next(i for i in clean_ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise InvalidInput(f"duplicate id {dup!r} in one call")
    if isinstance(embeddings, np.ndarray) and embeddings.ndim == 2:
        raise InvalidInput("embeddings must be a list of (tokens, dim) arrays, one per id")
    vectors = _per_id(embeddings, n, "embeddings")
    text_list: list[str | None] = [
        None if t is None else check_text(t, f"text of {i!r}")
        for i, t in zip(clean_ids, _per_id(texts, n, "texts"))
    ]
    meta_list = [
        check_metadata(m, f"metadata of {i!r}")
        for i, m in zip(clean_ids, _per_id(metadata, n, "metadata entries"))
    ]
    matrices = [_as_matrix(e, dim, f"embeddings of {i!r}") for i, e in zip(clean_ids, vectors)]
    span_list = [
        _check_spans(sp, len(m), t, f"spans of {i!r}")
        for i, sp, m, t in zip(clean_ids, _per_id(spans, n, "spans entries"), matrices, text_list)
    ]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum([len(m) for m in matrices], out=offsets[1:])
    tokens = np.concatenate(matrices).astype(np.float16)
    return Batch(clean_ids, text_list, meta_list, tokens, offsets, span_list)


def validate_query(query: Any, dim: int) -> np.ndarray:
    """A query matrix (m, dim) as float32; a single vector (dim,) is one query token."""
    matrix = _float32(query, "query")
    if matrix.ndim == 1 and matrix.shape[0] == dim:
        matrix = matrix[None, :]
    return _as_matrix(matrix, dim, "query")


def token_row_dtype(dim: int, tenant_bytes: int = 0) -> np.dtype:
    """One binary COPY row of (collection_id int4, doc_id int8, position int4, halfvec,
    tenant text): the tenant's UTF-8 bytes, none for NULL."""
    tenant = [("tenant", f"S{tenant_bytes}")] if tenant_bytes else []
    return np.dtype(
        [
            ("nfields", ">i2"),
            ("len_collection", ">i4"),
            ("collection_id", ">i4"),
            ("len_doc", ">i4"),
            ("doc_id", ">i8"),
            ("len_pos", ">i4"),
            ("position", ">i4"),
            ("len_vec", ">i4"),
            ("vec_dim", ">i2"),
            ("vec_unused", ">i2"),
            ("vec", ">f2", (dim,)),
            ("len_tenant", ">i4"),
            *tenant,
        ]
    )


def pack_token_rows(
    collection_id: int,
    doc_ids: np.ndarray,
    batch: Batch,
    rows_per_chunk: int,
    tenant: str | None = None,
) -> Iterator[tuple[int, bytes]]:
    """Binary COPY payload for the batch's token rows, in chunks of (rows, bytes).

    The whole stream (header, rows, trailer) is built with numpy, not row by row in Python.
    """
    dim = batch.tokens.shape[1]
    tenant_bytes = b"" if tenant is None else tenant.encode("utf-8")
    dtype = token_row_dtype(dim, len(tenant_bytes))
    total = len(batch.tokens)
    doc_of_token = np.repeat(np.asarray(doc_ids, dtype=np.int64), batch.lengths)
    position = np.arange(total, dtype=np.int64) - np.repeat(batch.offsets[:-1], batch.lengths)
    chunks = max(1, math.ceil(total / rows_per_chunk))
    for c in range(chunks):
        lo, hi = c * rows_per_chunk, min(total, (c + 1) * rows_per_chunk)
        rows = np.empty(hi - lo, dtype=dtype)
        rows["nfields"] = 5
        rows["len_collection"] = 4
        rows["collection_id"] = collection_id
        rows["len_doc"] = 8
        rows["doc_id"] = doc_of_token[lo:hi]
        rows["len_pos"] = 4
        rows["position"] = position[lo:hi]
        rows["len_vec"] = 4 + 2 * dim
        rows["vec_dim"] = dim
        rows["vec_unused"] = 0
        rows["vec"] = batch.tokens[lo:hi]
        rows["len_tenant"] = -1 if tenant is None else len(tenant_bytes)
        if tenant_bytes:
            rows["tenant"] = tenant_bytes
        payload = rows.tobytes()
        if c == 0:
            payload = COPY_SIGNATURE + payload
        if c == chunks - 1:
            payload += COPY_TRAILER
        yield hi - lo, payload
