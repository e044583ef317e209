"""The catalogue: what a collection is (its row in the collections table) and the tables and
indexes that hold it.

Every collection has a row in ``collections``, its documents in the shared ``documents``
table, its token rows in a partition ``tokens_<id>`` of the ``tokens`` table (every token
vector, or, with ``index_pool_factor`` > 1, pooled ones while the document rows keep every
vector), and indexes:
``tokens_<id>_hnsw`` over the token vectors (stage 1's candidate index), and two partial
indexes on ``documents`` (``documents_<id>_dense_hnsw`` for the dense tier,
``documents_<id>_tsv`` for full text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from psycopg import sql

from .errors import CollectionNotFound, InvalidInput
from .types import CandidateIndex, CollectionInfo, MatrixLayout, RescoreStorage
from .validation import short_repr

__all__ = [
    "COLUMNS",
    "DEFAULT_OPTIONS",
    "STORAGE_PRESETS",
    "CollectionSpec",
    "Sizes",
    "SpecField",
    "creation_options",
    "dense_index_sql",
    "full_text_index_sql",
    "preset_options",
    "read_sizes",
]

T = TypeVar("T")

# what a collection's storage options are when its creator does not say (index pooling
# only where the rescoring layout is unpooled float16: see creation_options)
DEFAULT_OPTIONS: dict[str, Any] = {
    "candidate_index": "halfvec",
    "pool_factor": 1,
    "rescore_storage": "float16",
    "text_search_config": "english",
    "index_pool_factor": 3,
}

# Named storage options, store.collection(name, dim, storage=...): each sets the options it
# names, the rest keep their defaults; chosen from the measurements of docs/benchmarks.md
# ("Choosing a storage option").
STORAGE_PRESETS: dict[str, dict[str, Any]] = {
    # token rows (and the HNSW index) pooled by 3, every vector kept for re-scoring: at 128
    # dims 591 bytes a token against 1,215 unpooled, recall@10 0.968 against 0.945; at 384
    # dims 1,519 against 2,880, recall 0.996 against 0.994
    "default": {},
    "balanced": {"index_pool_factor": 3},
    # pooled by 4: 513 bytes a token at 128 dims, recall@10 0.958
    "compact": {"index_pool_factor": 4},
    # a token row for every vector (the layout before index pooling became the default)
    "unpooled": {"index_pool_factor": 1},
}


def creation_options(asked: dict[str, Any]) -> dict[str, Any]:
    """Every storage option of a new collection: those ``asked`` for, the defaults for the
    rest. Index pooling keeps every vector as float16 in the document rows, so where
    ``pool_factor`` > 1 or int8 re-scoring is asked for, ``index_pool_factor`` defaults to 1.
    """
    options = {**DEFAULT_OPTIONS, **asked}
    if "index_pool_factor" not in asked and (
        options["pool_factor"] != 1 or options["rescore_storage"] != "float16"
    ):
        options["index_pool_factor"] = 1
    return options


def preset_options(storage: Any) -> dict[str, Any]:
    """The storage options (pool_factor, rescore_storage, index_pool_factor) of a preset."""
    if not isinstance(storage, str) or storage not in STORAGE_PRESETS:
        raise InvalidInput(
            f"storage must be one of {tuple(STORAGE_PRESETS)}, got {short_repr(storage)}"
        )
    names = ("pool_factor", "rescore_storage", "index_pool_factor")
    return {**{n: DEFAULT_OPTIONS[n] for n in names}, **STORAGE_PRESETS[storage]}


# the columns a CollectionSpec is read from, in its field order after the schema
COLUMNS = (
    "id, name, dim, encoder, hnsw_m, hnsw_ef_construction, candidate_index, pool_factor, "
    "rescore_storage, text_search_config::text, index_pool_factor"
)

# the expression each kind of candidate index is built on; stage 1 orders by the same one
INDEX_EXPRESSION: dict[str, str] = {
    "halfvec": "(embedding::halfvec({dim})) halfvec_ip_ops",
    "binary": "(binary_quantize(embedding::halfvec({dim}))::bit({dim})) bit_hamming_ops",
}


@dataclass(frozen=True)
class CollectionSpec:
    """One collection's identity and storage options, as stored in ``collections``."""

    schema: str
    id: int
    name: str
    dim: int
    encoder: dict[str, Any] | None
    hnsw_m: int
    hnsw_ef_construction: int
    candidate_index: CandidateIndex
    pool_factor: int
    rescore_storage: RescoreStorage
    text_search_config: str
    index_pool_factor: int

    @classmethod
    def from_row(cls, schema: str, row: tuple[Any, ...]) -> CollectionSpec:
        """From a row of :data:`COLUMNS`."""
        return cls(schema, *row)

    def table(self, name: str) -> sql.Identifier:
        """A table (or function) of the collection's schema."""
        return sql.Identifier(self.schema, name)

    @property
    def documents(self) -> sql.Identifier:
        return self.table("documents")

    @property
    def matrix_layout(self) -> MatrixLayout:
        """How a document row holds the vectors stage 2 scores: the packed ``matrix`` in
        its ``rescore_storage``, or, where the token rows are pooled, ``vectors``."""
        return "vectors" if self.index_pool_factor > 1 else self.rescore_storage

    @property
    def tokens(self) -> sql.Identifier:
        """The partitioned parent of every collection's token rows."""
        return self.table("tokens")

    @property
    def partition(self) -> sql.Identifier:
        """This collection's own partition of the token table."""
        return self.table(f"tokens_{self.id}")

    @property
    def index_name(self) -> str:
        return f"tokens_{self.id}_hnsw"

    @property
    def token_index(self) -> sql.Identifier:
        """The HNSW candidate index over the partition's token vectors."""
        return self.table(self.index_name)

    @property
    def dense_index(self) -> sql.Identifier:
        return self.table(f"documents_{self.id}_dense_hnsw")

    @property
    def full_text_index(self) -> sql.Identifier:
        return self.table(f"documents_{self.id}_tsv")

    def __str__(self) -> str:
        """``name=..., dim=...`` and the options that differ from the defaults."""
        options = "".join(
            f", {name}={getattr(self, name)!r}"
            for name, default in DEFAULT_OPTIONS.items()
            if getattr(self, name) != default
        )
        return f"name={self.name!r}, dim={self.dim}{options}"

    def info(self, n_documents: int, n_tokens: int) -> CollectionInfo:
        return CollectionInfo(
            self.name,
            self.dim,
            n_documents,
            n_tokens,
            self.encoder,
            self.candidate_index,
            self.pool_factor,
            self.rescore_storage,
            self.text_search_config,
            self.hnsw_m,
            self.hnsw_ef_construction,
            self.index_pool_factor,
        )


