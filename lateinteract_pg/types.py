"""Result and record types shared across the package."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = [
    "CANDIDATE_INDEXES",
    "RESCORE_STORAGES",
    "TIERS",
    "CandidateIndex",
    "CollectionInfo",
    "Document",
    "Hit",
    "IngestStats",
    "MatrixLayout",
    "PlanKind",
    "RescoreStorage",
    "SearchStats",
    "Tier",
    "TokenMatch",
]

PlanKind = Literal["index", "exhaustive", "dense"]
Tier = Literal["dense", "late", "rerank"]
TIERS: tuple[Tier, ...] = ("dense", "late", "rerank")
CandidateIndex = Literal["halfvec", "binary"]
CANDIDATE_INDEXES: tuple[CandidateIndex, ...] = ("halfvec", "binary")
RescoreStorage = Literal["float16", "int8"]
RESCORE_STORAGES: tuple[RescoreStorage, ...] = ("float16", "int8")
# how a document row holds its vectors for stage 2: a packed matrix, or a halfvec[]
MatrixLayout = Literal["float16", "int8", "vectors"]


@dataclass(frozen=True)
class Hit:
    """One search result. ``score``: the exact MaxSim of the query against the document in
    the late tier, the cosine of their mean vectors in the dense tier, the cross-encoder's
    score in the rerank tier."""

    id: str
    score: float
    text: str | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class TokenMatch:
    """For one query token: the document token that gives its MaxSim term.

    ``query_token`` indexes the query (0-based), ``position`` the document's stored tokens;
    ``start``/``end`` are character offsets of that token in the document text and ``piece``
    the text between them, when the document was stored with spans (else ``None``).
    """

    query_token: int
    position: int
    similarity: float
    start: int | None = None
    end: int | None = None
    piece: str | None = None


@dataclass(frozen=True)
class Document:
    """A document: to add (``Document(id, text, metadata)``) or as stored, with its token
    count and, when asked for, ``embeddings`` (n_tokens x dim, float32)."""

    id: str
    text: str | None
    metadata: dict[str, Any] | None = None
    n_tokens: int = 0
    embeddings: np.ndarray | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class CollectionInfo:
    """A collection's settings and size."""

    name: str
    dim: int
    n_documents: int
    n_tokens: int
    encoder: dict[str, Any] | None
    candidate_index: CandidateIndex = "halfvec"
    pool_factor: int = 1
    rescore_storage: RescoreStorage = "float16"
    text_search_config: str = "english"
    hnsw_m: int = 16
    hnsw_ef_construction: int = 64
    index_pool_factor: int = 1


@dataclass(frozen=True)
class SearchStats:
    """How the last search ran: the plan, its knobs and where the time went (milliseconds)."""

    plan: PlanKind
    k: int
    query_tokens: int
    tier: Tier = "late"
    probes: int = 0
    candidates_per_token: int = 0
    ef_search: int = 0
    rescore_depth: int = 0
    candidates: int = 0
    connections: int = 1
    rescored_tokens: int = 0
    refined: int = 0  # int8 matrices: the best candidates re-scored exactly from token rows
    stage1_ms: float = 0.0
    stage2_ms: float = 0.0
    total_ms: float = 0.0
    reranked: int = 0
    rerank_ms: float = 0.0
    fusion: str | None = None  # hybrid search: "rrf" or "weighted"
    lexical_matches: int = 0  # hybrid search: documents in the full-text list
    lexical_ms: float = 0.0  # hybrid search: full text and fusion
    estimated_cost: dict[str, float] = field(default_factory=dict)

    @property
    def rerank_depth(self) -> int:
        """Deprecated name of :attr:`rescore_depth` (kept one release)."""
        return self.rescore_depth


@dataclass(frozen=True)
class IngestStats:
    """How the last ``add_embeddings`` went: rows written and seconds per step."""

    documents: int
    token_rows: int
    replaced: int
    copy_s: float
    index_s: float
    index_rebuilt: bool


@dataclass(frozen=True)
class CompactStats:
    """What :meth:`Collection.compact` did: bytes of the collection's token table and
    indexes before and after, dead token rows it found, and its seconds."""

    dead_token_rows: int
    bytes_before: dict[str, int]
    bytes_after: dict[str, int]
    reindexed: bool
    seconds: float


@dataclass(frozen=True)
class StorageReport:
    """What a collection costs on disk (:meth:`Collection.storage`).

    ``parts``: bytes of the token partition's heap (``token_heap``), its primary key
    (``token_keys``), the HNSW candidate index (``candidate_index``), the collection's share
    of the shared documents table's heap, TOAST and btree indexes (``document_heap``,
    ``toast``, ``document_keys``), and its dense and full-text indexes. ``rescoring``: the
    stored bytes of the re-scoring matrices (or, with index pooling, the documents'
    ``vectors``), which live in ``toast`` (and, for short documents, ``document_heap``).
    ``n_tokens``: the token vectors stored for re-scoring (token rows may be fewer).
    """

    parts: dict[str, int]
    rescoring: int
    n_tokens: int

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    @property
    def bytes_per_token(self) -> float:
        """All parts, per stored token vector (0.0 for an empty collection)."""
        return self.total / self.n_tokens if self.n_tokens else 0.0

    def per_token(self) -> dict[str, float]:
        """Each part per stored token vector, with ``rescoring`` and ``total``."""
        n = max(self.n_tokens, 1)
        return {name: round(v / n, 1) for name, v in self.parts.items()} | {
            "rescoring": round(self.rescoring / n, 1),
            "total": round(self.total / n, 1),
        }
