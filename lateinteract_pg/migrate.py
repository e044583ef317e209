"""Schema installation: pgvector checks and the alembic migrations that ship with the package."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from .errors import (
    ExtensionMissing,
    InsecureSetup,
    InvalidInput,
    PermissionDenied,
    ServerError,
)

__all__ = [
    "DEFAULT_SCHEMA",
    "check_dsn",
    "check_role_name",
    "check_schema_name",
    "connect_raw",
    "ensure_pgvector",
    "grant_read_only",
    "grant_tenant",
    "redact_dsn",
    "revoke_tenant",
    "upgrade",
]

log = logging.getLogger(__name__)

DEFAULT_SCHEMA = "lateinteract"
MIN_SERVER_VERSION = 140000
MIN_PGVECTOR = (0, 7, 0)
VERSION_TABLE = "lateinteract_alembic_version"
HEAD = "0009"  # the newest migration; tests check it against migrations/versions
_PACKAGE_DIR = Path(__file__).resolve().parent


def _resource_dir(installed: str, source: str) -> Path:
    """Folder shipped inside the wheel, or the top-level folder of a source checkout."""
    inside = _PACKAGE_DIR / installed
    return inside if inside.is_dir() else _PACKAGE_DIR.parent / source


MIGRATIONS_DIR = _resource_dir("_migrations", "migrations")
SQL_DIR = _resource_dir("_sql", "sql")
STEPS_DIR = MIGRATIONS_DIR / "steps"  # each revision's frozen table definitions


# NUL, line breaks and the other control characters: no name needs them, and in a name a
# line break could end a SQL comment or forge a log line
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_identifier(name: Any, what: str) -> str:
    """``name`` if it can be composed as a SQL identifier as given: 1-63 bytes of valid
    unicode (PostgreSQL would silently truncate a longer one), without ``%`` (psycopg would
    read it as a placeholder inside a query) or control characters (a line break could end a
    SQL comment)."""
    if not isinstance(name, str) or not name or "%" in name or _CONTROL.search(name):
        raise InvalidInput(
            f"{what} must be 1-63 bytes without '%' or control characters, got {name!r}"
        )
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{what} {name!r} is not valid unicode: {exc.reason}") from exc
    if size > 63:
        raise InvalidInput(f"{what} must be 1-63 bytes, got {name!r}")
    return name


def check_schema_name(schema: str) -> str:
    """Return ``schema`` if it is a usable identifier; raise InvalidInput otherwise. Quotes,
    spaces and capitals are fine: names are always composed as identifiers."""
    return _check_identifier(schema, "schema name")


def check_role_name(role: Any) -> str:
    """Return ``role`` if it can name a role as given; raise InvalidInput otherwise."""
    return _check_identifier(role, "role")


# passwords in connection strings: URI user info, URI query parameters, keyword=value pairs,
# and the keys of a dict's repr
_SECRET = "(?:ssl)?password"
_URI_PASSWORD = re.compile(r"(postgres(?:ql)?://[^\s:/?#@'\"]*:)[^@/]*@", re.IGNORECASE)
_QUERY_PASSWORD = re.compile(rf"([?&]{_SECRET}=)[^&#\s'\"]*", re.IGNORECASE)
_KEYWORD_PASSWORD = re.compile(
    rf"((?:^|[\s,;(])\b{_SECRET}\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s'\"]*)", re.IGNORECASE
)
_DICT_PASSWORD = re.compile(rf"""(['"]{_SECRET}['"]\s*:\s*)(['"])(?:(?!\2).)*\2""", re.IGNORECASE)
# libpq's complaint about a keyword string it cannot parse quotes the word it stopped at
_PARSED_WORD = re.compile(r'(after )"[^"]*"')
REDACTED = "****"


def redact_dsn(text: str) -> str:
    """``text`` (a DSN, or a message that may quote one) with every password masked.

    >>> redact_dsn("postgresql://app:s3cret@db/prod?sslmode=require")
    'postgresql://app:****@db/prod?sslmode=require'
    >>> redact_dsn("host=db user=app password='s3 cret' dbname=prod")
    'host=db user=app password=**** dbname=prod'
    """
    text = _URI_PASSWORD.sub(rf"\1{REDACTED}@", text)
    text = _QUERY_PASSWORD.sub(rf"\1{REDACTED}", text)
    text = _KEYWORD_PASSWORD.sub(rf"\1{REDACTED}", text)
    return _DICT_PASSWORD.sub(rf"\1\2{REDACTED}\2", text)


def _invalid_dsn(exc: psycopg.Error) -> InvalidInput:
    reason = _PARSED_WORD.sub(r'\1"..."', redact_dsn(str(exc).strip()))
    return InvalidInput(f"invalid DSN (not shown: it may hold a password): {reason}")


def check_dsn(dsn: str) -> str:
    """``dsn`` if libpq can parse it; InvalidInput, without the DSN, otherwise."""
    try:
        psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise _invalid_dsn(exc) from None  # psycopg's message may quote the whole DSN
    return dsn


def connect_raw(dsn: str, **options: Any) -> psycopg.Connection[Any]:
    """``psycopg.connect(dsn, **options)``; a server that cannot be reached raises
    ServerError, a malformed DSN InvalidInput, neither with the DSN's password in it."""
    try:
        return psycopg.connect(dsn, **options)
    except psycopg.OperationalError as exc:
        raise ServerError(
            f"cannot connect to {redact_dsn(dsn)}: {redact_dsn(str(exc).strip())}"
        ) from None  # psycopg's own message is not shown again
    except psycopg.ProgrammingError as exc:
        raise _invalid_dsn(exc) from None


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


