-- query_collection(collection, query): checks a query against a collection (the collection
-- exists; the query is a non-empty one-dimensional array of vectors of its width, none
-- NULL) and returns the collection's id, dim and number of documents. Every function that
-- takes a collection and a query starts with it.

CREATE OR REPLACE FUNCTION {schema}.query_collection(
    collection text,
    query halfvec[],
    OUT collection_id integer,
    OUT dim integer,
    OUT n_documents bigint
)
LANGUAGE plpgsql STABLE
SET search_path = {search_path}
AS $body$
#variable_conflict use_column
DECLARE
    bad record;
BEGIN
    IF collection IS NULL THEN
        RAISE EXCEPTION 'lateinteract: collection must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT c.id, c.dim, c.n_documents INTO collection_id, dim, n_documents
    FROM collections AS c WHERE c.name = query_collection.collection;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'lateinteract: no collection named %', quote_literal(collection)
            USING ERRCODE = 'undefined_object';
    END IF;
    IF query IS NULL OR pg_catalog.cardinality(query) = 0 THEN
        RAISE EXCEPTION 'lateinteract: the query must hold at least one vector'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.array_ndims(query) <> 1 THEN
        RAISE EXCEPTION 'lateinteract: the query must be a one-dimensional array of vectors'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT u.i, u.v IS NULL AS missing, vector_dims(u.v) AS width INTO bad
    FROM pg_catalog.unnest(query) WITH ORDINALITY AS u(v, i)
    WHERE u.v IS NULL OR vector_dims(u.v) <> query_collection.dim
    ORDER BY u.i LIMIT 1;
    IF FOUND AND bad.missing THEN
        RAISE EXCEPTION 'lateinteract: query vector % is NULL', bad.i
            USING ERRCODE = 'null_value_not_allowed';
    ELSIF FOUND THEN
        RAISE EXCEPTION 'lateinteract: query vector % has % dimensions, collection % has %',
            bad.i, bad.width, quote_literal(collection), dim
            USING ERRCODE = 'data_exception';
    END IF;
END
$body$;

COMMENT ON FUNCTION {schema}.query_collection(text, halfvec[]) IS
    'lateinteract: checks a query against a collection; returns its id, dim and size';
