"""Passages counted for their document: each document once, as its best passage."""

from __future__ import annotations

from collections.abc import Callable

from .. import limits
from ..types import Hit

__all__ = ["best_per_document"]


def best_per_document(retrieve: Callable[[int], list[Hit]], wanted: int) -> list[Hit]:
    """The best ``wanted`` documents, each once as its best passage (under the document's
    id, from the passage's ``document_id`` metadata): ``retrieve(n)`` fetches the best n
    passages, deeper until they cover that many documents.

    >>> hits = [Hit("a#0", 3.0, None, {"document_id": "a"}), Hit("a#1", 2.0, None,
    ...         {"document_id": "a"}), Hit("b", 1.0)]
    >>> [h.id for h in best_per_document(lambda n: hits[:n], 2)]
    ['a', 'b']
    """
    fetch = wanted
    while True:
        hits = retrieve(fetch)
        best: dict[str, Hit] = {}
        for hit in hits:
            document = str((hit.metadata or {}).get("document_id", hit.id))
            best.setdefault(document, Hit(document, hit.score, hit.text, hit.metadata))
        if len(best) >= wanted or len(hits) < fetch or fetch >= limits.MAX_K:
            return list(best.values())[:wanted]
        fetch = min(limits.MAX_K, fetch * 4)
