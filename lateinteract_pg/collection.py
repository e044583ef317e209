"""A collection: documents as token matrices, searched with MaxSim."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg
from pgvector import HalfVector
from psycopg import sql
from psycopg.types.json import Jsonb
from tqdm.auto import tqdm

from . import candidates, filters, planner, pooling, rescore
from .connections import is_lost, write_errors
from .errors import CollectionNotFound, EncoderMismatch, InvalidInput
from .ingest import (
    Batch,
    check_id,
    check_tenant,
    check_text,
    pack_token_rows,
    short_repr,
    validate_batch,
    validate_query,
)
from .maxsim import top_k
from .store import check_candidate_index, retried_read
from .types import (
    TIERS,
    CandidateIndex,
    CompactStats,
    Document,
    Hit,
    IngestStats,
    PlanKind,
    SearchStats,
    Tier,
    TokenMatch,
)

if TYPE_CHECKING:
    from .store import Store

__all__ = ["Collection"]

log = logging.getLogger(__name__)

COPY_ROWS_PER_CHUNK = 50_000
PROGRESS_MIN_TOKENS = 200_000
# Rebuild the HNSW index around a load that adds at least this share of the rows. Measured
# on scifact vectors (384-d, 191k rows present, 2 cores): inserting into the graph cost
# 1.1 ms per row, rebuilding 0.17 ms per row of the whole table, so a rebuild pays off
# from about 18% (adding 48k rows: insert 53 s, rebuild 36 s).
REBUILD_RATIO = 0.2
MAX_K = 100_000
MAX_QUERY_WORDS = 1000  # a hybrid query's text: the server parses its words recursively
DEFAULT_RERANK_TOP = 50  # documents the cross-encoder reads in the rerank tier
FUSIONS = ("rrf", "weighted")
DEFAULT_HYBRID_DEPTH = 100  # documents each list of a hybrid search hands to the fusion
MAX_DENSE_INDEX_K = 500  # as in search_dense(): beyond, the dense tier scans exactly
SCAN_TUPLES = 20_000  # pgvector's hnsw.max_scan_tuples default: an iterative scan's budget
MAX_SCAN_TUPLES = 2_000_000  # what a filtered probe may visit at most


def filtered_probe_settings(store: Store, scan_tuples: int) -> dict[str, str]:
    """Planner settings for a filtered stage 1, local to the search's transaction."""
    settings = {
        # A filtered probe could also fetch the passing documents' tokens and sort them;
        # misled by estimates of jsonb conditions, the planner picks that even for half of
        # scifact (9 s a query, measured). When the filter is that selective our own planner
        # has chosen the exhaustive plan already, so here the HNSW walk is right.
        "enable_sort": "off",
    }
    if store.iterative_scans:  # pgvector >= 0.8: the probe scans on until k' tokens pass
        settings["hnsw.iterative_scan"] = "relaxed_order"
        settings["hnsw.max_scan_tuples"] = str(max(scan_tuples, SCAN_TUPLES))
    return settings


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
        raise InvalidInput(f"k must be an int in 1..{MAX_K}, got {short_repr(k)}")
    return int(k)


def _check_knob(name: str, value: Any, low: int = 1, high: int = 100_000) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInput(f"{name} must be an int, got {short_repr(value)}")
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be in {low}..{high}, got {short_repr(value)}")
    return int(value)


def _text_id(text: str) -> str:
    """The id of a document given as bare text: a hash of the text."""
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]


def normalise_documents(
    documents: Sequence[str | dict[str, Any] | Document],
) -> tuple[list[str], list[str], list[dict[str, Any] | None]]:
    """(ids, texts, metadata) of documents given as str, dict or Document."""
    if isinstance(documents, (str, dict, Document)) or not isinstance(documents, Sequence):
        raise InvalidInput("documents must be a list of str, dict or Document")
    ids: list[str] = []
    texts: list[str] = []
    metadata: list[dict[str, Any] | None] = []
    for doc in documents:
        if isinstance(doc, str):
            doc = Document(_text_id(doc), doc)
        elif isinstance(doc, dict):
            if set(doc) - {"id", "text", "metadata"} or "text" not in doc:
                raise InvalidInput(
                    f"a document dict has 'text' and optional 'id', 'metadata'; got {sorted(doc)}"
                )
            text = doc["text"] if isinstance(doc["text"], str) else ""
            doc = Document(doc.get("id") or _text_id(text), text, doc.get("metadata"))
        elif not isinstance(doc, Document):
            raise InvalidInput(
                f"a document must be a str, dict or Document, got {type(doc).__name__}"
            )
        if not isinstance(doc.text, str) or not doc.text.strip():
            raise InvalidInput(f"document {doc.id!r} has no text")
        ids.append(doc.id)
        texts.append(doc.text)
        metadata.append(doc.metadata)
    return ids, texts, metadata


def split_into_passages(
    ids: list[str], texts: list[str], metadata: list[dict[str, Any] | None], passage_words: int
) -> tuple[list[str], list[str], list[dict[str, Any] | None]]:
    """Passages of at most ``passage_words`` words, as (ids, texts, metadata) to store."""
    from .datasets import split_passages

    if passage_words < 8:
        raise InvalidInput(f"passage_words must be >= 8, got {passage_words}")
    out_ids: list[str] = []
    out_texts: list[str] = []
    out_meta: list[dict[str, Any] | None] = []
    for doc_id, text, meta in zip(ids, texts, metadata):
        for n, passage in enumerate(split_passages(text, passage_words)):
            out_ids.append(f"{doc_id}#{n}")
            out_texts.append(passage)
            out_meta.append({**(meta or {}), "document_id": doc_id, "passage": n})
    return out_ids, out_texts, out_meta


