-- lexical_query(config, query_text): the full-text query of a text, any of its words
-- (plainto_tsquery's terms, OR-ed). Used by search_hybrid() and by the Python API. It refuses
-- a text of more than 1000 words: the server parses a tsquery recursively (about
-- 20,000 OR-ed words exhausted its stack).

CREATE OR REPLACE FUNCTION {schema}.lexical_query(config regconfig, query_text text)
RETURNS tsquery
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = {search_path}
AS $body$
DECLARE
    words tsquery := pg_catalog.plainto_tsquery(config, query_text);
BEGIN
    -- the words and the operators between them
    IF pg_catalog.numnode(words) > 2 * 1000 - 1 THEN
        RAISE EXCEPTION 'lateinteract: query_text has more than 1000 words'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN pg_catalog.replace(words::text, ' & ', ' | ')::pg_catalog.tsquery;
END
$body$;

COMMENT ON FUNCTION {schema}.lexical_query(regconfig, text) IS
    'lateinteract: the full-text query of a text: any of its words';
