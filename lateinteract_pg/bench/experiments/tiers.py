"""The dense, late and rerank tiers (``bench --tiers``): quality, recall against exact
MaxSim, latency and bytes per document of each, on the first ``sweep_queries`` queries."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import numpy as np

from ...collection import Collection
from ...encoders import CrossEncoder, default_model_path
from ...store import Store
from ..config import BenchConfig, cache_dir
from ..runs import FirstQueries, line, search_ids, summary, timed

__all__ = ["measure_tiers"]


def _latency_only_cross_encoder(config: BenchConfig) -> Any:
    """all-MiniLM-L6-v2's encoder under a freshly initialised one-logit head: the size and
    shape of the common MS MARCO MiniLM-L-6 cross-encoder, so its cost is real; its
    scores are not (it was never trained), so quality is not reported with it."""
    import torch
    import transformers

    path = cache_dir(config) / "latency-only-cross-encoder"
    if not (path / "config.json").exists():
        torch.manual_seed(0)
        model = transformers.BertForSequenceClassification.from_pretrained(
            default_model_path(), num_labels=1
        )
        model.save_pretrained(path)
        transformers.AutoTokenizer.from_pretrained(default_model_path()).save_pretrained(path)
    return CrossEncoder.from_pretrained(str(path))


def measure_tiers(
    config: BenchConfig,
    store: Store,
    coll: Collection,
    storage: dict[str, Any],
    texts: list[str],
    first: FirstQueries,
    echo: Callable[[str], None],
) -> list[dict[str, Any]]:
    """One row per tier on the first ``sweep_queries`` queries: quality, recall against
    exact MaxSim, p50 latency (query encoding excluded) and bytes per document."""
    queries, truth, qrels, numpy_ms = first
    k = config.k
    trained = config.reranker is not None
    if config.reranker is not None:
        reranker = CrossEncoder.from_pretrained(config.reranker)
    else:
        reranker = _latency_only_cross_encoder(config)
    coll.attach_reranker(reranker)
    late_bytes = storage["bytes_per_document"]
    # warm again: the storage options' collections were read since the first warm-up
    timed(partial(search_ids, coll, k=k), queries)
    rows = []
    for tier, options, per_doc in [
        ("dense", {}, storage["dense_tier_bytes_per_document"]),
        ("late", {}, late_bytes),
        ("rerank", {"rerank_top": config.rerank_top}, late_bytes),
    ]:
        echo(f"tier {tier} ...")
        m = config.rerank_queries if tier == "rerank" else len(queries)

        texts_left = iter(texts)

        def search(
            query: np.ndarray,
            tier: str = tier,
            options: dict[str, Any] = options,
            texts_left: Iterator[str] = texts_left,
        ) -> list[str]:
            hits = coll.search_embeddings(
                query, k=k, tier=tier, query_text=next(texts_left), **options
            )
            return [h.id for h in hits]

        run = timed(search, queries[:m])
        run.name, run.settings = f"tier {tier}", options or {"defaults": True}
        row = summary(run, truth[:m], qrels[:m], k, statistics.median(numpy_ms[:m]))
        row.update(tier=tier, bytes_per_document=per_doc)
        if tier == "rerank":
            row["reranker"] = reranker.settings()
            if not trained:
                row["quality_meaningful"] = False
                row["note"] = (
                    "latency only: an untrained MS MARCO MiniLM-L-6-sized cross-encoder "
                    "(no trained checkpoint given; pass --reranker)"
                )
        rows.append(row)
        echo("  " + line(row))
    return rows
