"""Each storage option's recall against exact MaxSim, latency and bytes per token
(``bench --storage-options``): query-time options on the collection itself, the others on
copies of it built with the option."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from psycopg import sql

from ...collection import Collection
from ...store import Store
from ..config import INDEX_POOL_SWEEP, MERGE_THRESHOLDS, POOLED_SWEEP, BenchConfig
from ..encoding import Encoded
from ..ingest import ingest, storage_bytes
from ..runs import FirstQueries, line, probing, search_ids, summary, timed

__all__ = ["measure_storage_options"]


def measure_storage_options(
    config: BenchConfig,
    store: Store,
    name: str,
    enc: Encoded,
    coll: Collection,
    storage: dict[str, Any],
    first: FirstQueries,
    echo: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Each storage option's recall against exact MaxSim (of the vectors as encoded),
    latency and bytes per token, on the first ``sweep_queries`` queries.

    Query-time options run on the collection itself; the others on a copy of it built with
    that option (kept like the collection, under ``bench-NAME-OPTION``).
    """
    queries, truth, qrels, numpy_ms = first
    numpy_p50 = statistics.median(numpy_ms)
    options: list[tuple[str, dict[str, Any], list[dict[str, Any]]]] = [
        ("token rows pooled by 3, every vector re-scored (defaults)", {}, POOLED_SWEEP),
        ("query-token clustering", {}, [{"merge_threshold": t} for t in MERGE_THRESHOLDS]),
        # a token row per vector; its second setting re-scores from the token rows
        ("token rows unpooled", {"index_pool_factor": 1},
         [{}, {"rescore_from": "tokens"}, POOLED_SWEEP[1]]),
        ("binary candidate index", {"candidate_index": "binary"}, config.binary_settings),
        ("int8 matrices", {"rescore_storage": "int8"}, [{}]),
        ("pool factor 2", {"pool_factor": 2}, POOLED_SWEEP),
        ("pool factor 3", {"pool_factor": 3}, POOLED_SWEEP),
        *(
            (f"token rows pooled by {p}, every vector re-scored", {"index_pool_factor": p},
             POOLED_SWEEP)
            for p in INDEX_POOL_SWEEP
        ),
    ]  # fmt: skip
    out = []
    for option, collection_options, settings_list in options:
        echo(f"storage option: {option} ...")
        target, ingested, option_storage = coll, {"reused": True}, storage
        if collection_options:
            suffix = "-".join(f"{n.replace('_', '-')}-{v}" for n, v in collection_options.items())
            target, ingested = ingest(
                store, f"bench-{name}-{suffix}", enc, echo, config.keep, **collection_options
            )
            option_storage = storage_bytes(target, len(enc.doc_tokens))
            timed(partial(search_ids, target, k=config.k), queries)  # warm, as the collection was
        runs = []
        for knobs in settings_list:
            probes: list[int] = []
            run = timed(probing(target, probes, k=config.k, plan="index", **knobs), queries)
            run.name, run.settings = f"lateinteract_pg, {option}", knobs or {"defaults": True}
            run.extra = {"probes_mean": round(float(np.mean(probes)), 1)}
            runs.append(summary(run, truth, qrels, config.k, numpy_p50))
            echo("  " + line(runs[-1]))
        out.append(
            {
                "option": option,
                "collection": collection_options,
                "ingest": ingested,
                "storage": option_storage,
                "runs": runs,
            }
        )
        if collection_options and not config.keep:
            store.drop_collection(target.name)
            # its document rows' space goes back, or the next copy's share of the shared
            # documents table would count it
            store.conn.execute(sql.SQL("VACUUM {}").format(store.table("documents")))
    return out
