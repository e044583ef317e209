"""Relevance-labelled test collections in the BEIR layout (``corpus.jsonl``,
``queries.jsonl``, ``qrels.tsv``), as the bench, the load test and the tests read them.

Nothing here needs torch.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from ..jsonl import json_lines

__all__ = ["BeirCollection", "load_beir", "merge_collections"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BeirCollection:
    """A relevance-labelled test collection.

    Attributes
    ----------
    corpus : list of (doc_id, text); text is ``title + "\\n" + text`` when the title is set.
    queries : query_id -> text, only queries with at least one positive judgement.
    qrels : query_id -> {doc_id: score}, restricted to ``corpus`` and ``queries``.
    name : the folder's name.
    """

    corpus: list[tuple[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    name: str = ""


def _json_objects(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of each non-blank line; InvalidInput names a bad line."""
    for lineno, row in json_lines(path):
        if isinstance(row, str):
            raise InvalidInput(f"{path}:{lineno}: {row}")
        yield lineno, row


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    for lineno, row in _json_objects(path):
        if "_id" not in row:
            raise InvalidInput(f"{path}:{lineno}: not a BEIR record (no '_id')")
        row["_id"] = str(row["_id"])
        yield row


def load_beir(
    path: str | Path, *, qrels_file: str = "qrels.tsv", limit_docs: int | None = None
) -> BeirCollection:
    """Read ``corpus.jsonl``, ``queries.jsonl`` and ``qrels_file`` from a BEIR folder.

    Documents with empty title and text are skipped. With ``limit_docs``, only the first
    ``limit_docs`` documents are kept, with the queries judged relevant to one of them.

    Raises
    ------
    FileNotFoundError
        The folder or one of its files is missing.
    InvalidInput
        ``path`` is not a folder, a record is malformed, ids repeat, or ``limit_docs < 1``.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"no BEIR collection at {root}: the folder does not exist")
    if not root.is_dir():
        raise InvalidInput(f"{root} is not a folder holding a BEIR collection")
    if limit_docs is not None and limit_docs < 1:
        raise InvalidInput(f"limit_docs must be >= 1, got {limit_docs}")
    files = {n: root / n for n in ("corpus.jsonl", "queries.jsonl", qrels_file)}
    for name, file in files.items():
        if not file.is_file():
            raise FileNotFoundError(f"{root} is not a BEIR collection: {name} is missing")

    corpus: list[tuple[str, str]] = []
    seen: set[str] = set()
    empty = 0
    for row in _read_jsonl(files["corpus.jsonl"]):
        if row["_id"] in seen:
            raise InvalidInput(f"{files['corpus.jsonl']}: document id {row['_id']!r} repeats")
        seen.add(row["_id"])
        title, body = (row.get("title") or "").strip(), (row.get("text") or "").strip()
        if not title and not body:
            empty += 1
            continue
        corpus.append((row["_id"], f"{title}\n{body}" if title else body))
    if empty:
        log.info("%s: skipped %d empty documents", root.name, empty)
    if limit_docs is not None:
        corpus = corpus[:limit_docs]
    doc_ids = {doc_id for doc_id, _ in corpus}

    texts = {
        row["_id"]: str(row.get("text") or "").strip()
        for row in _read_jsonl(files["queries.jsonl"])
    }
    qrels: dict[str, dict[str, int]] = {}
    dropped = 0
    with files[qrels_file].open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        for lineno, fields in enumerate(reader, 1):
            if not fields or (lineno == 1 and fields[0] == "query-id"):
                continue
            try:
                qid, did, score = fields[0], fields[1], int(fields[2])
            except (IndexError, ValueError) as exc:
                raise InvalidInput(f"{files[qrels_file]}:{lineno}: bad qrels line") from exc
            if did not in doc_ids or not texts.get(qid):
                dropped += 1
                continue
            qrels.setdefault(qid, {})[did] = score
    if dropped and limit_docs is None:
        log.info(
            "%s: dropped %d judgements of skipped documents or unknown queries", root.name, dropped
        )
    qrels = {q: rels for q, rels in qrels.items() if any(s > 0 for s in rels.values())}
    queries = {q: text for q, text in texts.items() if q in qrels}
    qrels = {q: qrels[q] for q in queries}
    return BeirCollection(corpus=corpus, queries=queries, qrels=qrels, name=root.resolve().name)


def merge_collections(paths: Sequence[str | Path], name: str = "merged") -> BeirCollection:
    """Several BEIR collections as one: ids become ``"<collection>/<id>"``, so that documents
    and queries of different collections never collide; each query keeps its own qrels.

    Raises
    ------
    InvalidInput
        No paths, or two collections with the same folder name.
    """
    if not paths:
        raise InvalidInput("merge_collections needs at least one collection")
    corpus: list[tuple[str, str]] = []
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    seen: set[str] = set()
    for path in paths:
        part = load_beir(path)
        if part.name in seen:
            raise InvalidInput(f"two collections named {part.name!r}")
        seen.add(part.name)
        corpus += [(f"{part.name}/{d}", text) for d, text in part.corpus]
        queries |= {f"{part.name}/{q}": text for q, text in part.queries.items()}
        for q, judged in part.qrels.items():
            qrels[f"{part.name}/{q}"] = {f"{part.name}/{d}": g for d, g in judged.items()}
    return BeirCollection(corpus, queries, qrels, name)
