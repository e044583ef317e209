"""The late tier: MaxSim over every token vector of a document.

Two plans, chosen by :mod:`~lateinteract_pg.search.planner`:

- index: stage 1 probes the collection's HNSW index once per query vector (split between
  the session's reader connections) and sums the best similarities per document
  (:mod:`~lateinteract_pg.search.candidates`); stage 2 fetches the best candidates' packed
  matrices and scores them with exact MaxSim (:mod:`~lateinteract_pg.search.rescore`);
- exhaustive: stage 2 over every document (that passes the condition).

Every statement of one search reads one snapshot. Where the collection keeps int8 matrices,
the best candidates by int8 MaxSim are re-scored exactly from their token rows.
"""

from __future__ import annotations

import functools
import time
from functools import partial
from typing import Any

import numpy as np
from psycopg import sql

from ..catalog import CollectionSpec, read_sizes
from ..errors import InvalidInput
from ..session import Session
from ..types import Hit, SearchStats
from . import candidates, filters, planner, rescore
from .options import LateOptions
from .results import fetch_hits, rank

__all__ = ["filtered_probe_settings", "search_late"]

EXHAUSTIVE_BATCH = 256  # documents a filtered exhaustive scan fetches per statement


def search_late(
    session: Session,
    spec: CollectionSpec,
    query: np.ndarray,
    options: LateOptions,
    condition: filters.Condition | None,
) -> tuple[list[Hit], SearchStats]:
    """The top ``options.k`` documents by exact MaxSim against ``query`` (validated, m x dim)
    that pass ``condition``, and how the search ran."""
    if options.rescore_from == "tokens" and spec.index_pool_factor > 1:
        raise InvalidInput(
            f"rescore_from='tokens': the token rows of {spec.name!r} hold pooled vectors "
            f"(index_pool_factor={spec.index_pool_factor}); its documents keep every vector"
        )
    started = time.perf_counter()
    probes, weights = candidates.merge_query_tokens(query, options.merge_threshold)
    # one snapshot for every statement: a document written meanwhile is seen whole or not
    with session.lock, session.snapshot():
        sizes = read_sizes(session.conn, spec)
        if sizes.restricted and condition is None:  # row-level security hides documents
            condition = (sql.SQL("true"), {})
        plan = planner.plan_search(
            n_tokens=sizes.n_tokens,
            n_documents=sizes.n_documents,
            has_index=sizes.has_index,
            dim=spec.dim,
            probes=len(probes),
            knobs=options.knobs,
            matching=None
            if condition is None
            else filters.count_matching(session.conn, spec, condition),
            forced="exhaustive" if options.exact else options.plan,
        )
        # int8 matrices rank the candidates; the best of them are then re-scored exactly
        refined = spec.rescore_storage == "int8" and options.rescore_from == "documents"
        keep = rescore.refine_count(options.k) if refined else options.k
        if plan.kind == "exhaustive":
            ranked, stats = _exhaustive(session, spec, query, keep, condition)
        else:
            ranked, stats = _index(
                session, spec, query, probes, weights, options, keep, condition,
                plan.scan_tuples,
            )  # fmt: skip
        if refined:
            refine_started = time.perf_counter()
            token_rows = rescore.token_rows_sql(spec.tokens, spec.id)
            stats["refined"] = min(len(ranked), keep)
            ranked = rescore.refine(session.conn, token_rows, query, ranked, spec.dim, options.k)
            stats["stage2_ms"] += (time.perf_counter() - refine_started) * 1000
        hits = fetch_hits(session.conn, spec, ranked[: options.k])
    stats.update(
        plan=plan.kind,
        k=options.k,
        query_tokens=len(query),
        total_ms=(time.perf_counter() - started) * 1000,
        estimated_cost=dict(plan.costs),
    )
    return hits, SearchStats(**stats)


def filtered_probe_settings(session: Session, scan_tuples: int) -> dict[str, str]:
    """Planner settings for a filtered stage 1, local to the search's transaction."""
    settings = {
        # A filtered probe could also fetch the passing documents' tokens and sort them;
        # misled by estimates of jsonb conditions, the planner picks that even for half of
        # scifact (9 s a query, measured). When the filter is that selective our own planner
        # has chosen the exhaustive plan already, so here the HNSW walk is right.
        "enable_sort": "off",
    }
    if session.iterative_scans:  # pgvector >= 0.8: the probe scans on until k' tokens pass
        settings["hnsw.iterative_scan"] = "relaxed_order"
        settings["hnsw.max_scan_tuples"] = str(scan_tuples)
    return settings


@functools.lru_cache(maxsize=256)
def _stage1_statement(
    schema: str, collection_id: int, dim: int, imputation: str, candidate_index: str
) -> sql.Composed:
    """The unfiltered stage-1 statement of a collection (filtered ones vary in shape)."""
    return candidates.candidate_sql(
        sql.Identifier(schema, "tokens"), collection_id, dim, imputation,  # type: ignore[arg-type]
        candidate_index,  # type: ignore[arg-type]
    )  # fmt: skip


