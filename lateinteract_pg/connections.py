"""Connections that fail well: libpq defaults against hanging, and the server's refusals,
timeouts and lost connections turned into our errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from .errors import (
    ConnectionLost,
    DocumentReferenced,
    InvalidInput,
    PermissionDenied,
    StatementTimeout,
)

__all__ = [
    "CONNECT_DEFAULTS",
    "RETRY_READS_S",
    "check_seconds",
    "connection_options",
    "in_transaction_block",
    "is_lost",
    "set_statement_timeout",
    "statement_timeout_error",
    "write_errors",
]

# libpq settings a DSN does not give: fail a connection attempt after 10 s instead of
# waiting on an unreachable host, and notice a vanished server on an idle TCP connection
# within a minute (libpq leaves keepalives at the OS's two hours); unix sockets ignore them
CONNECT_DEFAULTS = {
    "connect_timeout": "10",
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
}
RETRY_READS_S = 10.0  # how long a read that lost its connection is retried by default
# FATAL errors ending the session that are not OperationalErrors (SQLSTATE class 25)
SESSION_TIMEOUTS = tuple(
    getattr(psycopg.errors, name)
    for name in ("IdleInTransactionSessionTimeout", "TransactionTimeout")
    if hasattr(psycopg.errors, name)
)


def connection_options(dsn: str) -> dict[str, str]:
    """The :data:`CONNECT_DEFAULTS` that ``dsn`` does not set itself."""
    given = psycopg.conninfo.conninfo_to_dict(dsn)
    return {name: value for name, value in CONNECT_DEFAULTS.items() if name not in given}


def check_seconds(name: str, value: Any) -> float | None:
    """A duration in seconds: None or a finite number >= 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e9:
        raise InvalidInput(f"{name} must be a number of seconds >= 0 or None, got {value!r}")
    return float(value)


def set_statement_timeout(conn: psycopg.Connection[Any], seconds: float) -> None:
    """The session's statement_timeout, in seconds."""
    conn.execute(
        "SELECT pg_catalog.set_config('statement_timeout', %s, false)",
        (str(round(seconds * 1000)),),
    )


def statement_timeout_error(what: str, exc: psycopg.errors.QueryCanceled) -> StatementTimeout:
    """Our error for a statement the server cancelled: we never cancel one ourselves, so it
    was the statement_timeout (or an administrator's pg_cancel_backend)."""
    return StatementTimeout(
        f"{what}: {str(exc).strip()} (statement_timeout, or cancelled by an administrator); "
        "the transaction was rolled back: raise the timeout (Store(statement_timeout=...), or "
        "SET statement_timeout) for long work"
    )


def is_lost(conn: psycopg.Connection[Any]) -> bool:
    """Whether ``conn`` is gone, after an OperationalError: closed, or failing a probe (the
    server may have ended the session, or the socket closed, before psycopg noticed); a lost
    one is closed."""
    if conn.closed:
        return True
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError:
        conn.close()
        return True
    except psycopg.Error:  # alive, in a failed transaction
        return False
    return False


def in_transaction_block(conn: psycopg.Connection[Any]) -> bool:
    """Whether ``conn`` is inside a transaction, or inside a ``conn.transaction()`` block
    that a lost connection ended (psycopg counts those blocks; a lost connection no longer
    reports a transaction status)."""
    status = conn.info.transaction_status
    return status in (
        psycopg.pq.TransactionStatus.INTRANS,
        psycopg.pq.TransactionStatus.INERROR,
        psycopg.pq.TransactionStatus.ACTIVE,
    ) or bool(getattr(conn, "_num_transactions", 0))


@contextmanager
def write_errors(what: str, lost: Callable[[], bool] = lambda: False) -> Iterator[None]:
    """Turn the server's refusals of a write into our errors; wrap the whole transaction, so
    that they are raised after the rollback. ``lost`` tells, after an OperationalError,
    whether the write's connection is gone (see :func:`is_lost`)."""
    try:
        yield
    except psycopg.errors.QueryCanceled as exc:
        raise statement_timeout_error(what, exc) from exc
    except (psycopg.OperationalError, *SESSION_TIMEOUTS) as exc:
        if not lost():
            raise
        raise ConnectionLost(
            f"{what}: the connection to the server was lost ({str(exc).strip()}). The write "
            "was not retried: it was rolled back, unless the connection broke while its COMMIT "
            "was under way; look (get(), len()) before writing it again"
        ) from exc
    except psycopg.errors.InsufficientPrivilege as exc:
        raise PermissionDenied(
            f"{what}: {exc.diag.message_primary}: this role lacks the privilege; "
            "nothing was changed"
        ) from exc
    except psycopg.errors.FeatureNotSupported as exc:
        if "row-level security" not in (exc.diag.message_primary or ""):
            raise
        raise PermissionDenied(
            f"{what}: {exc.diag.message_primary}: the tenants' row-level security applies to "
            "this role; write as the tables' owner (or a role with BYPASSRLS); nothing was "
            "changed"
        ) from exc
    except psycopg.errors.ReadOnlySqlTransaction as exc:
        raise PermissionDenied(
            f"{what}: this server is a read-only replica (or the transaction is read-only): "
            "write to the primary; nothing was changed"
        ) from exc
    except psycopg.errors.ForeignKeyViolation as exc:
        raise DocumentReferenced(
            f"{what}: {exc.diag.message_primary}. {exc.diag.message_detail or ''} "
            "Nothing was changed."
        ) from exc
