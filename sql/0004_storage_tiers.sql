-- Storage options and the dense tier (migration 0004).
--   pool_factor:     documents' token vectors are pooled at ingest (1 = kept as encoded;
--                    2 keeps about half of them: see lateinteract_pg/pooling.py);
--   rescore_storage: the layout of documents.matrix, 'float16' or 'int8' (per-token scale);
--   documents.dense: one unit vector per document, the normalised mean of its token vectors
--                    as encoded (before pooling), for the dense tier; each collection has a
--                    partial HNSW index over it, documents_<id>_dense_hnsw.
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

-- The dense tier in SQL: the k documents whose dense vector is nearest (inner product) to
-- the normalised mean of the query's token vectors, through the collection's partial HNSW
-- index; above k = 500 (past what one HNSW scan yields) an exact scan. score: the cosine.
CREATE OR REPLACE FUNCTION {schema}.search_dense(
    collection text,
    query halfvec[],
    k integer DEFAULT 10
)
RETURNS TABLE (id text, score double precision, text text, metadata jsonb)
LANGUAGE plpgsql VOLATILE
SET search_path = {search_path}
AS $body$
#variable_conflict use_column
DECLARE
    c record;
    mean halfvec;
    previous_ef text;
BEGIN
    c := query_collection(collection, query);
    IF k IS NULL OR k < 1 OR k > 100000 THEN
        RAISE EXCEPTION 'lateinteract: k must be in 1..100000, got %', coalesce(k::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT l2_normalize(avg(q.v::vector))::halfvec INTO mean FROM pg_catalog.unnest(query) AS q(v);
    previous_ef := current_setting('hnsw.ef_search', true);
    PERFORM set_config('hnsw.ef_search', greatest(64, 2 * least(k, 500))::text, true);
    -- the collection id as a literal, so that the planner matches the partial index
    RETURN QUERY EXECUTE pg_catalog.format($dense$
        SELECT d.external_id, -(d.dense::halfvec(%1$s) <#> $1)::double precision, d.text,
               d.metadata
        FROM documents AS d
        WHERE d.collection_id = %2$s AND d.dense IS NOT NULL
        ORDER BY (d.dense::halfvec(%1$s) <#> $1) %3$s
        LIMIT $2
        $dense$, c.dim, c.collection_id, CASE WHEN k > 500 THEN '+ 0' ELSE '' END)
    USING mean, k;
    PERFORM set_config('hnsw.ef_search', coalesce(previous_ef, '40'), true);
END
$body$;

COMMENT ON FUNCTION {schema}.search_dense(text, halfvec[], integer) IS
    'lateinteract: the dense tier: the k documents nearest to the mean of the query vectors';