# a comment line of a SQL file: its placeholders are left as they are (see render_sql)
_COMMENT_LINE = re.compile(r"^[ \t]*--.*$", re.MULTILINE)


def render_sql(text: str, **parts: sql.Composable) -> sql.Composed:
    """``text`` (a SQL file) with ``parts`` composed in for its ``{name}`` placeholders,
    except in its comment lines: a quoted identifier may hold a newline, which would end the
    comment and make the rest of the name SQL."""

    def escape(comment: re.Match[str]) -> str:
        return comment.group(0).replace("{", "{{").replace("}", "}}")

    return sql.SQL(_COMMENT_LINE.sub(escape, text)).format(**parts)


def install_parts(raw: psycopg.Connection[Any], schema: str) -> dict[str, sql.Composable]:
    """What the migrations' SQL files compose in: ``{schema}`` as an identifier,
    ``{schema_literal}`` as a string, and ``{search_path}`` as our schema, pgvector's schema
    and pg_temp (the search_path our SQL functions run with)."""
    vector_schema = ensure_pgvector(raw)
    path = [sql.Identifier(s) for s in dict.fromkeys([schema, vector_schema])]
    return {
        "schema": sql.Identifier(schema),
        "schema_literal": sql.Literal(schema),
        "search_path": sql.SQL(", ").join([*path, sql.SQL("pg_temp")]),
    }


def run_step(connection: Any, name: str, schema: str) -> None:
    """Run ``migrations/steps/NAME`` (a revision's frozen table definitions) on an alembic
    (SQLAlchemy) connection, with :func:`install_parts` composed in."""
    raw = connection.connection.driver_connection
    raw.execute(render_sql((STEPS_DIR / name).read_text(), **install_parts(raw, schema)))


def _others_may_create(conn: psycopg.Connection[Any], schema: str) -> bool:
    """Whether PUBLIC (every role) may create objects in ``schema``."""
    row = conn.execute(
        "SELECT pg_catalog.has_schema_privilege('public', %s, 'CREATE')", (schema,)
    ).fetchone()
    return bool(row and row[0])


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
    with connect_raw(dsn, autocommit=True) as conn:
        vector_schema = ensure_pgvector(conn)
        current = current_revision(conn, schema)
        if current == HEAD and revision in ("head", HEAD):
            return HEAD
        if _others_may_create(conn, vector_schema):
            log.warning(  # once, when it migrates
                "every role may create objects in schema %s, where pgvector lives: one could "
                "shadow an operator or function that searches call, and run code with the "
                "privileges of whoever searches. REVOKE CREATE ON SCHEMA %s FROM PUBLIC",
                vector_schema,
                vector_schema,
            )
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
    check_role_name(role)
    text = (SQL_DIR / "grant_read_only.sql").read_text()
    with connect_raw(dsn, autocommit=True) as conn:
        if current_revision(conn, schema) is None:
            raise InvalidInput(f"schema {schema!r} has no lateinteract_pg tables: migrate first")
        # by its exact name: GRANT would read "public" as every role
        oid = _role_oid(conn, role)
        vector_schema = ensure_pgvector(conn)
        writable = [
            name
            for name in dict.fromkeys([schema, vector_schema])
            if conn.execute(
                "SELECT pg_catalog.has_schema_privilege(%s::oid, %s, 'CREATE')", (oid, name)
            ).fetchone()
            == (True,)
        ]
        if writable:
            raise InsecureSetup(
                f"refusing to grant {role!r} read access: it may create objects in schema "
                f"{' and '.join(writable)}, where our functions and pgvector's live, and could "
                "shadow an operator or function that searches call, running code with the "
                "rights of whoever searches. REVOKE CREATE ON SCHEMA ... FROM PUBLIC (and from "
                "the role) first; nothing was granted"
            )
        try:
            with conn.transaction():
                conn.execute(
                    render_sql(
                        text,
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
    from .validation import check_tenant

    check_tenant(tenant)  # before the read-only grant: a refusal changes nothing
    grant_read_only(dsn, role, schema)
    _tenant_roles(dsn, "INSERT INTO {} (tenant, role) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                  role, tenant, schema)  # fmt: skip
    log.info("granted tenant %r to %s on schema %s", tenant, role, schema)


def revoke_tenant(dsn: str, role: str, tenant: str, schema: str = DEFAULT_SCHEMA) -> None:
    """Take ``tenant`` away from ``role`` (its read-only grants stay)."""
    _tenant_roles(dsn, "DELETE FROM {} WHERE tenant = %s AND role = %s", role, tenant, schema)
    log.info("revoked tenant %r from %s on schema %s", tenant, role, schema)


def _role_oid(conn: psycopg.Connection[Any], role: str) -> int:
    row = conn.execute("SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %s", (role,)).fetchone()
    if row is None:
        raise InvalidInput(f"no role named {role!r} on this server")
    return int(row[0])


def _tenant_roles(dsn: str, statement: str, role: str, tenant: str, schema: str) -> None:
    from .validation import check_tenant

    check_schema_name(schema)
    check_role_name(role)
    check_tenant(tenant)
    with connect_raw(dsn, autocommit=True) as conn:
        if current_revision(conn, schema) is None:
            raise InvalidInput(f"schema {schema!r} has no lateinteract_pg tables: migrate first")
        oid = _role_oid(conn, role)
        try:
            conn.execute(
                sql.SQL(statement).format(sql.Identifier(schema, "tenant_roles")), (tenant, oid)
            )
        except psycopg.errors.InsufficientPrivilege as exc:
            raise PermissionDenied(
                f"this role may not change the tenants of schema {schema!r}: "
                f"{exc.diag.message_primary}"
            ) from exc
