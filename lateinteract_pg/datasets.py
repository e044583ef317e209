"""Corpora for tests, examples and benchmarks: BEIR-layout collections and the Python docs.

Nothing here needs torch.
"""

from __future__ import annotations

import csv
import importlib
import inspect
import json
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lateinteract_pg.errors import InvalidInput
from lateinteract_pg.ingest import check_id, check_metadata, check_text

__all__ = [
    "STDLIB_MODULES",
    "BadLine",
    "BeirCollection",
    "check_documents",
    "load_beir",
    "merge_collections",
    "read_documents",
    "split_passages",
    "stdlib_passages",
]

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


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, object, or why the line is not one) of each non-blank line.

    Lines are decoded one by one, so that bytes that are not UTF-8 spoil their line only; a
    UTF-8 byte order mark before the first line is skipped.
    """
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield (
                    lineno,
                    f"not valid UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1})",
                )
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield lineno, f"not valid JSON ({exc.msg} at column {exc.colno})"
                continue
            except RecursionError:
                yield lineno, "not valid JSON (nested too deeply)"
                continue
            except ValueError as exc:  # e.g. an integer of more digits than Python converts
                yield lineno, f"not valid JSON ({exc})"
                continue
            if not isinstance(row, dict):
                yield lineno, f"expected a JSON object, got {type(row).__name__}"
                continue
            yield lineno, row


def _json_objects(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of each non-blank line; InvalidInput names a bad line."""
    for lineno, row in _json_lines(path):
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


_STDLIB_MODULE_NAMES = """
    json os re itertools functools collections pathlib subprocess asyncio datetime sqlite3
    csv logging argparse unittest typing dataclasses threading multiprocessing socket
    http.client urllib.request zipfile tarfile shutil tempfile random statistics math
    decimal fractions heapq bisect hashlib hmac secrets base64 pickle copy enum contextlib
    inspect textwrap string struct array time calendar operator glob fnmatch io gzip uuid
    difflib pprint sys types abc weakref queue sched concurrent.futures signal selectors
    codecs unicodedata locale platform zlib bz2 lzma configparser urllib.parse http.server
    html html.parser email.message mimetypes xml.etree.ElementTree ipaddress shlex stat
    binascii traceback warnings timeit doctest ast tokenize dis pkgutil importlib zoneinfo
    graphlib cmath numbers reprlib atexit gc
"""
STDLIB_MODULES: tuple[str, ...] = tuple(_STDLIB_MODULE_NAMES.split())
"""The modules whose docstrings :func:`stdlib_passages` uses, in order."""

_SIGNATURE = re.compile(r"^[\w.]+\(.*\)(\s*->.*)?$")


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


def split_passages(text: str, max_words: int) -> list[str]:
    """Pack consecutive paragraphs of ``text`` into passages of at most ``max_words`` words.

    A paragraph longer than ``max_words`` is cut into runs of ``max_words`` words.
    """
    if max_words < 1:
        raise InvalidInput(f"max_words must be >= 1, got {max_words}")
    pieces: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        words = para.split()
        if len(words) > max_words:
            pieces += [" ".join(words[i : i + max_words]) for i in range(0, len(words), max_words)]
        elif words:
            pieces.append(inspect.cleandoc(para))
    passages: list[str] = []
    current: list[str] = []
    count = 0
    for piece in pieces:
        n = len(piece.split())
        if current and count + n > max_words:
            passages.append("\n\n".join(current))
            current, count = [], 0
        current.append(piece)
        count += n
    if current:
        passages.append("\n\n".join(current))
    return passages


def _first_paragraph(doc: str) -> str:
    paras = [p.strip() for p in re.split(r"\n\s*\n", doc) if p.strip()]
    if len(paras) > 1 and _SIGNATURE.match(paras[0]):  # "pack(fmt, v1, ...) -> bytes"
        return "\n\n".join(paras[:2])
    return paras[0] if paras else ""


def _public_members(module: Any) -> list[tuple[str, Any]]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            n
            for n, obj in vars(module).items()
            if getattr(obj, "__module__", None) == module.__name__
        ]
    members = []
    for name in sorted(set(names)):
        obj = getattr(module, name, None)
        if not name.startswith("_") and (inspect.isclass(obj) or inspect.isroutine(obj)):
            members.append((name, obj))
    return members


