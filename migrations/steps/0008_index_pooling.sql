-- Index pooling (migration 0008): a collection may keep its token rows, which the HNSW
-- candidate index is built over, pooled, and every token vector once in its document's row.
--   index_pool_factor: 1 (token rows hold every vector, as before) or 2..16 (token rows hold
--                      about 1/index_pool_factor of them, pooled; see
--                      lateinteract_pg/pooling.py);
--   documents.vectors: where index_pool_factor > 1, the document's token vectors in order,
--                      for exact re-scoring in Python and in the SQL functions (search_rescore,
--                      maxsim, explain); documents.matrix is then NULL. Stored uncompressed,
--                      as the matrix is.
ALTER TABLE {schema}.collections
    ADD COLUMN index_pool_factor integer NOT NULL DEFAULT 1
        CONSTRAINT collections_index_pool_factor_check CHECK (index_pool_factor BETWEEN 1 AND 16),
    ADD CONSTRAINT collections_index_pool_storage_check
        CHECK (index_pool_factor = 1 OR rescore_storage = 'float16');

ALTER TABLE {schema}.documents
    ADD COLUMN vectors halfvec[],
    ALTER COLUMN matrix DROP NOT NULL,
    ADD CONSTRAINT documents_vectors_check CHECK ((matrix IS NULL) <> (vectors IS NULL));
ALTER TABLE {schema}.documents ALTER COLUMN vectors SET STORAGE EXTERNAL;
