-- Revision 0005's passes(metadata, filter, filter_vars): the stage-1 condition of search()
-- and search_hybrid(): a document passes the metadata filter (a jsonpath predicate with its
-- variables, NULL: every document).

CREATE OR REPLACE FUNCTION {schema}.passes(metadata jsonb, filter jsonpath, filter_vars jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $body$
    SELECT filter IS NULL
        OR coalesce(pg_catalog.jsonb_path_match(metadata, filter, coalesce(filter_vars, '{{}}'), true), false)
$body$;
