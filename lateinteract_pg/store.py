"""The Store: a session on one schema, and the catalogue of collections in it."""

from __future__ import annotations

import logging
import os
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from . import migrate
from .catalog import (
    COLUMNS,
    CollectionSpec,
    creation_options,
    dense_index_sql,
    full_text_index_sql,
    preset_options,
)
from .collection import Collection
from .errors import CollectionMismatch, CollectionNotFound, InvalidInput
from .session import Session, retried_read
from .types import CandidateIndex, CollectionInfo, RescoreStorage
from .validation import (
    check_candidate_index,
    check_collection_name,
    check_dim,
    check_hnsw,
    check_storage,
    check_text,
    short_repr,
)

__all__ = ["Store", "connect", "resolve_dsn"]

log = logging.getLogger(__name__)

DSN_ENV = "LATEINTERACT_PG_DSN"


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


class Store(Session):
    """A session on one schema: open, create, list and drop its collections."""

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
        index_pool_factor: int | None = None,
        storage: str | None = None,
    ) -> Collection:
        """Open the collection ``name``, creating it (with ``dim``) when missing.

        ``encoder`` turns text into token vectors (``add``, ``search``); ``reranker`` (a
        :class:`~lateinteract_pg.encoders.CrossEncoder`) serves ``search(..., tier="rerank")``.

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
        - ``index_pool_factor``: pool the token rows (and the HNSW index over them) by this
          factor while every vector is kept once in its document's row (default 3; 1
          where ``pool_factor`` > 1 or ``rescore_storage="int8"`` is asked for: token rows
          hold every vector). Scores stay exact MaxSim against every vector; storage
          shrinks; stage 1 finds candidates through the pooled vectors.
        - ``storage``: a named set of the options above (``"default"``, ``"balanced"``,
          ``"compact"``, ``"unpooled"``: :data:`~lateinteract_pg.catalog.STORAGE_PRESETS`);
          options given by name override it.

        Opening an existing collection with a different ``dim`` or option raises
        CollectionMismatch.
        """
        name = check_collection_name(name)
        if encoder is not None:
            enc_dim = int(encoder.dim)
            if dim is not None and dim != enc_dim:
                raise InvalidInput(f"dim={dim} but the encoder produces {enc_dim}-d vectors")
            dim = enc_dim
        given = {
            "candidate_index": candidate_index,
            "pool_factor": pool_factor,
            "rescore_storage": rescore_storage,
            "text_search_config": text_search_config,
            "index_pool_factor": index_pool_factor,
        }
        asked = {
            **({} if storage is None else preset_options(storage)),
            **{n: v for n, v in given.items() if v is not None},
        }
        options = creation_options(asked)
        check_candidate_index(options["candidate_index"])
        check_storage(options)
        row = self._fetch_collection(name)
        if row is None:
            if not create:
                raise CollectionNotFound(f"no collection named {name!r}")
            if dim is None:
                raise InvalidInput(f"collection {name!r} does not exist: give dim= to create it")
            check_dim(dim)
            check_hnsw(hnsw_m, hnsw_ef_construction)
            options["text_search_config"] = self._check_text_search_config(text_search_config)
            settings = encoder.settings() if encoder is not None else None
            row = self._create_collection(
                name, dim, settings, hnsw_m, hnsw_ef_construction, options
            )
        spec = CollectionSpec.from_row(self.schema, row)
        if dim is not None and dim != spec.dim:
            raise CollectionMismatch(f"collection {name!r} exists with dim={spec.dim}, not {dim}")
        for option, value in asked.items():
            if value is not None and value != getattr(spec, option):
                hint = " (Collection.set_candidate_index switches it)" * (
                    option == "candidate_index"
                )
                raise CollectionMismatch(
                    f"collection {name!r} exists with {option}={getattr(spec, option)!r}, "
                    f"not {value!r}{hint}"
                )
        coll = Collection(self, spec)
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
            sql.SQL("SELECT " + COLUMNS + " FROM {} WHERE name = %s").format(
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
                    "candidate_index, pool_factor, rescore_storage, text_search_config, "
                    "index_pool_factor) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (name) DO NOTHING RETURNING " + COLUMNS
                ).format(self.table("collections")),
                (
                    name, dim, None if encoder is None else Jsonb(encoder), m, ef,
                    options["candidate_index"], options["pool_factor"], options["rescore_storage"],
                    options["text_search_config"], options["index_pool_factor"],
                ),
            ).fetchone()  # fmt: skip
            if row is None:  # created concurrently by someone else: read it in this transaction
                row = self.conn.execute(
                    sql.SQL("SELECT " + COLUMNS + " FROM {} WHERE name = %s").format(
                        self.table("collections")
                    ),
                    (name,),
                ).fetchone()
                if row is None:  # and dropped again meanwhile
                    raise CollectionNotFound(f"collection {name!r} was dropped meanwhile")
                return row
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
            # the tenants' row-level security on the partition too (sql/functions)
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
            sql.SQL("SELECT " + COLUMNS + ", n_documents, n_tokens FROM {} ORDER BY name").format(
                self.table("collections")
            )
        ).fetchall()
        return [CollectionSpec.from_row(self.schema, r[:-2]).info(r[-2], r[-1]) for r in rows]

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

    def grant_read_only(self, role: str) -> None:
        """Let ``role`` search (SELECT and EXECUTE) but not write; see
        :func:`lateinteract_pg.migrate.grant_read_only`."""
        migrate.grant_read_only(self.dsn, role, self.schema)
