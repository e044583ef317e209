-- search_knobs(k, candidates_per_token, ef_search, rescore_depth, query_vectors): search()'s
-- arguments checked and its knobs filled in: per query token the HNSW probe's candidates
-- (per_token) and hnsw.ef_search (ef, at least per_token: a scan yields at most ef rows), and
-- the candidate documents re-scored exactly (depth). A NULL knob gets the Python path's
-- default for k and a query of query_vectors vectors,
-- lateinteract_pg.limits.default_knobs(k, query_vectors) (a test compares the two):
-- recall@k >= 0.99 measured against exact MaxSim.

CREATE OR REPLACE FUNCTION {schema}.search_knobs(
    k integer,
    candidates_per_token integer DEFAULT NULL,
    ef_search integer DEFAULT NULL,
    rescore_depth integer DEFAULT NULL,
    query_vectors integer DEFAULT 1,
    OUT per_token integer,
    OUT ef integer,
    OUT depth integer
)
LANGUAGE plpgsql IMMUTABLE
SET search_path = {search_path}
AS $body$
BEGIN
    IF k IS NULL OR k < 1 OR k > {MAX_K} THEN
        RAISE EXCEPTION 'lateinteract: k must be in 1..{MAX_K}, got %', coalesce(k::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    per_token := coalesce(candidates_per_token,
                          least({MAX_EF_SEARCH}, greatest({CANDIDATES_MIN}, {CANDIDATES_PER_K} * k)));
    ef := greatest(per_token, coalesce(ef_search, per_token));
    depth := coalesce(rescore_depth, least({MAX_K},
                      greatest({CANDIDATE_DOCUMENTS_MIN}, {CANDIDATE_DOCUMENTS_PER_K} * k,
                               {CANDIDATE_DOCUMENTS_PER_QUERY_VECTOR} * coalesce(query_vectors, 1))));
    IF per_token NOT BETWEEN 1 AND {MAX_EF_SEARCH} OR ef_search NOT BETWEEN 1 AND {MAX_EF_SEARCH}
       OR depth NOT BETWEEN 1 AND {MAX_K} THEN
        RAISE EXCEPTION 'lateinteract: candidates_per_token and ef_search must be in '
            '1..{MAX_EF_SEARCH}, rescore_depth in 1..{MAX_K}'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$body$;

COMMENT ON FUNCTION {schema}.search_knobs(integer, integer, integer, integer, integer) IS
    'lateinteract: search()''s knobs for a top-k search with a query of query_vectors vectors (per_token, ef, depth), defaults filled in and checked';
