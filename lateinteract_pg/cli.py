"""The ``lateinteract-pg`` command line."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import click

from . import migrate as migrations
from .errors import LateInteractError
from .store import connect

__all__ = ["main"]

DSN_HELP = "PostgreSQL DSN; default $LATEINTERACT_PG_DSN, else the embedded server"
SCHEMA_HELP = "schema holding lateinteract_pg's tables"
MODEL_HELP = (
    "ColBERT checkpoint (hub name or local folder, Stanford or PyLate format), or 'minilm' for "
    "the packaged all-MiniLM-L6-v2 as a plain token encoder"
)
F = TypeVar("F", bound=Callable[..., Any])
MAX_BAD_LINES_SHOWN = 20  # ingest --on-error stop lists this many bad lines


def database_options(command: F) -> F:
    """The --dsn and --schema options every database command takes."""
    command = click.option(
        "--schema", default=migrations.DEFAULT_SCHEMA, show_default=True, help=SCHEMA_HELP
    )(command)
    return click.option("--dsn", default=None, help=DSN_HELP)(command)


def _resolve_dsn(dsn: str | None) -> str:
    from .store import resolve_dsn

    return resolve_dsn(dsn)


@click.group()
@click.option("-v", "--verbose", count=True, help="log progress (-vv for debug)")
def cli(verbose: int) -> None:
    """Late-interaction (ColBERT-style) retrieval inside PostgreSQL."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(message)s")


@cli.command()
@database_options
def migrate(dsn: str | None, schema: str) -> None:
    """Create or upgrade the schema (idempotent)."""
    revision = migrations.upgrade(_resolve_dsn(dsn), schema)
    click.echo(f"schema {schema!r} at revision {revision}")


@cli.command()
@click.option("--dsn", default=None, help=DSN_HELP)
@click.option(
    "--show-password", is_flag=True, help="print the password too (masked as **** by default)"
)
def dsn(dsn: str | None, show_password: bool) -> None:
    """Print the connection string in use (starts the embedded server if needed)."""
    resolved = migrations.check_dsn(_resolve_dsn(dsn))
    click.echo(resolved if show_password else migrations.redact_dsn(resolved))


@cli.command()
@database_options
@click.option("--collection", default="python-docs", show_default=True)
@click.option("--reset", is_flag=True, help="drop and rebuild the demo collection")
@click.option("--limit", type=int, default=None, help="index only the first N passages")
@click.option(
    "--model",
    default=None,
    help="a ColBERT checkpoint (hub name or folder); "
    "default: one built offline from all-MiniLM-L6-v2 (not trained as ColBERT)",
)
@click.argument("questions", nargs=-1)
def demo(
    dsn: str | None,
    schema: str,
    collection: str,
    reset: bool,
    limit: int | None,
    model: str | None,
    questions: tuple[str, ...],
) -> None:
    """Index the Python standard library's documentation and answer questions."""
    from .demo import run_demo

    run_demo(
        dsn=dsn,
        schema=schema,
        collection=collection,
        reset=reset,
        limit=limit,
        questions=list(questions) or None,
        model=model,
        echo=click.echo,
    )


def bench_options(command: F) -> F:
    """Options shared by ``bench`` and ``scaling``."""
    for option in reversed(
        [
            click.option("--dsn", default=None, help=DSN_HELP),
            click.option(
                "--out",
                type=click.Path(path_type=Path),
                default=Path("bench-results"),
                show_default=True,
                help="folder for the JSON, Markdown and PNG results",
            ),
            click.option(
                "--model", default="minilm", show_default=True, help="encoder: " + MODEL_HELP
            ),
            click.option(
                "--queries", "max_queries", type=int, default=None, help="use the first N queries"
            ),
            click.option("--k", type=int, default=10, show_default=True),
            click.option("--peers/--no-peers", default=True, help="measure Voyager and SQL-only"),
            click.option(
                "--peer-queries",
                type=int,
                default=100,
                show_default=True,
                help="queries for the (slow) SQL-only peer",
            ),
            click.option(
                "--qps-seconds",
                type=float,
                default=5.0,
                show_default=True,
                help="seconds per client count in the QPS measurement",
            ),
        ]
    ):
        command = option(command)
    return command


