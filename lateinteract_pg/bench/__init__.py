"""How well and how fast our search runs, measured: the benchmark against exact MaxSim and
the peers, its scaling run, and the load test. The core never imports this package.

The modules follow one run: :mod:`.datasets` reads a BEIR collection, :mod:`.encoding`
encodes it (cached), :mod:`.ingest` stores it, :mod:`.runs` times searches and sums them up
against exact MaxSim (:mod:`.metrics`), :mod:`.peers` and :mod:`.qps` measure the peers and
throughput, :mod:`.experiments` the optional measurements, :mod:`.benchmark` runs them all
(:class:`.config.BenchConfig` says which) and :mod:`.report` with :mod:`.plots` writes the
results. :mod:`.scaling` repeats the bench at growing sizes; :mod:`.load` is the load test.
:mod:`.docstrings` writes a collection without a download, from the installed packages.

It needs the ``bench`` extra (voyager, matplotlib, psutil) for the peers and the plots.
"""

from .benchmark import run_bench
from .config import BenchConfig
from .load import LoadConfig, load_failures, load_markdown, load_test, run_load
from .scaling import run_scaling

__all__ = [
    "BenchConfig",
    "LoadConfig",
    "load_failures",
    "load_markdown",
    "load_test",
    "run_bench",
    "run_load",
    "run_scaling",
]
