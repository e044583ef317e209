-- Revision 0005's lexical_query(config, query_text): the full-text query of a text, any
-- of its words (plainto_tsquery's terms, OR-ed). Used by search_hybrid() and by the Python
-- API.

CREATE OR REPLACE FUNCTION {schema}.lexical_query(config regconfig, query_text text) RETURNS tsquery
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $body$
    SELECT pg_catalog.replace(pg_catalog.plainto_tsquery(config, query_text)::text, ' & ', ' | ')
           ::pg_catalog.tsquery
$body$;
