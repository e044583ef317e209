"""The collection's indexes: building the HNSW candidate index, switching its kind, and
compacting what replaced and deleted documents left behind."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import psycopg
from psycopg import sql

from .catalog import INDEX_EXPRESSION, CollectionSpec
from .connections import is_lost, write_errors
from .errors import CollectionNotFound
from .session import Session
from .types import CandidateIndex, CompactStats
from .validation import check_candidate_index

__all__ = ["build_index", "compact", "has_index", "switch_candidate_index"]

log = logging.getLogger(__name__)


def relation_exists(conn: Any, relation: sql.Identifier) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (relation.as_string(conn),))
    return bool(row.fetchone() == (True,))


def has_index(conn: Any, spec: CollectionSpec) -> bool:
    """Whether the collection's HNSW candidate index exists."""
    return relation_exists(conn, spec.token_index)


def build_index(session: Session, spec: CollectionSpec, replace: bool = False) -> None:
    """Build the candidate index, inside the caller's transaction; with ``replace``, under a
    new name, then swapped in for the old one."""
    started = time.perf_counter()
    conn = session.conn
    if session.maintenance_work_mem:
        conn.execute(
            "SELECT set_config('maintenance_work_mem', %s, true)", (session.maintenance_work_mem,)
        )
    name = spec.index_name + ("_new" if replace else "")
    conn.execute(
        sql.SQL("CREATE INDEX {} ON {} USING hnsw (" + INDEX_EXPRESSION[spec.candidate_index]
                + ") WITH (m = {m}, ef_construction = {ef})").format(
            sql.Identifier(name),
            spec.partition,
            dim=sql.Literal(spec.dim),
            m=sql.Literal(spec.hnsw_m),
            ef=sql.Literal(spec.hnsw_ef_construction),
        )
    )  # fmt: skip
    if replace:
        conn.execute(sql.SQL("DROP INDEX {}").format(spec.token_index))
        conn.execute(
            sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                spec.table(name), sql.Identifier(spec.index_name)
            )
        )
    # Stage 1 filters the parent table on collection_id; until the partition has
    # statistics the planner guesses that filter keeps 0.5% of the rows and prefers
    # sorting them to the HNSW index (PostgreSQL 16 and 18, a fresh load; tested).
    # ANALYZE tells it the filter keeps every row.
    conn.execute(sql.SQL("ANALYZE {} (collection_id)").format(spec.partition))
    # and that the dense tier's partial index covers this collection's documents
    conn.execute(sql.SQL("ANALYZE {} (collection_id)").format(spec.documents))
    log.info("built HNSW index of %r in %.1f s", spec.name, time.perf_counter() - started)


def switch_candidate_index(
    session: Session, spec: CollectionSpec, kind: CandidateIndex
) -> CollectionSpec:
    """The collection with its candidate index switched to ``kind``, in one transaction:
    the new index is built next to the old one (searches keep using the old one meanwhile;
    writes wait), then replaces it. Nothing changes on an error."""
    kind = check_candidate_index(kind)
    collections = spec.table("collections")
    switched = dataclasses.replace(spec, candidate_index=kind)
    with session.writing(f"switching {spec.name!r}") as conn:
        row = conn.execute(
            sql.SQL("SELECT candidate_index, n_tokens FROM {} WHERE id = %s FOR UPDATE")
            .format(collections), (spec.id,),
        ).fetchone()  # fmt: skip
        if row is None:
            raise CollectionNotFound(f"collection {spec.name!r} no longer exists")
        had_index = has_index(conn, spec)
        if row[0] == kind and (had_index or not row[1]):
            return switched
        conn.execute(
            sql.SQL("UPDATE {} SET candidate_index = %s, updated_at = now() WHERE id = %s")
            .format(collections), (kind, spec.id),
        )  # fmt: skip
        if row[1]:
            build_index(session, switched, replace=had_index)
    log.info("candidate index of %r is now %s", spec.name, kind)
    return switched


def compact(dsn: str, spec: CollectionSpec, reindex: bool = True) -> CompactStats:
    """VACUUM (ANALYZE) the collection's token partition and the documents table, then
    (``reindex``) rebuild its HNSW, dense and full-text indexes with REINDEX CONCURRENTLY;
    on a connection of its own, outside any transaction."""
    started = time.perf_counter()
    relations = {
        "tokens": spec.partition,
        "hnsw": spec.token_index,
        "dense": spec.dense_index,
        "full_text": spec.full_text_index,
    }
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(spec.schema)))

        def sizes() -> dict[str, int]:
            return {
                name: int(
                    conn.execute(
                        "SELECT coalesce(pg_total_relation_size(to_regclass(%s)), 0)",
                        (ident.as_string(conn),),
                    ).fetchone()[0]  # type: ignore[index]
                )
                for name, ident in relations.items()
            }

        before = sizes()
        row = conn.execute(  # as counted by the statistics system: approximate
            "SELECT n_dead_tup FROM pg_stat_all_tables WHERE relid = %s::regclass",
            (spec.partition.as_string(conn),),
        ).fetchone()
        with write_errors(f"compacting {spec.name!r}", lambda: is_lost(conn)):
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(spec.partition))
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(spec.documents))
            if reindex:
                for name in ("hnsw", "dense", "full_text"):
                    if relation_exists(conn, relations[name]):
                        conn.execute(
                            sql.SQL("REINDEX INDEX CONCURRENTLY {}").format(relations[name])
                        )
        after = sizes()
    stats = CompactStats(
        dead_token_rows=int(row[0]) if row else 0,
        bytes_before=before,
        bytes_after=after,
        reindexed=reindex,
        seconds=time.perf_counter() - started,
    )
    log.info("compacted %r: %s", spec.name, stats)
    return stats
