"""Connection pools: many threads sharing a few connections, through psycopg_pool.

>>> pool = open_pool(max_size=8)                        # doctest: +SKIP
>>> with pooled_store(pool) as store:                   # doctest: +SKIP
...     hits = store.collection("papers", create=False).search_embeddings(query, k=10)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from . import migrate
from .connections import check_seconds, connection_options, set_statement_timeout
from .store import Store, resolve_dsn

__all__ = ["open_pool", "pooled_store"]


def open_pool(
    dsn: str | None = None,
    *,
    schema: str = migrate.DEFAULT_SCHEMA,
    min_size: int = 1,
    max_size: int = 8,
    statement_timeout: float | None = None,
    migrate_schema: bool = True,
    **pool_options: Any,
) -> ConnectionPool:
    """A ``psycopg_pool.ConnectionPool`` of autocommit connections for :func:`pooled_store`.

    ``dsn`` as in :func:`~lateinteract_pg.connect` (None: ``$LATEINTERACT_PG_DSN``, else the
    embedded server). Each connection is checked when borrowed (one round trip: a connection
    the server dropped, e.g. across a restart, is replaced instead of failing the caller)
    and reset when returned (session authorization, settings, ``SET ROLE``, held cursors,
    temporary tables, advisory locks, ``LISTEN``), so that nothing of one borrower's session
    reaches the next.
    ``statement_timeout``: seconds, on every connection. ``pool_options`` go to
    ``ConnectionPool`` (``timeout``, ``max_waiting``, ``max_lifetime``, ...). Close the
    pool when done (``pool.close()``, or use it as a context manager).
    """
    dsn = migrate.check_dsn(resolve_dsn(dsn))
    migrate.check_schema_name(schema)
    timeout = check_seconds("statement_timeout", statement_timeout)
    if migrate_schema:
        migrate.upgrade(dsn, schema)

    def configure(conn: psycopg.Connection[Any]) -> None:
        if timeout is not None:
            set_statement_timeout(conn, timeout)

    def reset(conn: psycopg.Connection[Any]) -> None:
        # DISCARD ALL but psycopg's prepared statements, which it would no longer find
        conn.execute(
            "SET SESSION AUTHORIZATION DEFAULT; CLOSE ALL; RESET ALL; RESET ROLE; DISCARD TEMP; "
            "DISCARD SEQUENCES; UNLISTEN *; "
            "SELECT pg_catalog.pg_advisory_unlock_all()"
        )
        configure(conn)

    return ConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        kwargs={"autocommit": True, **connection_options(dsn)},
        configure=configure,
        reset=reset,
        check=ConnectionPool.check_connection,
        open=True,
        name="lateinteract_pg",
        **pool_options,
    )


@contextmanager
def pooled_store(
    pool: ConnectionPool,
    schema: str = migrate.DEFAULT_SCHEMA,
    *,
    timeout: float | None = None,
) -> Iterator[Store]:
    """A :class:`Store` on a connection borrowed from ``pool`` for the block, returned after.

    It searches through that one connection (``parallel=1``) and does not retry on another:
    a lost connection raises ConnectionLost, and the next borrow gets a checked one.
    ``timeout``: seconds to wait for a free connection (default: the pool's).
    """
    with pool.connection(timeout=timeout) as conn:
        store = Store.over(conn, schema)
        try:
            yield store
        finally:
            store.close()
