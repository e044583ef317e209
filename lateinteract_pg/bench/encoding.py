"""Token vectors of a collection's documents and queries, encoded once and cached on disk
under a hash of the texts and the encoder's settings; and the cost of encoding one query."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..encoders import Encoder, load_encoder
from .config import BenchConfig, cache_dir
from .datasets import BeirCollection

__all__ = ["SHARD_DOCUMENTS", "Encoded", "encode_collection", "query_encoding_ms"]

SHARD_DOCUMENTS = 2000  # documents encoded, and kept on disk, at a time


@dataclass
class Encoded:
    """A collection's token vectors: the documents' matrices back to back (document ``i``
    is ``doc_tokens[doc_offsets[i]:doc_offsets[i + 1]]``) and one matrix per query."""

    doc_ids: list[str]
    doc_tokens: np.ndarray  # (total, dim) float16
    doc_offsets: np.ndarray
    query_ids: list[str]
    queries: list[np.ndarray]
    encoder: dict[str, Any]
    query_texts: list[str] = field(default_factory=list)

    def documents(self) -> list[np.ndarray]:
        """Each document's matrix, in ``doc_ids`` order (views, not copies)."""
        o = self.doc_offsets
        return [self.doc_tokens[o[i] : o[i + 1]] for i in range(len(self.doc_ids))]


def _content_key(data: BeirCollection, encoder: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(encoder, sort_keys=True).encode())
    for doc_id, text in data.corpus:
        digest.update(doc_id.encode() + b"\x00" + text.encode() + b"\x01")
    for query_id, text in sorted(data.queries.items()):
        digest.update(query_id.encode() + b"\x00" + text.encode() + b"\x02")
    return digest.hexdigest()[:20]


def encode_collection(
    data: BeirCollection, config: BenchConfig, echo: Callable[[str], None]
) -> Encoded:
    """Token vectors of the corpus and queries, from the on-disk cache when present."""
    encoder = load_encoder(config.model)
    settings = encoder.settings()
    path = cache_dir(config) / f"{data.name or 'collection'}-{_content_key(data, settings)}.npz"
    query_ids = sorted(data.queries)
    if path.exists():
        echo(f"encodings: cached {path}")
        z = np.load(path, allow_pickle=False)
        offsets = z["query_offsets"]
        queries = [z["query_vecs"][offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
        cached_ids = [str(x) for x in z["query_ids"]]
        return Encoded(
            [str(x) for x in z["doc_ids"]],
            z["doc_vecs"],
            z["doc_offsets"],
            cached_ids,
            [q.astype(np.float32) for q in queries],
            settings,
            [data.queries[q] for q in cached_ids],
        )
    echo(f"encoding {len(data.corpus)} documents and {len(query_ids)} queries ...")
    lengths, vectors = _encode_in_shards(encoder, [text for _, text in data.corpus], path)
    qs = encoder.encode_queries([data.queries[q] for q in query_ids], progress=True)
    doc_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    query_offsets = np.concatenate([[0], np.cumsum([len(q) for q in qs])]).astype(np.int64)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        doc_ids=np.array([d for d, _ in data.corpus]),
        doc_vecs=vectors,
        doc_offsets=doc_offsets,
        query_ids=np.array(query_ids),
        query_vecs=np.concatenate(qs).astype(np.float16),
        query_offsets=query_offsets,
    )
    os.replace(tmp, path)
    shutil.rmtree(_shard_dir(path), ignore_errors=True)
    echo(f"encodings cached in {path}")
    return encode_collection(data, config, echo)


def _shard_dir(path: Path) -> Path:
    return path.with_name(path.stem + ".shards")


def _encode_in_shards(
    encoder: Encoder, texts: list[str], path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Every document's token count and its vectors back to back (float16), encoded
    ``SHARD_DOCUMENTS`` at a time; each shard is kept on disk as it completes, so an
    interrupted encoding of a large corpus resumes where it stopped."""
    shards = _shard_dir(path)
    shards.mkdir(parents=True, exist_ok=True)
    lengths: list[np.ndarray] = []
    vectors: list[np.ndarray] = []
    with tqdm(total=len(texts), unit="doc", desc="documents") as bar:
        for number, start in enumerate(range(0, len(texts), SHARD_DOCUMENTS)):
            chunk = texts[start : start + SHARD_DOCUMENTS]
            done = shards / f"{number:05d}.npz"
            if not done.exists():
                docs = encoder.encode_documents(chunk)
                tmp = done.with_suffix(".tmp.npz")
                np.savez(
                    tmp,
                    lengths=np.array([len(d) for d in docs], np.int64),
                    vectors=np.concatenate(docs).astype(np.float16),
                )
                os.replace(tmp, done)
            with np.load(done) as z:
                lengths.append(z["lengths"])
                vectors.append(z["vectors"])
            bar.update(len(chunk))
    return np.concatenate(lengths), np.concatenate(vectors)


def query_encoding_ms(config: BenchConfig, texts: list[str]) -> list[float]:
    """Milliseconds to encode each query alone, after one untimed warm-up."""
    encoder = load_encoder(config.model)
    encoder.encode_queries([texts[0]])  # warm
    out = []
    for text in texts:
        started = time.perf_counter()
        encoder.encode_queries([text])
        out.append((time.perf_counter() - started) * 1000)
    return out
