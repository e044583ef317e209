"""The Store: one PostgreSQL connection, the schema, and the collections in it."""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager, suppress
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

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
from .errors import (
    CollectionExists,
    CollectionNotFound,
    ConnectionLost,
    InvalidInput,
    ServerError,
)
from .ingest import check_text, short_repr
from .pooling import MAX_POOL_FACTOR
from .rescore import RESCORE_STORAGES, RescoreStorage
from .types import CANDIDATE_INDEXES, CandidateIndex, CollectionInfo

if TYPE_CHECKING:
    from .collection import Collection

__all__ = ["Store", "connect", "dense_index_sql", "resolve_dsn"]

log = logging.getLogger(__name__)
T = TypeVar("T")

DSN_ENV = "LATEINTERACT_PG_DSN"
# what Collection() takes after the store, in order
_COLLECTION_COLUMNS = (
    "id, name, dim, encoder, hnsw_m, hnsw_ef_construction, candidate_index, pool_factor, "
    "rescore_storage, text_search_config::text"
)
MAX_NAME_LENGTH = 200


def connect(
    dsn: str | None = None,
    *,
    schema: str = migrate.DEFAULT_SCHEMA,
    migrate_schema: bool = True,
    **options: Any,
) -> Store:
    """Open a Store.

    Parameters
    ----------
    dsn : libpq connection string or URI. ``None`` reads ``$LATEINTERACT_PG_DSN``; if that is
        unset too, the embedded PostgreSQL is started (or reattached) and used.
    schema : the schema holding our tables (created if missing).
    migrate_schema : run the migrations on connect (idempotent, cheap when up to date).
    options : passed to :class:`Store` (``parallel``, ``maintenance_work_mem``).
    """
    dsn = resolve_dsn(dsn)
    migrate.check_schema_name(schema)
    if migrate_schema:
        migrate.upgrade(dsn, schema)
    return Store(dsn, schema, **options)


def resolve_dsn(dsn: str | None = None) -> str:
    """``dsn``, else ``$LATEINTERACT_PG_DSN``, else the embedded server (started if needed)."""
    dsn = dsn or os.environ.get(DSN_ENV) or None
    if dsn is None:
        from .embedded import ensure_server

        dsn = ensure_server()
    return dsn


def check_collection_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"collection name must be a non-empty str, got {short_repr(name)}")
    check_text(name, "collection name")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"collection name must be at most {MAX_NAME_LENGTH} characters")
    return name


def check_candidate_index(kind: Any) -> CandidateIndex:
    if not isinstance(kind, str) or kind not in CANDIDATE_INDEXES:
        raise InvalidInput(
            f"candidate_index must be one of {CANDIDATE_INDEXES}, got {short_repr(kind)}"
        )
    return kind


def check_storage(pool_factor: Any, rescore_storage: Any) -> tuple[int, RescoreStorage]:
    if (
        isinstance(pool_factor, bool)
        or not isinstance(pool_factor, int)
        or not 1 <= pool_factor <= MAX_POOL_FACTOR
    ):
        raise InvalidInput(
            f"pool_factor must be an int in 1..{MAX_POOL_FACTOR}, got {short_repr(pool_factor)}"
        )
    if not isinstance(rescore_storage, str) or rescore_storage not in RESCORE_STORAGES:
        raise InvalidInput(
            f"rescore_storage must be one of {RESCORE_STORAGES}, got {short_repr(rescore_storage)}"
        )
    return pool_factor, rescore_storage


def dense_index_sql(
    schema: str, collection_id: int, dim: int, m: int = 16, ef_construction: int = 64
) -> sql.Composed:
    """The dense tier's HNSW index of one collection: partial, over its documents' rows."""
    return sql.SQL(
        "CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw ((dense::halfvec({})) halfvec_ip_ops) "
        "WITH (m = {}, ef_construction = {}) WHERE collection_id = {}"
    ).format(
        sql.Identifier(f"documents_{collection_id}_dense_hnsw"),
        sql.Identifier(schema, "documents"),
        sql.Literal(dim),
        sql.Literal(m),
        sql.Literal(ef_construction),
        sql.Literal(collection_id),
    )


def full_text_index_sql(schema: str, collection_id: int) -> sql.Composed:
    """The hybrid search's GIN index of one collection: partial, over its documents' rows."""
    return sql.SQL(
        "CREATE INDEX IF NOT EXISTS {} ON {} USING gin (tsv) WHERE collection_id = {}"
    ).format(
        sql.Identifier(f"documents_{collection_id}_tsv"),
        sql.Identifier(schema, "documents"),
        sql.Literal(collection_id),
    )


def retried_read(method: Callable[..., T]) -> Callable[..., T]:
    """Make a read method of a Store or Collection retry on new connections when its
    connection to the server is lost (see :meth:`Store.read`)."""

    @functools.wraps(method)
    def read(self: Any, *args: Any, **kwargs: Any) -> T:
        store = self if isinstance(self, Store) else self.store
        return store.read(functools.partial(method, self, *args, **kwargs))

    return read


