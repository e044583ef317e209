"""The exceptions lateinteract_pg raises.

Every error the library raises on purpose derives from :class:`LateInteractError`::

    LateInteractError
    ├── ServerError              the embedded PostgreSQL could not be started or reached
    │   └── ConnectionLost       the connection broke (server killed, restarted, network):
    │                            reads were retried first; writes never are
    ├── StatementTimeout         a statement ran past the configured statement_timeout; its
    │   (TimeoutError)           transaction was rolled back
    ├── ExtensionMissing         pgvector is not installed in the database, or too old
    ├── CollectionNotFound       no collection of that name
    ├── CollectionExists         deprecated parent of CollectionMismatch (one release)
    │   └── CollectionMismatch   a collection of that name exists with other settings
    ├── EncoderMismatch          the collection was built by another encoder
    ├── EncoderUnavailable       the torch/transformers extra is not installed, or a
    │                            model checkpoint cannot be found or read
    ├── PermissionDenied         this database role may not do that (e.g. a read-only role
    │                            writing); the transaction was rolled back
    ├── InsecureSetup            a grant refused: the role could create objects where our
    │                            functions or pgvector live, and so escalate
    └── InvalidInput (ValueError)
        ├── DimensionMismatch    a vector's width differs from the collection's dim
        └── DocumentReferenced   a write would break a foreign key of the application's
                                 tables to our documents; it was rolled back

Other errors of the database driver (an unexpected server-side failure) are left as psycopg
errors.
"""

from __future__ import annotations

__all__ = [
    "CollectionExists",
    "CollectionMismatch",
    "CollectionNotFound",
    "ConnectionLost",
    "DimensionMismatch",
    "DocumentReferenced",
    "EncoderMismatch",
    "EncoderUnavailable",
    "ExtensionMissing",
    "InsecureSetup",
    "InvalidInput",
    "LateInteractError",
    "PermissionDenied",
    "ServerError",
    "StatementTimeout",
]


class LateInteractError(Exception):
    """Root of every error raised by lateinteract_pg."""


class ServerError(LateInteractError):
    """The embedded PostgreSQL server could not be started or reached."""


class ConnectionLost(ServerError):
    """The connection to the server broke. A read is retried on new connections first (see
    ``Store(retry_reads=...)``); a write never is: it was rolled back, unless the connection
    broke while its COMMIT was under way, so look before writing it again."""

    in_transaction = False  # lost inside a transaction: never retried


class StatementTimeout(LateInteractError, TimeoutError):
    """A statement ran longer than the session's ``statement_timeout`` and was cancelled; its
    transaction was rolled back."""


class ExtensionMissing(LateInteractError):
    """The pgvector extension is missing from the database or older than required."""


class CollectionNotFound(LateInteractError, KeyError):
    """No collection of the given name exists."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CollectionExists(LateInteractError):
    """Deprecated: catch :class:`CollectionMismatch`, raised where this was; kept one release
    as its parent so that existing handlers still catch it."""


class CollectionMismatch(CollectionExists):
    """A collection of that name exists with another ``dim`` or storage option than asked."""


class EncoderMismatch(LateInteractError):
    """The collection was built with a different encoder than the one given."""


class EncoderUnavailable(LateInteractError, ImportError):
    """torch/transformers are needed but not installed, or a checkpoint cannot be loaded."""


class PermissionDenied(LateInteractError, PermissionError):
    """The database role lacks a privilege for this operation (nothing was changed)."""


class InsecureSetup(LateInteractError):
    """A grant was refused, nothing changed: the role may create objects in our schema or
    pgvector's, where it could shadow an operator or function a search calls and run code
    with the rights of whoever searches."""


class InvalidInput(LateInteractError, ValueError):
    """An argument is malformed: empty, non-finite, duplicated or out of range."""


class DimensionMismatch(InvalidInput):
    """A vector's width differs from the collection's dimension."""


class DocumentReferenced(InvalidInput):
    """Another table still references a document this write removes (nothing was changed)."""