class SpecField(Generic[T]):
    """A read-only attribute that is a field of its object's ``spec``."""

    def __init__(self, field: str) -> None:
        self.field = field

    def __get__(self, obj: Any, owner: type | None = None) -> T:
        return getattr(obj.spec, self.field)


@dataclass(frozen=True)
class Sizes:
    """A collection's counters and state, as a search plans with them."""

    n_documents: int
    n_tokens: int
    has_index: bool  # the HNSW candidate index exists
    restricted: bool  # the tenants' row-level security may hide documents from this role


def read_sizes(conn: Any, spec: CollectionSpec) -> Sizes:
    """The collection's :class:`Sizes`, in one round trip."""
    row = conn.execute(
        sql.SQL(
            "SELECT n_documents, n_tokens, to_regclass(%s) IS NOT NULL, "
            "row_security_active({documents}::regclass) AND {has_tenants}(id) "
            "FROM {collections} WHERE id = %s"
        ).format(
            documents=sql.Literal(spec.documents.as_string(conn)),
            has_tenants=spec.table("has_tenants"),
            collections=spec.table("collections"),
        ),
        (spec.token_index.as_string(conn), spec.id),
    ).fetchone()
    if row is None:
        raise CollectionNotFound(f"collection {spec.name!r} no longer exists")
    return Sizes(int(row[0]), int(row[1]), bool(row[2]), bool(row[3]))


def dense_index_sql(
    schema: str, collection_id: int, dim: int, m: int = 16, ef_construction: int = 64
) -> sql.Composed:
    """The dense tier's HNSW index of one collection: partial, over its documents' rows."""
    return sql.SQL(
        "CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw ((dense::halfvec({})) halfvec_ip_ops) "
        "WITH (m = {}, ef_construction = {}) WHERE collection_id = {}"
    ).format(
        sql.Identifier(f"documents_{collection_id}_dense_hnsw"),
        sql.Identifier(schema, "documents"),
        sql.Literal(dim),
        sql.Literal(m),
        sql.Literal(ef_construction),
        sql.Literal(collection_id),
    )


def full_text_index_sql(schema: str, collection_id: int) -> sql.Composed:
    """The hybrid search's GIN index of one collection: partial, over its documents' rows."""
    return sql.SQL(
        "CREATE INDEX IF NOT EXISTS {} ON {} USING gin (tsv) WHERE collection_id = {}"
    ).format(
        sql.Identifier(f"documents_{collection_id}_tsv"),
        sql.Identifier(schema, "documents"),
        sql.Literal(collection_id),
    )
