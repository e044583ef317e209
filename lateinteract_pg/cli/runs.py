"""Commands that run something whole: the demo, the benchmark, the scaling run, the load
test (the benchmark subpackage is imported only by these)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .common import DSN_HELP, MODEL_HELP, F, database

__all__ = ["bench", "corpus", "demo", "load", "scaling"]


@click.command()
@database
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
    from ..demo import run_demo

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
            click.option(
                "--peers/--no-peers",
                default=True,
                help="measure the peers (Voyager, MUVERA FDE, SQL-only)",
            ),
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
            click.option(
                "--maintenance-work-mem",
                default=None,
                help="for our index builds, e.g. 8GB (default: the server's setting)",
            ),
        ]
    ):
        command = option(command)
    return command


@click.command()
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
    help="also measure the storage options (query-token clustering, and on copies of the "
    "collection: token rows unpooled, also with stage 2 from token rows, binary candidate "
    "index, int8 matrices, pool factor 2, 3, token rows pooled by 2, 4, 6)",
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
@click.option(
    "--cold",
    is_flag=True,
    help="also time the first 100 queries right after emptying shared_buffers and, for a "
    "server on this machine run as root, the page cache",
)
@click.option("--quick", is_flag=True, help="5 queries, 1 s per QPS step: checks the bench runs")
def bench(
    data_dir: Path, limit_docs: int | None, sweep: bool, keep: bool, quick: bool, **options: Any
) -> None:
    """Quality, latency and cost of our search and of its peers (exhaustive numpy, Voyager,
    SQL-only) on one BEIR-layout collection, in one run."""
    from ..bench import BenchConfig, run_bench

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


@click.command("load")
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
def load(
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
    from ..bench import LoadConfig, load_failures, load_markdown, load_test

    config = LoadConfig(searchers=searchers, writers=writers, seconds=seconds, pool_size=pool_size)
    report = load_test(
        data_dir, config, dsn=dsn, limit_docs=limit_docs, model=model, out=out, echo=click.echo
    )
    click.echo(load_markdown(report))
    problems = load_failures(report)
    if problems:
        click.echo(f"load test FAILED: {'; '.join(problems)}", err=True)
        sys.exit(1)


@click.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@bench_options
@click.option(
    "--sizes",
    default="1000000,3000000,10000000",
    show_default=True,
    help="comma-separated token-row counts: the run measures the first documents holding "
    "each, up to the whole collection",
)
@click.option(
    "--peer-max-tokens",
    type=click.IntRange(1),
    default=4_000_000,
    show_default=True,
    help="measure Voyager and the SQL-only recipe (each builds its own index over every "
    "vector) only for sizes up to this many token rows",
)
@click.option("--keep/--no-keep", default=True, help="keep each size's collection for reruns")
@click.option("--sweep/--no-sweep", default=False, help="also sweep the tuning knobs at each size")
def scaling(data_dir: Path, sizes: str, **options: Any) -> None:
    """The bench at growing sizes: the first documents of DATA_DIR's collection (or of every
    collection under DATA_DIR, merged) holding each number of token rows, e.g. of the
    corpus that `lateinteract-pg corpus` writes; writes scaling.json, .md and one PNG per
    figure (latency, recall, build time, bytes per token against token rows)."""
    from ..bench import BenchConfig, run_scaling

    try:
        counts = [int(x.replace("_", "")) for x in sizes.split(",") if x.strip()]
    except ValueError:
        message = f"not a list of token-row counts: {sizes!r}"
        raise click.BadParameter(message, param_hint="--sizes") from None
    if not counts or min(counts) < 1:
        raise click.BadParameter("give at least one count, each >= 1", param_hint="--sizes")
    config = BenchConfig(data_dir=data_dir, **options)
    run_scaling(data_dir, config, counts, echo=click.echo)


@click.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--target-tokens",
    type=click.IntRange(1),
    default=10_000_000,
    show_default=True,
    help="stop at this many ColBERT token rows (doc_maxlen 256, punctuation dropped)",
)
@click.option(
    "--tokenizer",
    default="minilm",
    show_default=True,
    help="counts the token rows: a tokenizer.json (or its folder), 'minilm' (the packaged "
    "MiniLM's, BERT's uncased WordPiece like ColBERTv2's) or 'words' (1.6 per word)",
)
@click.option("--max-passages", type=click.IntRange(1), default=None, help="or at N passages")
@click.option("--queries", type=click.IntRange(0), default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="samples the queries")
@click.option("--comments", is_flag=True, help="also the blocks of comments of the .py files")
@click.option(
    "--base/--no-base",
    default=True,
    help="in a virtual environment, also read the packages of the Python it was made from",
)
def corpus(
    out_dir: Path,
    target_tokens: int,
    tokenizer: str,
    max_passages: int | None,
    queries: int,
    seed: int,
    comments: bool,
    base: bool,
) -> None:
    """Write a BEIR-layout corpus of real text, with no download: the docstrings and docs of
    the standard library and of the installed packages, with known-item queries (a
    docstring's summary line; its answer, the passage holding the rest of the docstring)."""
    from ..bench.docstrings import default_roots, write_corpus

    if tokenizer == "minilm":
        from ..encoders.sources import default_model_path

        tokenizer = default_model_path()
    manifest = write_corpus(
        out_dir,
        roots=default_roots(base=base),
        target_tokens=target_tokens,
        tokenizer=None if tokenizer == "words" else tokenizer,
        max_passages=max_passages,
        queries=queries,
        seed=seed,
        comments=comments,
    )
    click.echo(
        f"{out_dir}: {manifest['passages']:,} passages, "
        f"{manifest['token_rows']:,} token rows, {manifest['queries']:,} queries "
        f"from {manifest['distributions']} distributions in {manifest['seconds']} s"
    )
