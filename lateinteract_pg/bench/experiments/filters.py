"""Filtered searches at several selectivities (``bench --filters``): each document gets a
metadata bucket, crc32 of its id mod 1000, and the filter keeps the buckets below a
threshold; recall is measured against exact MaxSim over the passing documents."""

from __future__ import annotations

import statistics
import zlib
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from psycopg import sql

from ...collection import Collection
from ...maxsim import maxsim_packed
from ..config import BUCKETS, SELECTIVITIES, BenchConfig
from ..encoding import Encoded
from ..runs import FirstQueries, line, search_ids, summary, timed

__all__ = ["bucket", "measure_filters"]


def bucket(doc_id: str) -> int:
    return zlib.crc32(doc_id.encode("utf-8")) % BUCKETS


def measure_filters(
    config: BenchConfig,
    coll: Collection,
    enc: Encoded,
    first: FirstQueries,
    echo: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Filtered searches at each selectivity: recall@k against exact MaxSim over the passing
    documents, the share of queries answered with k documents, and latency, for the planner's
    choice, each plan forced, and post-filtering (the unfiltered top 100, then the filter)."""
    queries, _, qrels, numpy_ms = first
    k = config.k
    buckets = np.array([bucket(d) for d in enc.doc_ids])
    stored = coll.conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE collection_id = %s AND metadata ? 'bucket'").format(
            coll.store.table("documents")
        ),
        (coll.id,),
    ).fetchone()
    if stored is None or stored[0] < len(enc.doc_ids):
        echo("filters: writing each document's bucket into its metadata ...")
        with coll.conn.transaction():
            coll.conn.execute(
                sql.SQL(
                    "UPDATE {} AS d SET metadata = coalesce(d.metadata, '{{}}') || "
                    "jsonb_build_object('bucket', m.b) "
                    "FROM unnest(%s::text[], %s::int[]) AS m(id, b) "
                    "WHERE d.collection_id = %s AND d.external_id = m.id"
                ).format(coll.store.table("documents")),
                (enc.doc_ids, buckets.tolist(), coll.id),
            )
        coll.conn.execute(sql.SQL("VACUUM ANALYZE {}").format(coll.store.table("documents")))
    echo("filters: exact MaxSim of every document (ground truth) ...")
    scores = [maxsim_packed(q, enc.doc_tokens, enc.doc_offsets) for q in queries]
    rows = []
    for selectivity in SELECTIVITIES:
        threshold = round(selectivity * BUCKETS)
        passing = buckets < threshold
        spec = {"bucket": {"$lt": threshold}}
        truth = []
        for s in scores:
            masked = np.where(passing, s, -np.inf)
            top = np.argsort(-masked, kind="stable")[: min(k, int(passing.sum()))]
            truth.append([enc.doc_ids[j] for j in top])
        allowed = {d for d, ok in zip(enc.doc_ids, passing) if ok}

        def post_filter(q: np.ndarray, allowed: set[str] = allowed) -> list[str]:
            return [i for i in search_ids(coll, q, k=100) if i in allowed][:k]

        filtered = partial(search_ids, coll, k=k, filter=spec)
        runs: list[tuple[str, Callable[[np.ndarray], list[str]]]] = [
            ("planner's choice", filtered),
            ("index plan (iterative HNSW scans)", partial(filtered, plan="index")),
            ("exhaustive plan (passing documents)", partial(filtered, plan="exhaustive")),
            ("post-filter: unfiltered top 100, then the filter", post_filter),
        ]
        echo(f"filter at {selectivity:.1%} selectivity ({int(passing.sum())} documents) ...")
        for label, search in runs:
            plans: list[str] = []

            def planned(q: np.ndarray, search: Any = search, plans: list[str] = plans) -> list[str]:
                ids = search(q)
                plans.append(coll.last_search.plan if coll.last_search else "?")
                return ids

            run = timed(planned, queries)
            run.name, run.settings = label, {"selectivity": selectivity}
            row = summary(run, truth, qrels, k, statistics.median(numpy_ms))
            row["full_k"] = round(
                float(np.mean([len(r) == len(t) for r, t in zip(run.rankings, truth)])), 4
            )
            row["documents_passing"] = int(passing.sum())
            if label == "planner's choice":
                row["plans"] = {p: plans.count(p) for p in sorted(set(plans))}
            rows.append(row)
            echo("  " + line(row) + f" full k {row['full_k']:.2f}")
    return rows
