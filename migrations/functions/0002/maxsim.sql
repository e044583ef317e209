-- Revision 0002's maxsim(query, collection, id): the exact MaxSim of one document (NULL
-- when the id does not exist).

CREATE OR REPLACE FUNCTION {schema}.maxsim(query halfvec[], collection text, id text)
RETURNS double precision
LANGUAGE plpgsql STABLE
SET search_path = {search_path}
AS $body$
#variable_conflict use_column
DECLARE
    c record;
    doc bigint;
    result double precision;
BEGIN
    c := query_collection(collection, query);
    SELECT d.id INTO doc FROM documents AS d
    WHERE d.collection_id = c.collection_id AND d.external_id = maxsim.id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT sum(best.sim) INTO result FROM (
        SELECT max(-(t.embedding <#> q.v)) AS sim
        FROM pg_catalog.unnest(query) WITH ORDINALITY AS q(v, i)
        CROSS JOIN tokens AS t
        WHERE t.collection_id = c.collection_id AND t.doc_id = doc
        GROUP BY q.i
    ) AS best;
    RETURN result;
END
$body$;

COMMENT ON FUNCTION {schema}.maxsim(halfvec[], text, text) IS
    'lateinteract: exact MaxSim of one document (NULL when the id does not exist)';
