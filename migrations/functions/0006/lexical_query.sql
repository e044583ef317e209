-- Revision 0006's lexical_query(): revision 0005's, refusing a query text of more than
-- 1000 words (the server parses a tsquery recursively: about 20000 OR-ed words exhausted its
-- stack).

CREATE OR REPLACE FUNCTION {schema}.lexical_query(config regconfig, query_text text)
RETURNS tsquery
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = {search_path}
AS $body$
DECLARE
    words tsquery := pg_catalog.plainto_tsquery(config, query_text);
BEGIN
    IF pg_catalog.numnode(words) > 1999 THEN  -- 1000 words and the 999 operators between
        RAISE EXCEPTION 'lateinteract: query_text has more than 1000 words'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN pg_catalog.replace(words::text, ' & ', ' | ')::pg_catalog.tsquery;
END
$body$;