@cli.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@bench_options
@click.option("--limit-docs", type=int, default=None, help="use the first N documents")
@click.option(
    "--sweep/--no-sweep", default=False, help="also sweep the tuning knobs (first 100 queries)"
)
@click.option("--keep/--no-keep", default=True, help="keep the collection for the next run")
@click.option(
    "--storage-options",
    is_flag=True,
    help="also measure the storage options (query-token clustering, stage 2 from token rows, "
    "and on copies of the collection: binary candidate index, int8 matrices, pool factor 2, 3)",
)
@click.option(
    "--tiers", is_flag=True, help="also measure the dense and rerank tiers (first 100 queries)"
)
@click.option(
    "--reranker",
    default=None,
    help="cross-encoder checkpoint (folder or hub name) for the rerank tier; without one, an "
    "untrained MiniLM-L-6-sized cross-encoder gives its latency only",
)
@click.option("--rerank-top", type=int, default=50, show_default=True)
@click.option(
    "--filters",
    is_flag=True,
    help="also measure filtered searches at 50%, 5% and 0.5% selectivity (first 100 queries)",
)
@click.option(
    "--hybrid",
    is_flag=True,
    help="also measure hybrid search (late interaction fused with full text) on every query",
)
@click.option(
    "--hash-partitions",
    default="",
    help="also measure copies of the token rows hashed by document into these numbers of "
    "partitions, e.g. 2,4 (first 100 queries)",
)
@click.option("--quick", is_flag=True, help="5 queries, 1 s per QPS step: checks the bench runs")
def bench(
    data_dir: Path, limit_docs: int | None, sweep: bool, keep: bool, quick: bool, **options: Any
) -> None:
    """Quality, latency and cost of our search and of its peers (exhaustive numpy, Voyager,
    SQL-only) on one BEIR-layout collection, in one run."""
    from .bench import BenchConfig, run_bench

    options["hash_partitions"] = tuple(
        int(n) for n in options.pop("hash_partitions").split(",") if n.strip()
    )
    if quick:
        options["max_queries"] = options["max_queries"] or 5
        options["qps_seconds"] = 1.0
    config = BenchConfig(
        data_dir=data_dir, limit_docs=limit_docs, sweep=sweep, keep=keep, **options
    )
    report = run_bench(config, echo=click.echo)
    click.echo(f"results: {config.out / (report['name'] + '.json')}")


@cli.command("load")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--searchers", type=click.IntRange(0), default=8, show_default=True)
@click.option("--writers", type=click.IntRange(0), default=2, show_default=True)
@click.option("--seconds", type=click.FloatRange(0.1), default=60.0, show_default=True)
@click.option(
    "--pool-size", type=click.IntRange(1), default=4, show_default=True, help="connections"
)
@click.option("--limit-docs", type=int, default=None, help="use the first N documents")
@click.option("--model", default="minilm", show_default=True, help=MODEL_HELP)
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench-results"))
@click.option("--dsn", default=None, help=DSN_HELP)
def load_command(
    data_dir: Path,
    searchers: int,
    writers: int,
    seconds: float,
    pool_size: int,
    limit_docs: int | None,
    model: str,
    out: Path,
    dsn: str | None,
) -> None:
    """Load test: concurrent searchers and writers through one connection pool on a
    BEIR-layout collection for a bounded time; then every acknowledged write is checked.
    Exits 1 on any error, lost or wrong write, wrong counter or written document not found."""
    from .load import LoadConfig, failures, load_test, markdown

    config = LoadConfig(searchers=searchers, writers=writers, seconds=seconds, pool_size=pool_size)
    report = load_test(
        data_dir, config, dsn=dsn, limit_docs=limit_docs, model=model, out=out, echo=click.echo
    )
    click.echo(markdown(report))
    problems = failures(report)
    if problems:
        click.echo(f"load test FAILED: {'; '.join(problems)}", err=True)
        sys.exit(1)


