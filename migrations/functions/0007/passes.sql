-- passes(metadata, filter, filter_vars): the filter condition of search(), search_candidates()
-- and search_hybrid(): a document passes the metadata filter (a jsonpath predicate with its
-- variables; NULL: every document).

CREATE OR REPLACE FUNCTION {schema}.passes(metadata jsonb, filter jsonpath, filter_vars jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $body$
    SELECT filter IS NULL
        OR coalesce(pg_catalog.jsonb_path_match(metadata, filter, coalesce(filter_vars, '{{}}'), true), false)
$body$;

COMMENT ON FUNCTION {schema}.passes(jsonb, jsonpath, jsonb) IS
    'lateinteract: whether metadata passes a jsonpath filter (NULL filter: always)';
