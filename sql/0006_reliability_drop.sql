-- Undoes 0006_reliability.sql: revision 0005's lexical_query(); migration 0006's downgrade
-- then runs 0005_search.sql again for revision 0005's search().

CREATE OR REPLACE FUNCTION {schema}.lexical_query(config regconfig, query_text text) RETURNS tsquery
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $body$
    SELECT pg_catalog.replace(pg_catalog.plainto_tsquery(config, query_text)::text, ' & ', ' | ')
           ::pg_catalog.tsquery
$body$;
