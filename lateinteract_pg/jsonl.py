"""JSON-lines files of documents, as ``lateinteract-pg ingest`` reads them.

Each line is decoded on its own, so a bad line spoils only itself: :func:`check_documents`
lists every bad line of a file, :func:`read_documents` yields the good ones.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .documents import split_passages
from .errors import InvalidInput
from .validation import check_id, check_metadata, check_text

__all__ = ["BadLine", "OnError", "check_documents", "json_lines", "read_documents"]

log = logging.getLogger(__name__)

OnError = Literal["stop", "skip"]


@dataclass(frozen=True)
class BadLine:
    """A line of a JSON-lines file that is not a document, and why."""

    path: Path
    lineno: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.lineno}: {self.reason}"


def json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
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
    for lineno, row in json_lines(path):
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