class Collection:
    """Documents of one collection; opened with :meth:`Store.collection`."""

    def __init__(
        self,
        store: Store,
        collection_id: int,
        name: str,
        dim: int,
        encoder_settings: dict[str, Any] | None,
        hnsw_m: int,
        hnsw_ef_construction: int,
        candidate_index: CandidateIndex = "halfvec",
        pool_factor: int = 1,
        rescore_storage: rescore.RescoreStorage = "float16",
        text_search_config: str = "english",
    ) -> None:
        self.store = store
        self.id = collection_id
        self.name = name
        self.dim = dim
        self.encoder_settings = encoder_settings
        self.encoder: Any = None
        self.hnsw_m = hnsw_m
        self.hnsw_ef_construction = hnsw_ef_construction
        self.candidate_index: CandidateIndex = candidate_index
        self.pool_factor = pool_factor
        self.rescore_storage: rescore.RescoreStorage = rescore_storage
        self.text_search_config = text_search_config
        self.reranker: Any = None
        self.last_search: SearchStats | None = None
        self.last_ingest: IngestStats | None = None
        self._tokens = store.table(f"tokens_{collection_id}")
        self._index_name = f"tokens_{collection_id}_hnsw"
        self._documents = store.table("documents")
        self._stage1: dict[str, sql.Composed] = {}
        self._fetch = rescore.fetch_sql(self._documents)
        self._scan = rescore.scan_sql(self._documents)
        self._token_rows = rescore.token_rows_sql(store.table("tokens"), collection_id)

    def __repr__(self) -> str:
        defaults = {
            "candidate_index": "halfvec",
            "pool_factor": 1,
            "rescore_storage": "float16",
            "text_search_config": "english",
        }
        options = "".join(
            f", {name}={getattr(self, name)!r}"
            for name, default in defaults.items()
            if getattr(self, name) != default
        )
        return f"Collection(name={self.name!r}, dim={self.dim}{options})"

    @property
    def conn(self) -> Any:
        return self.store.conn

    def attach_encoder(self, encoder: Any) -> None:
        """Use ``encoder`` for text; it must be the one that built the collection."""
        settings = encoder.settings()
        if self.encoder_settings is not None and self.encoder_settings != settings:
            raise EncoderMismatch(
                f"collection {self.name!r} was built with encoder {self.encoder_settings}, "
                f"not {settings}"
            )
        self.encoder = encoder

    def attach_reranker(self, reranker: Any) -> None:
        """Use ``reranker`` (a :class:`~lateinteract_pg.rerank.CrossEncoder`, or anything with
        ``score(query, texts)``) for ``search(..., tier="rerank")``."""
        if not callable(getattr(reranker, "score", None)):
            raise InvalidInput("a reranker needs a score(query, texts) method")
        self.reranker = reranker

    def _require_encoder(self) -> Any:
        if self.encoder is None:
            raise InvalidInput(
                f"collection {self.name!r} has no encoder: open it with "
                "store.collection(name, encoder=...) to add or search text"
            )
        return self.encoder

    def add(
        self,
        documents: Sequence[str | dict[str, Any] | Document],
        *,
        passage_words: int | None = None,
        progress: bool = False,
        tenant: str | None = None,
    ) -> list[str]:
        """Encode and add documents with the collection's encoder; returns the stored ids.

        Each document is a str (its id is a hash of the text), a dict with ``text`` and
        optional ``id`` and ``metadata``, or a :class:`Document`. Upsert by id, one
        transaction, as :meth:`add_embeddings`.

        With ``passage_words``, each document is split into passages of at most that many
        words (on paragraph boundaries) stored as ``"<id>#<n>"`` with ``document_id`` and
        ``passage`` in their metadata; re-adding a document replaces all its old passages,
        and ``search(..., by_document=True)`` maps hits back to documents.

        ``tenant``: the tenant the documents belong to (see :meth:`Store.grant_tenant`).
        """
        encoder = self._require_encoder()
        ids, texts, metadata = normalise_documents(documents)
        documents_replaced: list[str] = []
        if passage_words is not None:
            if isinstance(passage_words, bool) or not isinstance(passage_words, int):
                raise InvalidInput(f"passage_words must be an int, got {passage_words!r}")
            if len(set(ids)) != len(ids):
                raise InvalidInput("duplicate document id in one call")
            documents_replaced = ids
            ids, texts, metadata = split_into_passages(ids, texts, metadata, passage_words)
        vectors = encoder.encode_documents(texts, progress=progress)
        spans = encoder.document_spans(texts) if hasattr(encoder, "document_spans") else None
        batch = validate_batch(ids, vectors, self.dim, texts, metadata, spans)
        self._write(batch, None, None, documents_replaced, check_tenant(tenant))
        return ids

    def search(
        self,
        text: str,
        k: int = 10,
        *,
        tier: Tier = "late",
        rerank_top: int | None = None,
        by_document: bool = False,
        **options: Any,
    ) -> list[Hit]:
        """Encode ``text`` as a query with the collection's encoder and search.

        ``tier`` picks the point on the cost/accuracy spectrum: ``"dense"``, ``"late"`` or
        ``"rerank"``; see :meth:`search_embeddings` for them and the other options.

        ``by_document``: passages (see :meth:`add`) count for their document: each document
        appears once, as its best passage, under the document's id.
        """
        encoder = self._require_encoder()
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput(f"query text must be a non-empty str, got {text!r}")
        query = encoder.encode_queries([text])[0]

        if tier == "rerank" and by_document:
            # the late tier's best passage of each of the top documents, reranked once
            top = self._check_rerank(text, rerank_top)
            wanted = _check_k(k)
            hits = self._by_document(
                lambda n: self.search_embeddings(query, k=n, **options), max(wanted, top)
            )
            return self._reorder(text, hits, wanted, self.last_search)

        def retrieve(n: int) -> list[Hit]:
            return self.search_embeddings(
                query, k=n, tier=tier, rerank_top=rerank_top, query_text=text, **options
            )

        if not by_document:
            return retrieve(_check_k(k))
        return self._by_document(retrieve, _check_k(k))

    @staticmethod
    def _by_document(retrieve: Any, wanted: int) -> list[Hit]:
        """The best ``wanted`` documents, each once as its best passage: fetches deeper until
        the passages found cover that many documents."""
        fetch = wanted
        while True:
            hits = retrieve(fetch)
            best: dict[str, Hit] = {}
            for hit in hits:
                document = str((hit.metadata or {}).get("document_id", hit.id))
                best.setdefault(document, Hit(document, hit.score, hit.text, hit.metadata))
            if len(best) >= wanted or len(hits) < fetch or fetch >= MAX_K:
                return list(best.values())[:wanted]
            fetch = min(MAX_K, fetch * 4)

    def _check_rerank(self, query_text: Any, rerank_top: Any) -> int:
        """The rerank tier's depth, once its prerequisites are checked."""
        if self.reranker is None:
            raise InvalidInput(
                f"collection {self.name!r} has no reranker: attach_reranker(CrossEncoder"
                "(...)) or store.collection(name, reranker=...) first"
            )
        if not isinstance(query_text, str) or not query_text.strip():
            raise InvalidInput("the rerank tier needs the query's text: query_text=...")
        top = DEFAULT_RERANK_TOP if rerank_top is None else rerank_top
        return _check_knob("rerank_top", top, 1, MAX_K) or DEFAULT_RERANK_TOP

    def _reorder(self, text: str, hits: list[Hit], k: int, late: SearchStats | None) -> list[Hit]:
        """``hits`` ordered by the cross-encoder's scores; the best ``k``."""
        missing = [h.id for h in hits if not h.text]
        if missing:
            raise InvalidInput(
                f"the rerank tier reads document texts; these have none: {missing[:5]}"
            )
        started = time.perf_counter()
        scores = np.zeros(0)
        if hits:
            scores = np.asarray(self.reranker.score(text, [h.text for h in hits]), np.float64)
            if scores.shape != (len(hits),) or not np.isfinite(scores).all():
                raise InvalidInput(
                    f"the reranker returned {scores.shape} scores for {len(hits)} texts, or "
                    "non-finite ones: one finite score per text is needed"
                )
        order = sorted(range(len(hits)), key=lambda j: (-scores[j], j))[:k]
        reranked = [
            Hit(hits[j].id, float(scores[j]), hits[j].text, hits[j].metadata) for j in order
        ]
        if late is not None:
            rerank_ms = (time.perf_counter() - started) * 1000
            self.last_search = SearchStats(
                **{
                    **vars(late),
                    "tier": "rerank",
                    "k": k,
                    "reranked": len(hits),
                    "rerank_ms": rerank_ms,
                    "total_ms": late.total_ms + rerank_ms,
                }
            )
        return reranked

    # --- writes ------------------------------------------------------------------------

    def add_embeddings(
        self,
        ids: Sequence[str],
        embeddings: Sequence[Any],
        texts: Sequence[str | None] | None = None,
        metadata: Sequence[dict[str, Any] | None] | None = None,
        *,
        spans: Sequence[Any] | None = None,
        progress: bool | None = None,
        rebuild_index: bool | None = None,
        tenant: str | None = None,
    ) -> int:
        """Add or replace documents given their token matrices; one transaction.

        Parameters
        ----------
        ids : external ids (unique within the call); an existing id is replaced.
        embeddings : one (n_tokens, dim) float array per id.
        texts, metadata : optional, one per id (``None`` entries allowed).
        spans : optional, one per id: an (n_tokens, 2) int array of each token's (start,
            end) character offsets in its text, (-1, -1) for tokens without one; SQL
            ``explain()`` uses them to return the matching piece of text.
        progress : show a progress bar; default: for batches over 200k tokens.
        rebuild_index : drop the HNSW index before the COPY and build it again after (True),
            or insert into it (False). Default: rebuild when the batch adds at least 20% of
            the collection's rows, where that is faster. A rebuild locks the collection's
            token table until the transaction commits: searches of it wait meanwhile.
        tenant : the tenant these documents belong to: roles see them only when granted that
            tenant (:meth:`Store.grant_tenant`); None: shared. A document of one tenant
            cannot be replaced by another's (InvalidInput): ids are unique per collection.

        Returns the number of token rows written.
        """
        batch = validate_batch(ids, embeddings, self.dim, texts, metadata, spans)
        return self._write(batch, progress, rebuild_index, [], check_tenant(tenant))

    def _write(
        self,
        batch: Batch,
        progress: bool | None,
        rebuild_index: bool | None,
        documents_replaced: list[str],
        tenant: str | None = None,
    ) -> int:
        """Write a validated batch in one transaction; also removes the passages of
        ``documents_replaced``. Dense vectors come from the tokens as given, then the
        tokens are pooled if the collection pools."""
        dense = pooling.dense_vectors(batch.tokens, batch.offsets)
        batch = pooling.pool_batch(batch, self.pool_factor)
        with self.store.writing(f"adding to {self.name!r}"):
            replaced, remaining = self._lock_and_remove(batch.ids, documents_replaced, tenant)
            new_tokens = len(batch.tokens)
            has_index = self._has_index()
            # building HNSW over all rows at once beats inserting many rows into the graph
            if rebuild_index is None:
                rebuild_index = new_tokens >= REBUILD_RATIO * max(remaining, 1)
            rebuild = not has_index or rebuild_index
            if has_index and rebuild:
                self.conn.execute(sql.SQL("DROP INDEX {}").format(self._index_ident))
            started = time.perf_counter()
            doc_ids = self._insert_documents(batch, dense, tenant)
            self._copy_tokens(doc_ids, batch, progress, tenant)
            copied = time.perf_counter()
            if rebuild:
                self._build_index()
            self.conn.execute(
                sql.SQL(
                    "UPDATE {} SET n_documents = n_documents + %s, n_tokens = n_tokens + %s, "
                    "updated_at = now() WHERE id = %s"
                ).format(self.store.table("collections")),
                (len(batch.ids), new_tokens, self.id),
            )
        self.last_ingest = IngestStats(
            documents=len(batch.ids),
            token_rows=new_tokens,
            replaced=replaced,
            copy_s=copied - started,
            index_s=time.perf_counter() - copied,
            index_rebuilt=rebuild,
        )
        log.info("added %d documents (%d tokens) to %r", len(batch.ids), new_tokens, self.name)
        return new_tokens

    @property
    def _index_ident(self) -> sql.Identifier:
        return sql.Identifier(self.store.schema, self._index_name)

    def _has_index(self) -> bool:
        row = self.conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (self._index_ident.as_string(self.conn),)
        ).fetchone()
        return bool(row and row[0])

    def _lock_and_remove(
        self, ids: list[str], parents: Sequence[str] = (), tenant: str | bool | None = False
    ) -> tuple[int, int]:
        """Lock the collection row, delete documents with these ids or passages of these
        parent documents; unless ``tenant`` is False, they must belong to that tenant.

        Returns (documents removed, token rows left in the collection)."""
        row = self.conn.execute(
            sql.SQL("SELECT n_tokens FROM {} WHERE id = %s FOR UPDATE").format(
                self.store.table("collections")
            ),
            (self.id,),
        ).fetchone()
        if row is None:
            raise CollectionNotFound(f"collection {self.name!r} no longer exists")
        removed_docs, removed_tokens = self._delete_ids(ids, parents, tenant)
        return removed_docs, int(row[0]) - removed_tokens

    def _delete_ids(
        self, ids: list[str], parents: Sequence[str] = (), tenant: str | bool | None = False
    ) -> tuple[int, int]:
        which = sql.SQL("external_id = ANY(%s)")
        params: tuple[Any, ...] = (self.id, ids)
        if parents:  # the passages of re-added documents too
            which = sql.SQL("(external_id = ANY(%s) OR metadata ->> 'document_id' = ANY(%s))")
            params += (list(parents),)
        old = self.conn.execute(
            sql.SQL(
                "DELETE FROM {} WHERE collection_id = %s AND {} RETURNING id, n_tokens, tenant, "
                "external_id"
            ).format(self._documents, which),
            params,
        ).fetchall()
        if not old:
            return 0, 0
        others = [r[3] for r in old if tenant is not False and r[2] != tenant]
        if others:  # raised inside the transaction: nothing is deleted
            raise InvalidInput(
                f"documents {others[:5]} belong to another tenant than {tenant!r}: ids are "
                "unique per collection; give each tenant's documents their own ids"
            )
        self.conn.execute(
            sql.SQL("DELETE FROM {} WHERE doc_id = ANY(%s)").format(self._tokens),
            ([r[0] for r in old],),
        )
        removed_tokens = sum(int(r[1]) for r in old)
        self.conn.execute(
            sql.SQL(
                "UPDATE {} SET n_documents = n_documents - %s, n_tokens = n_tokens - %s, "
                "updated_at = now() WHERE id = %s"
            ).format(self.store.table("collections")),
            (len(old), removed_tokens, self.id),
        )
        return len(old), removed_tokens

    def _insert_documents(
        self, batch: Batch, dense: np.ndarray, tenant: str | None = None
    ) -> np.ndarray:
        n = len(batch.ids)
        sequence = self.conn.execute(
            "SELECT pg_get_serial_sequence(%s, 'id')", (self._documents.as_string(self.conn),)
        ).fetchone()[0]
        rows = self.conn.execute(
            "SELECT nextval(%s::regclass) FROM generate_series(1, %s)", (sequence, n)
        ).fetchall()
        doc_ids = np.array([r[0] for r in rows], dtype=np.int64)
        lengths = batch.lengths
        copy_sql = sql.SQL(  # the tsvector is the trigger's (sql/0005_real_collections.sql)
            "COPY {} (id, collection_id, external_id, text, metadata, n_tokens, matrix, offsets, "
            "dense, tenant) FROM STDIN WITH (FORMAT BINARY)"
        ).format(self._documents)
        matrices = rescore.pack_matrices(batch.tokens, batch.offsets, self.rescore_storage)
        with self.conn.cursor().copy(copy_sql) as copy:
            copy.set_types(
                [
                    "int8", "int4", "text", "text", "jsonb", "int4", "bytea", "int4[]", "halfvec",
                    "text",
                ]
            )  # fmt: skip
            for j in range(n):
                meta, spans = batch.metadata[j], batch.spans[j]
                copy.write_row(
                    (
                        int(doc_ids[j]),
                        self.id,
                        batch.ids[j],
                        batch.texts[j],
                        None if meta is None else Jsonb(meta),
                        int(lengths[j]),
                        matrices[j],
                        None if spans is None else spans.tolist(),
                        HalfVector(dense[j]),
                        tenant,
                    )
                )
        return doc_ids

    def _copy_tokens(
        self, doc_ids: np.ndarray, batch: Batch, progress: bool | None, tenant: str | None
    ) -> None:
        total = len(batch.tokens)
        show = total >= PROGRESS_MIN_TOKENS if progress is None else progress
        copy_sql = sql.SQL(
            "COPY {} (collection_id, doc_id, position, embedding, tenant) FROM STDIN "
            "WITH (FORMAT BINARY)"
        ).format(self._tokens)
        with (
            tqdm(total=total, unit="tok", desc=f"COPY {self.name}", disable=not show) as bar,
            self.conn.cursor().copy(copy_sql) as copy,
        ):
            chunks = pack_token_rows(self.id, doc_ids, batch, COPY_ROWS_PER_CHUNK, tenant)
            for rows, payload in chunks:
                copy.write(payload)
                bar.update(rows)

    def set_candidate_index(self, kind: CandidateIndex) -> None:
        """Switch the HNSW index stage 1 probes to ``"halfvec"`` or ``"binary"``.

        One transaction: the new index is built next to the old one (searches keep using the
        old one meanwhile; writes wait), then replaces it. Nothing changes on an error. Other
        open Collection objects of this collection see the change once opened again.
        """
        kind = check_candidate_index(kind)
        collections = self.store.table("collections")
        previous = self.candidate_index
        try:
            with self.store.writing(f"switching {self.name!r}"):
                row = self.conn.execute(
                    sql.SQL("SELECT candidate_index, n_tokens FROM {} WHERE id = %s FOR UPDATE")
                    .format(collections), (self.id,),
                ).fetchone()  # fmt: skip
                if row is None:
                    raise CollectionNotFound(f"collection {self.name!r} no longer exists")
                self.candidate_index = kind
                had_index = self._has_index()
                if row[0] == kind and (had_index or not row[1]):
                    return
                self.conn.execute(
                    sql.SQL("UPDATE {} SET candidate_index = %s, updated_at = now() WHERE id = %s")
                    .format(collections), (kind, self.id),
                )  # fmt: skip
                if row[1]:
                    self._build_index(replace=had_index)
        except BaseException:
            self.candidate_index = previous
            raise
        finally:
            self._stage1.clear()
        log.info("candidate index of %r is now %s", self.name, kind)

    def _build_index(self, replace: bool = False) -> None:
        """Build the candidate index; with ``replace``, under a new name, then swap it in."""
        started = time.perf_counter()
        if self.store.maintenance_work_mem:
            self.conn.execute(
                "SELECT set_config('maintenance_work_mem', %s, true)",
                (self.store.maintenance_work_mem,),
            )
        expression = candidates.INDEX_EXPRESSION[self.candidate_index]
        name = self._index_name + ("_new" if replace else "")
        self.conn.execute(
            sql.SQL("CREATE INDEX {} ON {} USING hnsw (" + expression + ") WITH (m = {m}, "
                    "ef_construction = {ef})").format(
                sql.Identifier(name),
                self._tokens,
                dim=sql.Literal(self.dim),
                m=sql.Literal(self.hnsw_m),
                ef=sql.Literal(self.hnsw_ef_construction),
            )
        )  # fmt: skip
        if replace:
            self.conn.execute(sql.SQL("DROP INDEX {}").format(self._index_ident))
            self.conn.execute(
                sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                    sql.Identifier(self.store.schema, name), sql.Identifier(self._index_name)
                )
            )
        # Stage 1 filters the parent table on collection_id; until the partition has
        # statistics the planner guesses that filter keeps 0.5% of the rows and prefers
        # sorting them to the HNSW index (PostgreSQL 16 and 18, a fresh load; tested).
        # ANALYZE tells it the filter keeps every row.
        self.conn.execute(sql.SQL("ANALYZE {} (collection_id)").format(self._tokens))
        # and that the dense tier's partial index covers this collection's documents
        self.conn.execute(sql.SQL("ANALYZE {} (collection_id)").format(self._documents))
        log.info("built HNSW index of %r in %.1f s", self.name, time.perf_counter() - started)

    def delete(self, ids: Sequence[str] | str) -> int:
        """Delete documents (and their tokens) by id; returns how many existed."""
        if isinstance(ids, str):
            ids = [ids]
        if not isinstance(ids, (Sequence, set, frozenset)):
            raise InvalidInput(f"ids must be a str or a list of str, got {short_repr(ids)}")
        id_list = [check_id(i) for i in ids]
        with self.store.writing(f"deleting from {self.name!r}"):
            removed, _ = self._lock_and_remove(id_list)
        return removed

    def compact(self, *, reindex: bool = True) -> CompactStats:
        """Reclaim what replaced and deleted documents left behind, without blocking
        searches or writes.

        VACUUM (ANALYZE) the collection's token table and the documents table: dead rows
        and their index entries are removed, and HNSW repairs the graph around deleted
        tokens. With ``reindex`` (default), the HNSW candidate index, the dense index and the
        full-text index are then rebuilt with ``REINDEX CONCURRENTLY``: fresh graphs, as dense
        as after a bulk load. Runs on a connection of its own, outside any transaction.
        """
        started = time.perf_counter()
        schema = self.store.schema
        relations = {
            "tokens": self._tokens,
            "hnsw": self._index_ident,
            "dense": sql.Identifier(schema, f"documents_{self.id}_dense_hnsw"),
            "full_text": sql.Identifier(schema, f"documents_{self.id}_tsv"),
        }
        with psycopg.connect(self.store.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))

            def sizes() -> dict[str, int]:
                return {
                    name: int(
                        conn.execute(
                            "SELECT coalesce(pg_total_relation_size(to_regclass(%s)), 0)",
                            (ident.as_string(conn),),
                        ).fetchone()[0]  # type: ignore[index]
                    )
                    for name, ident in relations.items()
                }

            before = sizes()
            row = conn.execute(  # as counted by the statistics system: approximate
                "SELECT n_dead_tup FROM pg_stat_all_tables WHERE relid = %s::regclass",
                (self._tokens.as_string(conn),),
            ).fetchone()
            with write_errors(f"compacting {self.name!r}", lambda: is_lost(conn)):
                conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(self._tokens))
                conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(self._documents))
                if reindex:
                    for name in ("hnsw", "dense", "full_text"):
                        exists = conn.execute(
                            "SELECT to_regclass(%s) IS NOT NULL",
                            (relations[name].as_string(conn),),
                        ).fetchone()
                        if exists and exists[0]:
                            conn.execute(
                                sql.SQL("REINDEX INDEX CONCURRENTLY {}").format(relations[name])
                            )
            after = sizes()
        stats = CompactStats(
            dead_token_rows=int(row[0]) if row else 0,
            bytes_before=before,
            bytes_after=after,
            reindexed=reindex,
            seconds=time.perf_counter() - started,
        )
        log.info("compacted %r: %s", self.name, stats)
        return stats

    # --- reads -------------------------------------------------------------------------

    @retried_read
    def __len__(self) -> int:
        """How many documents this role can read."""
        n_docs, _, _, restricted = self._sizes()
        return self._count_matching(sql.SQL("true"), {})[0] if restricted else n_docs

    def _sizes(self) -> tuple[int, int, bool, bool]:
        """(documents, token rows, whether the HNSW index exists, whether the tenants'
        row-level security may hide some of the documents from this role), in one round
        trip."""
        row = self.conn.execute(
            sql.SQL(
                "SELECT n_documents, n_tokens, to_regclass(%s) IS NOT NULL, "
                "row_security_active({documents}::regclass) AND {has_tenants}(id) "
                "FROM {collections} WHERE id = %s"
            ).format(
                documents=sql.Literal(self._documents.as_string(self.conn)),
                has_tenants=self.store.table("has_tenants"),
                collections=self.store.table("collections"),
            ),
            (self._index_ident.as_string(self.conn), self.id),
        ).fetchone()
        if row is None:
            raise CollectionNotFound(f"collection {self.name!r} no longer exists")
        return int(row[0]), int(row[1]), bool(row[2]), bool(row[3])

    def __contains__(self, id: object) -> bool:
        try:
            return isinstance(id, str) and self.get(id) is not None
        except InvalidInput:  # an id no document can have
            return False

    @retried_read
    def get(self, id: str, *, embeddings: bool = False) -> Document | None:
        """The document with external id ``id``, or None."""
        check_id(id)
        row = self.conn.execute(
            sql.SQL(
                "SELECT id, text, metadata, n_tokens FROM {} "
                "WHERE collection_id = %s AND external_id = %s"
            ).format(self._documents),
            (self.id, id),
        ).fetchone()
        if row is None:
            return None
        matrix = None
        if embeddings:
            packed = rescore.fetch_matrices(
                self.conn, self._fetch, np.array([row[0]]), self.dim, self.rescore_storage
            )
            matrix = packed.float32()
        return Document(id, row[1], row[2], int(row[3]), matrix)

    def _hits(self, ranked: list[tuple[int, float]]) -> list[Hit]:
        if not ranked:
            return []
        rows = self.conn.execute(
            sql.SQL("SELECT id, external_id, text, metadata FROM {} WHERE id = ANY(%s)").format(
                self._documents
            ),
            ([doc for doc, _ in ranked],),
        ).fetchall()
        by_id = {r[0]: r[1:] for r in rows}
        return [
            Hit(by_id[doc][0], score, by_id[doc][1], by_id[doc][2])
            for doc, score in ranked
            if doc in by_id
        ]

    @retried_read
    def search_embeddings(
        self,
        query: Any,
        k: int = 10,
        *,
        exact: bool = False,
        candidates_per_token: int | None = None,
        ef_search: int | None = None,
        rerank_depth: int | None = None,
        merge_threshold: float = 1.0,
        imputation: candidates.Imputation = "zero",
        plan: PlanKind | None = None,
        tier: Tier = "late",
        rescore_from: str = "documents",
        rerank_top: int | None = None,
        query_text: str | None = None,
        filter: dict[str, Any] | None = None,
        where: str | None = None,
        where_params: dict[str, Any] | None = None,
        tenant: str | None = None,
    ) -> list[Hit]:
        """The ``k`` documents with the highest MaxSim against ``query`` (m x dim).

        Scores are exact MaxSim of the stored vectors (pooled ones where the collection
        pools; int8 ones, within about 0.5%, where it stores int8). ``exact=True`` scores
        every document; otherwise the cheaper of the index plan (HNSW candidates, exact
        re-scoring) and the exhaustive scan is chosen by estimated cost, or forced with
        ``plan``. ``rescore_from="tokens"`` re-scores from the token rows instead of the
        per-document matrices (to compare the two). ``last_search`` tells which plan ran,
        with its knobs and timings.

        Tiers (``tier``), from cheapest to most accurate:

        - ``"dense"``: one vector per side, the normalised means of the query's and of each
          document's token vectors (as encoded, before pooling), through their own HNSW
          index; scores are their cosine similarity;
        - ``"late"`` (default): the above;
        - ``"rerank"``: the late tier's top ``rerank_top`` (default 50, at least ``k``),
          ordered by the attached cross-encoder (``attach_reranker``) reading
          ``query_text`` with each document's text; scores are the cross-encoder's.

        Only documents that pass ``filter`` (the filter language of
        :mod:`lateinteract_pg.filters`, over their metadata) and the SQL condition ``where``
        (columns of the documents table as ``d.metadata``, ``d.text``, ...; values as named
        parameters ``%(name)s`` given in ``where_params``) are returned, k of them when k
        pass: a selective condition makes the exhaustive plan cheaper, and the index plan's
        HNSW scans continue until enough tokens pass (pgvector >= 0.8). ``tenant``: only
        that tenant's documents. A role under the tenants' row-level security sees its
        tenants' and the shared documents only, and its searches plan accordingly.
        """
        started = time.perf_counter()
        q = validate_query(query, self.dim)
        k = _check_k(k)
        if tier not in TIERS:
            raise InvalidInput(f"tier must be one of {TIERS}, got {tier!r}")
        if tier == "rerank":
            top = self._check_rerank(query_text, rerank_top)
            options: dict[str, Any] = {
                "exact": exact,
                "candidates_per_token": candidates_per_token,
                "ef_search": ef_search,
                "rerank_depth": rerank_depth,
                "merge_threshold": merge_threshold,
                "imputation": imputation,
                "plan": plan,
                "rescore_from": rescore_from,
                "filter": filter,
                "where": where,
                "where_params": where_params,
                "tenant": tenant,
            }
            hits = self.search_embeddings(q, k=max(k, top), **options)
            return self._reorder(str(query_text), hits, k, self.last_search)
        condition = filters.document_condition(filter, where, where_params, tenant)
        if tier == "dense":
            with filters.condition_errors(where), self.store.lock, self.store.snapshot():
                if condition is None and self._sizes()[3]:  # row-level security hides some
                    condition = (sql.SQL("true"), {})
                hits = self._search_dense(q, k, exact, condition)
            self.last_search = SearchStats(
                plan="dense",
                tier="dense",
                k=k,
                query_tokens=len(q),
                total_ms=(time.perf_counter() - started) * 1000,
            )
            return hits
        if rescore_from not in ("documents", "tokens"):
            raise InvalidInput(
                f"rescore_from must be 'documents' or 'tokens', got {rescore_from!r}"
            )
        knobs = planner.default_knobs(k)
        per_token = (
            _check_knob("candidates_per_token", candidates_per_token, 1, planner.MAX_EF_SEARCH)
            or knobs.candidates_per_token
        )
        ef = _check_knob("ef_search", ef_search, 1, planner.MAX_EF_SEARCH) or knobs.ef_search
        depth = _check_knob("rerank_depth", rerank_depth) or knobs.rerank_depth
        # an HNSW scan yields at most ef_search rows
        knobs = planner.Knobs(per_token, max(per_token, ef), depth)
        if imputation not in ("zero", "kth"):
            raise InvalidInput(f"imputation must be 'zero' or 'kth', got {imputation!r}")
        if plan not in (None, "index", "exhaustive"):
            raise InvalidInput(f"plan must be 'index', 'exhaustive' or None, got {plan!r}")
        if not isinstance(merge_threshold, (int, float)) or not 0.0 < merge_threshold <= 1.0:
            raise InvalidInput(f"merge_threshold must be in (0, 1], got {merge_threshold}")
        probes, weights = candidates.merge_query_tokens(q, merge_threshold)
        # one snapshot for every statement: a document written meanwhile is seen whole or not
        with self.store.lock, self.store.snapshot(), filters.condition_errors(where):
            n_docs, n_tokens, has_index, restricted = self._sizes()
            scan_tuples = SCAN_TUPLES
            if restricted and condition is None:  # row-level security hides documents
                condition = (sql.SQL("true"), {})
            costs = planner.estimate_costs(n_tokens, n_docs, self.dim, len(probes), knobs)
            if condition is not None:
                matched_docs, matched_tokens = self._count_matching(*condition)
                # the exhaustive plan reads the matching documents only; the index plan's
                # HNSW scans visit about 1/selectivity as many tokens to find k' that pass
                matched = planner.estimate_costs(
                    matched_tokens, matched_docs, self.dim, len(probes), knobs
                )
                selectivity = max(matched_docs / max(n_docs, 1), 1e-3)
                costs = {"index": costs["index"] / selectivity, "exhaustive": matched["exhaustive"]}
                # an iterative scan visits about k' / (share of tokens passing) tokens
                passing = max(matched_tokens / max(n_tokens, 1), 1e-6)
                scan_tuples = int(
                    min(MAX_SCAN_TUPLES, max(SCAN_TUPLES, 4 * knobs.ef_search / passing))
                )
            if exact:
                plan = "exhaustive"
            elif plan is None:
                plan = planner.choose_plan(costs, has_index)
            if plan == "exhaustive":
                ranked, stats = self._search_exhaustive(q, k, condition)
            else:
                ranked, stats = self._search_index(
                    q, k, probes, weights, knobs, imputation, rescore_from == "tokens", condition,
                    scan_tuples,
                )  # fmt: skip
            hits = self._hits(ranked)
        stats.update(
            plan=plan,
            k=k,
            query_tokens=len(q),
            total_ms=(time.perf_counter() - started) * 1000,
            estimated_cost=dict(costs),
        )
        self.last_search = SearchStats(**stats)
        return hits

    def search_hybrid(
        self,
        text: str,
        k: int = 10,
        **options: Any,
    ) -> list[Hit]:
        """:meth:`search_hybrid_embeddings` of ``text`` encoded as a query."""
        encoder = self._require_encoder()
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput(f"query text must be a non-empty str, got {text!r}")
        return self.search_hybrid_embeddings(encoder.encode_queries([text])[0], text, k, **options)

    @retried_read
    def search_hybrid_embeddings(
        self,
        query: Any,
        query_text: str,
        k: int = 10,
        *,
        fusion: str = "weighted",
        weight: float = 0.7,
        depth: int = DEFAULT_HYBRID_DEPTH,
        rrf_k: int = 60,
        filter: dict[str, Any] | None = None,
        where: str | None = None,
        where_params: dict[str, Any] | None = None,
        tenant: str | None = None,
        **late_options: Any,
    ) -> list[Hit]:
        """Late interaction fused with PostgreSQL full text.

        Two lists of ``depth`` documents: the late tier's best by MaxSim against ``query``
        (searched with the knobs of a top-``k`` search, k' and N, re-scoring at least
        ``depth`` candidates; ``late_options`` as in :meth:`search_embeddings` override
        them), and the best by full text:
        documents whose text holds any word of ``query_text`` in the collection's text
        search configuration, ranked by ``ts_rank`` with length normalisation. They are
        fused in one SQL statement (the SQL function ``fuse``), and the top ``k`` returned:

        - ``fusion="weighted"`` (default, with ``weight=0.7``: the best measured on scifact
          and cranfield): ``weight * late score + (1 - weight) * lexical score``, each scaled
          to 0..1 by the min and max of its list;
        - ``fusion="rrf"``: ``weight / (rrf_k + late rank) + (1 - weight) / (rrf_k +
          lexical rank)``.

        A document missing from a list gets nothing from it; ``score`` is the fused score.
        ``filter``, ``where`` and ``tenant`` hold for both lists.
        """
        started = time.perf_counter()
        check_text(query_text, "query_text")
        if not query_text.strip():
            raise InvalidInput("query_text must be a non-empty str")
        if len(query_text.split()) > MAX_QUERY_WORDS:
            raise InvalidInput(f"query_text has more than {MAX_QUERY_WORDS} words")
        if fusion not in FUSIONS:
            raise InvalidInput(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or not 0.0 <= weight <= 1.0
        ):
            raise InvalidInput(f"weight must be a number in 0..1, got {weight!r}")
        depth = _check_knob("depth", depth, 1, MAX_K) or DEFAULT_HYBRID_DEPTH
        rrf_k = _check_knob("rrf_k", rrf_k, 0, 1_000_000) or 0
        k = _check_k(k)
        condition = filters.document_condition(filter, where, where_params, tenant)
        # the late list at the effort of a top-k search (k' and N of k, N >= depth): its top
        # k is as good as search_embeddings(k) finds, its tail is exact scores of candidates
        knobs = planner.default_knobs(k)
        late_options = {
            "candidates_per_token": knobs.candidates_per_token,
            "ef_search": knobs.ef_search,
            "rerank_depth": min(MAX_K, max(knobs.rerank_depth, depth)),
            **late_options,
        }
        with self.store.lock, self.store.snapshot():
            late = self.search_embeddings(
                query, k=depth, filter=filter, where=where, where_params=where_params,
                tenant=tenant, **late_options,
            )  # fmt: skip
            late_stats = self.last_search
            lexical_started = time.perf_counter()
            with filters.condition_errors(where):
                rows = self.conn.execute(
                    self._hybrid_sql(condition),
                    {
                        "late_ids": [h.id for h in late],
                        "late_scores": [h.score for h in late],
                        "query_text": query_text,
                        "depth": depth,
                        "fusion": fusion,
                        "weight": float(weight),
                        "rrf_k": rrf_k,
                        "k": k,
                        **(condition[1] if condition else {}),
                    },
                ).fetchall()
        hits = [Hit(r[0], float(r[1]), r[4], r[5]) for r in rows]
        if late_stats is not None:
            done = time.perf_counter()
            self.last_search = SearchStats(
                **{
                    **vars(late_stats),
                    "k": k,
                    "fusion": fusion,
                    "lexical_matches": int(rows[0][6]) if rows else 0,
                    "lexical_ms": (done - lexical_started) * 1000,
                    "total_ms": (done - started) * 1000,
                }
            )
        return hits

    def _hybrid_sql(self, condition: filters.Condition | None) -> sql.Composed:
        """The full-text list and the fusion with the late list, as one statement."""
        return sql.SQL(
            """
            WITH words AS (
                SELECT {lexical_query}(c.text_search_config::regconfig, %(query_text)s) AS q
                FROM {collections} AS c WHERE c.id = {id}
            ), lexical AS (
                SELECT d.external_id AS id,
                       ts_rank(d.tsv, w.q, 1)::double precision AS score,
                       row_number() OVER (ORDER BY ts_rank(d.tsv, w.q, 1) DESC, d.id) AS r
                FROM {documents} AS d, words AS w
                WHERE d.collection_id = {id} AND d.tsv @@ w.q AND {condition}
                ORDER BY r
                LIMIT %(depth)s
            )
            SELECT f.id, f.score, f.late_rank, f.lexical_rank, d.text, d.metadata,
                   (SELECT count(*) FROM lexical)
            FROM {fuse}(
                %(late_ids)s::text[], %(late_scores)s::double precision[],
                (SELECT array_agg(x.id ORDER BY x.r) FROM lexical AS x),
                (SELECT array_agg(x.score ORDER BY x.r) FROM lexical AS x),
                %(fusion)s, %(weight)s, %(rrf_k)s, %(k)s) AS f
            JOIN {documents} AS d ON d.collection_id = {id} AND d.external_id = f.id
            ORDER BY f.score DESC, f.id
            """
        ).format(
            lexical_query=self.store.table("lexical_query"),
            fuse=self.store.table("fuse"),
            collections=self.store.table("collections"),
            documents=self._documents,
            id=sql.Literal(self.id),
            condition=condition[0] if condition else sql.SQL("true"),
        )

    def explain(self, text: str, id: str) -> list[TokenMatch]:
        """:meth:`explain_embeddings` of ``text`` encoded as a query."""
        encoder = self._require_encoder()
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput(f"query text must be a non-empty str, got {text!r}")
        return self.explain_embeddings(encoder.encode_queries([text])[0], id)

    @retried_read
    def explain_embeddings(self, query: Any, id: str) -> list[TokenMatch]:
        """Why document ``id`` scores what it does: per query token, the best-matching
        document token, its similarity and (when stored with spans) its piece of text.

        The similarities sum to the document's MaxSim. Runs the SQL function ``explain``;
        an unknown id gives an empty list.
        """
        q = validate_query(query, self.dim)
        rows = self.conn.execute(
            sql.SQL("SELECT * FROM {}(%s, %s, %s)").format(self.store.table("explain")),
            ([HalfVector(v) for v in q], self.name, check_id(id)),
        ).fetchall()
        return [
            TokenMatch(
                query_token=int(i) - 1,
                position=int(pos),
                similarity=float(sim),
                start=None if start is None or start < 0 else int(start),
                end=None if end is None or end < 0 else int(end),
                piece=piece,
            )
            for i, pos, sim, start, end, piece in rows
        ]

    def _search_dense(
        self,
        q: np.ndarray,
        k: int,
        exact: bool = False,
        where: filters.Condition | None = None,
    ) -> list[Hit]:
        """The dense tier: what the SQL function ``search_dense`` does, with the query's mean
        vector taken here (one statement, no plpgsql: a few milliseconds less)."""
        mean = pooling.dense_vectors(q, np.array([0, len(q)]))[0]
        distance = sql.SQL("d.dense::halfvec({}) <#> %(q)s").format(sql.Literal(self.dim))
        if exact or k > MAX_DENSE_INDEX_K:  # past what one HNSW scan yields: an exact scan
            distance = sql.SQL("({}) + 0").format(distance)
        else:
            self.store.set_session("hnsw.ef_search", str(max(64, 2 * k)))
        if where is not None and self.store.iterative_scans:  # scan on until k rows pass
            self.store.set_local(self.conn, {"hnsw.iterative_scan": "relaxed_order"})
        condition, params = where if where is not None else (sql.SQL("true"), {})
        rows = self.conn.execute(
            sql.SQL(
                "SELECT d.external_id, -({distance}), d.text, d.metadata FROM {documents} AS d "
                "WHERE d.collection_id = {id} AND d.dense IS NOT NULL AND {condition} "
                "ORDER BY {distance} LIMIT %(k)s"
            ).format(
                distance=distance,
                documents=self._documents,
                id=sql.Literal(self.id),
                condition=condition,
            ),
            {"q": HalfVector(mean), "k": k, **params},
        ).fetchall()
        if where is not None:  # relaxed order: HNSW may return rows slightly out of order
            rows.sort(key=lambda r: -r[1])
        return [Hit(r[0], float(r[1]), r[2], r[3]) for r in rows]

    def _count_matching(self, where: sql.Composable, params: dict[str, Any]) -> tuple[int, int]:
        """(documents, tokens) of this collection that pass a compiled filter."""
        row = self.conn.execute(
            sql.SQL(
                "SELECT count(*), coalesce(sum(d.n_tokens), 0) FROM {} AS d "
                "WHERE d.collection_id = {} AND {}"
            ).format(self._documents, sql.Literal(self.id), where),
            params,
        ).fetchone()
        return int(row[0]), int(row[1])

    def _search_exhaustive(
        self, q: np.ndarray, k: int, where: filters.Condition | None = None
    ) -> tuple[list[tuple[int, float]], dict]:
        started = time.perf_counter()
        if where is not None:  # score exactly every document that passes the filter
            ids = self.conn.execute(
                sql.SQL("SELECT d.id FROM {} AS d WHERE d.collection_id = {} AND {}").format(
                    self._documents, sql.Literal(self.id), where[0]
                ),
                where[1],
            ).fetchall()
            doc_ids = np.array([r[0] for r in ids], dtype=np.int64)
            scored = [
                rescore.score_candidates(
                    self.conn, self._fetch, q, doc_ids[i : i + 256], self.dim, self.rescore_storage
                )
                for i in range(0, len(doc_ids), 256)
            ]
            ranked = self._rank([s[0] for s in scored], [s[1] for s in scored], k)
            elapsed = (time.perf_counter() - started) * 1000
            return ranked, {"stage2_ms": elapsed, "rescored_tokens": sum(s[2] for s in scored)}
        all_ids: list[np.ndarray] = []
        all_scores: list[np.ndarray] = []
        read = 0
        batches = rescore.scan_all(self.conn, self._scan, self.id, self.dim, self.rescore_storage)
        for packed in batches:
            all_ids.append(packed.ids)
            all_scores.append(packed.maxsim(q))
            read += len(packed.tokens)
        ranked = self._rank(all_ids, all_scores, k)
        elapsed = (time.perf_counter() - started) * 1000
        return ranked, {"stage2_ms": elapsed, "rescored_tokens": read}

    def _search_index(
        self,
        q: np.ndarray,
        k: int,
        probes: np.ndarray,
        weights: np.ndarray,
        knobs: planner.Knobs,
        imputation: candidates.Imputation,
        from_token_rows: bool = False,
        where: filters.Condition | None = None,
        scan_tuples: int = 0,
    ) -> tuple[list[tuple[int, float]], dict]:
        """Stage 1 over the HNSW index, stage 2 exact. With ``where``, each probe's iterative
        scan may visit up to ``scan_tuples`` tokens to find k' that pass."""
        started = time.perf_counter()
        statement = self._stage1.get(imputation)
        params: dict[str, Any] = {}
        if where is not None:  # not cached: the filter's shape varies
            statement = candidates.candidate_sql(
                self.store.table("tokens"), self.id, self.dim, imputation, self.candidate_index,
                self._documents, where[0],
            )  # fmt: skip
            params = where[1]
        elif statement is None:
            statement = candidates.candidate_sql(
                self.store.table("tokens"), self.id, self.dim, imputation, self.candidate_index
            )
            self._stage1[imputation] = statement
        # The probes, then the candidates, are split between the store's reader connections
        # (one per core); a single connection runs stage 1 as one statement.
        readers = self.store.readers(len(probes))
        for conn in readers:
            self.store.set_session("hnsw.ef_search", str(knobs.ef_search), conn)
            if where is not None:
                self.store.set_local(conn, filtered_probe_settings(self.store, scan_tuples))
        per_token, depth, n = knobs.candidates_per_token, knobs.rerank_depth, len(readers)
        if n == 1:
            cand_ids, _ = candidates.stage1(
                self.conn, statement, probes, weights, per_token, depth, params
            )
        else:
            parts = self.store.run_parallel(
                [
                    partial(
                        candidates.stage1, conn, statement, probes[j::n], weights[j::n],
                        per_token, None, params,
                    )
                    for j, conn in enumerate(readers)
                ]
            )  # fmt: skip
            cand_ids = candidates.merge_partial_scores(parts, depth)
        middle = time.perf_counter()
        fetchers = readers[: max(1, min(n, len(cand_ids)))]
        scored = self.store.run_parallel(
            [
                partial(
                    rescore.score_candidates, conn,
                    self._token_rows if from_token_rows else self._fetch, q,
                    cand_ids[j :: len(fetchers)], self.dim, self.rescore_storage,
                    from_token_rows,
                )
                for j, conn in enumerate(fetchers)
            ]
        )  # fmt: skip
        ranked = self._rank([ids for ids, _, _ in scored], [sc for _, sc, _ in scored], k)
        read = sum(r for _, _, r in scored)
        done = time.perf_counter()
        return ranked, {
            "probes": len(probes),
            "candidates_per_token": knobs.candidates_per_token,
            "ef_search": knobs.ef_search,
            "rerank_depth": knobs.rerank_depth,
            "candidates": len(cand_ids),
            "connections": n,
            "rescored_tokens": read,
            "stage1_ms": (middle - started) * 1000,
            "stage2_ms": (done - middle) * 1000,
        }

    @staticmethod
    def _rank(ids: list[np.ndarray], scores: list[np.ndarray], k: int) -> list[tuple[int, float]]:
        if not ids:
            return []
        flat_ids = np.concatenate(ids)
        flat_scores = np.concatenate(scores)
        best = top_k(flat_scores, flat_ids.tolist(), k)  # ties: by internal id, as in SQL
        return [(int(doc), score) for doc, score in best]
