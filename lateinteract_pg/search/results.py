"""From scored internal document ids to :class:`~lateinteract_pg.types.Hit` results."""

from __future__ import annotations

from typing import Any

import numpy as np
from psycopg import sql

from ..catalog import CollectionSpec
from ..maxsim import top_k
from ..types import Hit

__all__ = ["fetch_hits", "rank"]


def rank(ids: list[np.ndarray], scores: list[np.ndarray], k: int) -> list[tuple[int, float]]:
    """The best ``k`` (internal id, score) of several scored batches, best first; ties by
    internal id, as in SQL.

    >>> rank([np.array([3, 1]), np.array([2])], [np.array([0.5, 0.9]), np.array([0.5])], 2)
    [(1, 0.9), (2, 0.5)]
    """
    if not ids:
        return []
    flat_ids = np.concatenate(ids)
    flat_scores = np.concatenate(scores)
    return [(int(doc), score) for doc, score in top_k(flat_scores, flat_ids.tolist(), k)]


def fetch_hits(conn: Any, spec: CollectionSpec, ranked: list[tuple[int, float]]) -> list[Hit]:
    """The hits of ``ranked`` (internal id, score), in its order, with their external ids,
    texts and metadata; documents gone meanwhile are left out."""
    if not ranked:
        return []
    rows = conn.execute(
        sql.SQL("SELECT id, external_id, text, metadata FROM {} WHERE id = ANY(%s)").format(
            spec.documents
        ),
        ([doc for doc, _ in ranked],),
    ).fetchall()
    by_id = {r[0]: r[1:] for r in rows}
    return [
        Hit(by_id[doc][0], score, by_id[doc][1], by_id[doc][2])
        for doc, score in ranked
        if doc in by_id
    ]
