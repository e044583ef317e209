"""Every check of what callers hand us, before anything reaches the server.

Each check returns the value it accepts (cleaned where that is cheap) or raises
:class:`~lateinteract_pg.errors.InvalidInput` (or DimensionMismatch) with a message that
names the argument; nothing here touches the database.
"""

from __future__ import annotations

import json
import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import DimensionMismatch, InvalidInput
from .limits import MAX_K, MAX_POOL_FACTOR
from .types import (
    CANDIDATE_INDEXES,
    RESCORE_STORAGES,
    TIERS,
    CandidateIndex,
    Tier,
)

__all__ = [
    "Batch",
    "check_candidate_index",
    "check_collection_name",
    "check_dim",
    "check_hnsw",
    "check_id",
    "check_ids",
    "check_int",
    "check_k",
    "check_metadata",
    "check_storage",
    "check_tenant",
    "check_text",
    "check_tier",
    "json_text",
    "short_repr",
    "validate_batch",
    "validate_query",
]

HALF_MAX = 65504.0
# UTF-8 bytes of a document id: the unique btree index on (collection_id, external_id) takes
# at most about 2700 bytes a row, and a longer id fails inside the COPY
MAX_ID_BYTES = 1024
# a JSON escape of NUL that is not itself an escaped backslash followed by "u0000"
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


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


MAX_NAME_LENGTH = 200  # of a collection's name


def check_int(name: str, value: Any, low: int, high: int) -> int:
    """``value`` if it is an int (not a bool) in ``low..high``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInput(f"{name} must be an int, got {short_repr(value)}")
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be in {low}..{high}, got {short_repr(value)}")
    return int(value)


def check_k(k: Any) -> int:
    """The number of hits asked for: an int in 1..MAX_K."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
        raise InvalidInput(f"k must be an int in 1..{MAX_K}, got {short_repr(k)}")
    return int(k)


def check_tier(tier: Any) -> Tier:
    if not isinstance(tier, str) or tier not in TIERS:
        raise InvalidInput(f"tier must be one of {TIERS}, got {short_repr(tier)}")
    return tier


def check_ids(ids: Any) -> list[str]:
    """Document ids to delete or look up: one str, or a list (or set) of them."""
    if isinstance(ids, str):
        ids = [ids]
    if not isinstance(ids, (Sequence, set, frozenset)):
        raise InvalidInput(f"ids must be a str or a list of str, got {short_repr(ids)}")
    return [check_id(i) for i in ids]


def check_collection_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"collection name must be a non-empty str, got {short_repr(name)}")
    check_text(name, "collection name")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"collection name must be at most {MAX_NAME_LENGTH} characters")
    return name


def check_candidate_index(kind: Any) -> CandidateIndex:
    if not isinstance(kind, str) or kind not in CANDIDATE_INDEXES:
        raise InvalidInput(
            f"candidate_index must be one of {CANDIDATE_INDEXES}, got {short_repr(kind)}"
        )
    return kind


def check_storage(options: dict[str, Any]) -> dict[str, Any]:
    """A collection's pool_factor, index_pool_factor and rescore_storage, alone and
    together."""
    for name in ("pool_factor", "index_pool_factor"):
        value = options[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not 1 <= value <= MAX_POOL_FACTOR
        ):
            raise InvalidInput(
                f"{name} must be an int in 1..{MAX_POOL_FACTOR}, got {short_repr(value)}"
            )
    storage = options["rescore_storage"]
    if not isinstance(storage, str) or storage not in RESCORE_STORAGES:
        raise InvalidInput(
            f"rescore_storage must be one of {RESCORE_STORAGES}, got {short_repr(storage)}"
        )
    if options["index_pool_factor"] > 1 and storage != "float16":
        raise InvalidInput(
            "index_pool_factor > 1 keeps every vector as float16 in the document rows: "
            f"rescore_storage must be 'float16', got {storage!r}"
        )
    return options


def check_hnsw(m: Any, ef_construction: Any) -> tuple[int, int]:
    """HNSW build parameters: m in 2..100, ef_construction in 4..1000."""
    if not all(
        isinstance(v, int) and not isinstance(v, bool) for v in (m, ef_construction)
    ) or not (2 <= m <= 100 and 4 <= ef_construction <= 1000):
        raise InvalidInput(
            "hnsw_m must be an int in 2..100 and hnsw_ef_construction one in 4..1000"
        )
    return m, ef_construction


def check_dim(dim: Any) -> int:
    if not isinstance(dim, int) or isinstance(dim, bool) or not 1 <= dim <= 4000:
        raise InvalidInput(f"dim must be an int in 1..4000 (halfvec HNSW), got {short_repr(dim)}")
    return dim
