"""Throughput of our search: queries per second with 1, 2 and 4 concurrent clients, each
with its own Store (and so its own connections)."""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import numpy as np

from ..collection import Collection
from ..store import connect
from .config import BENCH_SCHEMA, CLIENTS, BenchConfig
from .metrics import percentile

__all__ = ["measure_qps"]


def _client(
    coll: Collection, queries: list[np.ndarray], k: int, deadline: float, out: list[float]
) -> None:
    """One QPS client: search ``queries`` round-robin until ``deadline``."""
    i = 0
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        coll.search_embeddings(queries[i % len(queries)], k=k)
        out.append((time.perf_counter() - started) * 1000)
        i += 1


def measure_qps(
    config: BenchConfig, name: str, queries: list[np.ndarray], k: int
) -> list[dict[str, Any]]:
    """Queries per second of our search with 1, 2 and 4 concurrent clients, each with its own
    Store (connections), for ``qps_seconds`` each."""
    out = []
    for clients in CLIENTS:
        stores = [connect(config.dsn, schema=BENCH_SCHEMA) for _ in range(clients)]
        colls = [s.collection(name, create=False) for s in stores]
        for coll in colls:  # warm each client's connections
            coll.search_embeddings(queries[0], k=k)
        latencies: list[list[float]] = [[] for _ in range(clients)]
        deadline = time.perf_counter() + config.qps_seconds
        started = time.perf_counter()
        threads = [
            threading.Thread(
                target=_client, args=(colls[c], queries[c::clients], k, deadline, latencies[c])
            )
            for c in range(clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        done = [x for per in latencies for x in per]
        out.append(
            {
                "clients": clients,
                "queries": len(done),
                "qps": round(len(done) / elapsed, 2),
                "p50_ms": round(statistics.median(done), 2) if done else None,
                "p95_ms": round(percentile(done, 95), 2),
            }
        )
        for s in stores:
            s.close()
    return out
