"""The ``lateinteract-pg`` command line: one module per kind of command.

- :mod:`.documents`: ingest, search, get, delete, explain, encode-query;
- :mod:`.admin`: migrate, collections, compact, drop, grants, doctor, dsn;
- :mod:`.server`: the embedded server;
- :mod:`.runs`: the demo, the benchmark, the scaling run, the load test.
"""

from __future__ import annotations

import logging
import sys

import click

from ..errors import LateInteractError
from ..migrate import redact_dsn
from . import admin, documents, runs
from .documents import array_literal
from .server import server

__all__ = ["array_literal", "cli", "main"]


@click.group(context_settings={"max_content_width": 100})
@click.option("-v", "--verbose", count=True, help="log progress (-vv for debug)")
def cli(verbose: int) -> None:
    """Late-interaction (ColBERT-style) retrieval inside PostgreSQL."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(message)s")


for command in (
    *(getattr(documents, name) for name in documents.__all__ if name != "array_literal"),
    *(getattr(admin, name) for name in admin.__all__),
    *(getattr(runs, name) for name in runs.__all__),
    server,
):
    cli.add_command(command)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except LateInteractError as exc:
        click.echo(f"error: {redact_dsn(str(exc))}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
