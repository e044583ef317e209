"""The dense tier: one vector per side, the normalised mean of the token vectors, searched
through each collection's partial HNSW index on ``documents.dense``.

What the SQL function ``search_dense`` does, with the query's mean taken here: one
statement, no plpgsql.
"""

from __future__ import annotations

import time

import numpy as np
from pgvector import HalfVector
from psycopg import sql

from .. import limits
from ..catalog import CollectionSpec, read_sizes
from ..pooling import dense_vectors
from ..session import Session
from ..types import Hit, SearchStats
from .filters import Condition

__all__ = ["search_dense"]


def search_dense(
    session: Session,
    spec: CollectionSpec,
    query: np.ndarray,
    k: int,
    exact: bool = False,
    condition: Condition | None = None,
) -> tuple[list[Hit], SearchStats]:
    """The ``k`` documents whose mean vector is nearest to the query's (scores are cosines),
    and how the search ran."""
    started = time.perf_counter()
    with session.lock, session.snapshot():
        if condition is None and read_sizes(session.conn, spec).restricted:
            condition = (sql.SQL("true"), {})  # row-level security hides some documents
        mean = dense_vectors(query, np.array([0, len(query)]))[0]
        distance = sql.SQL("d.dense::halfvec({}) <#> %(q)s").format(sql.Literal(spec.dim))
        if exact or k > limits.MAX_DENSE_INDEX_K:  # past what one HNSW scan yields: exact
            distance = sql.SQL("({}) + 0").format(distance)
        else:
            session.set_session("hnsw.ef_search", str(limits.dense_ef_search(k)))
        if condition is not None and session.iterative_scans:  # scan on until k rows pass
            session.set_local(session.conn, {"hnsw.iterative_scan": "relaxed_order"})
        where, params = condition if condition is not None else (sql.SQL("true"), {})
        rows = session.conn.execute(
            sql.SQL(
                "SELECT d.external_id, -({distance}), d.text, d.metadata FROM {documents} AS d "
                "WHERE d.collection_id = {id} AND d.dense IS NOT NULL AND {where} "
                "ORDER BY {distance} LIMIT %(k)s"
            ).format(
                distance=distance,
                documents=spec.documents,
                id=sql.Literal(spec.id),
                where=where,
            ),
            {"q": HalfVector(mean), "k": k, **params},
        ).fetchall()
    if condition is not None:  # relaxed order: HNSW may return rows slightly out of order
        rows.sort(key=lambda r: -r[1])
    total_ms = (time.perf_counter() - started) * 1000
    stats = SearchStats(plan="dense", tier="dense", k=k, query_tokens=len(query), total_ms=total_ms)
    return [Hit(r[0], float(r[1]), r[2], r[3]) for r in rows], stats
