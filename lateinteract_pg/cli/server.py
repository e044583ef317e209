"""``lateinteract-pg server``: the embedded PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["server"]


@click.group()
def server() -> None:
    """The embedded PostgreSQL server."""


@server.command("start")
@click.argument(
    "data_dir", type=click.Path(file_okay=False, path_type=Path), required=False, default=None
)
def server_start(data_dir: Path | None) -> None:
    """Start (or reattach to) the embedded server (of DATA_DIR, default: $LATEINTERACT_PG_DATA
    or the user data directory) and print its DSN."""
    from ..embedded import ensure_server

    click.echo(ensure_server(data_dir))


@server.command("replica")
@click.argument("data_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--primary",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="the primary's data directory (default: the embedded server's)",
)
def server_replica(data_dir: Path, primary: Path | None) -> None:
    """Start (creating it with pg_basebackup the first time) a streaming replica of the
    embedded server in DATA_DIR, and print its DSN."""
    from ..embedded import ensure_replica

    click.echo(ensure_replica(data_dir, primary))


@server.command("stop")
@click.argument(
    "data_dir", type=click.Path(file_okay=False, path_type=Path), required=False, default=None
)
def server_stop(data_dir: Path | None) -> None:
    """Stop the embedded server (or the one of DATA_DIR, a replica's say)."""
    from ..embedded import stop_server

    click.echo("stopped" if stop_server(data_dir) else "not running")
