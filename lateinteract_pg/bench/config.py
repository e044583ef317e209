"""What one bench run measures: :class:`BenchConfig`, and the settings its sweeps and
optional measurements go through."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .datasets import BeirCollection

__all__ = [
    "BENCH_SCHEMA",
    "BINARY_SWEEP",
    "BUCKETS",
    "CLIENTS",
    "DEFAULT_SWEEP",
    "FDE_RESCORE",
    "FDE_SWEEP",
    "FUSION_SETTINGS",
    "INDEX_POOL_SWEEP",
    "MERGE_THRESHOLDS",
    "POOLED_SWEEP",
    "PYLATE_EF_SEARCH",
    "SELECTIVITIES",
    "SQL_ONLY_PER_TOKEN",
    "SQL_ONLY_SWEEP",
    "VOYAGER_PER_TOKEN",
    "VOYAGER_SWEEP",
    "BenchConfig",
    "cache_dir",
]

BENCH_SCHEMA = "lateinteract_bench"
# ef_search is never below k': an index scan returns at most ef_search rows
_KNOB_SWEEP = [(40, 40, 50), (40, 40, 100), (64, 64, 100), (100, 100, 100), (100, 100, 200),
               (100, 200, 200), (150, 150, 200), (150, 300, 200), (150, 150, 300),
               (200, 200, 300), (200, 200, 400), (300, 300, 400)]  # fmt: skip
# Stage-1 techniques at k' 200 / N 400: XTR's imputation of a probe's missing similarities
# (its k'-th); fewer probes (query vectors at least 0.95 alike, as [MASK] expansions are,
# probe once); fewer but deeper probes (the same, at k' 300)
_STAGE1_SWEEP: list[dict[str, Any]] = [
    {"imputation": "kth"},
    {"merge_threshold": 0.95},
    {"merge_threshold": 0.95, "candidates_per_token": 300, "ef_search": 300},
]
DEFAULT_SWEEP: list[dict[str, Any]] = [
    {"candidates_per_token": k, "ef_search": ef, "rescore_depth": n} for k, ef, n in _KNOB_SWEEP
] + [
    {"candidates_per_token": 200, "ef_search": 200, "rescore_depth": 400, **technique}
    for technique in _STAGE1_SWEEP
]
VOYAGER_PER_TOKEN = 100  # the DESIGN recipe: top-100 document tokens per query token
VOYAGER_SWEEP = [16, 32, 64]
PYLATE_EF_SEARCH = 200  # the ef_search PyLate gives its Voyager index
# MUVERA FDE: documents ranked by encoding, then the top N re-scored exactly
FDE_RESCORE = 200
FDE_SWEEP = [100, 400, 800]
# the binary candidate index: the defaults, then wider probes and deeper re-ranking, which
# Hamming distances over sign bits need for the same recall
BINARY_SWEEP: list[dict[str, int]] = [
    {},
    {"candidates_per_token": 300, "ef_search": 300, "rescore_depth": 200},
    {"candidates_per_token": 300, "ef_search": 300, "rescore_depth": 400},
    {"candidates_per_token": 500, "ef_search": 500, "rescore_depth": 400},
]
# index_pool_factor of the storage options' copies (token rows pooled, vectors kept; the
# defaults pool by 3, the copy "token rows unpooled" by 1)
INDEX_POOL_SWEEP = (2, 4, 6)
POOLED_SWEEP: list[dict[str, int]] = [
    {},
    {"candidates_per_token": 200, "ef_search": 200, "rescore_depth": 300},
]
# query-token clustering: cosine at which query tokens share a probe (on scifact's MiniLM
# queries, 23 tokens: 19.6, 17.5, 16.1 and 14.6 probes)
MERGE_THRESHOLDS = [0.9, 0.8, 0.7, 0.6]
SQL_ONLY_PER_TOKEN = 10
SQL_ONLY_SWEEP = [5, 20]
CLIENTS = (1, 2, 4)
# Filtered searches keep the documents whose metadata "bucket" (crc32 of the id mod 1000) is
# below the threshold: 50%, 5% and 0.5% of them.
SELECTIVITIES = (0.5, 0.05, 0.005)
BUCKETS = 1000
# hybrid fusions measured: (fusion, weight of late interaction)
FUSION_SETTINGS = [
    ("rrf", 0.5),
    ("rrf", 0.7),
    ("weighted", 0.5),
    ("weighted", 0.7),
    ("weighted", 0.85),
]


@dataclass(frozen=True)
class BenchConfig:
    """One bench run: the collection, the systems and options measured, where results go."""

    data_dir: Path
    dsn: str | None = None
    out: Path = Path("bench-results")
    model: str = "minilm"
    limit_docs: int | None = None
    max_queries: int | None = None
    k: int = 10
    sweep: bool = False
    keep: bool = True
    sweep_settings: list[dict[str, Any]] = field(default_factory=lambda: list(DEFAULT_SWEEP))
    cache_dir: Path | None = None
    peers: bool = True
    peer_queries: int = 100  # the SQL-only peer is slow: the first N queries
    qps_seconds: float = 5.0
    sweep_queries: int = 100  # the sweep and the peers' sweeps run the first N queries
    recall_at_100: bool = True
    collection: BeirCollection | None = None  # given instead of data_dir (the scaling run)
    storage_options: bool = False  # also measure the storage options (copies of the collection)
    binary_settings: list[dict[str, int]] = field(default_factory=lambda: list(BINARY_SWEEP))
    tiers: bool = False  # also measure the dense and rerank tiers
    reranker: str | None = None  # a cross-encoder checkpoint; None: latency only (tiers.py)
    rerank_top: int = 50
    rerank_queries: int = 20  # a CPU cross-encoder reads 50 documents in seconds
    filters: bool = False  # also measure filtered searches at several selectivities
    hybrid: bool = False  # also measure hybrid (late + full text) against late alone
    hash_partitions: tuple[int, ...] = ()  # also measure copies of the token table hashed N ways
    maintenance_work_mem: str | None = None  # for the index builds; None: the server's
    peer_max_tokens: int | None = None  # Voyager and SQL-only are left out of larger ones
    cold: bool = False  # also measure the first pass after the caches were emptied


def cache_dir(config: BenchConfig) -> Path:
    """Where encodings, Voyager's index and the latency-only cross-encoder are cached."""
    if config.cache_dir is not None:
        return config.cache_dir
    import platformdirs

    return Path(platformdirs.user_cache_dir("lateinteract_pg")) / "encodings"
