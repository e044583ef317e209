"""Token rows hashed by document into N partitions, one HNSW index each
(``bench --hash-partitions``): the layout of N shards of a distributed table, measured on
one connection against the single partition the collection has."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from pgvector import HalfVector
from psycopg import sql

from ...catalog import read_sizes
from ...collection import Collection
from ...maxsim import top_k
from ...search import candidates, planner, rescore
from ...search.results import fetch_hits
from ...store import Store
from ..config import BenchConfig
from ..runs import FirstQueries, line, summary, timed

__all__ = ["measure_hash_partitions"]


def measure_hash_partitions(
    config: BenchConfig,
    store: Store,
    coll: Collection,
    first: FirstQueries,
    echo: Callable[[str], None],
) -> list[dict[str, Any]]:
    """The collection's token rows hashed by document into N partitions, each with its own
    HNSW index (the layout of N shards of a distributed table), against the one partition
    the collection has: the same search (stage 1 over the partitioned copy, stage 2 from the
    collection's matrices) on one connection, at the default knobs."""
    queries, truth, qrels, numpy_ms = first
    k, dim = config.k, coll.dim
    knobs = planner.default_knobs(k)
    conn = store.conn
    fetch = rescore.fetch_sql(store.table("documents"), coll.spec.matrix_layout)
    rows = []
    for n in (1, *config.hash_partitions):
        table = f"tokens_{coll.id}" if n == 1 else f"hashed_{coll.id}_{n}"
        build_s = None
        if n > 1 and not _hashed_copy_ready(store, table, coll):
            echo(f"hash partitions: copying {coll.name!r}'s tokens into {n} partitions ...")
            build_s = _build_hashed_copy(store, table, coll, n)
        statement = candidates.candidate_sql(store.table(table), coll.id, dim, "zero")
        store.set_session("hnsw.ef_search", str(knobs.ef_search))
        store.set_session("hnsw.iterative_scan", "off")
        stage1_ms: list[float] = []

        def search(
            query: np.ndarray, statement: Any = statement, times: Any = stage1_ms
        ) -> list[str]:
            started = time.perf_counter()
            ids, _ = candidates.stage1(
                conn, statement, query, np.ones(len(query), np.float32),
                knobs.candidates_per_token, planner.default_knobs(k, len(query)).rescore_depth,
            )  # fmt: skip
            times.append((time.perf_counter() - started) * 1000)
            doc_ids, scores, _ = rescore.score_candidates(
                conn, fetch, query, ids, dim, coll.spec.matrix_layout
            )
            best = top_k(scores, doc_ids.tolist(), k)
            return [h.id for h in fetch_hits(store.conn, coll.spec, [(int(d), s) for d, s in best])]

        timed(search, queries)  # warm: the copy's pages into shared_buffers
        stage1_ms.clear()
        run = timed(search, queries)
        run.name, run.settings = "hash partitions", {"partitions": n}
        row = summary(run, truth, qrels, k, statistics.median(numpy_ms))
        index_bytes = conn.execute(
            "SELECT coalesce(sum(pg_relation_size(i.indexrelid)), 0) "
            "FROM pg_partition_tree(%s) AS p JOIN pg_index AS i ON i.indrelid = p.relid "
            "JOIN pg_class AS c ON c.oid = i.indexrelid JOIN pg_am AS a ON a.oid = c.relam "
            "WHERE a.amname = 'hnsw'",
            (store.table(table).as_string(conn),),
        ).fetchone()
        plan = conn.execute(
            sql.SQL("EXPLAIN (FORMAT JSON) ") + statement,
            {"probes": [HalfVector(queries[0][0])], "weights": [1.0],
             "per_token": knobs.candidates_per_token, "depth": knobs.rescore_depth},
        ).fetchone()  # fmt: skip
        row.update(
            partitions=n,
            stage1_ms_p50=round(statistics.median(stage1_ms), 2),
            index_scans_per_probe=json.dumps(plan[0] if plan else "").count('"Index Scan"'),
            build_s=build_s,
            hnsw_bytes=int(index_bytes[0]) if index_bytes else 0,
        )
        rows.append(row)
        echo("  " + line(row) + f" stage 1 p50 {row['stage1_ms_p50']} ms")
    return rows


def _hashed_copy_ready(store: Store, table: str, coll: Collection) -> bool:
    ident = store.table(table).as_string(store.conn)
    row = store.conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NOT NULL",
        (ident, store.table(table + "_hnsw").as_string(store.conn)),
    ).fetchone()
    if not row or not row[0]:
        return False
    count = store.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(store.table(table)))
    return count.fetchone() == (read_sizes(store.conn, coll.spec).n_tokens,)


def _build_hashed_copy(store: Store, table: str, coll: Collection, n: int) -> float:
    """A copy of the collection's token rows, hash-partitioned by document id into ``n``
    partitions, with an HNSW index like the collection's; returns the build seconds."""
    started = time.perf_counter()
    conn, parent = store.conn, store.table(table)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(parent))
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (collection_id integer NOT NULL, doc_id bigint NOT NULL, "
            "position integer NOT NULL, embedding halfvec NOT NULL, tenant text) "
            "PARTITION BY HASH (doc_id)"
        ).format(parent)
    )
    for j in range(n):
        conn.execute(
            sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES WITH (MODULUS {}, REMAINDER {})")
            .format(store.table(f"{table}_{j}"), parent, sql.Literal(n), sql.Literal(j))
        )  # fmt: skip
    conn.execute(
        sql.SQL("INSERT INTO {} SELECT collection_id, doc_id, position, embedding, tenant FROM {}")
        .format(parent, store.table(f"tokens_{coll.id}"))
    )  # fmt: skip
    if store.maintenance_work_mem:
        conn.execute("SET maintenance_work_mem = %s", (store.maintenance_work_mem,))
    conn.execute(
        sql.SQL(
            "CREATE INDEX {} ON {} USING hnsw ((embedding::halfvec({})) halfvec_ip_ops) "
            "WITH (m = {}, ef_construction = {})"
        ).format(
            sql.Identifier(table + "_hnsw"), parent, sql.Literal(coll.dim),
            sql.Literal(coll.hnsw_m), sql.Literal(coll.hnsw_ef_construction),
        )
    )  # fmt: skip
    conn.execute(sql.SQL("ANALYZE {}").format(parent))
    return round(time.perf_counter() - started, 1)
