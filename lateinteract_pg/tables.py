"""SQLAlchemy 2 table objects of our schema, for applications that join them with theirs.

The migrations (``migrations/steps/*.sql``) create these tables; these objects only describe
them, so never ``create_all`` them. A test checks that they match what the migrations create.

>>> from sqlalchemy import MetaData
>>> t = define_tables(MetaData(), schema="search")
>>> t.documents.fullname
'search.documents'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
import sqlalchemy
from pgvector.sqlalchemy import HALFVEC
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR

from .migrate import DEFAULT_SCHEMA

__all__ = [
    "Tables",
    "collections",
    "create_engine",
    "define_tables",
    "documents",
    "metadata",
    "tokens",
]


@dataclass(frozen=True)
class Tables:
    """The three tables of one schema."""

    collections: Table
    documents: Table
    tokens: Table


def define_tables(metadata: MetaData, schema: str = DEFAULT_SCHEMA) -> Tables:
    """Describe our tables in ``schema`` on ``metadata`` (yours, so foreign keys resolve)."""
    collections = Table(
        "collections",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("name", Text, nullable=False, unique=True),
        Column("dim", Integer, nullable=False),
        Column("encoder", JSONB),
        Column("n_documents", BigInteger, nullable=False),
        Column("n_tokens", BigInteger, nullable=False),
        Column("hnsw_m", Integer, nullable=False),
        Column("hnsw_ef_construction", Integer, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Column("candidate_index", Text, nullable=False),
        Column("pool_factor", Integer, nullable=False),
        Column("rescore_storage", Text, nullable=False),
        Column("text_search_config", Text, nullable=False),
        Column("index_pool_factor", Integer, nullable=False),
        schema=schema,
    )
    documents = Table(
        "documents",
        metadata,
        Column("id", BigInteger, primary_key=True),
        Column(
            "collection_id",
            Integer,
            ForeignKey(collections.c.id, ondelete="CASCADE"),
            nullable=False,
        ),
        Column("external_id", Text, nullable=False),
        Column("text", Text),
        Column("metadata", JSONB),
        Column("n_tokens", Integer, nullable=False),
        Column("matrix", LargeBinary),  # NULL where the collection keeps vectors instead
        Column("offsets", ARRAY(Integer, dimensions=2)),
        Column("dense", HALFVEC()),
        Column("tsv", TSVECTOR),  # written by a trigger from text
        Column("tenant", Text),
        Column("vectors", ARRAY(HALFVEC())),
        UniqueConstraint("collection_id", "external_id"),
        schema=schema,
    )
    tokens = Table(
        "tokens",
        metadata,
        Column("collection_id", Integer, primary_key=True),
        Column("doc_id", BigInteger, primary_key=True),
        Column("position", Integer, primary_key=True),
        Column("embedding", HALFVEC(), nullable=False),
        Column("tenant", Text),
        schema=schema,
    )
    return Tables(collections, documents, tokens)


def create_engine(dsn: str, **options: Any) -> sqlalchemy.Engine:
    """A SQLAlchemy engine (psycopg 3) for a libpq DSN or URI, e.g. :attr:`Store.dsn`."""
    return sqlalchemy.create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(dsn), **options
    )


metadata = MetaData()
_default = define_tables(metadata)
collections = _default.collections
documents = _default.documents
tokens = _default.tokens
