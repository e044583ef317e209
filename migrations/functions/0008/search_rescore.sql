-- search_rescore(collection_id, query, k, candidates): search()'s stage 2, the k candidates
-- with the highest exact MaxSim against the query, best first, read from the document's
-- vectors where the collection pools its token rows (index_pool_factor > 1), else from its
-- token rows (float16, as stored). The Python path scores the same from each document's
-- packed matrix or vectors.
--
-- Each document's token vectors are read once into an array, and every query token takes its
-- max over that array: no join of query tokens with token rows, which needs a hash aggregate
-- over (document, query token) and, above work_mem, spills the token rows to disk and reads
-- them back once per query token.

CREATE OR REPLACE FUNCTION {schema}.search_rescore(
    collection_id integer,
    query halfvec[],
    k integer,
    candidates bigint[]
)
RETURNS TABLE (id text, score double precision, text text, metadata jsonb)
LANGUAGE plpgsql STABLE
SET search_path = {search_path}
AS $body$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH scored AS (
        SELECT d.id AS doc_id,
               (SELECT sum((SELECT max(-(e <#> q.v)) FROM pg_catalog.unnest(doc.vectors) AS e))
                FROM pg_catalog.unnest(query) AS q(v)) AS score
        FROM documents AS d
        CROSS JOIN LATERAL (
            SELECT coalesce(d.vectors, (
                SELECT pg_catalog.array_agg(t.embedding)
                FROM tokens AS t
                WHERE t.collection_id = search_rescore.collection_id AND t.doc_id = d.id
            )) AS vectors
        ) AS doc
        WHERE d.collection_id = search_rescore.collection_id
          AND d.id = ANY (candidates)
          AND doc.vectors IS NOT NULL
        ORDER BY score DESC, d.id
        LIMIT k
    )
    SELECT d.external_id, s.score, d.text, d.metadata
    FROM scored AS s JOIN documents AS d ON d.id = s.doc_id
    ORDER BY s.score DESC, s.doc_id;
END
$body$;

COMMENT ON FUNCTION {schema}.search_rescore(integer, halfvec[], integer, bigint[]) IS
    'lateinteract: stage 2 of search(): exact MaxSim of the candidates from their vectors or token rows, the k best';
