"""Searches right after the caches were emptied, against the same searches warm
(``bench --cold``): what the first queries cost once the collection no longer sits in
memory, e.g. when its index outgrew shared_buffers or after a restart."""

from __future__ import annotations

import logging
import os
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from ...collection import Collection
from ...store import Store
from ..metrics import percentile
from ..runs import search_ids, timed

__all__ = ["empty_caches", "measure_cold"]

log = logging.getLogger(__name__)

DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def empty_caches(store: Store) -> list[str]:
    """Evict every page of the server's shared buffers (``pg_buffercache_evict_all``,
    PostgreSQL 18, superuser) and, for a server on this machine, drop the operating
    system's page cache (root). Returns what was emptied; what could not be is logged."""
    emptied = []
    conn = store.conn
    try:
        with conn.transaction():
            exists = conn.execute(
                "SELECT 1 FROM pg_extension WHERE extname = 'pg_buffercache'"
            ).fetchone()
            if not exists:
                conn.execute(
                    sql.SQL("CREATE EXTENSION pg_buffercache SCHEMA {}").format(
                        sql.Identifier(store.schema)
                    )
                )
            conn.execute(
                sql.SQL("SELECT {}.pg_buffercache_evict_all()").format(
                    sql.Identifier(_extension_schema(store))
                )
            )
            if not exists:
                conn.execute("DROP EXTENSION pg_buffercache")
        emptied.append("shared_buffers")
    except psycopg.Error as exc:
        log.warning("shared_buffers not emptied: %s", exc)
    local = conn.execute("SELECT inet_server_addr() IS NULL").fetchone()
    if local and local[0]:
        try:
            os.sync()
            DROP_CACHES.write_text("3")
            emptied.append("page cache")
        except OSError as exc:
            log.warning("page cache not dropped: %s", exc)
    return emptied


def _extension_schema(store: Store) -> str:
    row = store.conn.execute(
        "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_buffercache'"
    ).fetchone()
    return str(row[0]) if row else store.schema


def measure_cold(
    store: Store, coll: Collection, queries: list[np.ndarray], k: int
) -> dict[str, Any]:
    """p50/p95 of one pass over ``queries`` right after :func:`empty_caches`, then of a
    second, warm pass over the same queries."""
    emptied = empty_caches(store)
    cold = timed(partial(search_ids, coll, k=k), queries)
    warm = timed(partial(search_ids, coll, k=k), queries)
    same = sum(a == b for a, b in zip(cold.rankings, warm.rankings))
    return {
        "queries": len(queries),
        "emptied": emptied,
        "cold_ms": {f"p{p}": round(percentile(cold.latencies_ms, p), 2) for p in (50, 95)},
        "warm_ms": {f"p{p}": round(percentile(warm.latencies_ms, p), 2) for p in (50, 95)},
        "same_rankings": round(same / max(1, len(queries)), 4),
    }
