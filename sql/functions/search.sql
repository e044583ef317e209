-- search(collection, query, k, candidates_per_token, ef_search, rescore_depth, exact, filter,
-- filter_vars): the k documents with the highest exact MaxSim against the query, of those
-- that pass the metadata filter and that the caller may read. It checks the collection and
-- the query (query_collection), fills in and checks the knobs (search_knobs), picks the
-- candidates (search_candidates, stage 1) and scores them exactly (search_rescore, stage 2).
-- rerank_depth is the deprecated name of rescore_depth, accepted for one release.

CREATE OR REPLACE FUNCTION {schema}.search(
    collection text,
    query halfvec[],
    k integer DEFAULT 10,
    candidates_per_token integer DEFAULT NULL,
    ef_search integer DEFAULT NULL,
    rescore_depth integer DEFAULT NULL,
    exact boolean DEFAULT false,
    filter jsonpath DEFAULT NULL,
    filter_vars jsonb DEFAULT NULL,
    rerank_depth integer DEFAULT NULL
)
RETURNS TABLE (id text, score double precision, text text, metadata jsonb)
LANGUAGE plpgsql VOLATILE
SET search_path = {search_path}
AS $body$
#variable_conflict use_column
DECLARE
    c record;
    knobs record;
    candidates bigint[];
BEGIN
    c := query_collection(collection, query);
    IF rescore_depth IS NOT NULL AND rerank_depth IS NOT NULL THEN
        RAISE EXCEPTION 'lateinteract: give rescore_depth only (rerank_depth is its deprecated name)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    knobs := search_knobs(k, candidates_per_token, ef_search, coalesce(rescore_depth, rerank_depth),
                          array_length(query, 1));
    candidates := search_candidates(c.collection_id, query, knobs.per_token, knobs.ef, knobs.depth,
                                    exact, filter, filter_vars);
    RETURN QUERY SELECT * FROM search_rescore(c.collection_id, query, k, candidates);
END
$body$;

COMMENT ON FUNCTION {schema}.search(text, halfvec[], integer, integer, integer, integer, boolean,
                                    jsonpath, jsonb, integer) IS
    'lateinteract: the k documents with the highest MaxSim against query (exact scores), of those passing filter; rerank_depth: deprecated, use rescore_depth';
