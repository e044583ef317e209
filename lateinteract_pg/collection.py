"""A collection: documents as token matrices, searched with MaxSim.

:class:`Collection` is a facade: it checks arguments and hands writes to
:mod:`~lateinteract_pg.writer` and :mod:`~lateinteract_pg.indexes`, searches to
:mod:`~lateinteract_pg.search`, and reads to :mod:`~lateinteract_pg.reads`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from . import footprint, indexes, reads, writer
from .catalog import CollectionSpec, SpecField
from .documents import prepare_documents
from .errors import EncoderMismatch, InvalidInput
from .search import dense, filters, hybrid, late, passages, rerank
from .search.explain import explain as explain_sql
from .search.options import LateOptions, check_option_names
from .session import Session, retried_read
from .types import (
    CandidateIndex,
    CompactStats,
    Document,
    Hit,
    IngestStats,
    RescoreStorage,
    SearchStats,
    StorageReport,
    Tier,
    TokenMatch,
)
from .validation import (
    check_id,
    check_ids,
    check_k,
    check_tenant,
    check_tier,
    validate_batch,
    validate_query,
)

__all__ = ["Collection"]

log = logging.getLogger(__name__)


class Collection:
    """Documents of one collection; opened with :meth:`Store.collection`."""

    def __init__(self, store: Session, spec: CollectionSpec) -> None:
        self.store = store
        self.spec = spec
        self.encoder: Any = None
        self.reranker: Any = None
        self.last_search: SearchStats | None = None
        self.last_ingest: IngestStats | None = None

    # the collection's row, read-only: Store.collection() reads it, set_candidate_index
    # switches the one option that changes after creation
    id = SpecField[int]("id")
    name = SpecField[str]("name")
    dim = SpecField[int]("dim")
    encoder_settings = SpecField[dict[str, Any] | None]("encoder")
    hnsw_m = SpecField[int]("hnsw_m")
    hnsw_ef_construction = SpecField[int]("hnsw_ef_construction")
    candidate_index = SpecField[CandidateIndex]("candidate_index")
    pool_factor = SpecField[int]("pool_factor")
    rescore_storage = SpecField[RescoreStorage]("rescore_storage")
    text_search_config = SpecField[str]("text_search_config")

    def __repr__(self) -> str:
        return f"Collection({self.spec})"

    @property
    def conn(self) -> Any:
        return self.store.conn

    def attach_encoder(self, encoder: Any) -> None:
        """Use ``encoder`` for text; it must be the one that built the collection."""
        settings = encoder.settings()
        if self.spec.encoder is not None and self.spec.encoder != settings:
            raise EncoderMismatch(
                f"collection {self.name!r} was built with encoder {self.spec.encoder}, "
                f"not {settings}"
            )
        self.encoder = encoder

    def attach_reranker(self, reranker: Any) -> None:
        """Use ``reranker`` (a :class:`~lateinteract_pg.encoders.CrossEncoder`, or anything
        with ``score(query, texts)``) for ``search(..., tier="rerank")``."""
        self.reranker = rerank.check_reranker(reranker)

    def _require_encoder(self) -> Any:
        if self.encoder is None:
            raise InvalidInput(
                f"collection {self.name!r} has no encoder: open it with "
                "store.collection(name, encoder=...) to add or search text"
            )
        return self.encoder

    def _encode_query(self, text: Any) -> Any:
        encoder = self._require_encoder()
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput(f"query text must be a non-empty str, got {text!r}")
        return encoder.encode_queries([text])[0]

    # --- writes ------------------------------------------------------------------------

    def add(
        self,
        documents: Sequence[str | dict[str, Any] | Document],
        *,
        passage_words: int | None = None,
        progress: bool = False,
        tenant: str | None = None,
    ) -> list[str]:
        """Encode and add documents with the collection's encoder; returns the stored ids.

        A document is a str (its id: a hash of the text), a dict with ``text`` and optional
        ``id`` and ``metadata``, or a :class:`Document`; upsert by id, one transaction. With
        ``passage_words``, each is stored as passages ``"<id>#<n>"`` of at most that many words
        (``document_id`` and ``passage`` in their metadata; re-adding replaces them all;
        ``search(..., by_document=True)`` maps hits back). ``tenant``: see
        :meth:`add_embeddings`.
        """
        encoder = self._require_encoder()
        ids, texts, metadata, replaced = prepare_documents(documents, passage_words)
        tenant = check_tenant(tenant)
        vectors = encoder.encode_documents(texts, progress=progress)
        spans = encoder.document_spans(texts) if hasattr(encoder, "document_spans") else None
        batch = validate_batch(ids, vectors, self.dim, texts, metadata, spans)
        self.last_ingest = writer.write(
            self.store, self.spec, batch, documents_replaced=replaced, tenant=tenant
        )
        return ids

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
        """Add or replace documents given their token matrices, in one transaction; returns
        the number of token rows written.

        ``ids``: unique within the call, an existing id is replaced; ``embeddings``: one
        (n_tokens, dim) float array per id; ``texts``, ``metadata``, ``spans``: optional, one
        per id (a span array holds each token's (start, end) character offsets in its text,
        (-1, -1) for none; SQL ``explain()`` returns the matching piece of text). ``progress``:
        a bar (default: for batches over 200k tokens). ``rebuild_index``: drop the HNSW index
        and build it again after the COPY (True) or insert into it (False); default: rebuild
        when the batch adds at least 20% of the rows (searches of the collection wait for the
        commit meanwhile). ``tenant``: roles see these documents only when granted it
        (:meth:`Store.grant_tenant`); None: shared; ids stay unique across tenants.
        """
        batch = validate_batch(ids, embeddings, self.dim, texts, metadata, spans)
        self.last_ingest = writer.write(
            self.store,
            self.spec,
            batch,
            progress=progress,
            rebuild_index=rebuild_index,
            tenant=check_tenant(tenant),
        )
        return self.last_ingest.token_rows

    def delete(self, ids: Sequence[str] | str) -> int:
        """Delete documents (and their tokens) by id; returns how many existed."""
        return writer.delete(self.store, self.spec, check_ids(ids))

    def set_candidate_index(self, kind: CandidateIndex) -> None:
        """Switch the HNSW index stage 1 probes to ``"halfvec"`` or ``"binary"``, in one
        transaction (see :func:`lateinteract_pg.indexes.switch_candidate_index`); other open
        Collection objects of this collection see the change once opened again."""
        self.spec = indexes.switch_candidate_index(self.store, self.spec, kind)

    def compact(self, *, reindex: bool = True) -> CompactStats:
        """Reclaim what replaced and deleted documents left behind, without blocking
        searches or writes: VACUUM (ANALYZE), then (``reindex``) fresh HNSW, dense and
        full-text indexes by ``REINDEX CONCURRENTLY`` (:func:`lateinteract_pg.indexes.compact`).
        """
        return indexes.compact(self.store.dsn, self.spec, reindex)

    # --- reads -------------------------------------------------------------------------

    @retried_read
    def storage(self) -> StorageReport:
        """The bytes of each part of the collection on disk, and ``bytes_per_token`` all-in
        (:mod:`~lateinteract_pg.footprint`)."""
        return footprint.measure_storage(self.conn, self.spec)

    @retried_read
    def __len__(self) -> int:
        """How many documents this role can read."""
        return reads.count_documents(self.conn, self.spec)

    def __contains__(self, id: object) -> bool:
        try:
            return isinstance(id, str) and self.get(id) is not None
        except InvalidInput:  # an id no document can have
            return False

    @retried_read
    def get(self, id: str, *, embeddings: bool = False) -> Document | None:
        """The document with external id ``id``, or None."""
        return reads.get_document(self.conn, self.spec, check_id(id), embeddings)

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
        """Encode ``text`` as a query with the collection's encoder and search; ``tier`` and
        the other options as in :meth:`search_embeddings`. ``by_document``: passages (see
        :meth:`add`) count for their document, each once, as its best passage.
        """
        query = self._encode_query(text)
        wanted = check_k(k)
        if tier == "rerank" and by_document:
            # the late tier's best passage of each of the top documents, reranked once
            top = rerank.rerank_top(self.reranker, self.name, text, rerank_top)
            hits = passages.best_per_document(
                lambda n: self.search_embeddings(query, k=n, **options), max(wanted, top)
            )
            return self._reorder(text, hits, wanted)

        def retrieve(n: int) -> list[Hit]:
            return self.search_embeddings(
                query, k=n, tier=tier, rerank_top=rerank_top, query_text=text, **options
            )

        return passages.best_per_document(retrieve, wanted) if by_document else retrieve(wanted)

    @retried_read
    def search_embeddings(
        self,
        query: Any,
        k: int = 10,
        *,
        tier: Tier = "late",
        rerank_top: int | None = None,
        query_text: str | None = None,
        filter: dict[str, Any] | None = None,
        where: str | None = None,
        where_params: dict[str, Any] | None = None,
        tenant: str | None = None,
        **late_options: Any,
    ) -> list[Hit]:
        """The ``k`` documents with the highest MaxSim against ``query`` (m x dim).

        Scores are exact MaxSim of the stored vectors (pooled ones where the collection
        pools). The cheaper of the index plan (HNSW candidates, exact re-scoring) and the
        exhaustive scan runs, by estimated cost; ``late_options`` (``exact``, ``plan``,
        ``candidates_per_token``, ``ef_search``, ``rescore_depth``, ``merge_threshold``,
        ``imputation``, ``rescore_from``) are those of
        :class:`~lateinteract_pg.search.options.LateOptions`. ``last_search`` tells which
        plan ran, with its knobs and timings.

        ``tier``: ``"dense"`` (the cosine of the query's and each document's mean vector,
        through their own HNSW index), ``"late"`` (default: the above), or ``"rerank"`` (the
        late tier's top ``rerank_top``, default 50, ordered by the attached cross-encoder
        reading ``query_text`` with each document's text; its scores).

        Only documents that pass ``filter`` (the filter language of
        :mod:`lateinteract_pg.search.filters`, over their metadata), the SQL condition
        ``where`` (over the documents table as ``d``; values as ``%(name)s`` parameters in
        ``where_params``) and ``tenant`` (that tenant's and the shared documents) are
        returned, k of them when k pass. A role under the tenants' row-level security sees
        its tenants' and the shared documents only, and its searches plan accordingly.
        """
        q = validate_query(query, self.dim)
        k = check_k(k)
        tier = check_tier(tier)
        check_option_names(late_options)
        scope = {"filter": filter, "where": where, "where_params": where_params, "tenant": tenant}
        if tier == "rerank":
            top = rerank.rerank_top(self.reranker, self.name, query_text, rerank_top)
            hits = self.search_embeddings(q, k=max(k, top), **late_options, **scope)
            return self._reorder(str(query_text), hits, k)
        options = LateOptions.build(k, len(q), **late_options)
        condition = filters.document_condition(filter, where, where_params, tenant)
        with filters.condition_errors(where):
            if tier == "dense":
                hits, stats = dense.search_dense(
                    self.store, self.spec, q, k, options.exact, condition
                )
            else:
                hits, stats = late.search_late(self.store, self.spec, q, options, condition)
        self.last_search = stats
        return hits

    def _reorder(self, text: str, hits: list[Hit], k: int) -> list[Hit]:
        """The rerank tier over the late tier's ``hits``: ordered by the cross-encoder."""
        reranked, self.last_search = rerank.reorder(self.reranker, text, hits, k, self.last_search)
        return reranked

    def search_hybrid(self, text: str, k: int = 10, **options: Any) -> list[Hit]:
        """:meth:`search_hybrid_embeddings` of ``text`` encoded as a query."""
        return self.search_hybrid_embeddings(self._encode_query(text), text, k, **options)

    @retried_read
    def search_hybrid_embeddings(
        self,
        query: Any,
        query_text: str,
        k: int = 10,
        *,
        fusion: str = "weighted",
        weight: float = hybrid.DEFAULT_WEIGHT,
        depth: int = hybrid.DEFAULT_DEPTH,
        rrf_k: int = hybrid.DEFAULT_RRF_K,
        filter: dict[str, Any] | None = None,
        where: str | None = None,
        where_params: dict[str, Any] | None = None,
        tenant: str | None = None,
        **late_options: Any,
    ) -> list[Hit]:
        """Late interaction fused with PostgreSQL full text, as
        :mod:`lateinteract_pg.search.hybrid` describes: the late tier's best ``depth``
        documents (``late_options`` as in :meth:`search_embeddings`) and the best ``depth`` by
        full text of ``query_text``, fused by ``fusion="weighted"`` (``weight`` * late + (1 -
        ``weight``) * lexical, each scaled to 0..1) or ``"rrf"`` (reciprocal ranks, ``rrf_k``);
        ``score`` is the fused score; ``filter``, ``where`` and ``tenant`` hold for both lists.
        """
        query_text = hybrid.check_query_text(query_text)
        fused = hybrid.Fusion.build(fusion, weight, depth, rrf_k)
        k = check_k(k)
        q = validate_query(query, self.dim)
        condition = filters.document_condition(filter, where, where_params, tenant)
        with filters.condition_errors(where):
            hits, stats = hybrid.search_hybrid(
                self.store, self.spec, q, query_text, k, fused, condition, late_options
            )
        self.last_search = stats
        return hits

    def explain(self, text: str, id: str) -> list[TokenMatch]:
        """:meth:`explain_embeddings` of ``text`` encoded as a query."""
        return self.explain_embeddings(self._encode_query(text), id)

    @retried_read
    def explain_embeddings(self, query: Any, id: str) -> list[TokenMatch]:
        """Why document ``id`` scores what it does: per query token, the best-matching
        document token, its similarity and (when stored with spans) its piece of text.

        The similarities sum to the document's MaxSim. Runs the SQL function ``explain``;
        an unknown id gives an empty list.
        """
        q = validate_query(query, self.dim)
        with filters.condition_errors(None):
            return explain_sql(self.store, self.spec, q, check_id(id))

