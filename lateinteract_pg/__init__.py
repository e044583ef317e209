"""Late-interaction (ColBERT-style) retrieval inside PostgreSQL with pgvector.

>>> import lateinteract_pg as lip
>>> store = lip.connect()                               # doctest: +SKIP
>>> coll = store.collection("papers", dim=128)          # doctest: +SKIP
"""

from .colbert import ColBERTEncoder
from .collection import Collection
from .encoders import TokenEncoder
from .errors import (
    CollectionExists,
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
from .rerank import CrossEncoder
from .store import Store, connect
from .types import CollectionInfo, CompactStats, Document, Hit, SearchStats, TokenMatch

__version__ = "0.1.0"

__all__ = [
    "ColBERTEncoder",
    "Collection",
    "CollectionExists",
    "CollectionInfo",
    "CollectionNotFound",
    "CompactStats",
    "ConnectionLost",
    "CrossEncoder",
    "DimensionMismatch",
    "Document",
    "DocumentReferenced",
    "EncoderMismatch",
    "EncoderUnavailable",
    "ExtensionMissing",
    "Hit",
    "InsecureSetup",
    "InvalidInput",
    "LateInteractError",
    "PermissionDenied",
    "SearchStats",
    "ServerError",
    "StatementTimeout",
    "Store",
    "TokenEncoder",
    "TokenMatch",
    "connect",
    "maxsim",
    "open_pool",
    "pooled_store",
]
