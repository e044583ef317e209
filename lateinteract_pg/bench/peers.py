"""The alternatives ``lateinteract-pg bench`` measures us against, on the same token vectors.

- :class:`Exhaustive`: exact MaxSim of every document in numpy over an in-memory float32
  matrix: the ground truth and the brute-force baseline.
- :class:`VoyagerPeer`: PyLate's recipe with the ``voyager`` package directly: an in-memory
  HNSW over every token vector, the top-k' document tokens per query token, every document
  they belong to re-scored exactly in numpy.
- :class:`FdePeer`: MUVERA: one fixed-dimensional encoding per document
  (:mod:`lateinteract_pg.fde`), the query's encoding against all of them by brute force in
  numpy, the best ``rescore`` documents re-scored exactly in numpy.
- :class:`SqlOnlyPeer`: the approach of pgvector-python's ColBERT example, written here in
  our own words: one ``ORDER BY embedding <#> q LIMIT k'`` per query token joined with
  ``UNION ALL``, then a SQL ``max_sim`` over each candidate's array of vectors. It uses our
  token table and HNSW index, so only the aggregation and re-scoring differ from ours.

Each ``search`` returns document ids best first; :func:`measure_peers` runs them all.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from pgvector import HalfVector
from psycopg import sql

from ..collection import Collection
from ..fde import FdeConfig, encode_documents, encode_queries
from ..maxsim import maxsim_packed
from ..store import Store
from .config import (
    FDE_RESCORE,
    FDE_SWEEP,
    PYLATE_EF_SEARCH,
    SQL_ONLY_PER_TOKEN,
    SQL_ONLY_SWEEP,
    VOYAGER_PER_TOKEN,
    VOYAGER_SWEEP,
    BenchConfig,
    cache_dir,
)
from .encoding import Encoded
from .ingest import ingest
from .metrics import mrr_at, ndcg_at
from .runs import Run, line, p50, summary, timed

__all__ = ["Exhaustive", "FdePeer", "PeerRun", "SqlOnlyPeer", "VoyagerPeer", "measure_peers"]

log = logging.getLogger(__name__)


class Exhaustive:
    """Exact MaxSim of every document; ``scores`` keeps the last query's scores."""

    name = "exhaustive numpy MaxSim"

    def __init__(self, doc_tokens: np.ndarray, doc_offsets: np.ndarray, doc_ids: list[str]):
        self.matrix = doc_tokens.astype(np.float32)
        self.offsets = doc_offsets
        self.doc_ids = doc_ids

    def search(self, query: np.ndarray, k: int) -> list[str]:
        scores = maxsim_packed(query, self.matrix, self.offsets)
        top = np.argsort(-scores, kind="stable")[:k]
        return [self.doc_ids[j] for j in top]


