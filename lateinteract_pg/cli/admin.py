"""Commands that administer a schema: migrate, grants, the doctor, listing, compacting and
dropping collections, and the DSN in use."""

from __future__ import annotations

import json
import sys

import click

from .. import migrate as migrations
from ..store import connect
from .common import DSN_HELP, database, resolve_dsn

__all__ = [
    "collections",
    "compact",
    "doctor",
    "drop",
    "dsn",
    "grant_read_only",
    "grant_tenant",
    "migrate",
    "revoke_tenant",
]


@click.command()
@database
@click.option(
    "--revision",
    default="head",
    show_default=True,
    help="the revision to bring the schema to, up or down (e.g. 0006; 'base' removes it all)",
)
def migrate(dsn: str | None, schema: str, revision: str) -> None:
    """Create or upgrade the schema (idempotent), or move it to another --revision."""
    reached = migrations.upgrade(resolve_dsn(dsn), schema, revision)
    click.echo(f"schema {schema!r} at revision {reached}")


@click.command()
@click.option("--dsn", default=None, help=DSN_HELP)
@click.option(
    "--show-password", is_flag=True, help="print the password too (masked as **** by default)"
)
def dsn(dsn: str | None, show_password: bool) -> None:
    """Print the connection string in use (starts the embedded server if needed)."""
    resolved = migrations.check_dsn(resolve_dsn(dsn))
    click.echo(resolved if show_password else migrations.redact_dsn(resolved))


@click.command("grant-read-only")
@click.argument("role")
@database
def grant_read_only(role: str, dsn: str | None, schema: str) -> None:
    """Let an existing ROLE search (Python or SQL) but write nothing (idempotent)."""
    migrations.grant_read_only(resolve_dsn(dsn), role, schema)
    click.echo(f"{role} may now search schema {schema!r} read-only")


@click.command("grant-tenant")
@click.argument("role")
@click.argument("tenant")
@database
def grant_tenant(role: str, tenant: str, dsn: str | None, schema: str) -> None:
    """Let ROLE search TENANT's documents (and the shared ones), read-only; row-level
    security hides every other tenant's (idempotent)."""
    migrations.grant_tenant(resolve_dsn(dsn), role, tenant, schema)
    click.echo(f"{role} may now search tenant {tenant!r} of schema {schema!r}")


@click.command("revoke-tenant")
@click.argument("role")
@click.argument("tenant")
@database
def revoke_tenant(role: str, tenant: str, dsn: str | None, schema: str) -> None:
    """Take TENANT away from ROLE."""
    migrations.revoke_tenant(resolve_dsn(dsn), role, tenant, schema)
    click.echo(f"{role} no longer searches tenant {tenant!r} of schema {schema!r}")


@click.command()
@database
@click.option("--json", "as_json", is_flag=True, help="the whole report as JSON")
def doctor(dsn: str | None, schema: str, as_json: bool) -> None:
    """Report server and pgvector versions, schema version, index health and settings;
    exits 1 when something is broken."""
    from ..doctor import diagnose

    report = diagnose(resolve_dsn(dsn), schema)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        srv, sch = report["server"], report["schema"]
        click.echo(
            f"server      PostgreSQL {srv['version']}, pgvector {srv['pgvector']} "
            f"(schema {srv['pgvector_schema']}), database {srv['database']} as {srv['user']}"
        )
        click.echo(
            f"schema      {sch['name']} at revision {sch['revision']} (wants {sch['expected']})"
        )
        for name, value in report["settings"].items():
            click.echo(f"setting     {name} = {value}")
        for c in report["collections"]:
            index = c["index"]
            state = "no index"
            if index is not None:
                validity = "valid" if index["valid"] else "INVALID"
                state = f"HNSW {index['bytes'] / 2**20:.1f} MB, {validity}"
            click.echo(
                f"collection  {c['name']}: dim {c['dim']}, {c['documents']} documents, "
                f"{c['tokens']} tokens, {state}"
            )
        for line in report["warnings"]:
            click.echo(f"warning     {line}")
        for line in report["problems"]:
            click.echo(f"PROBLEM     {line}")
        click.echo("ok" if not report["problems"] else f"{len(report['problems'])} problem(s)")
    if report["problems"]:
        sys.exit(1)


@click.command("collections")
@database
def collections(dsn: str | None, schema: str) -> None:
    """List collections as JSON lines."""
    with connect(dsn, schema=schema) as store:
        for info in store.collections():
            click.echo(json.dumps(info.__dict__))


@click.command()
@click.argument("name")
@click.option(
    "--reindex/--no-reindex", default=True, show_default=True,
    help="rebuild the HNSW and dense indexes (REINDEX CONCURRENTLY) after the VACUUM",
)  # fmt: skip
@database
def compact(name: str, reindex: bool, dsn: str | None, schema: str) -> None:
    """Reclaim the space of replaced and deleted documents of collection NAME (VACUUM, then
    REINDEX CONCURRENTLY); searches and writes go on meanwhile."""
    with connect(dsn, schema=schema) as store:
        stats = store.collection(name, create=False).compact(reindex=reindex)
    for part, before in stats.bytes_before.items():
        after = stats.bytes_after[part]
        click.echo(f"{part:8} {before / 2**20:9.1f} MB -> {after / 2**20:9.1f} MB")
    click.echo(f"dead token rows {stats.dead_token_rows}, {stats.seconds:.1f} s")


@click.command()
@click.argument("name")
@click.confirmation_option(prompt="Drop the collection with all its documents?")
@database
def drop(name: str, dsn: str | None, schema: str) -> None:
    """Drop collection NAME with all its documents, token rows and indexes (--yes: without
    asking)."""
    with connect(dsn, schema=schema) as store:
        store.drop_collection(name)
    click.echo(f"dropped collection {name!r}")
