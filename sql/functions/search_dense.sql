-- The dense tier in SQL: the k documents whose dense vector is nearest (inner product) to
-- the normalised mean of the query's token vectors, through the collection's partial HNSW
-- index, with dense_ef_search(k) as hnsw.ef_search; above k = {MAX_DENSE_INDEX_K} (past what
-- one HNSW scan yields) an exact scan. score: the cosine.

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
    IF k IS NULL OR k < 1 OR k > {MAX_K} THEN
        RAISE EXCEPTION 'lateinteract: k must be in 1..{MAX_K}, got %', coalesce(k::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT l2_normalize(avg(q.v::vector))::halfvec INTO mean FROM pg_catalog.unnest(query) AS q(v);
    previous_ef := current_setting('hnsw.ef_search', true);
    PERFORM set_config('hnsw.ef_search', dense_ef_search(k)::text, true);
    -- the collection id as a literal, so that the planner matches the partial index
    RETURN QUERY EXECUTE pg_catalog.format($dense$
        SELECT d.external_id, -(d.dense::halfvec(%1$s) <#> $1)::double precision, d.text,
               d.metadata
        FROM documents AS d
        WHERE d.collection_id = %2$s AND d.dense IS NOT NULL
        ORDER BY (d.dense::halfvec(%1$s) <#> $1) %3$s
        LIMIT $2
        $dense$, c.dim, c.collection_id, CASE WHEN k > {MAX_DENSE_INDEX_K} THEN '+ 0' ELSE '' END)
    USING mean, k;
    PERFORM set_config('hnsw.ef_search', coalesce(previous_ef, '40'), true);
END
$body$;

COMMENT ON FUNCTION {schema}.search_dense(text, halfvec[], integer) IS
    'lateinteract: the dense tier: the k documents nearest to the mean of the query vectors';