@cli.command()
@click.argument("data_root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@bench_options
@click.option(
    "--sizes",
    default="1000",
    show_default=True,
    help="comma-separated document counts of scifact to measure before all of it",
)
def scaling(data_root: Path, sizes: str, **options: Any) -> None:
    """The bench at growing sizes: the first N documents of DATA_ROOT/scifact, all of it,
    then every collection under DATA_ROOT merged; writes scaling.json, .md and .png."""
    from .bench import BenchConfig, run_scaling

    counts = [int(x) for x in sizes.split(",") if x.strip()]
    config = BenchConfig(data_dir=data_root, **options)
    run_scaling(data_root, config, counts, echo=click.echo)


def _load_encoder(model: str) -> Any:
    from .encoders import load_encoder

    return load_encoder(model)


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--collection", required=True, help="collection to add to (created if missing)")
@click.option("--model", required=True, help=MODEL_HELP)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="documents per transaction",
)
@click.option(
    "--passage-words",
    type=click.IntRange(8),
    default=None,
    help="split documents into passages of at most N words (ids '<id>#<n>')",
)
@click.option(
    "--candidate-index",
    type=click.Choice(["halfvec", "binary"]),
    default=None,
    help="a new collection's stage-1 index [default: halfvec]",
)
@click.option(
    "--pool-factor",
    type=click.IntRange(1, 16),
    default=None,
    help="a new collection pools each document's tokens to about 1/N [default: 1]",
)
@click.option(
    "--rescore-storage",
    type=click.Choice(["float16", "int8"]),
    default=None,
    help="a new collection's re-scoring matrices [default: float16]",
)
@click.option(
    "--on-error",
    type=click.Choice(["stop", "skip"]),
    default="stop",
    show_default=True,
    help="a bad line (not UTF-8, not a JSON object, no id or text, NUL bytes, NaN, an id seen "
    "before): stop writes nothing; skip reports it on stderr and adds the other lines",
)
@database_options
def ingest(
    file: Path,
    collection: str,
    model: str,
    batch_size: int,
    passage_words: int | None,
    on_error: Literal["stop", "skip"],
    dsn: str | None,
    schema: str,
    **storage: Any,
) -> None:
    """Encode and add the documents of a JSON-lines FILE (BEIR corpus layout, or one
    {"id", "text", "metadata"} object per line); existing ids are replaced.

    The whole file is checked before anything is written. With --on-error stop (the
    default), a bad line stops the command, naming each bad line, and nothing is written;
    with --on-error skip, each bad line is reported on stderr and left out. Documents are
    then added in transactions of --batch-size: should the run fail later (the server gone,
    say), the batches committed stay, and running it again replaces them.
    """
    from .datasets import check_documents, read_documents
    from .types import Document

    problems = check_documents(file, passage_words=passage_words)
    if problems and on_error == "stop":
        for bad in problems[:MAX_BAD_LINES_SHOWN]:
            click.echo(f"bad line {bad}", err=True)
        more = len(problems) - MAX_BAD_LINES_SHOWN
        if more > 0:
            click.echo(f"... and {more} more bad lines", err=True)
        raise click.ClickException(
            f"{len(problems)} bad line(s) in {file}, the first {problems[0]}; nothing was "
            "written (fix them, or pass --on-error skip to add the other lines)"
        )
    for bad in problems:
        click.echo(f"skipped {bad}", err=True)
    encoder = _load_encoder(model)
    added = 0
    with connect(dsn, schema=schema) as store:
        coll = store.collection(collection, encoder=encoder, **storage)
        batch: list[Document] = []
        lines = read_documents(file, on_error=on_error, passage_words=passage_words)
        for doc_id, text, metadata in lines:
            batch.append(Document(doc_id, text, metadata))
            if len(batch) == batch_size:
                added += len(coll.add(batch, passage_words=passage_words))
                batch = []
        if batch:
            added += len(coll.add(batch, passage_words=passage_words))
        unit = "passages" if passage_words else "documents"
        skipped = f"; skipped {len(problems)} bad line(s)" if problems else ""
        click.echo(f"added {added} {unit} to {collection!r} ({len(coll)} in total){skipped}")


