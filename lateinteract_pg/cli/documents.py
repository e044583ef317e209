"""Commands on a collection's documents: ingest, search, get, delete, explain, and a query's
vectors for SQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import click

from ..store import connect
from .common import MODEL_HELP, database, load_model

__all__ = ["array_literal", "delete", "encode_query", "explain", "get", "ingest", "search"]

MAX_BAD_LINES_SHOWN = 20  # ingest --on-error stop lists this many bad lines


@click.command()
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
@click.option("--tenant", default=None, help="the tenant the documents belong to")
@database
def ingest(
    file: Path,
    collection: str,
    model: str,
    batch_size: int,
    passage_words: int | None,
    on_error: Literal["stop", "skip"],
    tenant: str | None,
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
    from ..jsonl import check_documents, read_documents
    from ..types import Document

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
    encoder = load_model(model)
    added = 0
    with connect(dsn, schema=schema) as store:
        coll = store.collection(collection, encoder=encoder, **storage)
        batch: list[Document] = []
        lines = read_documents(file, on_error=on_error, passage_words=passage_words)
        for doc_id, text, metadata in lines:
            batch.append(Document(doc_id, text, metadata))
            if len(batch) == batch_size:
                added += len(coll.add(batch, passage_words=passage_words, tenant=tenant))
                batch = []
        if batch:
            added += len(coll.add(batch, passage_words=passage_words, tenant=tenant))
        unit = "passages" if passage_words else "documents"
        skipped = f"; skipped {len(problems)} bad line(s)" if problems else ""
        click.echo(f"added {added} {unit} to {collection!r} ({len(coll)} in total){skipped}")


@click.command()
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
@database
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
    encoder = load_model(model)
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
        from ..encoders import CrossEncoder

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


@click.command("encode-query")
@click.argument("query")
@click.option("--model", required=True, help=MODEL_HELP)
@click.option(
    "--collection",
    default=None,
    help="check that the collection was built with this model (needs the database)",
)
@database
def encode_query(
    query: str, model: str, collection: str | None, dsn: str | None, schema: str
) -> None:
    """Print QUERY's token vectors as a PostgreSQL array literal for ``::halfvec[]``.

    In psql: \\set q `lateinteract-pg encode-query "..." --model M`, then
    SELECT * FROM lateinteract.search('papers', :'q'::halfvec[], 10);
    """
    encoder = load_model(model)
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


@click.command()
@click.argument("ids", nargs=-1, required=True)
@click.option("--collection", required=True, help="the collection the documents are in")
@click.option("--embeddings", is_flag=True, help="with each document's stored token vectors")
@database
def get(
    ids: tuple[str, ...], collection: str, embeddings: bool, dsn: str | None, schema: str
) -> None:
    """Print the documents IDS as JSON lines (id, text, metadata, n_tokens); exits 1 when one
    is missing."""
    missing = []
    with connect(dsn, schema=schema) as store:
        coll = store.collection(collection, create=False)
        for doc_id in ids:
            doc = coll.get(doc_id, embeddings=embeddings)
            if doc is None:
                missing.append(doc_id)
                continue
            row: dict[str, Any] = {
                "id": doc.id,
                "text": doc.text,
                "metadata": doc.metadata,
                "n_tokens": doc.n_tokens,
            }
            if embeddings and doc.embeddings is not None:
                row["embeddings"] = doc.embeddings.round(5).tolist()
            click.echo(json.dumps(row))
    if missing:
        raise click.ClickException(f"no document {', '.join(map(repr, missing))} in {collection!r}")


@click.command()
@click.argument("ids", nargs=-1, required=True)
@click.option("--collection", required=True, help="the collection to delete from")
@database
def delete(ids: tuple[str, ...], collection: str, dsn: str | None, schema: str) -> None:
    """Delete the documents IDS (and their token rows), in one transaction."""
    with connect(dsn, schema=schema) as store:
        removed = store.collection(collection, create=False).delete(list(ids))
    click.echo(f"deleted {removed} of {len(ids)} document(s) from {collection!r}")


@click.command()
@click.argument("query")
@click.argument("id")
@click.option("--collection", required=True, help="the collection the document is in")
@click.option("--model", required=True, help=MODEL_HELP)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per query token")
@database
def explain(
    query: str, id: str, collection: str, model: str, as_json: bool, dsn: str | None, schema: str
) -> None:
    """Why document ID scores what it does for QUERY: per query token, the best-matching
    document token, its similarity and its piece of text; the similarities sum to its MaxSim."""
    encoder = load_model(model)
    with connect(dsn, schema=schema) as store:
        matches = store.collection(collection, encoder=encoder, create=False).explain(query, id)
    if not matches:
        raise click.ClickException(f"no document {id!r} in {collection!r}")
    for m in matches:
        if as_json:
            click.echo(json.dumps(m.__dict__))
        else:
            click.echo(f"{m.query_token:>3}  {m.similarity:7.3f}  {m.position:>4}  {m.piece or ''}")
    if not as_json:
        click.echo(f"MaxSim {sum(m.similarity for m in matches):.4f}")