def stdlib_passages(max_words: int = 120) -> list[tuple[str, str]]:
    """A real, offline corpus: Python's help topics and the docs of common stdlib modules.

    Holds the ``pydoc`` topics (ids ``topic:NAME:i``), the docstrings of
    :data:`STDLIB_MODULES` (``module:NAME:i``) and the first paragraph of the docstring of
    each public function and class of those modules (``module.name:i``), each cut into
    passages of at most ``max_words`` words. Deterministic for a given Python version;
    modules that cannot be imported are skipped, repeated texts kept once.

    Returns
    -------
    list of (passage_id, text).
    """
    from pydoc_data.topics import topics

    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    seen_docs: set[str] = set()

    def add(prefix: str, text: str) -> None:
        for i, passage in enumerate(split_passages(text, max_words)):
            if passage not in seen:
                seen.add(passage)
                out.append((f"{prefix}:{i}", passage))

    for name in sorted(topics):
        add(f"topic:{name}", topics[name])
    for modname in STDLIB_MODULES:
        try:
            module = importlib.import_module(modname)
        except ImportError:
            log.debug("stdlib_passages: %s is unavailable", modname)
            continue
        add(f"module:{modname}", inspect.getdoc(module) or "")
        for name, obj in _public_members(module):
            # a class without its own docstring would repeat its base class's
            doc = vars(obj).get("__doc__") if inspect.isclass(obj) else obj.__doc__
            first = _first_paragraph(inspect.cleandoc(doc)) if isinstance(doc, str) else ""
            if first and first not in seen_docs:
                seen_docs.add(first)
                add(f"{modname}.{name}", f"{modname}.{name}: {first}")
    return out


OnError = Literal["stop", "skip"]


@dataclass(frozen=True)
class BadLine:
    """A line of a JSON-lines file that is not a document, and why."""

    path: Path
    lineno: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.lineno}: {self.reason}"


def _document(
    row: dict[str, Any], passage_words: int | None
) -> tuple[str, str, dict[str, Any] | None]:
    """(id, text, metadata) of a record, as ``Collection.add`` will take them; InvalidInput
    says what is wrong with it."""
    doc_id = row.get("_id", row.get("id"))
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
        raise InvalidInput("needs an id (_id or id): a string or an integer")
    title, text = row.get("title") or "", row.get("text") or ""
    if not isinstance(title, str) or not isinstance(text, str):
        raise InvalidInput("title and text must be strings")
    text = f"{title}\n{text}" if title else text
    if not text.strip():
        raise InvalidInput("has no text")
    doc_id = check_id(str(doc_id))
    check_text(text, "text")
    metadata = row.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidInput("metadata must be an object")
    check_metadata(metadata, "metadata")
    if passage_words is not None:  # the longest passage id must fit too
        check_id(f"{doc_id}#{len(split_passages(text, passage_words)) - 1}")
    return doc_id, text, metadata


def _documents(
    path: Path, passage_words: int | None
) -> Iterator[tuple[str, str, dict[str, Any] | None] | BadLine]:
    seen: dict[str, int] = {}
    for lineno, row in _json_lines(path):
        if isinstance(row, str):
            yield BadLine(path, lineno, row)
            continue
        try:
            doc_id, text, metadata = _document(row, passage_words)
        except InvalidInput as exc:
            yield BadLine(path, lineno, str(exc))
            continue
        if doc_id in seen:
            yield BadLine(path, lineno, f"id {doc_id[:80]!r} repeats line {seen[doc_id]}")
            continue
        seen[doc_id] = lineno
        yield doc_id, text, metadata


def check_documents(path: str | Path, *, passage_words: int | None = None) -> list[BadLine]:
    """Every line of a JSON-lines file that :func:`read_documents` would refuse, reading the
    whole file and writing nothing: not UTF-8, not a JSON object, no id or no text, text or
    metadata PostgreSQL cannot store (NUL, lone surrogates, NaN), an id too long (as a
    passage id ``<id>#<n>`` with ``passage_words``) or one that repeats an earlier line's."""
    return [x for x in _documents(Path(path), passage_words) if isinstance(x, BadLine)]


def read_documents(
    path: str | Path, *, on_error: OnError = "stop", passage_words: int | None = None
) -> Iterator[tuple[str, str, dict[str, Any] | None]]:
    """(id, text, metadata) of each line of a JSON-lines file.

    Accepts the BEIR corpus layout (``_id``, ``title``, ``text``) and plain records
    (``id``, ``text``, optional ``title`` and ``metadata``); blank lines are skipped. A bad
    line (see :func:`check_documents`) raises InvalidInput naming the file and line with
    ``on_error="stop"``, or is left out with ``on_error="skip"``.
    """
    if on_error not in ("stop", "skip"):
        raise InvalidInput(f"on_error must be 'stop' or 'skip', got {on_error!r}")
    for item in _documents(Path(path), passage_words):
        if not isinstance(item, BadLine):
            yield item
        elif on_error == "stop":
            raise InvalidInput(str(item))
        else:
            log.debug("skipped %s", item)