def _index(
    session: Session,
    spec: CollectionSpec,
    query: np.ndarray,
    probes: np.ndarray,
    weights: np.ndarray,
    options: LateOptions,
    keep: int,
    condition: filters.Condition | None,
    scan_tuples: int,
) -> tuple[list[tuple[int, float]], dict[str, Any]]:
    """Stage 1 over the HNSW index, stage 2 exact: the best ``keep`` candidates. With a
    condition, each probe's iterative scan may visit up to ``scan_tuples`` tokens to find
    k' that pass."""
    started = time.perf_counter()
    knobs = options.knobs
    params: dict[str, Any] = {}
    if condition is None:
        statement = _stage1_statement(
            spec.schema, spec.id, spec.dim, options.imputation, spec.candidate_index
        )
    else:
        statement = candidates.candidate_sql(
            spec.tokens, spec.id, spec.dim, options.imputation, spec.candidate_index,
            spec.documents, condition[0],
        )  # fmt: skip
        params = condition[1]
    # The probes, then the candidates, are split between the session's reader connections
    # (one per core); a single connection runs stage 1 as one statement.
    readers = session.readers(len(probes))
    for conn in readers:
        session.set_session("hnsw.ef_search", str(knobs.ef_search), conn)
        if condition is not None:
            session.set_local(conn, filtered_probe_settings(session, scan_tuples))
    per_token, depth, n = knobs.candidates_per_token, knobs.rescore_depth, len(readers)
    if n == 1:
        cand_ids, _ = candidates.stage1(
            session.conn, statement, probes, weights, per_token, depth, params
        )
    else:
        parts = session.run_parallel(
            [
                partial(
                    candidates.stage1, conn, statement, probes[j::n], weights[j::n],
                    per_token, None, params,
                )
                for j, conn in enumerate(readers)
            ]
        )  # fmt: skip
        cand_ids = candidates.merge_partial_scores(parts, depth)
    middle = time.perf_counter()
    from_tokens = options.rescore_from == "tokens"
    fetch = (
        rescore.token_rows_sql(spec.tokens, spec.id)
        if from_tokens
        else rescore.fetch_sql(spec.documents, spec.matrix_layout)
    )
    fetchers = readers[: max(1, min(n, len(cand_ids)))]
    scored = session.run_parallel(
        [
            partial(
                rescore.score_candidates, conn, fetch, query, cand_ids[j :: len(fetchers)],
                spec.dim, spec.matrix_layout, from_tokens,
            )
            for j, conn in enumerate(fetchers)
        ]
    )  # fmt: skip
    ranked = rank([ids for ids, _, _ in scored], [sc for _, sc, _ in scored], keep)
    done = time.perf_counter()
    return ranked, {
        "probes": len(probes),
        "candidates_per_token": knobs.candidates_per_token,
        "ef_search": knobs.ef_search,
        "rescore_depth": knobs.rescore_depth,
        "candidates": len(cand_ids),
        "connections": n,
        "rescored_tokens": sum(r for _, _, r in scored),
        "stage1_ms": (middle - started) * 1000,
        "stage2_ms": (done - middle) * 1000,
    }


def _exhaustive(
    session: Session,
    spec: CollectionSpec,
    query: np.ndarray,
    keep: int,
    condition: filters.Condition | None,
) -> tuple[list[tuple[int, float]], dict[str, Any]]:
    """Stage 2 over every document of the collection (that passes ``condition``): the best
    ``keep``."""
    started = time.perf_counter()
    conn = session.conn
    if condition is not None:  # score exactly every document that passes the condition
        rows = conn.execute(
            sql.SQL("SELECT d.id FROM {} AS d WHERE d.collection_id = {} AND {}").format(
                spec.documents, sql.Literal(spec.id), condition[0]
            ),
            condition[1],
        ).fetchall()
        doc_ids = np.array([r[0] for r in rows], dtype=np.int64)
        fetch = rescore.fetch_sql(spec.documents, spec.matrix_layout)
        scored = [
            rescore.score_candidates(
                conn, fetch, query, doc_ids[i : i + EXHAUSTIVE_BATCH], spec.dim,
                spec.matrix_layout,
            )
            for i in range(0, len(doc_ids), EXHAUSTIVE_BATCH)
        ]  # fmt: skip
        ranked = rank([s[0] for s in scored], [s[1] for s in scored], keep)
        read = sum(s[2] for s in scored)
    else:
        all_ids: list[np.ndarray] = []
        all_scores: list[np.ndarray] = []
        read = 0
        scan = rescore.scan_sql(spec.documents, spec.matrix_layout)
        for packed in rescore.scan_all(conn, scan, spec.id, spec.dim, spec.matrix_layout):
            all_ids.append(packed.ids)
            all_scores.append(packed.maxsim(query))
            read += len(packed.tokens)
        ranked = rank(all_ids, all_scores, keep)
    elapsed = (time.perf_counter() - started) * 1000
    return ranked, {"stage2_ms": elapsed, "rescored_tokens": read}
