"""A session with one schema of one PostgreSQL database: the connections and how reads and
writes use them.

- reads (:meth:`Session.read`, :func:`retried_read`) run under the session's lock and are
  retried on new connections when the server goes away;
- writes (:meth:`Session.writing`) run in one transaction on the main connection, never
  retried, with the server's refusals turned into our errors;
- a search's statements share one snapshot (:meth:`Session.snapshot`) across the main
  connection and the reader connections (:meth:`Session.readers`) it fans out to
  (:meth:`Session.run_parallel`);
- planner settings are local to a transaction (:meth:`Session.set_local`) or cached per
  connection (:meth:`Session.set_session`).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager, suppress
from typing import Any, TypeVar

import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.rows import tuple_row

from . import migrate
from .connections import (
    RETRY_READS_S,
    check_seconds,
    connection_options,
    in_transaction_block,
    is_lost,
    set_statement_timeout,
    statement_timeout_error,
    write_errors,
)
from .errors import ConnectionLost, InvalidInput, ServerError

__all__ = ["Session", "retried_read"]

log = logging.getLogger(__name__)
T = TypeVar("T")
S = TypeVar("S", bound="Session")

def retried_read(method: Callable[..., T]) -> Callable[..., T]:
    """Make a read method of a Session or Collection retry on new connections when its
    connection to the server is lost (see :meth:`Session.read`)."""

    @functools.wraps(method)
    def read(self: Any, *args: Any, **kwargs: Any) -> T:
        session = self if isinstance(self, Session) else self.store
        return session.read(functools.partial(method, self, *args, **kwargs))

    return read


class Session:
    """Connections to one schema of one PostgreSQL database; a
    :class:`~lateinteract_pg.store.Store` is one, with the catalogue of collections on top."""

    def __init__(
        self,
        dsn: str,
        schema: str = migrate.DEFAULT_SCHEMA,
        *,
        maintenance_work_mem: str | None = None,
        parallel: int | None = None,
        statement_timeout: float | None = None,
        retry_reads: float = RETRY_READS_S,
        connection: psycopg.Connection[Any] | None = None,
    ) -> None:
        """Open a Store on ``dsn``; :func:`connect` is the usual way in.

        ``parallel`` is how many connections one search may use at once (default: 2 on a
        machine with 2 or more cores): the HNSW probes and the candidate fetches are split
        between them. Writes always use the one main connection.

        ``statement_timeout``: seconds any one statement of this Store may run before the
        server cancels it (StatementTimeout; None: the server's setting). It covers ingest's
        COPY and index builds too: give bulk loads a Store of their own with a longer one.

        ``retry_reads``: for how many seconds a read (search, get, ...) that lost its
        connection is retried on new connections, e.g. while the server restarts; 0: never.
        Writes are never retried: a write whose connection breaks raises ConnectionLost.
        The next call after a lost connection opens a new one.

        ``connection``: use this connection (e.g. one from a pool, see
        :func:`~lateinteract_pg.pool.pooled_store`) instead of opening one: it must be in
        autocommit mode; the Store then reads through it alone, does not retry on another
        and leaves it open on close.
        """
        self.schema = migrate.check_schema_name(schema)
        self.maintenance_work_mem = maintenance_work_mem
        self.parallel = min(2, os.cpu_count() or 1) if parallel is None else int(parallel)
        if self.parallel < 1:
            raise InvalidInput(f"parallel must be >= 1, got {parallel!r}")
        self.statement_timeout = check_seconds("statement_timeout", statement_timeout)
        self.retry_reads = check_seconds("retry_reads", retry_reads) or 0.0
        self._dsn = dsn if connection is not None else migrate.check_dsn(dsn)
        self.lock = threading.RLock()
        self._settings: dict[int, dict[str, str]] = {}
        self._owns_connection = connection is None
        self._closed = False
        self._reading = False  # inside read(): a nested read leaves a loss to the outer one
        self._writing = 0  # depth of writing() blocks: no connection is replaced inside
        self._told_lost: psycopg.Connection[Any] | None = None  # a loss the caller was told
        if connection is None:
            self._conn = self._open()
        else:
            if not connection.autocommit:
                raise InvalidInput("Store(connection=...) needs a connection in autocommit mode")
            self.parallel = 1
            self._conn = self._configure(connection)
        self._readers: list[psycopg.Connection[Any]] = []
        self._iterative_scans: bool | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._snapshot_open = False  # the main connection is in snapshot()'s transaction
        self._snapshot: str | None = None  # its exported id, once a reader connection joins
        self._in_snapshot: list[psycopg.Connection[Any]] = []

    @classmethod
    def over(
        cls: type[S], connection: psycopg.Connection[Any], schema: str = migrate.DEFAULT_SCHEMA
    ) -> S:
        """A Store on a connection someone else owns, such as a pool's."""
        info = connection.info
        dsn = psycopg.conninfo.make_conninfo(info.dsn, password=info.password or None)
        return cls(dsn, schema, connection=connection)

    def _open(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(
                self._dsn,
                autocommit=True,
                row_factory=tuple_row,
                **connection_options(self._dsn),  # type: ignore[arg-type]
            )
        except psycopg.OperationalError as exc:
            raise ConnectionLost(
                f"cannot connect to the server: {migrate.redact_dsn(str(exc).strip())}"
            ) from None  # psycopg's own message is not shown again
        try:
            conn = self._configure(conn)
        except BaseException:
            conn.close()
            raise
        if self._closed:  # close() ran meanwhile, on another thread
            conn.close()
            raise InvalidInput("this Store is closed")
        return conn

    def _configure(self, conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
        """Our search path, the vector types and the statement timeout on ``conn``."""
        self.vector_schema = migrate.ensure_pgvector(conn)
        search_path = dict.fromkeys([self.schema, self.vector_schema])
        conn.execute(
            sql.SQL("SET search_path TO {}").format(
                sql.SQL(", ").join(sql.Identifier(s) for s in search_path)
            )
        )
        if self.statement_timeout is not None:
            set_statement_timeout(conn, self.statement_timeout)
        register_vector(conn)
        self._settings[id(conn)] = {}
        return conn

    @property
    def conn(self) -> psycopg.Connection[Any]:
        """The main connection. A lost one is replaced only where an operation begins (see
        :meth:`read` and :meth:`writing`), never in the middle of one."""
        return self._conn

    def _may_replace(self) -> bool:
        """Whether a lost main connection may be replaced now: this Store opened it, is not
        closed, and no transaction is open on it (ours, or the caller's until it has been
        told: ConnectionLost ends the caller's block), whose remaining statements would
        otherwise run on the new connection, outside it."""
        return (
            self._owns_connection
            and not self._closed
            and self._writing == 0
            and (self._told_lost is self._conn or not in_transaction_block(self._conn))
        )

    def _lost_in_transaction(self, why: str) -> ConnectionLost:
        self._told_lost = self._conn  # told once: the next call may replace it
        error = ConnectionLost(
            f"the connection to the server was lost ({why}) inside a transaction, which "
            "ended with it; nothing was retried"
        )
        error.in_transaction = True
        return error

    def _replace_lost(self) -> None:
        """At the start of an operation: drop lost reader connections, and replace a lost
        main connection (ConnectionLost where it may not be replaced, or the server refuses)."""
        for reader in [r for r in self._readers if r.closed]:
            self._settings.pop(id(reader), None)
            self._readers.remove(reader)
        if self._closed:
            raise InvalidInput("this Store is closed")
        if not self._conn.closed:
            return
        if not self._owns_connection:
            raise ConnectionLost("the borrowed connection to the server was lost: borrow another")
        if not self._may_replace():
            raise self._lost_in_transaction("found closed")
        log.warning("the connection to the server was lost; opening a new one")
        self._settings.pop(id(self._conn), None)
        self._conn = self._open()

    def _told(self, conn: psycopg.Connection[Any]) -> bool:
        """Whether ``conn`` is lost; if so, the write's ConnectionLost tells the caller."""
        if is_lost(conn):
            self._told_lost = conn
            return True
        return False

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """Several writes (and reads) in one transaction, committed together at the end of
        the block (a savepoint inside an enclosing one)::

            with store.transaction():
                coll.add_embeddings(["a"], [vectors])
                coll.delete(["b"])

        The server's refusals raise our errors after the rollback; a lost connection raises
        ConnectionLost, nothing of the block is retried, and the next call opens a new one.
        """
        with self.writing("transaction") as conn:
            yield conn

    def _lost(self) -> bool:
        """After an OperationalError: whether one of the connections is gone (each probed;
        the lost ones closed)."""
        return any([is_lost(conn) for conn in [self._conn, *self._readers]])

    def read(self, read: Callable[[], T]) -> T:
        """Run ``read`` under the Store's lock; when its connection to the server is lost,
        run it again on new connections for up to ``retry_reads`` seconds (the server may be
        restarting).

        Not retried: inside a transaction (the caller's, which the loss ended), on a borrowed
        connection (its owner replaces it) and once the time is up: ConnectionLost then.
        StatementTimeout when the server cancelled a statement. A read inside another one
        leaves a loss to the outer read.
        """
        with self.lock:
            if self._reading:  # this thread's outer read handles a loss
                return read()
            self._reading = True
            try:
                return self._read_retrying(read)
            finally:
                self._reading = False

    def _read_retrying(self, read: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.retry_reads
        delay = 0.05
        while True:
            try:
                self._replace_lost()
                return read()
            except psycopg.errors.QueryCanceled as exc:
                raise statement_timeout_error("reading", exc) from exc
            except psycopg.Error as exc:  # e.g. a snapshot gone with its exporting connection
                if not self._lost():
                    raise
                lost: Exception = exc
            except ConnectionLost as exc:  # no new connection (yet), or may not replace
                if exc.in_transaction or not self._may_replace():
                    raise
                lost = exc
            why = str(lost).strip()
            if not self._owns_connection:
                raise ConnectionLost(
                    f"the borrowed connection to the server was lost ({why}): borrow another"
                ) from lost
            if not self._may_replace():
                raise self._lost_in_transaction(why) from lost
            if time.monotonic() + delay > deadline:
                raise ConnectionLost(
                    f"the connection to the server was lost ({why}) and the read failed again "
                    f"for {self.retry_reads:g} s (retry_reads)"
                ) from lost
            log.warning("a read lost its connection (%s); retrying", why)
            time.sleep(delay)
            delay = min(2 * delay, 1.0)

    @contextmanager
    def writing(self, what: str) -> Iterator[psycopg.Connection[Any]]:
        """One write transaction on the main connection (a savepoint inside the caller's),
        under the Store's lock, with the server's refusals turned into our errors.

        A connection found lost before the transaction begins is replaced first (nothing of
        the write has been sent). Once it has begun, a lost connection raises ConnectionLost
        and nothing is retried; the statements inside never move to another connection.
        """
        conn = self._conn
        with self.lock, write_errors(what, lambda: self._told(conn)):
            self._replace_lost()
            conn = self._conn
            fresh = not in_transaction_block(conn)
            with ExitStack() as stack:
                try:
                    stack.enter_context(conn.transaction())
                except psycopg.OperationalError:
                    if fresh and conn.closed:  # psycopg still counts the block it could not begin
                        self._told_lost = conn
                    if not (fresh and conn.closed and self._may_replace()):
                        raise
                    self._replace_lost()  # a new connection: nothing of the write had run
                    conn = self._conn
                    stack.enter_context(conn.transaction())
                self._writing += 1
                try:
                    yield conn
                finally:
                    self._writing -= 1
            if conn.closed:  # psycopg leaves a block quietly on a lost connection
                self._told_lost = conn
                raise ConnectionLost(
                    f"{what}: the connection to the server was lost before the COMMIT; nothing "
                    "was written or retried"
                )

    @property
    def iterative_scans(self) -> bool:
        """Whether the server's pgvector has iterative index scans (0.8 and later)."""
        if self._iterative_scans is None:
            row = self.conn.execute(
                "SELECT string_to_array(extversion, '.')::int[] >= '{0,8}' "
                "FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()
            self._iterative_scans = bool(row and row[0])
        return self._iterative_scans

    def readers(self, wanted: int) -> list[psycopg.Connection[Any]]:
        """Up to ``wanted`` connections for one read, the main one first.

        Only the main connection while it is inside a transaction, so that a search sees
        that transaction's own writes.
        """
        self._readers = [r for r in self._readers if not r.closed]
        n = max(1, min(wanted, self.parallel))
        if n == 1 or (
            not self._snapshot_open
            and self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
        ):
            return [self.conn]
        while len(self._readers) < n - 1:
            self._readers.append(self._open())
        readers = [self.conn, *self._readers[: n - 1]]
        if self._snapshot_open:
            if self._snapshot is None:  # exported once the first reader joins
                row = self.conn.execute("SELECT pg_export_snapshot()").fetchone()
                self._snapshot = str(row[0]) if row else None
            for conn in readers:
                if conn not in self._in_snapshot:
                    self._in_snapshot.append(conn)  # first: ended by snapshot() on any error
                    conn.execute(
                        sql.SQL(
                            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; "
                            "SET TRANSACTION SNAPSHOT {}"
                        ).format(sql.Literal(self._snapshot))
                    )
        return readers

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Run the reads inside on one snapshot: every connection a search uses sees the same
        committed state, so a document written meanwhile is seen whole, once, or not at all.

        Inside the caller's own transaction the main connection alone reads (and sees that
        transaction's writes). Hold ``lock`` around it.
        """
        if self._snapshot_open or (
            self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
        ):
            yield
            return
        self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        self._in_snapshot = [self.conn]
        self._snapshot_open = True
        ending = "COMMIT"  # read only: it keeps the session settings made inside, nothing else
        try:
            yield
        except BaseException:
            ending = "ROLLBACK"  # which undoes those settings: forget them
            raise
        finally:
            self._snapshot_open = False
            self._snapshot = None
            for conn in self._in_snapshot:
                if ending == "ROLLBACK":
                    self._settings[id(conn)] = {}
                if not conn.closed:
                    with suppress(psycopg.OperationalError):
                        conn.execute(ending)
            self._in_snapshot = []

    def run_parallel(self, tasks: list[Callable[[], T]]) -> list[T]:
        """Run ``tasks`` at once, the first on this thread; results in order."""
        if len(tasks) == 1:
            return [tasks[0]()]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.parallel - 1)
        futures = [self._pool.submit(task) for task in tasks[1:]]
        try:
            first = tasks[0]()
        finally:  # none left running on a reader connection when this one failed
            wait(futures)
        return [first, *(f.result() for f in futures)]

    @property
    def dsn(self) -> str:
        """The connection string in use (the embedded server's too)."""
        return self._dsn

    def table(self, name: str) -> sql.Identifier:
        """A table of our schema, as a composed identifier."""
        return sql.Identifier(self.schema, name)

    def set_local(self, conn: psycopg.Connection[Any], settings: dict[str, str]) -> None:
        """Settings for the rest of the current transaction only (one round trip): a search's
        planner settings must not outlive it on a connection the caller also uses."""
        if settings:
            conn.execute(
                sql.SQL("SELECT {}").format(
                    sql.SQL(", ").join(
                        sql.SQL("set_config({}, {}, true)").format(sql.Literal(n), sql.Literal(v))
                        for n, v in settings.items()
                    )
                )
            )

    def set_session(
        self, name: str, value: str, conn: psycopg.Connection[Any] | None = None
    ) -> None:
        """Set a server setting for a session, skipping the round trip when unchanged.

        Inside a transaction the setting is made local to it and not remembered: a rollback
        would undo a session-level change behind the cache's back. The read-only transactions
        of :meth:`snapshot` are the exception: they forget the cache when they roll back.
        """
        conn = conn or self.conn
        if (
            conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
            and conn not in self._in_snapshot
        ):
            conn.execute("SELECT set_config(%s, %s, true)", (name, value))
            return
        settings = self._settings.setdefault(id(conn), {})
        if settings.get(name) != value:
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))
            settings[name] = value

    # --- replicas ----------------------------------------------------------------------

    @retried_read
    def wal_position(self) -> str:
        """The primary's current WAL position (an LSN such as ``"0/3000060"``): everything
        committed so far is before it. Hand it to a replica's :meth:`wait_for_replay`."""
        row = self.conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        return str(row[0])

    def wait_for_replay(self, position: str, timeout: float = 10.0) -> float:
        """On a replica: wait until it has replayed the primary's WAL up to ``position``,
        so that its searches see every write committed before it. Returns the seconds
        waited; raises ServerError after ``timeout`` seconds or on a server that is not a
        replica."""
        started = time.monotonic()
        while True:
            row = self.read(
                lambda: self.conn.execute(
                    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn() >= %s::pg_lsn",
                    (position,),
                ).fetchone()
            )
            assert row is not None
            if not row[0]:
                raise ServerError("wait_for_replay: this server is not a replica")
            if row[1]:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise ServerError(
                    f"the replica has not replayed the WAL up to {position} within {timeout} s"
                )
            time.sleep(0.01)

    def close(self) -> None:
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown()
        for conn in [self._conn, *self._readers] if self._owns_connection else self._readers:
            conn.close()

    def __enter__(self: S) -> S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(schema={self.schema!r}, dbname={self.conn.info.dbname!r})"
