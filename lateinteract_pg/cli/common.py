"""What the commands share: the --dsn and --schema options, help texts, the DSN in use and
the encoder a --model names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from .. import migrate

__all__ = ["DSN_HELP", "MODEL_HELP", "SCHEMA_HELP", "database", "load_model", "resolve_dsn"]

DSN_HELP = "PostgreSQL DSN; default $LATEINTERACT_PG_DSN, else the embedded server"
SCHEMA_HELP = "schema holding lateinteract_pg's tables"
MODEL_HELP = (
    "ColBERT checkpoint (hub name or local folder, Stanford or PyLate format), or 'minilm' for "
    "the packaged all-MiniLM-L6-v2 as a plain token encoder"
)
F = TypeVar("F", bound=Callable[..., Any])


def database(command: F) -> F:
    """The --dsn and --schema options every database command takes."""
    command = click.option(
        "--schema", default=migrate.DEFAULT_SCHEMA, show_default=True, help=SCHEMA_HELP
    )(command)
    return click.option("--dsn", default=None, help=DSN_HELP)(command)


def resolve_dsn(dsn: str | None) -> str:
    """``dsn``, else ``$LATEINTERACT_PG_DSN``, else the embedded server's (started)."""
    from ..store import resolve_dsn as resolve

    return resolve(dsn)


def load_model(model: str) -> Any:
    """The encoder a --model names (torch is imported here, not before)."""
    from ..encoders import load_encoder

    return load_encoder(model)
