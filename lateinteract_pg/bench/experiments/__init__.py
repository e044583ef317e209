"""The bench's optional measurements, one module each, run by :func:`run_bench` when its
flag is given: ``--storage-options``, ``--tiers``, ``--filters``, ``--hybrid`` and
``--hash-partitions`` and ``--cold``."""

from .cold import measure_cold
from .filters import measure_filters
from .hybrid import measure_hybrid
from .partitions import measure_hash_partitions
from .storage_options import measure_storage_options
from .tiers import measure_tiers

__all__ = [
    "measure_cold",
    "measure_filters",
    "measure_hash_partitions",
    "measure_hybrid",
    "measure_storage_options",
    "measure_tiers",
]