class VoyagerPeer:
    """Per-token HNSW in memory (Voyager, inner product), then exact re-scoring.

    The index is built once per set of vectors and parameters and cached on disk.
    """

    name = "voyager (in-memory per-token HNSW)"

    def __init__(
        self,
        doc_tokens: np.ndarray,
        doc_offsets: np.ndarray,
        doc_ids: list[str],
        *,
        m: int = 64,
        ef_construction: int = 200,
        cache_dir: Path | None = None,
    ):
        self.matrix = doc_tokens.astype(np.float32)
        self.offsets = doc_offsets
        self.doc_ids = doc_ids
        self.m, self.ef_construction = m, ef_construction
        self.cache_dir = cache_dir
        self.build_s: float | None = None
        self.loaded_from_cache = False
        self.index: Any = None

    def _cache_path(self) -> Path | None:
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256(self.matrix[:: max(1, len(self.matrix) // 4096)].tobytes())
        digest.update(f"{self.matrix.shape}|{self.m}|{self.ef_construction}".encode())
        return self.cache_dir / f"voyager-{digest.hexdigest()[:20]}.voy"

    def build(self) -> None:
        import voyager

        path = self._cache_path()
        if path is not None and path.exists():
            self.index = voyager.Index.load(str(path))
            self.loaded_from_cache = True
            return
        started = time.perf_counter()
        self.index = voyager.Index(
            voyager.Space.InnerProduct,
            num_dimensions=self.matrix.shape[1],
            M=self.m,
            ef_construction=self.ef_construction,
        )
        self.index.add_items(self.matrix, num_threads=-1)
        self.build_s = time.perf_counter() - started
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            self.index.save(str(tmp))
            tmp.replace(path)

    def index_bytes(self) -> int | None:
        """Size of the saved index (vectors and graph): what it holds in memory."""
        path = self._cache_path()
        return path.stat().st_size if path is not None and path.exists() else None

    def search(
        self, query: np.ndarray, k: int, per_token: int = 100, ef_search: int | None = None
    ) -> list[str]:
        """``ef_search`` None: max(k', 100), the fastest setting at recall >= 0.99 on
        scifact; PyLate queries with 200 (:data:`PYLATE_EF_SEARCH`)."""
        q = np.ascontiguousarray(query, dtype=np.float32)
        ef = max(per_token, 100) if ef_search is None else max(per_token, ef_search)
        neighbours, _ = self.index.query(q, k=per_token, query_ef=ef)
        tokens = np.unique(neighbours.astype(np.int64).ravel())
        docs = np.unique(np.searchsorted(self.offsets, tokens, side="right") - 1)
        # exact MaxSim of every candidate over its rows of the in-memory matrix
        starts, ends = self.offsets[docs], self.offsets[docs + 1]
        rows = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)])
        local = np.concatenate([[0], np.cumsum(ends - starts)])
        scores = maxsim_packed(q, self.matrix[rows], local)
        top = np.argsort(-scores, kind="stable")[:k]
        return [self.doc_ids[docs[j]] for j in top]


class FdePeer:
    """MUVERA: documents ranked by the inner product of fixed-dimensional encodings (brute
    force over a float32 matrix), the best ``rescore`` of them re-scored by exact MaxSim."""

    name = "MUVERA FDE (document-level, exact re-scoring)"

    def __init__(
        self,
        doc_tokens: np.ndarray,
        doc_offsets: np.ndarray,
        doc_ids: list[str],
        *,
        config: FdeConfig | None = None,
    ):
        self.matrix = doc_tokens.astype(np.float32)
        self.offsets = np.asarray(doc_offsets, dtype=np.int64)
        self.doc_ids = doc_ids
        self.config = config if config is not None else FdeConfig(self.matrix.shape[1])
        self.encodings = np.zeros((0, self.config.output_dim), dtype=np.float32)
        self.build_s: float | None = None

    def build(self) -> None:
        """Every document's encoding, once; ``build_s`` says how long it took."""
        started = time.perf_counter()
        o = self.offsets
        documents = [self.matrix[o[i] : o[i + 1]] for i in range(len(self.doc_ids))]
        self.encodings = encode_documents(self.config, documents)
        self.build_s = time.perf_counter() - started

    def search(self, query: np.ndarray, k: int, rescore: int = FDE_RESCORE) -> list[str]:
        q = np.ascontiguousarray(query, dtype=np.float32)
        approx = self.encodings @ encode_queries(self.config, [q])[0]
        depth = min(rescore, len(approx))
        docs = np.sort(np.argpartition(-approx, depth - 1)[:depth])
        starts, ends = self.offsets[docs], self.offsets[docs + 1]
        rows = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)])
        local = np.concatenate([[0], np.cumsum(ends - starts)])
        scores = maxsim_packed(q, self.matrix[rows], local)
        top = np.argsort(-scores, kind="stable")[:k]
        return [self.doc_ids[docs[j]] for j in top]


_SQL_ONLY_SETUP = """
CREATE TABLE IF NOT EXISTS {arrays} (
    doc_id bigint PRIMARY KEY,
    embeddings halfvec[] NOT NULL
);
CREATE OR REPLACE FUNCTION {max_sim}(document halfvec[], query halfvec[])
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH q AS (SELECT v, i FROM unnest(query) WITH ORDINALITY AS u(v, i)),
         d AS (SELECT unnest(document) AS v),
         best AS (SELECT max(-(d.v <#> q.v)) AS sim FROM q CROSS JOIN d GROUP BY q.i)
    SELECT sum(sim) FROM best
$$;
"""


