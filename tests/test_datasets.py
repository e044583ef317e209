"""load_beir on the shared collections and the stdlib_passages corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from lateinteract_pg.bench.datasets import load_beir, merge_collections
from lateinteract_pg.corpus import stdlib_passages
from lateinteract_pg.documents import split_passages
from lateinteract_pg.errors import InvalidInput

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def collection(name: str) -> Path:
    path = DATA / name
    if not (path / "corpus.jsonl").is_file():
        pytest.skip(f"{path} is not available")
    return path


def test_adi() -> None:
    adi = load_beir(collection("adi"))
    assert adi.name == "adi"
    assert len(adi.corpus) == 82 and len(adi.queries) == 35
    assert sum(len(r) for r in adi.qrels.values()) == 170
    assert set(adi.qrels) == set(adi.queries)
    doc_id, text = adi.corpus[0]
    assert doc_id == "1" and text.startswith(
        "the ibm dsd technical information center - a total systems approach combining "
        "traditional library features and mechanized computer processing\nthe ibm data "
    )
    assert len({d for d, _ in adi.corpus}) == 82


def test_cranfield_empty_docs_skipped() -> None:
    cran = load_beir(collection("cranfield"))
    ids = {d for d, _ in cran.corpus}
    assert len(cran.corpus) == 1398 and "471" not in ids and "995" not in ids
    assert len(cran.queries) == 225
    assert all(d in ids for rels in cran.qrels.values() for d in rels)
    assert max(s for rels in cran.qrels.values() for s in rels.values()) == 4


def test_limit_docs() -> None:
    path = collection("adi")
    full = load_beir(path)
    small = load_beir(path, limit_docs=20)
    assert small.corpus == full.corpus[:20]
    kept = {d for d, _ in small.corpus}
    expected = {q for q, rels in full.qrels.items() if kept & set(rels)}
    assert set(small.queries) == set(small.qrels) == expected
    assert 0 < len(expected) < 35
    for q, rels in small.qrels.items():
        assert rels == {d: s for d, s in full.qrels[q].items() if d in kept}
    with pytest.raises(InvalidInput):
        load_beir(path, limit_docs=0)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_beir(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"corpus\.jsonl"):
        load_beir(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInput):
        load_beir(tmp_path / "file")


def test_split_passages() -> None:
    text = "one two three\n\nfour five\n\n" + " ".join(f"w{i}" for i in range(12))
    assert split_passages(text, 5) == [
        "one two three\n\nfour five",
        "w0 w1 w2 w3 w4",
        "w5 w6 w7 w8 w9",
        "w10 w11",
    ]
    with pytest.raises(InvalidInput):
        split_passages(text, 0)


def test_stdlib_passages() -> None:
    passages = stdlib_passages()
    assert passages == stdlib_passages()
    assert 2000 <= len(passages) <= 6000
    ids = [i for i, _ in passages]
    assert len(set(ids)) == len(ids)
    assert all(text.strip() and len(text.split()) <= 120 for _, text in passages)
    assert "topic:for:0" in ids and "module:json:0" in ids and "json.dumps:0" in ids
    assert all(len(t.split()) <= 40 for _, t in stdlib_passages(max_words=40))


def test_merge_collections_prefixes_ids_and_keeps_qrels() -> None:
    paths = [collection("adi"), collection("medline")]
    adi, medline = load_beir(paths[0]), load_beir(paths[1])
    merged = merge_collections(paths)
    assert merged.name == "merged"
    assert len(merged.corpus) == len(adi.corpus) + len(medline.corpus)
    assert len(merged.queries) == len(adi.queries) + len(medline.queries)
    doc_id, text = adi.corpus[0]
    assert merged.corpus[0] == (f"adi/{doc_id}", text)
    query_id = next(iter(medline.qrels))
    assert merged.qrels[f"medline/{query_id}"] == {
        f"medline/{d}": g for d, g in medline.qrels[query_id].items()
    }
    with pytest.raises(InvalidInput):
        merge_collections([paths[0], paths[0]])
