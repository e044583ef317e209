"""A benchmark corpus of real text that needs no download: the docstrings and documentation
files of the standard library and of every installed distribution, cut into passages, with
known-item queries (a docstring's summary line; its answer, the passage holding the rest).

Sources are read with :mod:`ast`, never imported. The output is the BEIR layout that
:func:`.datasets.load_beir` reads (``qrels.tsv``, and ``qrels/test.tsv`` as BEIR names it).
"""

from __future__ import annotations

import ast
import email.parser
import hashlib
import inspect
import io
import itertools
import json
import math
import os
import random
import re
import string
import sys
import sysconfig
import time
import tokenize
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from ..documents import split_passages

__all__ = ["Passage", "default_roots", "passages", "sources", "token_counter", "write_corpus"]

CODE_SUFFIXES = (".py", ".pyi")  # stubs hold the docstrings of compiled modules
DOC_SUFFIXES = (".rst", ".md", ".txt")
LITERAL_WORDS = 12
# token rows per whitespace word: BERT's uncased WordPiece (ColBERTv2's and MiniLM's
# vocabulary) gives 1.58 on this corpus once punctuation is dropped, markers included
TOKENS_PER_WORD = 1.6
DOC_MAXLEN = 256  # ColBERT's: word-pieces a document keeps, markers included
MAX_FILE_BYTES = 1 << 20  # larger files are data or generated code
_SKIP_DIRS = {"__pycache__", "site-packages", "dist-packages", ".git"}
_SKIP_FILES = re.compile(
    r"(?i)^(licen[cs]e|copying|notice|authors|cmakelists|requirements|top_level|entry_points"
    r"|dependency_links|sources|installed-files)"
)
_MARKUP = re.compile(r"<[^>]+>|https?://\S+|[`*_=~^#|+-]{2,}")  # HTML, URLs, rst/md rules
_WORD = re.compile(r"[(\"'`]*[A-Za-z][a-z'-]*[.,;:!?)\"'`]*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_LICENCE = re.compile(r"(?i)licen[cs]e|copyright")
_SIGNATURE = re.compile(r"^[\w.]+\(.*\)(\s*->.*)?$")
_DEFS = (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
_DOC_CALLS = re.compile(r"_?add_(docstr|newdoc)\w*")

Source = tuple[str, Path | metadata.Distribution]


@dataclass(frozen=True)
class Passage:
    """One passage: ``query`` is set when it is the body of a docstring whose summary line
    (not in ``text``) is its known-item query."""

    title: str
    text: str
    query: str | None = None


def token_counter(tokenizer: str | Path | None = None) -> Callable[[str], int]:
    """Token rows of a text as a ColBERT document encoder stores them: with ``tokenizer`` (a
    ``tokenizer.json`` or a folder holding one), ``[CLS]``, ``[D]``, ``[SEP]`` and the
    word-pieces among the first ``DOC_MAXLEN - 3`` that are not punctuation; without one,
    an estimate of :data:`TOKENS_PER_WORD` per word; at most :data:`DOC_MAXLEN`."""
    if tokenizer is None:
        return lambda text: min(DOC_MAXLEN, math.ceil(TOKENS_PER_WORD * len(text.split())))
    from tokenizers import Tokenizer

    path = Path(tokenizer)
    wordpiece = Tokenizer.from_file(str(path / "tokenizer.json" if path.is_dir() else path))
    wordpiece.no_truncation()
    wordpiece.no_padding()
    punctuation = set(string.punctuation)

    def count(text: str) -> int:
        pieces = wordpiece.encode(text, add_special_tokens=False).tokens[: DOC_MAXLEN - 3]
        return 3 + sum(p not in punctuation for p in pieces)

    return count


def default_roots(base: bool = True) -> list[Path]:
    """The standard library's folder and this environment's site-packages; with ``base``, in
    a virtual environment, also the site-packages of the Python it was made from."""
    found = [Path(sysconfig.get_paths()[k]) for k in ("stdlib", "purelib", "platlib")]
    if base and sys.prefix != sys.base_prefix:
        paths = sysconfig.get_paths(
            vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix}
        )
        found += [Path(paths["purelib"]), Path(paths["platlib"])]
    return [p for p in dict.fromkeys(p.resolve() for p in found) if p.is_dir()]


def _distributions(roots: Sequence[Path]) -> list[metadata.Distribution]:
    """The installed distributions under ``roots``, one per name, sorted by name."""
    by_name: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions(path=[str(r) for r in roots]):
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower()
        if name:
            by_name.setdefault(name, dist)
    return [by_name[n] for n in sorted(by_name)]


def sources(roots: Sequence[Path]) -> list[Source]:
    """Every ``.py``, ``.pyi``, ``.rst``, ``.md`` and ``.txt`` file under ``roots`` and every
    distribution's METADATA, as (key, file or distribution), in a fixed order that mixes them
    (by a hash of the key: the path under its root), so that every prefix samples them all."""
    found: list[Source] = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(
                d
                for d in dirnames
                if d not in _SKIP_DIRS and not d.endswith((".dist-info", ".egg-info"))
            )
            for name in sorted(filenames):
                if name.endswith(CODE_SUFFIXES) or (
                    name.endswith(DOC_SUFFIXES) and not _SKIP_FILES.match(name)
                ):
                    path = Path(dirpath, name)
                    found.append((path.relative_to(root).as_posix(), path))
    found += [(f"{d.metadata['Name']}.dist-info/METADATA", d) for d in _distributions(roots)]
    return sorted(found, key=lambda s: (hashlib.sha1(s[0].encode()).hexdigest(), s[0]))


def _normal(text: str) -> str:
    return " ".join(text.split())


def _string(node: ast.AST) -> str | None:
    """The text of a string literal, also of ``"...".format(...)`` and ``"..." % x``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        node = node.func.value
    elif isinstance(node, ast.BinOp):
        node = node.left
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _attached_doc(call: ast.Call) -> tuple[str, str] | None:
    """(name, docstring) of ``add_docstr(torch.abs, "...")``, ``add_newdoc(module, name,
    "...")`` and the like, which set docstrings at import time (torch, numpy, scipy)."""
    func = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
    if not _DOC_CALLS.fullmatch(func) or not call.args:
        return None
    *named, last = call.args
    if isinstance(last, ast.Tuple) and len(last.elts) == 2:  # add_newdoc(m, "ndarray", (attr, doc))
        named, last = [*named, last.elts[0]], last.elts[1]
    doc = _string(last)
    names = [_string(a) or ast.unparse(a) for a in named]
    return (".".join(names), inspect.cleandoc(doc)) if doc and names else None


def _docstrings(node: ast.AST, name: str) -> Iterator[tuple[str, str, bool]]:
    """(qualified name, text, is a docstring) of the docstrings of a module and its classes
    and functions, those its calls attach (:func:`_attached_doc`), and its other string
    literals of at least :data:`LITERAL_WORDS` words (help texts, messages, templates)."""
    docstring = None
    if isinstance(node, (ast.Module, *_DEFS)):
        doc = ast.get_docstring(node)
        if doc:
            docstring = node.body[0]
            yield name, doc, True
    elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        attached = _attached_doc(node.value)
        if attached:
            yield (*attached, True)
            return
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.stmt):
            if child is not docstring:
                inner = f"{name}.{child.name}" if isinstance(child, _DEFS) else name
                yield from _docstrings(child, inner)
            continue
        for sub in ast.walk(child):
            text = sub.value if isinstance(sub, ast.Constant) else None
            if isinstance(text, str) and len(text.split()) >= LITERAL_WORDS:
                yield name, inspect.cleandoc(text), False


def _summary_and_body(doc: str) -> tuple[str, str]:
    """The summary (the first sentence of the first paragraph) and the rest."""
    paras = [p for p in re.split(r"\n\s*\n", doc) if p.strip()]
    signature = paras[:1] if len(paras) > 1 and _SIGNATURE.match(_normal(paras[0])) else []
    paras = paras[len(signature) :]  # "abs(input, *, out=None) -> Tensor" stays in the body
    first = _SENTENCE_END.split(_normal(paras[0]) if paras else "", maxsplit=1)
    return first[0], "\n\n".join(signature + first[1:] + paras[1:])


def _comments(text: str) -> list[str]:
    """The blocks of comments on consecutive lines of Python source, licence notices left out."""
    blocks: list[list[str]] = []
    last = -1
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.COMMENT:
                if token.start[0] != last + 1:
                    blocks.append([])
                blocks[-1].append(token.string.lstrip("#").strip())
                last = token.start[0]
    except (tokenize.TokenError, SyntaxError):
        pass
    joined = (" ".join(block) for block in blocks)
    return [text for text in joined if not _LICENCE.search(text)]


def _read(source: Path | metadata.Distribution) -> str:
    if isinstance(source, Path):
        if source.stat().st_size > MAX_FILE_BYTES:
            return ""
        return source.read_bytes().decode("utf-8", "replace")
    text = source.read_text("METADATA") or source.read_text("PKG-INFO") or ""
    message = email.parser.Parser().parsestr(text)
    body = message.get_payload()
    return body if isinstance(body, str) and body.strip() else message.get("Description", "")


def passages(
    roots: Sequence[Path] | None = None,
    *,
    max_words: int = 120,
    min_words: int = 12,
    comments: bool = False,
) -> Iterator[Passage]:
    """Passages of the docstrings and documentation under ``roots`` (default:
    :func:`default_roots`), in :func:`sources` order, whitespace normalised, of ``min_words``
    to ``max_words`` words, mostly words (not code or data); repeats are not removed here.

    A docstring whose summary has 4-25 words and whose body fits one passage gives the body
    alone, with the summary as its ``query``; others give all their text. With ``comments``,
    the blocks of comments of ``.py`` files (:func:`_comments`) are passages too.
    """

    def cut(title: str, text: str) -> Iterator[Passage]:
        for piece in split_passages(text, max_words):
            words = piece.split()
            prose = sum(1 for w in words if _WORD.fullmatch(w))  # not code, tables or data
            if len(words) >= min_words and 2 * prose >= len(words):
                yield Passage(title, " ".join(words))

    for key, source in sources(default_roots() if roots is None else roots):
        try:
            text = _read(source)
        except (OSError, UnicodeError):
            continue
        if not key.endswith(CODE_SUFFIXES):
            yield from cut(key, _MARKUP.sub(" ", text))
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(text)
            module = key.rsplit(".", 1)[0].removesuffix("/__init__").replace("/", ".")
            docs = list(_docstrings(tree, module))
        except (SyntaxError, ValueError, RecursionError):
            continue
        for name, doc, is_docstring in docs:
            summary, body = _summary_and_body(doc)
            n_body = len(body.split())
            if (
                is_docstring
                and 4 <= len(summary.split()) <= 25
                and 2 * min_words <= n_body <= max_words
                and not _SIGNATURE.match(summary)
                and summary not in _normal(body)
            ):
                yield from (Passage(p.title, p.text, summary) for p in cut(name, body))
            else:
                yield from cut(name, doc)
        if comments and key.endswith(".py"):
            for block in _comments(text):
                yield from cut(module, block)


_README = """# Docstrings corpus

Real text with no download, from `lateinteract-pg corpus`: the docstrings, docs (and comments,
if asked) of the standard library and the installed packages, as passages (`corpus.jsonl`), with
known-item queries (`queries.jsonl`, `qrels.tsv`, `qrels/test.tsv`): a docstring's summary
line, whose one relevant passage is the rest of that docstring. `manifest.json`:

```json
{manifest}
```
"""


def write_corpus(
    out: str | Path,
    *,
    roots: Sequence[Path] | None = None,
    target_tokens: int = 10_000_000,
    max_passages: int | None = None,
    queries: int = 1000,
    seed: int = 0,
    max_words: int = 120,
    min_words: int = 12,
    comments: bool = False,
    tokenizer: str | Path | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Write the corpus of :func:`passages` to ``out`` in the BEIR layout, stopping once
    ``target_tokens`` token rows or ``max_passages`` passages are written, with
    ``queries`` known-item queries sampled with ``seed``; returns the manifest it writes.
    Token rows are counted by :func:`token_counter` (``tokenizer``) on title and text.
    ``progress``: a tqdm bar (default: when stderr is a terminal)."""
    from tqdm.auto import tqdm

    started = time.perf_counter()
    root = Path(out)
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    roots = default_roots() if roots is None else list(roots)
    ids: dict[bytes, str] = {}
    texts: list[str] = []
    answers: dict[str, set[str]] = {}
    count = token_counter(tokenizer)
    tokens = 0
    exhausted = True
    show = sys.stderr.isatty() if progress is None else progress
    with (
        (root / "corpus.jsonl").open("w", encoding="utf-8") as fh,
        tqdm(total=target_tokens, unit="tok", desc="corpus", disable=not show) as bar,
    ):
        for passage in passages(roots, max_words=max_words, min_words=min_words, comments=comments):
            key = hashlib.sha1(passage.text.encode()).digest()
            doc_id = ids.get(key)
            if doc_id is None:
                if tokens >= target_tokens or len(ids) == max_passages:
                    exhausted = False
                    break
                doc_id = ids[key] = f"d{len(ids)}"
                row = {"_id": doc_id, "title": passage.title, "text": passage.text}
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                texts.append(passage.text)
                rows = count(f"{passage.title}\n{passage.text}")
                tokens += rows
                bar.update(rows)
            if passage.query:
                answers.setdefault(passage.query, set()).add(doc_id)
    pool = sorted(q for q, docs in answers.items() if len(docs) == 1)
    random.Random(seed).shuffle(pool)
    everything = "\n".join(texts)  # a summary that a passage holds would be a second answer
    chosen = list(itertools.islice((q for q in pool if q not in everything), queries))
    with (root / "queries.jsonl").open("w", encoding="utf-8") as fh:
        for i, text in enumerate(chosen):
            fh.write(json.dumps({"_id": f"q{i}", "text": text}, ensure_ascii=False) + "\n")
    qrels = "query-id\tcorpus-id\tscore\n" + "".join(
        f"q{i}\t{next(iter(answers[text]))}\t1\n" for i, text in enumerate(chosen)
    )
    for name in ("qrels.tsv", "qrels/test.tsv"):
        (root / name).write_text(qrels, encoding="utf-8")
    manifest = {
        "generator": __name__,
        "python": sys.version.split()[0],
        "roots": [str(r) for r in roots],
        "distributions": len(_distributions(roots)),
        "passages": len(ids),
        "token_rows": tokens,
        "counted_with": str(tokenizer) if tokenizer else f"{TOKENS_PER_WORD} per word",
        "queries": len(chosen),
        "queries_asked": queries,
        "target_tokens": target_tokens,
        "max_passages": max_passages,
        "sources_exhausted": exhausted,
        "max_words": max_words,
        "min_words": min_words,
        "comments": comments,
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 1),
    }
    text = json.dumps(manifest, indent=2)
    (root / "manifest.json").write_text(text + "\n", encoding="utf-8")
    (root / "README.md").write_text(_README.format(manifest=text), "utf-8")
    return manifest