class SqlOnlyPeer:
    """pgvector-python's ColBERT example, in SQL only (see the module docstring)."""

    name = "SQL only (pgvector-python ColBERT example)"

    def __init__(self, store: Any, collection: Any):
        self.store = store
        self.coll = collection
        self.arrays = store.table(f"sqlonly_arrays_{collection.id}")
        self.max_sim = store.table("sqlonly_max_sim")
        self._statements: dict[int, sql.Composed] = {}

    def build(self) -> float:
        """The per-document arrays of vectors (from our token rows); seconds taken."""
        conn = self.store.conn
        started = time.perf_counter()
        conn.execute(sql.SQL(_SQL_ONLY_SETUP).format(arrays=self.arrays, max_sim=self.max_sim))
        count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self.arrays)).fetchone()
        if count is not None and count[0] != len(self.coll):
            with conn.transaction():
                conn.execute(sql.SQL("TRUNCATE {}").format(self.arrays))
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {} SELECT doc_id, array_agg(embedding ORDER BY position) "
                        "FROM {} WHERE collection_id = %s GROUP BY doc_id"
                    ).format(self.arrays, self.store.table("tokens")),
                    (self.coll.id,),
                )
        return time.perf_counter() - started

    def drop(self) -> None:
        """Drop the arrays table."""
        self.store.conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self.arrays))

    def bytes(self) -> int:
        row = self.store.conn.execute(
            "SELECT pg_total_relation_size(%s::regclass)", (self.arrays.as_string(self.store.conn),)
        ).fetchone()
        return int(row[0]) if row else 0

    def _statement(self, m: int) -> sql.Composed:
        if m not in self._statements:
            probe = sql.SQL(
                "(SELECT doc_id FROM {tokens} WHERE collection_id = {cid} "
                "ORDER BY embedding::halfvec({dim}) <#> {q} LIMIT {per_token})"
            )
            branches = [
                probe.format(
                    tokens=self.store.table("tokens"),
                    cid=sql.Literal(self.coll.id),
                    dim=sql.Literal(self.coll.dim),
                    q=sql.Placeholder(f"q{i}"),
                    per_token=sql.Placeholder("per_token"),
                )
                for i in range(m)
            ]
            self._statements[m] = sql.SQL(
                "WITH candidates AS ({union}) "
                "SELECT d.external_id, {max_sim}(a.embeddings, {query}) AS score "
                "FROM {arrays} AS a JOIN {documents} AS d ON d.id = a.doc_id "
                "WHERE a.doc_id IN (SELECT doc_id FROM candidates) "
                "ORDER BY score DESC LIMIT {k}"
            ).format(
                union=sql.SQL(" UNION ALL ").join(branches),
                max_sim=self.max_sim,
                query=sql.Placeholder("query"),
                arrays=self.arrays,
                documents=self.store.table("documents"),
                k=sql.Placeholder("k"),
            )
        return self._statements[m]

    def search(self, query: np.ndarray, k: int, per_token: int = 10) -> list[str]:
        # pgvector's default ef_search unless k' needs more (an index scan yields at most ef)
        self.store.set_session("hnsw.ef_search", str(max(40, per_token)))
        vectors = [HalfVector(v) for v in query]
        params: dict[str, Any] = {f"q{i}": v for i, v in enumerate(vectors)}
        params.update(query=vectors, per_token=per_token, k=k)
        rows = self.store.conn.execute(self._statement(len(vectors)), params).fetchall()
        return [r[0] for r in rows]


