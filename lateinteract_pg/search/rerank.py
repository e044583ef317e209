"""The rerank tier: the late tier's best documents ordered by a cross-encoder reading the
query's text with each document's text (:class:`~lateinteract_pg.encoders.CrossEncoder`, or
anything with ``score(query, texts)``)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from .. import limits
from ..errors import InvalidInput
from ..types import Hit, SearchStats
from ..validation import check_int

__all__ = ["DEFAULT_RERANK_TOP", "check_reranker", "reorder", "rerank_top"]

DEFAULT_RERANK_TOP = 50  # documents the cross-encoder reads


def check_reranker(reranker: Any) -> Any:
    if not callable(getattr(reranker, "score", None)):
        raise InvalidInput("a reranker needs a score(query, texts) method")
    return reranker


def rerank_top(reranker: Any, name: str, query_text: Any, top: Any) -> int:
    """How many of the late tier's documents the cross-encoder reads, once the tier's
    prerequisites are checked."""
    if reranker is None:
        raise InvalidInput(
            f"collection {name!r} has no reranker: attach_reranker(CrossEncoder"
            "(...)) or store.collection(name, reranker=...) first"
        )
    if not isinstance(query_text, str) or not query_text.strip():
        raise InvalidInput("the rerank tier needs the query's text: query_text=...")
    if top is None:
        return DEFAULT_RERANK_TOP
    return check_int("rerank_top", top, 1, limits.MAX_K)


def reorder(
    reranker: Any, text: str, hits: list[Hit], k: int, late: SearchStats | None
) -> tuple[list[Hit], SearchStats | None]:
    """``hits`` (the late tier's, which ran as ``late``) ordered by the cross-encoder's
    scores, the best ``k``, and how the whole search ran."""
    missing = [h.id for h in hits if not h.text]
    if missing:
        raise InvalidInput(f"the rerank tier reads document texts; these have none: {missing[:5]}")
    started = time.perf_counter()
    scores = np.zeros(0)
    if hits:
        scores = np.asarray(reranker.score(text, [h.text for h in hits]), np.float64)
        if scores.shape != (len(hits),) or not np.isfinite(scores).all():
            raise InvalidInput(
                f"the reranker returned {scores.shape} scores for {len(hits)} texts, or "
                "non-finite ones: one finite score per text is needed"
            )
    order = sorted(range(len(hits)), key=lambda j: (-scores[j], j))[:k]
    reranked = [Hit(hits[j].id, float(scores[j]), hits[j].text, hits[j].metadata) for j in order]
    if late is None:
        return reranked, None
    rerank_ms = (time.perf_counter() - started) * 1000
    stats = dataclasses.replace(
        late,
        tier="rerank",
        k=k,
        reranked=len(hits),
        rerank_ms=rerank_ms,
        total_ms=late.total_ms + rerank_ms,
    )
    return reranked, stats
