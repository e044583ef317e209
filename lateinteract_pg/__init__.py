"""Late-interaction (ColBERT-style) retrieval inside PostgreSQL with pgvector.

>>> import lateinteract_pg as lip
>>> store = lip.connect()                               # doctest: +SKIP
>>> coll = store.collection("papers", dim=128)          # doctest: +SKIP
>>> lip.maxsim([[1.0, 0.0]], [[0.6, 0.8], [1.0, 0.0]])  # the exact reference, in numpy
1.0
"""

from .collection import Collection
from .encoders import ColBERTEncoder, CrossEncoder, Encoder, TokenEncoder, load_encoder
from .errors import (
    CollectionExists,
    CollectionMismatch,
    CollectionNotFound,
    ConnectionLost,
    DimensionMismatch,
    DocumentReferenced,
    EncoderMismatch,
    EncoderUnavailable,
    ExtensionMissing,
    InsecureSetup,
    InvalidInput,
    LateInteractError,
    PermissionDenied,
    ServerError,
    StatementTimeout,
)
from .maxsim import maxsim
from .pool import open_pool, pooled_store
from .store import Store, connect
from .types import (
    CollectionInfo,
    CompactStats,
    Document,
    Hit,
    IngestStats,
    SearchStats,
    StorageReport,
    TokenMatch,
)

__version__ = "0.1.0"

__all__ = [
    "ColBERTEncoder",
    "Collection",
    "CollectionExists",
    "CollectionInfo",
    "CollectionMismatch",
    "CollectionNotFound",
    "CompactStats",
    "ConnectionLost",
    "CrossEncoder",
    "DimensionMismatch",
    "Document",
    "DocumentReferenced",
    "Encoder",
    "EncoderMismatch",
    "EncoderUnavailable",
    "ExtensionMissing",
    "Hit",
    "IngestStats",
    "InsecureSetup",
    "InvalidInput",
    "LateInteractError",
    "PermissionDenied",
    "SearchStats",
    "ServerError",
    "StatementTimeout",
    "StorageReport",
    "Store",
    "TokenEncoder",
    "TokenMatch",
    "connect",
    "load_encoder",
    "maxsim",
    "open_pool",
    "pooled_store",
]
