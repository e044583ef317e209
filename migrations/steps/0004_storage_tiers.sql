-- Storage options and the dense tier (migration 0004).
--   pool_factor:     documents' token vectors are pooled at ingest (1 = kept as encoded;
--                    2 keeps about half of them: see lateinteract_pg/pooling.py);
--   rescore_storage: the layout of documents.matrix, 'float16' or 'int8' (per-token scale);
--   documents.dense: one unit vector per document, the normalised mean of its token vectors
--                    as encoded (before pooling), for the dense tier (search_dense()); each
--                    collection has a partial HNSW index over it, documents_<id>_dense_hnsw.
ALTER TABLE {schema}.collections
    ADD COLUMN pool_factor integer NOT NULL DEFAULT 1
        CONSTRAINT collections_pool_factor_check CHECK (pool_factor BETWEEN 1 AND 16),
    ADD COLUMN rescore_storage text NOT NULL DEFAULT 'float16'
        CONSTRAINT collections_rescore_storage_check CHECK (rescore_storage IN ('float16', 'int8'));

ALTER TABLE {schema}.documents ADD COLUMN dense halfvec;

-- documents stored before this revision: the mean of their token rows
UPDATE {schema}.documents AS d
SET dense = m.v
FROM (
    SELECT doc_id, l2_normalize(avg(embedding::vector))::halfvec AS v
    FROM {schema}.tokens
    GROUP BY doc_id
) AS m
WHERE m.doc_id = d.id;