@cli.command()
@click.argument("query")
@click.option("--collection", required=True)
@click.option("--model", required=True, help=MODEL_HELP)
@click.option("-k", "k", type=click.IntRange(1), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per hit")
@click.option("--by-document", is_flag=True, help="one hit per document for passage ids")
@click.option(
    "--tier",
    type=click.Choice(["dense", "late", "rerank"]),
    default="late",
    show_default=True,
    help="dense: one vector per document; late: MaxSim; rerank: late + a cross-encoder",
)
@click.option("--reranker", default=None, help="cross-encoder checkpoint for --tier rerank")
@click.option(
    "--filter",
    "filter_json",
    default=None,
    help='a metadata filter as JSON, e.g. \'{"year": {"$gte": 2020}}\'',
)
@click.option(
    "--hybrid",
    type=click.Choice(["rrf", "weighted"]),
    default=None,
    help="fuse late interaction with full-text search",
)
@click.option("--tenant", default=None, help="only this tenant's documents")
@database_options
def search(
    query: str,
    collection: str,
    model: str,
    k: int,
    as_json: bool,
    by_document: bool,
    tier: Any,
    reranker: str | None,
    filter_json: str | None,
    hybrid: str | None,
    tenant: str | None,
    dsn: str | None,
    schema: str,
) -> None:
    """Search a collection with a text QUERY; prints hits with their scores (exact MaxSim in
    the late tier, the fused score with --hybrid)."""
    encoder = _load_encoder(model)
    if tier == "rerank" and reranker is None:
        raise click.UsageError("--tier rerank needs --reranker CHECKPOINT")
    if hybrid is not None and (tier != "late" or by_document):
        raise click.UsageError("--hybrid fuses the late tier: no --tier or --by-document")
    scope: dict[str, Any] = {"tenant": tenant}
    if filter_json is not None:
        try:
            scope["filter"] = json.loads(filter_json)
        except json.JSONDecodeError as exc:
            raise click.UsageError(f"--filter is not JSON: {exc}") from exc
    cross = None
    if reranker is not None:
        from .rerank import CrossEncoder

        cross = CrossEncoder.from_pretrained(reranker)
    with connect(dsn, schema=schema) as store:
        coll = store.collection(collection, encoder=encoder, reranker=cross, create=False)
        if hybrid is not None:
            hits = coll.search_hybrid(query, k=k, fusion=hybrid, **scope)
        else:
            hits = coll.search(query, k=k, by_document=by_document, tier=tier, **scope)
        for rank, hit in enumerate(hits, 1):
            if as_json:
                click.echo(json.dumps(hit.__dict__))
            else:
                snippet = " ".join((hit.text or "").split())[:100]
                click.echo(f"{rank:>3}. {hit.score:8.3f}  {hit.id}  {snippet}")


@cli.command("encode-query")
@click.argument("query")
@click.option("--model", required=True, help=MODEL_HELP)
@click.option(
    "--collection",
    default=None,
    help="check that the collection was built with this model (needs the database)",
)
@database_options
def encode_query(
    query: str, model: str, collection: str | None, dsn: str | None, schema: str
) -> None:
    """Print QUERY's token vectors as a PostgreSQL array literal for ``::halfvec[]``.

    In psql: \\set q `lateinteract-pg encode-query "..." --model M`, then
    SELECT * FROM lateinteract.search('papers', :'q'::halfvec[], 10);
    """
    encoder = _load_encoder(model)
    if collection is not None:
        with connect(dsn, schema=schema) as store:
            store.collection(collection, encoder=encoder, create=False)
    vectors = encoder.encode_queries([query])[0]
    click.echo(array_literal(vectors))


def array_literal(vectors: Any) -> str:
    """A PostgreSQL array literal of vector texts, castable to halfvec[] or vector[].

    >>> array_literal([[1.0, 0.5], [0.25, -1.0]])
    '{"[1,0.5]","[0.25,-1]"}'
    """
    rows = ("[" + ",".join(f"{float(x):.6g}" for x in row) + "]" for row in vectors)
    return "{" + ",".join(f'"{r}"' for r in rows) + "}"


@cli.command("grant-read-only")
@click.argument("role")
@database_options
def grant_read_only(role: str, dsn: str | None, schema: str) -> None:
    """Let an existing ROLE search (Python or SQL) but write nothing (idempotent)."""
    migrations.grant_read_only(_resolve_dsn(dsn), role, schema)
    click.echo(f"{role} may now search schema {schema!r} read-only")


@cli.command("grant-tenant")
@click.argument("role")
@click.argument("tenant")
@database_options
def grant_tenant(role: str, tenant: str, dsn: str | None, schema: str) -> None:
    """Let ROLE search TENANT's documents (and the shared ones), read-only; row-level
    security hides every other tenant's (idempotent)."""
    migrations.grant_tenant(_resolve_dsn(dsn), role, tenant, schema)
    click.echo(f"{role} may now search tenant {tenant!r} of schema {schema!r}")


@cli.command("revoke-tenant")
@click.argument("role")
@click.argument("tenant")
@database_options
def revoke_tenant(role: str, tenant: str, dsn: str | None, schema: str) -> None:
    """Take TENANT away from ROLE."""
    migrations.revoke_tenant(_resolve_dsn(dsn), role, tenant, schema)
    click.echo(f"{role} no longer searches tenant {tenant!r} of schema {schema!r}")


@cli.command()
@database_options
@click.option("--json", "as_json", is_flag=True, help="the whole report as JSON")
def doctor(dsn: str | None, schema: str, as_json: bool) -> None:
    """Report server and pgvector versions, schema version, index health and settings;
    exits 1 when something is broken."""
    from .doctor import diagnose

    report = diagnose(_resolve_dsn(dsn), schema)
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


@cli.group()
def server() -> None:
    """The embedded PostgreSQL server."""


@server.command("start")
@click.argument(
    "data_dir", type=click.Path(file_okay=False, path_type=Path), required=False, default=None
)
def server_start(data_dir: Path | None) -> None:
    """Start (or reattach to) the embedded server (of DATA_DIR, default: $LATEINTERACT_PG_DATA
    or the user data directory) and print its DSN."""
    from .embedded import ensure_server

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
    from .embedded import ensure_replica

    click.echo(ensure_replica(data_dir, primary))


@server.command("stop")
@click.argument(
    "data_dir", type=click.Path(file_okay=False, path_type=Path), required=False, default=None
)
def server_stop(data_dir: Path | None) -> None:
    """Stop the embedded server (or the one of DATA_DIR, a replica's say)."""
    from .embedded import stop_server

    click.echo("stopped" if stop_server(data_dir) else "not running")


@cli.command()
@click.argument("name")
@click.option(
    "--reindex/--no-reindex", default=True, show_default=True,
    help="rebuild the HNSW and dense indexes (REINDEX CONCURRENTLY) after the VACUUM",
)  # fmt: skip
@database_options
def compact(name: str, reindex: bool, dsn: str | None, schema: str) -> None:
    """Reclaim the space of replaced and deleted documents of collection NAME (VACUUM, then
    REINDEX CONCURRENTLY); searches and writes go on meanwhile."""
    with connect(dsn, schema=schema) as store:
        stats = store.collection(name, create=False).compact(reindex=reindex)
    for part, before in stats.bytes_before.items():
        after = stats.bytes_after[part]
        click.echo(f"{part:8} {before / 2**20:9.1f} MB -> {after / 2**20:9.1f} MB")
    click.echo(f"dead token rows {stats.dead_token_rows}, {stats.seconds:.1f} s")


@cli.command("collections")
@database_options
def collections(dsn: str | None, schema: str) -> None:
    """List collections as JSON lines."""
    with connect(dsn, schema=schema) as store:
        for info in store.collections():
            click.echo(json.dumps(info.__dict__))


def main() -> None:
    try:
        cli(standalone_mode=True)
    except LateInteractError as exc:
        click.echo(f"error: {migrations.redact_dsn(str(exc))}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
