"""Why a document scores what it does: per query token, its best-matching document token,
through the SQL function ``explain`` (sql/functions/explain.sql)."""

from __future__ import annotations

import numpy as np
from pgvector import HalfVector
from psycopg import sql

from ..catalog import CollectionSpec
from ..session import Session
from ..types import TokenMatch

__all__ = ["explain"]


def explain(session: Session, spec: CollectionSpec, query: np.ndarray, id: str) -> list[TokenMatch]:
    """The token matches of document ``id`` (an unknown id: none); their similarities sum to
    the document's MaxSim."""
    rows = session.conn.execute(
        sql.SQL("SELECT * FROM {}(%s, %s, %s)").format(spec.table("explain")),
        (spec.name, [HalfVector(v) for v in query], id),
    ).fetchall()
    return [
        TokenMatch(
            query_token=int(i) - 1,
            position=int(pos),
            similarity=float(sim),
            start=None if start is None or start < 0 else int(start),
            end=None if end is None or end < 0 else int(end),
            piece=piece,
        )
        for i, pos, sim, start, end, piece in rows
    ]
