"""Documents as users hand them to :meth:`Collection.add`: normalised to (ids, texts,
metadata), and long ones split into passages."""

from __future__ import annotations

import hashlib
import inspect
import re
from collections.abc import Sequence
from typing import Any

from .errors import InvalidInput
from .types import Document

__all__ = [
    "normalise_documents",
    "prepare_documents",
    "split_into_passages",
    "split_passages",
    "text_id",
]


def text_id(text: str) -> str:
    """The id of a document given as bare text: a hash of the text."""
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]


def normalise_documents(
    documents: Sequence[str | dict[str, Any] | Document],
) -> tuple[list[str], list[str], list[dict[str, Any] | None]]:
    """(ids, texts, metadata) of documents given as str, dict or Document."""
    if isinstance(documents, (str, dict, Document)) or not isinstance(documents, Sequence):
        raise InvalidInput("documents must be a list of str, dict or Document")
    ids: list[str] = []
    texts: list[str] = []
    metadata: list[dict[str, Any] | None] = []
    for doc in documents:
        if isinstance(doc, str):
            doc = Document(text_id(doc), doc)
        elif isinstance(doc, dict):
            if set(doc) - {"id", "text", "metadata"} or "text" not in doc:
                raise InvalidInput(
                    f"a document dict has 'text' and optional 'id', 'metadata'; got {sorted(doc)}"
                )
            text = doc["text"] if isinstance(doc["text"], str) else ""
            doc = Document(doc.get("id") or text_id(text), text, doc.get("metadata"))
        elif not isinstance(doc, Document):
            raise InvalidInput(
                f"a document must be a str, dict or Document, got {type(doc).__name__}"
            )
        if not isinstance(doc.text, str) or not doc.text.strip():
            raise InvalidInput(f"document {doc.id!r} has no text")
        ids.append(doc.id)
        texts.append(doc.text)
        metadata.append(doc.metadata)
    return ids, texts, metadata


def prepare_documents(
    documents: Sequence[str | dict[str, Any] | Document], passage_words: Any = None
) -> tuple[list[str], list[str], list[dict[str, Any] | None], list[str]]:
    """(ids, texts, metadata) to store for ``documents``, split into passages of at most
    ``passage_words`` words when given, and the ids of the documents whose old passages the
    write replaces."""
    ids, texts, metadata = normalise_documents(documents)
    if passage_words is None:
        return ids, texts, metadata, []
    if isinstance(passage_words, bool) or not isinstance(passage_words, int):
        raise InvalidInput(f"passage_words must be an int, got {passage_words!r}")
    if len(set(ids)) != len(ids):
        raise InvalidInput("duplicate document id in one call")
    return (*split_into_passages(ids, texts, metadata, passage_words), ids)


def split_into_passages(
    ids: list[str], texts: list[str], metadata: list[dict[str, Any] | None], passage_words: int
) -> tuple[list[str], list[str], list[dict[str, Any] | None]]:
    """Passages of at most ``passage_words`` words, as (ids, texts, metadata) to store."""
    if passage_words < 8:
        raise InvalidInput(f"passage_words must be >= 8, got {passage_words}")
    out_ids: list[str] = []
    out_texts: list[str] = []
    out_meta: list[dict[str, Any] | None] = []
    for doc_id, text, meta in zip(ids, texts, metadata):
        for n, passage in enumerate(split_passages(text, passage_words)):
            out_ids.append(f"{doc_id}#{n}")
            out_texts.append(passage)
            out_meta.append({**(meta or {}), "document_id": doc_id, "passage": n})
    return out_ids, out_texts, out_meta


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
