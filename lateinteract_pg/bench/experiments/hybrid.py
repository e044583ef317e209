"""Hybrid search (``bench --hybrid``): late interaction alone, full text alone, and their
fusions, over every query."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from psycopg import sql

from ...collection import Collection
from ..config import FUSION_SETTINGS, BenchConfig
from ..runs import line, search_ids, summary, timed

__all__ = ["measure_hybrid"]


def measure_hybrid(
    config: BenchConfig,
    coll: Collection,
    queries: list[np.ndarray],
    texts: list[str],
    truth: list[list[str]],
    qrels: list[dict[str, int]],
    numpy_p50: float,
    echo: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Late interaction alone, full text alone and their fusions, over every query."""
    k = config.k
    lexical = sql.SQL(
        "SELECT d.external_id FROM {documents} AS d, "
        "(SELECT {lexical_query}(c.text_search_config::regconfig, %s) AS q FROM {collections} AS c "
        " WHERE c.id = {id}) AS w "
        "WHERE d.collection_id = {id} AND d.tsv @@ w.q "
        "ORDER BY ts_rank(d.tsv, w.q, 1) DESC, d.id LIMIT %s"
    ).format(
        documents=coll.store.table("documents"),
        lexical_query=coll.store.table("lexical_query"),
        collections=coll.store.table("collections"),
        id=sql.Literal(coll.id),
    )
    text_of = {id(q): t for q, t in zip(queries, texts)}

    def full_text(query: np.ndarray) -> list[str]:
        rows = coll.conn.execute(lexical, (text_of[id(query)], k)).fetchall()
        return [r[0] for r in rows]

    def fused(query: np.ndarray, fusion: str, weight: float) -> list[str]:
        hits = coll.search_hybrid_embeddings(
            query, text_of[id(query)], k=k, fusion=fusion, weight=weight
        )
        return [h.id for h in hits]

    systems: list[tuple[str, dict[str, Any], Callable[[np.ndarray], list[str]]]] = [
        ("late interaction alone", {}, partial(search_ids, coll, k=k)),
        ("full text alone (ts_rank, any query word)", {}, full_text),
    ]
    for fusion, weight in FUSION_SETTINGS:
        settings = {"fusion": fusion, "weight": weight}
        systems.append(("hybrid", settings, partial(fused, fusion=fusion, weight=weight)))
    rows = []
    for label, settings, search in systems:
        echo(f"hybrid: {label} {settings} ...")
        run = timed(search, queries)
        run.name, run.settings = label, settings or {"defaults": True}
        rows.append(summary(run, truth, qrels, k, numpy_p50))
        echo("  " + line(rows[-1]))
    return rows