@dataclass(frozen=True)
class PeerRun:
    """What every peer is measured on: the run's settings, the vectors, the queries with their
    exact top k (``truth``) and judgements, the exhaustive run and the queries' encoding cost."""

    config: BenchConfig
    enc: Encoded
    queries: list[np.ndarray]
    truth: list[list[str]]
    qrels: list[dict[str, int]]
    brute: Run
    encode_ms: list[float]
    echo: Callable[[str], None]

    def timed(
        self, search: Callable[..., list[str]], name: str, settings: dict[str, Any], n: int
    ) -> Run:
        """``search`` timed on the first ``n`` queries at ``settings`` (keyword arguments)."""
        run = timed(partial(search, k=self.config.k, **settings), self.queries[:n])
        run.name, run.settings = name, dict(settings)
        return run

    def row(self, run: Run, main: bool, deep: list[list[str]] | None = None) -> dict[str, Any]:
        """A run's figures against exact MaxSim and the exhaustive run on the same queries;
        ``main`` rows add the queries' encoding to their end-to-end latency."""
        n = len(run.rankings)
        encode_ms = self.encode_ms[:n] if main else None
        return summary(run, self.truth[:n], self.qrels[:n], self.config.k, p50(self.brute, n),
                       encode_ms, deep)  # fmt: skip

    def sweep(
        self, search: Callable[..., list[str]], name: str, settings: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """A peer's sweep: one row per setting, over the first ``sweep_queries``."""
        rows = []
        for knobs in settings:
            run = self.timed(search, name, knobs, self.config.sweep_queries)
            rows.append(self.row(run, main=False))
            self.echo("  sweep " + line(rows[-1]))
        return rows


def _measure_sql_only(
    peer: PeerRun, store: Store, coll: Collection
) -> dict[str, list[dict[str, Any]]]:
    """The SQL-only recipe on the first ``peer_queries``: over a token row per vector, as its
    users keep them (an unpooled copy where the collection pools its token rows)."""
    config, enc, echo = peer.config, peer.enc, peer.echo
    systems: list[dict[str, Any]] = []
    sweep: list[dict[str, Any]] = []
    target = coll
    if coll.spec.index_pool_factor > 1:
        target, _ = ingest(
            store, f"{coll.name}-index-pool-factor-1", enc, echo, config.keep, index_pool_factor=1
        )
    n = min(config.peer_queries, len(peer.queries))
    echo(f"SQL only (pgvector-python's ColBERT example), first {n} queries ...")
    sql_only = SqlOnlyPeer(store, target)
    arrays_s = sql_only.build()
    run = peer.timed(sql_only.search, sql_only.name, {"per_token": SQL_ONLY_PER_TOKEN}, n)
    run.extra = {
        "arrays_build_s": round(arrays_s, 1),
        "arrays_bytes_per_token": round(sql_only.bytes() / len(enc.doc_tokens), 1),
        # its token rows with their index, and the arrays
        "bytes_per_token": round(
            (target.storage().total + sql_only.bytes()) / len(enc.doc_tokens), 1
        ),
    }
    truth, qrels = peer.truth[:n], peer.qrels[:n]
    run.extra["exact_on_same_queries"] = {
        "ndcg_at_10": round(float(np.mean([ndcg_at(t, q) for t, q in zip(truth, qrels)])), 4),
        "mrr_at_10": round(float(np.mean([mrr_at(t, q) for t, q in zip(truth, qrels)])), 4),
    }
    systems.append(peer.row(run, main=True))
    echo(line(systems[-1]))
    if config.sweep:
        settings = [{"per_token": p} for p in SQL_ONLY_SWEEP]
        sweep += replace(peer, queries=peer.queries[:n]).sweep(
            sql_only.search, sql_only.name, settings
        )
    if target is not coll and not config.keep:
        sql_only.drop()
        store.drop_collection(target.name)
    return {"systems": systems, "sweep": sweep}


def _measure_voyager(peer: PeerRun) -> dict[str, list[dict[str, Any]]]:
    """Voyager at our best setting of its index and as PyLate runs it; with ``sweep``, at
    the k' of its sweep."""
    config, enc, echo, n = peer.config, peer.enc, peer.echo, len(peer.queries)
    systems: list[dict[str, Any]] = []
    sweep: list[dict[str, Any]] = []
    echo("voyager: building (or loading) the in-memory per-token HNSW ...")
    voyager = VoyagerPeer(enc.doc_tokens, enc.doc_offsets, enc.doc_ids, cache_dir=cache_dir(config))
    voyager.build()
    echo(
        "  loaded from cache"
        if voyager.loaded_from_cache
        else f"  built in {voyager.build_s:.1f} s"
    )
    run = peer.timed(voyager.search, voyager.name, {"per_token": VOYAGER_PER_TOKEN}, n)
    run.settings = {"M": voyager.m, "ef_construction": voyager.ef_construction,
                    "per_token": VOYAGER_PER_TOKEN, "ef_search": "max(k', 100)"}  # fmt: skip
    deep = [voyager.search(q, 100, VOYAGER_PER_TOKEN) for q in peer.queries]
    index_bytes = voyager.index_bytes()
    run.extra = {
        "build_s": None if voyager.build_s is None else round(voyager.build_s, 1),
        "index_bytes_per_token": None
        if index_bytes is None
        else round(index_bytes / len(enc.doc_tokens), 1),
    }
    systems.append(peer.row(run, main=True, deep=deep))
    echo(line(systems[-1]))
    # as PyLate runs it: pylate/indexes/voyager.py (M 64, ef_construction 200, ef_search
    # 200) and pylate/retrieve/colbert.py (k_token 100); the same index
    pylate = {"per_token": VOYAGER_PER_TOKEN, "ef_search": PYLATE_EF_SEARCH}
    run = peer.timed(voyager.search, voyager.name + ", PyLate's defaults", pylate, n)
    run.settings = {"M": voyager.m, "ef_construction": voyager.ef_construction, **pylate}
    systems.append(peer.row(run, main=True))
    echo(line(systems[-1]))
    if config.sweep:
        settings = [{"per_token": p} for p in VOYAGER_SWEEP]
        sweep += peer.sweep(voyager.search, voyager.name, settings)
    del voyager
    return {"systems": systems, "sweep": sweep}


def _measure_fde(peer: PeerRun) -> dict[str, list[dict[str, Any]]]:
    """MUVERA FDE re-scoring its top ``FDE_RESCORE``; with ``sweep``, at other depths."""
    enc, echo, n = peer.enc, peer.echo, len(peer.queries)
    echo("MUVERA FDE: encoding every document ...")
    fde = FdePeer(enc.doc_tokens, enc.doc_offsets, enc.doc_ids)
    fde.build()
    echo(f"  encoded in {fde.build_s:.1f} s")
    run = peer.timed(fde.search, fde.name, {"rescore": FDE_RESCORE}, n)
    c = fde.config
    run.settings = {"repetitions": c.repetitions, "simhash_bits": c.simhash_bits,
                    "projection_dim": c.projection_dim, "rescore": FDE_RESCORE}  # fmt: skip
    deep = [fde.search(q, 100, max(FDE_RESCORE, 100)) for q in peer.queries]
    run.extra = {
        "build_s": None if fde.build_s is None else round(fde.build_s, 1),
        "fde_dim": c.output_dim,
        "fde_bytes_per_token": round(fde.encodings.nbytes / len(enc.doc_tokens), 1),
    }
    systems = [peer.row(run, main=True, deep=deep)]
    echo(line(systems[-1]))
    sweep: list[dict[str, Any]] = []
    if peer.config.sweep:
        settings = [{"rescore": depth} for depth in FDE_SWEEP]
        sweep = peer.sweep(fde.search, fde.name, settings)
    del fde
    return {"systems": systems, "sweep": sweep}


def measure_peers(peer: PeerRun, store: Store, coll: Collection) -> dict[str, Any]:
    """Voyager and MUVERA FDE on every query and the SQL-only recipe on the first
    ``peer_queries``, each at its main setting and, with ``sweep``, at the k' (FDE: the
    re-scoring depths) of its sweep; fast-plaid's absence."""
    n_tokens, cap = len(peer.enc.doc_tokens), peer.config.peer_max_tokens
    too_large = None
    if cap is not None and n_tokens > cap:
        too_large = (
            f"not run: {n_tokens:,} token rows, more than the {cap:,} this run builds Voyager's "
            "in-memory index and the SQL-only recipe's token rows for"
        )
        peer.echo("voyager and SQL only: " + too_large)
    parts = [] if too_large else [_measure_voyager(peer)]
    parts.append(_measure_fde(peer))
    if too_large is None:
        parts.append(_measure_sql_only(peer, store, coll))
    return {
        "systems": [row for part in parts for row in part["systems"]],
        "sweep": [row for part in parts for row in part["sweep"]],
        "voyager": too_large,
        "fast_plaid": (
            "not run: the fast-plaid wheel (1.7.0) requires torch==2.11.0 exactly; with this "
            "project's CPU torch 2.13.0 its compiled extension crashes (SIGSEGV) in "
            "FastPlaid.create(), and no CPU build of torch 2.11.0 is available to this machine"
        ),
    }
