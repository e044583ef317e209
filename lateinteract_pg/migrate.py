"""Schema installation: pgvector checks and the alembic migrations that ship with the package."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from .errors import ExtensionMissing, InvalidInput, PermissionDenied, ServerError

__all__ = [
    "DEFAULT_SCHEMA",
    "check_schema_name",
    "ensure_pgvector",
    "grant_read_only",
    "grant_tenant",
    "revoke_tenant",
    "upgrade",
]

log = logging.getLogger(__name__)

DEFAULT_SCHEMA = "lateinteract"
MIN_SERVER_VERSION = 140000
MIN_PGVECTOR = (0, 7, 0)
VERSION_TABLE = "lateinteract_alembic_version"
HEAD = "0005"  # the newest migration; tests check it against migrations/versions
_PACKAGE_DIR = Path(__file__).resolve().parent


def _resource_dir(installed: str, source: str) -> Path:
    """Folder shipped inside the wheel, or the top-level folder of a source checkout."""
    inside = _PACKAGE_DIR / installed
    return inside if inside.is_dir() else _PACKAGE_DIR.parent / source


MIGRATIONS_DIR = _resource_dir("_migrations", "migrations")
SQL_DIR = _resource_dir("_sql", "sql")


def check_schema_name(schema: str) -> str:
    """Return ``schema`` if it is a usable identifier; raise InvalidInput otherwise.

    Quotes, spaces and capitals are fine (names are always composed as identifiers); ``%``
    is refused, because psycopg would read it as a parameter placeholder inside a query.
    """
    if not isinstance(schema, str) or not schema or len(schema.encode()) > 63:
        raise InvalidInput(f"schema name must be 1-63 bytes, got {schema!r}")
    if "\x00" in schema or "%" in schema:
        raise InvalidInput(f"schema name must not contain NUL or '%', got {schema!r}")
    return schema


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def ensure_pgvector(conn: psycopg.Connection[Any]) -> str:
    """Check the server and pgvector versions, creating the extension when allowed.

    Returns the schema the extension lives in.
    """
    if conn.info.server_version < MIN_SERVER_VERSION:
        raise ServerError(
            f"PostgreSQL {conn.info.server_version // 10000} is too old: "
            "lateinteract_pg needs PostgreSQL 14 or newer"
        )
    row = conn.execute(
        "SELECT e.extversion, n.nspname FROM pg_extension e "
        "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'"
    ).fetchone()
    if row is None:
        available = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
        ).fetchone()
        if available is None:
            raise ExtensionMissing(
                "pgvector is not installed on this PostgreSQL server. Install pgvector >= 0.7 "
                "(https://github.com/pgvector/pgvector#installation) or use the "
                "pgvector/pgvector Docker image, then run: CREATE EXTENSION vector;"
            )
        try:
            with conn.transaction():
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.errors.InsufficientPrivilege as exc:
            raise ExtensionMissing(
                f"pgvector is available but not enabled in database {conn.info.dbname!r}, and "
                "this role may not enable it. Ask a superuser (or the database owner) to run: "
                "CREATE EXTENSION vector;"
            ) from exc
        return ensure_pgvector(conn)
    version, ext_schema = row
    if _version_tuple(version) < MIN_PGVECTOR:
        raise ExtensionMissing(
            f"pgvector {version} is too old: lateinteract_pg needs >= 0.7 (halfvec). "
            "Upgrade the package on the server, then run: ALTER EXTENSION vector UPDATE;"
        )
    return str(ext_schema)


def run_sql_file(connection: Any, name: str, schema: str) -> None:
    """Run ``sql/NAME`` on an alembic (SQLAlchemy) connection.

    ``{schema}`` is composed in as an identifier, ``{schema_literal}`` as a string, and
    ``{search_path}`` as our schema, pgvector's schema and pg_temp (the search_path our SQL
    functions run with).
    """
    raw = connection.connection.driver_connection
    vector_schema = ensure_pgvector(raw)
    path = [sql.Identifier(s) for s in dict.fromkeys([schema, vector_schema])]
    text = (SQL_DIR / name).read_text()
    raw.execute(
        sql.SQL(text).format(
            schema=sql.Identifier(schema),
            schema_literal=sql.Literal(schema),
            search_path=sql.SQL(", ").join([*path, sql.SQL("pg_temp")]),
        )
    )


def current_revision(conn: psycopg.Connection[Any], schema: str) -> str | None:
    """The revision recorded in ``schema``, or None when nothing is installed there."""
    table = sql.Identifier(schema, VERSION_TABLE)
    exists = conn.execute("SELECT to_regclass(%s)", (table.as_string(conn),)).fetchone()
    if not exists or exists[0] is None:
        return None
    row = conn.execute(sql.SQL("SELECT version_num FROM {}").format(table)).fetchone()
    return None if row is None else str(row[0])


def upgrade(dsn: str, schema: str = DEFAULT_SCHEMA, revision: str = "head") -> str | None:
    """Bring ``schema`` to the newest migration (or to ``revision``, up or down);
    idempotent. Returns the current revision."""
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    check_schema_name(schema)
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_pgvector(conn)
        current = current_revision(conn, schema)
        if current == HEAD and revision in ("head", HEAD):
            return HEAD
        standby = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        if standby and standby[0]:
            raise ServerError(
                f"this server is a read-only replica with schema {schema!r} at revision "
                f"{current} (this version needs {HEAD}): migrate the primary; the replica "
                "follows it"
            )
    engine = create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(dsn), poolclass=NullPool
    )
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["schema"] = schema
    try:
        with engine.begin() as connection:
            # one migration at a time per schema, even from concurrent processes
            connection.exec_driver_sql(
                "SELECT pg_advisory_xact_lock(hashtext('lateinteract_pg.migrate:' || %s))",
                (schema,),
            )
            # under the lock: CREATE SCHEMA IF NOT EXISTS races with itself otherwise
            raw: Any = connection.connection.driver_connection
            raw.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            config.attributes["connection"] = connection
            going_down = revision == "base" or (
                revision.isdigit() and (current or "0").isdigit() and revision < (current or "0")
            )
            if going_down:
                command.downgrade(config, revision)
            else:
                command.upgrade(config, revision)
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={"version_table": VERSION_TABLE, "version_table_schema": schema},
            )
            reached = context.get_current_revision()
    finally:
        engine.dispose()
    log.info("schema %s at revision %s", schema, reached)
    return reached


def grant_read_only(dsn: str, role: str, schema: str = DEFAULT_SCHEMA) -> None:
    """Let ``role`` search (SELECT and EXECUTE) but not write; ``sql/grant_read_only.sql``."""
    check_schema_name(schema)
    if not isinstance(role, str) or not role or "\x00" in role or "%" in role:
        raise InvalidInput(f"role must be a non-empty name without NUL or '%', got {role!r}")
    text = (SQL_DIR / "grant_read_only.sql").read_text()
    with psycopg.connect(dsn, autocommit=True) as conn:
        if current_revision(conn, schema) is None:
            raise InvalidInput(f"schema {schema!r} has no lateinteract_pg tables: migrate first")
        vector_schema = ensure_pgvector(conn)
        try:
            with conn.transaction():
                conn.execute(
                    sql.SQL(text).format(
                        schema=sql.Identifier(schema),
                        vector_schema=sql.Identifier(vector_schema),
                        role=sql.Identifier(role),
                    )
                )
        except psycopg.errors.UndefinedObject as exc:
            raise InvalidInput(f"no role named {role!r} on this server") from exc
        except psycopg.errors.InsufficientPrivilege as exc:
            raise PermissionDenied(
                f"this role may not grant on schema {schema!r}: {exc.diag.message_primary}"
            ) from exc
    log.info("granted read-only access to %s on schema %s", role, schema)


def grant_tenant(dsn: str, role: str, tenant: str, schema: str = DEFAULT_SCHEMA) -> None:
    """Let ``role`` search, read-only, the documents of ``tenant`` and the shared ones (those
    without a tenant); the tenants' row-level security hides every other tenant's, in
    searches too. A role may hold several tenants; its members inherit them."""
    grant_read_only(dsn, role, schema)
    _tenant_roles(dsn, "INSERT INTO {} (tenant, role) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                  role, tenant, schema)  # fmt: skip
    log.info("granted tenant %r to %s on schema %s", tenant, role, schema)


def revoke_tenant(dsn: str, role: str, tenant: str, schema: str = DEFAULT_SCHEMA) -> None:
    """Take ``tenant`` away from ``role`` (its read-only grants stay)."""
    _tenant_roles(dsn, "DELETE FROM {} WHERE tenant = %s AND role = %s", role, tenant, schema)
    log.info("revoked tenant %r from %s on schema %s", tenant, role, schema)


def _tenant_roles(dsn: str, statement: str, role: str, tenant: str, schema: str) -> None:
    from .ingest import check_tenant

    check_schema_name(schema)
    check_tenant(tenant)
    with psycopg.connect(dsn, autocommit=True) as conn:
        if current_revision(conn, schema) is None:
            raise InvalidInput(f"schema {schema!r} has no lateinteract_pg tables: migrate first")
        row = conn.execute("SELECT oid FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        if row is None:
            raise InvalidInput(f"no role named {role!r} on this server")
        try:
            conn.execute(
                sql.SQL(statement).format(sql.Identifier(schema, "tenant_roles")), (tenant, row[0])
            )
        except psycopg.errors.InsufficientPrivilege as exc:
            raise PermissionDenied(
                f"this role may not change the tenants of schema {schema!r}: "
                f"{exc.diag.message_primary}"
            ) from exc
