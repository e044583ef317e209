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
    DimensionMismatch,
    EncoderMismatch,
    EncoderUnavailable,
    ExtensionMissing,
    InvalidInput,
    LateInteractError,
    ServerError,
)
from .maxsim import maxsim
from .store import Store, connect
from .types import CollectionInfo, Document, Hit, SearchStats

__version__ = "0.1.0"

__all__ = [
    "ColBERTEncoder",
    "Collection",
    "CollectionExists",
    "CollectionInfo",
    "CollectionNotFound",
    "DimensionMismatch",
    "Document",
    "EncoderMismatch",
    "EncoderUnavailable",
    "ExtensionMissing",
    "Hit",
    "InvalidInput",
    "LateInteractError",
    "SearchStats",
    "ServerError",
    "Store",
    "TokenEncoder",
    "connect",
    "maxsim",
]