class Store:
    """A connection to one schema of one PostgreSQL database."""

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
        cls, connection: psycopg.Connection[Any], schema: str = migrate.DEFAULT_SCHEMA
    ) -> Store:
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

    # --- collections -------------------------------------------------------------------

    def collection(
        self,
        name: str,
        dim: int | None = None,
        *,
        encoder: Any = None,
        reranker: Any = None,
        create: bool = True,
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 64,
        candidate_index: CandidateIndex | None = None,
        pool_factor: int | None = None,
        rescore_storage: RescoreStorage | None = None,
        text_search_config: str | None = None,
    ) -> Collection:
        """Open the collection ``name``, creating it (with ``dim``) when missing.

        ``encoder`` turns text into token vectors (``add``, ``search``); ``reranker`` (a
        :class:`~lateinteract_pg.rerank.CrossEncoder`) serves ``search(..., tier="rerank")``.

        Storage options, fixed at creation except the first:

        - ``candidate_index``: the HNSW index stage 1 probes: ``"halfvec"`` (the default:
          the vectors, inner product) or ``"binary"`` (their sign bits, Hamming distance; a
          smaller index, lower recall per probe); :meth:`Collection.set_candidate_index`
          switches it later.
        - ``pool_factor``: pool each document's token vectors at ingest, keeping about
          1/pool_factor of them (default 1: keep all). Scores are then MaxSim against the
          pooled vectors.
        - ``rescore_storage``: the per-document matrix stage 2 reads: ``"float16"`` (default,
          exact) or ``"int8"`` (half the bytes, scores within about 0.5%).
        - ``text_search_config``: the PostgreSQL text search configuration of the documents'
          full text, for hybrid search (default ``"english"``; ``"simple"`` does no stemming).

        Opening an existing collection with a different ``dim`` or option raises
        CollectionExists.
        """
        from .collection import Collection

        name = check_collection_name(name)
        if encoder is not None:
            enc_dim = int(encoder.dim)
            if dim is not None and dim != enc_dim:
                raise InvalidInput(f"dim={dim} but the encoder produces {enc_dim}-d vectors")
            dim = enc_dim
        kind = check_candidate_index("halfvec" if candidate_index is None else candidate_index)
        pool, storage = check_storage(
            1 if pool_factor is None else pool_factor,
            "float16" if rescore_storage is None else rescore_storage,
        )
        row = self._fetch_collection(name)
        if row is None:
            if not create:
                raise CollectionNotFound(f"no collection named {name!r}")
            if dim is None:
                raise InvalidInput(f"collection {name!r} does not exist: give dim= to create it")
            if not isinstance(dim, int) or isinstance(dim, bool) or not 1 <= dim <= 4000:
                raise InvalidInput(
                    f"dim must be an int in 1..4000 (halfvec HNSW), got {short_repr(dim)}"
                )
            if not all(
                isinstance(v, int) and not isinstance(v, bool)
                for v in (hnsw_m, hnsw_ef_construction)
            ) or not (2 <= hnsw_m <= 100 and 4 <= hnsw_ef_construction <= 1000):
                raise InvalidInput(
                    "hnsw_m must be an int in 2..100 and hnsw_ef_construction one in 4..1000"
                )
            options = {
                "candidate_index": kind,
                "pool_factor": pool,
                "rescore_storage": storage,
                "text_search_config": self._check_text_search_config(text_search_config),
            }
            settings = encoder.settings() if encoder is not None else None
            row = self._create_collection(
                name, dim, settings, hnsw_m, hnsw_ef_construction, options
            )
        coll = Collection(self, *row)
        if dim is not None and dim != coll.dim:
            raise CollectionExists(f"collection {name!r} exists with dim={coll.dim}, not {dim}")
        asked = {
            "candidate_index": candidate_index,
            "pool_factor": pool_factor,
            "rescore_storage": rescore_storage,
            "text_search_config": text_search_config,
        }
        for option, value in asked.items():
            if value is not None and value != getattr(coll, option):
                hint = " (Collection.set_candidate_index switches it)" * (
                    option == "candidate_index"
                )
                raise CollectionExists(
                    f"collection {name!r} exists with {option}={getattr(coll, option)!r}, "
                    f"not {value!r}{hint}"
                )
        if encoder is not None:
            coll.attach_encoder(encoder)
        if reranker is not None:
            coll.attach_reranker(reranker)
        return coll

    def _check_text_search_config(self, config: Any) -> str:
        """The name of an existing text search configuration (default "english")."""
        if config is None:
            return "english"
        if not isinstance(config, str) or not config.strip():
            raise InvalidInput(
                f"text_search_config must be a configuration name, got {short_repr(config)}"
            )
        check_text(config, "text_search_config")
        row = self.conn.execute(
            "SELECT 1 FROM pg_ts_config AS c JOIN pg_namespace AS n ON n.oid = c.cfgnamespace "
            "WHERE (c.cfgname = %s AND pg_ts_config_is_visible(c.oid)) "
            "OR n.nspname || '.' || c.cfgname = %s",
            (config, config),
        ).fetchone()
        if row is None:
            raise InvalidInput(
                f"no text search configuration {config!r} on this server "
                "(SELECT cfgname FROM pg_ts_config lists them)"
            )
        return config

    @retried_read
    def _fetch_collection(self, name: str) -> tuple[Any, ...] | None:
        return self.conn.execute(
            sql.SQL("SELECT " + _COLLECTION_COLUMNS + " FROM {} WHERE name = %s").format(
                self.table("collections")
            ),
            (name,),
        ).fetchone()

    def _create_collection(
        self,
        name: str,
        dim: int,
        encoder: dict[str, Any] | None,
        m: int,
        ef: int,
        options: dict[str, Any],
    ) -> tuple[Any, ...]:
        with self.writing(f"creating collection {name!r}"):
            row = self.conn.execute(
                sql.SQL(
                    "INSERT INTO {} (name, dim, encoder, hnsw_m, hnsw_ef_construction, "
                    "candidate_index, pool_factor, rescore_storage, text_search_config) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (name) DO NOTHING RETURNING " + _COLLECTION_COLUMNS
                ).format(self.table("collections")),
                (
                    name, dim, None if encoder is None else Jsonb(encoder), m, ef,
                    options["candidate_index"], options["pool_factor"], options["rescore_storage"],
                    options["text_search_config"],
                ),
            ).fetchone()  # fmt: skip
            if row is None:  # created concurrently by someone else
                existing = self._fetch_collection(name)
                assert existing is not None
                return existing
            # the dense index first: its build waits for writers of other collections to
            # commit, and until then this transaction should not yet hold the token table's
            # exclusive lock, which stops every search
            self.conn.execute(dense_index_sql(self.schema, row[0], dim, m, ef))
            self.conn.execute(full_text_index_sql(self.schema, row[0]))
            partition = self.table(f"tokens_{row[0]}")
            self.conn.execute(
                sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES IN ({})").format(
                    partition, self.table("tokens"), sql.Literal(row[0])
                )
            )
            # the tenants' row-level security on the partition too (sql/0005_real_collections)
            self.conn.execute(
                sql.SQL("SELECT {}(%s::regclass)").format(self.table("protect_tokens")),
                (partition.as_string(self.conn),),
            )
            log.info("created collection %r (id %s, dim %s)", name, row[0], dim)
            return row

    @retried_read
    def collections(self) -> list[CollectionInfo]:
        """Every collection, by name."""
        rows = self.conn.execute(
            sql.SQL(
                "SELECT name, dim, n_documents, n_tokens, encoder, candidate_index, pool_factor, "
                "rescore_storage FROM {} ORDER BY name"
            ).format(self.table("collections"))
        ).fetchall()
        return [CollectionInfo(*row) for row in rows]

    def __contains__(self, name: object) -> bool:
        try:
            return self._fetch_collection(check_collection_name(name)) is not None
        except InvalidInput:  # a name no collection can have
            return False

    def drop_collection(self, name: str) -> None:
        """Delete a collection with all its documents, tokens and index."""
        row = self._fetch_collection(check_collection_name(name))
        if row is None:
            raise CollectionNotFound(f"no collection named {name!r}")
        with self.writing(f"dropping {name!r}"):
            self.conn.execute(
                sql.SQL("DROP TABLE IF EXISTS {}").format(self.table(f"tokens_{row[0]}"))
            )
            self.conn.execute(
                sql.SQL("DELETE FROM {} WHERE id = %s").format(self.table("collections")),
                (row[0],),
            )
        # after the commit, in a short transaction of its own: DROP INDEX locks the shared
        # documents table against every read until it commits (the index is empty by now)
        with self.writing(f"dropping {name!r}"):
            for index in ("dense_hnsw", "tsv"):
                self.conn.execute(
                    sql.SQL("DROP INDEX IF EXISTS {}").format(
                        self.table(f"documents_{row[0]}_{index}")
                    )
                )
        log.info("dropped collection %r", name)

    def grant_tenant(self, role: str, tenant: str) -> None:
        """Let ``role`` search, read-only, ``tenant``'s documents and the shared ones; the
        tenants' row-level security hides every other tenant's. See
        :func:`lateinteract_pg.migrate.grant_tenant`."""
        migrate.grant_tenant(self.dsn, role, tenant, self.schema)

    def revoke_tenant(self, role: str, tenant: str) -> None:
        """Take ``tenant`` away from ``role``."""
        migrate.revoke_tenant(self.dsn, role, tenant, self.schema)

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

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store(schema={self.schema!r}, dbname={self.conn.info.dbname!r})"
