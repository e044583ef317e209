-- scan_budget(ef_search, passing_tokens, total_tokens): hnsw.max_scan_tuples for a filtered
-- probe of search_candidates(), when passing_tokens of the collection's total_tokens pass:
-- an iterative scan visits about ef_search / (share of tokens passing) tokens to find
-- ef_search that pass; the budget is 4 times that, at least 20000
-- (pgvector's default), at most 2000000. Integer arithmetic, exactly as
-- lateinteract_pg.limits.scan_budget (a test compares the two).

CREATE OR REPLACE FUNCTION {schema}.scan_budget(
    ef_search integer,
    passing_tokens bigint,
    total_tokens bigint
)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $body$
    SELECT least(2000000, greatest(20000,
        4 * ef_search::bigint * greatest(total_tokens, 1) / greatest(passing_tokens, 1)
    ))::integer
$body$;

COMMENT ON FUNCTION {schema}.scan_budget(integer, bigint, bigint) IS
    'lateinteract: hnsw.max_scan_tuples of a filtered stage-1 probe (share of tokens passing)';
