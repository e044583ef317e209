"""Hybrid search: the late tier's list fused with PostgreSQL full text in one statement.

Two lists of ``depth`` documents: the late tier's best by MaxSim, searched with the knobs
of a top-``k`` search (so its top k is as good as a top-k search's, its tail exact scores of
candidates), and the best by full text (``ts_rank`` with length normalisation of the
documents holding any word of the query text). The SQL functions ``lexical_query`` and
``fuse`` (sql/functions) build the one and fuse the two.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from psycopg import sql

from .. import limits
from ..catalog import CollectionSpec
from ..errors import InvalidInput
from ..session import Session
from ..types import Hit, SearchStats
from ..validation import check_int, check_text
from .filters import Condition
from .late import search_late
from .options import LateOptions, check_option_names
from .planner import default_knobs

__all__ = ["FUSIONS", "Fusion", "search_hybrid"]

FUSIONS = ("rrf", "weighted")
DEFAULT_DEPTH = 100  # documents each list hands to the fusion
DEFAULT_WEIGHT = 0.7  # the best measured on scifact and cranfield
DEFAULT_RRF_K = 60


@dataclass(frozen=True)
class Fusion:
    """How the two lists are fused: ``"weighted"`` (``weight`` * late + (1 - weight) *
    lexical, each scaled to 0..1 by its list's min and max) or ``"rrf"`` (``weight`` /
    (rrf_k + late rank) + (1 - weight) / (rrf_k + lexical rank)); ``depth`` documents a
    list."""

    method: str = "weighted"
    weight: float = DEFAULT_WEIGHT
    depth: int = DEFAULT_DEPTH
    rrf_k: int = DEFAULT_RRF_K

    @classmethod
    def build(cls, fusion: Any, weight: Any, depth: Any, rrf_k: Any) -> Fusion:
        if fusion not in FUSIONS:
            raise InvalidInput(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or not 0.0 <= weight <= 1.0
        ):
            raise InvalidInput(f"weight must be a number in 0..1, got {weight!r}")
        return cls(
            fusion,
            float(weight),
            DEFAULT_DEPTH if depth is None else check_int("depth", depth, 1, limits.MAX_K),
            DEFAULT_RRF_K if rrf_k is None else check_int("rrf_k", rrf_k, 0, 1_000_000),
        )


def check_query_text(query_text: Any) -> str:
    check_text(query_text, "query_text")
    if not query_text.strip():
        raise InvalidInput("query_text must be a non-empty str")
    if len(query_text.split()) > limits.MAX_QUERY_WORDS:
        raise InvalidInput(f"query_text has more than {limits.MAX_QUERY_WORDS} words")
    return str(query_text)


def search_hybrid(
    session: Session,
    spec: CollectionSpec,
    query: np.ndarray,
    query_text: str,
    k: int,
    fusion: Fusion,
    condition: Condition | None,
    late_options: dict[str, Any],
) -> tuple[list[Hit], SearchStats]:
    """The top ``k`` of the fused lists (arguments checked by the caller, ``query_text`` by
    :func:`check_query_text`); ``late_options`` (as for a late search) override the late
    list's knobs. ``condition`` holds for both lists."""
    started = time.perf_counter()
    # the late list at the effort of a top-k search (k' and N of k, N >= depth), unless the
    # caller's late_options say otherwise
    check_option_names(late_options)
    top = default_knobs(k, len(query))
    defaults = {
        "candidates_per_token": top.candidates_per_token,
        "ef_search": top.ef_search,
        "rescore_depth": min(limits.MAX_K, max(top.rescore_depth, fusion.depth)),
    }
    if "rerank_depth" in late_options:  # the deprecated name of rescore_depth
        del defaults["rescore_depth"]
    options = LateOptions.build(fusion.depth, len(query), **{**defaults, **late_options})
    with session.lock, session.snapshot():
        late, late_stats = search_late(session, spec, query, options, condition)
        lexical_started = time.perf_counter()
        rows = session.conn.execute(
            _statement(spec, condition),
            {
                "late_ids": [h.id for h in late],
                "late_scores": [h.score for h in late],
                "query_text": query_text,
                "depth": fusion.depth,
                "fusion": fusion.method,
                "weight": fusion.weight,
                "rrf_k": fusion.rrf_k,
                "k": k,
                **(condition[1] if condition else {}),
            },
        ).fetchall()
    done = time.perf_counter()
    stats = replace(
        late_stats,
        k=k,
        fusion=fusion.method,
        lexical_matches=int(rows[0][6]) if rows else 0,
        lexical_ms=(done - lexical_started) * 1000,
        total_ms=(done - started) * 1000,
    )
    return [Hit(r[0], float(r[1]), r[4], r[5]) for r in rows], stats


def _statement(spec: CollectionSpec, condition: Condition | None) -> sql.Composed:
    """The full-text list and the fusion with the late list, as one statement."""
    return sql.SQL(
        """
        WITH words AS (
            SELECT {lexical_query}(c.text_search_config::regconfig, %(query_text)s) AS q
            FROM {collections} AS c WHERE c.id = {id}
        ), lexical AS (
            SELECT d.external_id AS id,
                   ts_rank(d.tsv, w.q, 1)::double precision AS score,
                   row_number() OVER (ORDER BY ts_rank(d.tsv, w.q, 1) DESC, d.id) AS r
            FROM {documents} AS d, words AS w
            WHERE d.collection_id = {id} AND d.tsv @@ w.q AND {condition}
            ORDER BY r
            LIMIT %(depth)s
        )
        SELECT f.id, f.score, f.late_rank, f.lexical_rank, d.text, d.metadata,
               (SELECT count(*) FROM lexical)
        FROM {fuse}(
            %(late_ids)s::text[], %(late_scores)s::double precision[],
            (SELECT array_agg(x.id ORDER BY x.r) FROM lexical AS x),
            (SELECT array_agg(x.score ORDER BY x.r) FROM lexical AS x),
            %(fusion)s, %(weight)s, %(rrf_k)s, %(k)s) AS f
        JOIN {documents} AS d ON d.collection_id = {id} AND d.external_id = f.id
        ORDER BY f.score DESC, f.id
        """
    ).format(
        lexical_query=spec.table("lexical_query"),
        fuse=spec.table("fuse"),
        collections=spec.table("collections"),
        documents=spec.documents,
        id=sql.Literal(spec.id),
        condition=condition[0] if condition else sql.SQL("true"),
    )
