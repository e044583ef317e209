"""The demo's corpus: Python's help topics and the docs of common standard-library modules,
real text that is on every machine with Python."""

from __future__ import annotations

import importlib
import inspect
import logging
import re
from typing import Any

from .documents import split_passages

__all__ = ["STDLIB_MODULES", "stdlib_passages"]

log = logging.getLogger(__name__)

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
