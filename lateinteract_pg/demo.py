"""The demo: index the standard library's documentation, then answer a few questions."""

from __future__ import annotations

import time
from collections.abc import Callable

from .datasets import stdlib_passages
from .store import connect

__all__ = ["DEFAULT_QUESTIONS", "run_demo"]

DEFAULT_QUESTIONS = [
    "How do I run a shell command and capture its output?",
    "parse a JSON string into a Python dictionary",
    "What happens when an exception is raised inside a with statement?",
    "count how many times each word occurs in a list",
    "format a date and time as a string",
]


def run_demo(
    *,
    dsn: str | None = None,
    schema: str = "lateinteract",
    collection: str = "python-docs",
    reset: bool = False,
    limit: int | None = None,
    questions: list[str] | None = None,
    k: int = 3,
    echo: Callable[[str], None] = print,
) -> None:
    """Build (or reuse) the demo collection and print the answers to ``questions``."""
    from .encoders import TokenEncoder

    started = time.perf_counter()
    encoder = TokenEncoder.from_pretrained()
    echo(f"encoder: {encoder.settings()['model']} as a plain token encoder ({encoder.dim}-d)")
    with connect(dsn, schema=schema) as store:
        echo(f"database: {store.conn.info.host} / {store.conn.info.dbname} (schema {schema})")
        if reset and collection in store:
            store.drop_collection(collection)
        coll = store.collection(collection, encoder=encoder)
        if len(coll) == 0:
            passages = stdlib_passages()[:limit]
            echo(f"indexing {len(passages)} passages of the Python standard library docs ...")
            t0 = time.perf_counter()
            vectors = encoder.encode_documents([text for _, text in passages], progress=True)
            t1 = time.perf_counter()
            tokens = coll.add_embeddings(
                [pid for pid, _ in passages],
                vectors,
                texts=[text for _, text in passages],
                metadata=[{"source": pid.split(":")[0]} for pid, _ in passages],
            )
            t2 = time.perf_counter()
            echo(
                f"encoded {tokens} token vectors in {t1 - t0:.1f} s; "
                f"stored and indexed them in {t2 - t1:.1f} s"
            )
        else:
            echo(f"reusing {len(coll)} indexed passages (--reset rebuilds)")
        for question in questions or DEFAULT_QUESTIONS:
            t0 = time.perf_counter()
            query = encoder.encode_queries([question])[0]
            t1 = time.perf_counter()
            hits = coll.search_embeddings(query, k=k)
            t2 = time.perf_counter()
            stats = coll.last_search
            plan = stats.plan if stats else "?"
            echo(
                f"\nQ: {question}\n   (encode {1000 * (t1 - t0):.0f} ms, "
                f"search {1000 * (t2 - t1):.0f} ms, {plan} plan)"
            )
            for rank, hit in enumerate(hits, 1):
                snippet = " ".join((hit.text or "").split())[:160]
                echo(f"  {rank}. {hit.id}  score {hit.score:.2f}\n     {snippet}")
    echo(f"\ndone in {time.perf_counter() - started:.1f} s")
