-- maxsim(collection, query, id): the exact MaxSim of one document against the query, read
-- from its vectors where the collection pools its token rows (index_pool_factor > 1), else
-- from its token rows; NULL when the collection has no document of that id.
-- maxsim(query, collection, id), the order before search()'s, is deprecated: it stays for
-- one release and calls the new one.

CREATE OR REPLACE FUNCTION {schema}.maxsim(collection text, query halfvec[], id text)
RETURNS double precision
LANGUAGE plpgsql STABLE
SET search_path = {search_path}
AS $body$
#variable_conflict use_column
DECLARE
    c record;
    doc bigint;
    vectors halfvec[];
    result double precision;
BEGIN
    c := query_collection(collection, query);
    SELECT d.id, d.vectors INTO doc, vectors FROM documents AS d
    WHERE d.collection_id = c.collection_id AND d.external_id = maxsim.id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF vectors IS NOT NULL THEN
        SELECT sum((SELECT max(-(e <#> q.v)) FROM pg_catalog.unnest(vectors) AS e)) INTO result
        FROM pg_catalog.unnest(query) AS q(v);
        RETURN result;
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

COMMENT ON FUNCTION {schema}.maxsim(text, halfvec[], text) IS
    'lateinteract: exact MaxSim of one document (NULL when the id does not exist)';

CREATE OR REPLACE FUNCTION {schema}.maxsim(query halfvec[], collection text, id text)
RETURNS double precision
LANGUAGE plpgsql STABLE
SET search_path = {search_path}
AS $body$
BEGIN
    RETURN maxsim(collection, query, id);
END
$body$;

COMMENT ON FUNCTION {schema}.maxsim(halfvec[], text, text) IS
    'lateinteract: deprecated argument order, kept for one release: use maxsim(collection, query, id)';
