"""The bench's figures (matplotlib, drawn to PNG files without a display)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = ["metric_vs_size", "recall_latency"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def recall_latency(report: dict[str, Any], path: Path) -> None:
    """recall@k against exact MaxSim versus p50 latency, one series per system."""
    plt = _pyplot()
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row in [*report["systems"], *report["sweep"]]:
        name = row["system"].replace(" (defaults)", "")
        series[name].append((row["latency_ms"]["p50"], row["recall_at_k_vs_exact"]))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in series.items():
        points.sort()
        (line,) = ax.plot([p[0] for p in points], [p[1] for p in points], "o", label=name)
        front, best = [], -1.0  # the settings no faster setting beats on recall
        for latency, recall in points:
            if recall > best:
                front.append((latency, recall))
                best = recall
        ax.plot([p[0] for p in front], [p[1] for p in front], "-", color=line.get_color())
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency per query (ms, log scale)")
    ax.set_ylabel(f"recall@{report['k']} against exact MaxSim")
    ax.set_title(
        f"{report['name']}: {report['documents']} documents, {report['token_rows']} tokens"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def metric_vs_size(rows: list[dict[str, Any]], metric: str, label: str, path: Path) -> None:
    """One figure against the number of token rows, one series per system (``latency``:
    p50 solid and p95 dashed). Rows without the figure are left out."""
    plt = _pyplot()
    series: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for row in rows:
        value = row["p50_ms"] if metric == "latency" else row.get(metric)
        if value is not None:
            series[row["system"]].append((row["token_rows"], value, row["p95_ms"]))
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for name, points in series.items():
        points.sort()
        sizes = [p[0] for p in points]
        (line,) = ax.plot(sizes, [p[1] for p in points], marker="o", label=name)
        if metric == "latency":
            ax.plot(sizes, [p[2] for p in points], "--", color=line.get_color())
    ax.set_xscale("log")
    if metric != "recall_at_k_vs_exact":
        ax.set_yscale("log")
    ax.set_xlabel("token rows in the collection (log scale)")
    ax.set_ylabel(label)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
