-- explain(collection, query, id): why one document scores what it does: per query token, its
-- best-matching document token (from its vectors where the collection pools its token rows,
-- else from its token rows), their similarity (these sum to the document's MaxSim) and,
-- when the document was stored with token offsets, the piece of its text that token came
-- from, for highlighting. No row when the collection has no document of that id.
-- explain(query, collection, id), the order before search()'s, is deprecated: it stays for
-- one release and calls the new one.

CREATE OR REPLACE FUNCTION {schema}.explain(collection text, query halfvec[], id text)
RETURNS TABLE (
    query_token integer,
    "position" integer,
    similarity double precision,
    start_offset integer,
    end_offset integer,
    piece text
)
LANGUAGE plpgsql STABLE
SET search_path = {search_path}
AS $body$
#variable_conflict use_column
DECLARE
    c record;
BEGIN
    c := query_collection(collection, query);
    RETURN QUERY
    WITH doc AS (
        SELECT d.id, d.text, d.offsets, d.vectors FROM documents AS d
        WHERE d.collection_id = c.collection_id AND d.external_id = explain.id
    ), vecs AS (  -- the document's vectors, or its token rows
        SELECT (v.i - 1)::integer AS position, v.e AS embedding
        FROM doc CROSS JOIN pg_catalog.unnest(doc.vectors) WITH ORDINALITY AS v(e, i)
        UNION ALL
        SELECT t.position, t.embedding
        FROM doc
        JOIN tokens AS t ON t.collection_id = c.collection_id AND t.doc_id = doc.id
        WHERE doc.vectors IS NULL
    ), best AS (
        SELECT DISTINCT ON (q.i)
            q.i::integer AS query_token, t.position, -(t.embedding <#> q.v) AS similarity,
            doc.offsets[t.position + 1][1] AS start_offset,
            doc.offsets[t.position + 1][2] AS end_offset,
            doc.text
        FROM doc
        CROSS JOIN vecs AS t
        CROSS JOIN pg_catalog.unnest(query) WITH ORDINALITY AS q(v, i)
        ORDER BY q.i, similarity DESC, t.position
    )
    SELECT b.query_token, b.position, b.similarity, b.start_offset, b.end_offset,
           CASE WHEN b.end_offset > b.start_offset
                THEN substr(b.text, b.start_offset + 1, b.end_offset - b.start_offset) END
    FROM best AS b ORDER BY b.query_token;
END
$body$;

COMMENT ON FUNCTION {schema}.explain(text, halfvec[], text) IS
    'lateinteract: per query token, the best-matching token of one document and its text';

CREATE OR REPLACE FUNCTION {schema}.explain(query halfvec[], collection text, id text)
RETURNS TABLE (
    query_token integer,
    "position" integer,
    similarity double precision,
    start_offset integer,
    end_offset integer,
    piece text
)
LANGUAGE plpgsql STABLE
SET search_path = {search_path}
AS $body$
BEGIN
    RETURN QUERY SELECT * FROM explain(collection, query, id);
END
$body$;

COMMENT ON FUNCTION {schema}.explain(halfvec[], text, text) IS
    'lateinteract: deprecated argument order, kept for one release: use explain(collection, query, id)';
