-- dense_ef_search(k): the dense tier's hnsw.ef_search for a top-k search through its index,
-- as lateinteract_pg.limits.dense_ef_search (a test compares the two): twice k, at least
-- {DENSE_EF_MIN}; beyond k = {MAX_DENSE_INDEX_K} search_dense() scans exactly.

CREATE OR REPLACE FUNCTION {schema}.dense_ef_search(k integer)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $body$
    SELECT greatest({DENSE_EF_MIN}, 2 * least(k, {MAX_DENSE_INDEX_K}))
$body$;

COMMENT ON FUNCTION {schema}.dense_ef_search(integer) IS
    'lateinteract: hnsw.ef_search of the dense tier for a top-k search';
