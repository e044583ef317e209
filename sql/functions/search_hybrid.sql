-- Hybrid search: late interaction fused with PostgreSQL full text, in one statement: the
-- late list is search()'s top `depth`, the lexical list the top `depth` documents whose text
-- holds any word of query_text (in the collection's text search configuration), ranked by
-- ts_rank with length normalisation; fuse() combines them (fuse.sql).

CREATE OR REPLACE FUNCTION {schema}.search_hybrid(
    collection text,
    query halfvec[],
    query_text text,
    k integer DEFAULT 10,
    fusion text DEFAULT 'weighted',
    weight double precision DEFAULT 0.7,
    depth integer DEFAULT 100,
    rrf_k integer DEFAULT 60,
    filter jsonpath DEFAULT NULL,
    filter_vars jsonb DEFAULT NULL
)
RETURNS TABLE (id text, score double precision, late_rank bigint, lexical_rank bigint,
               text text, metadata jsonb)
LANGUAGE plpgsql VOLATILE
SET search_path = {search_path}
AS $body$
#variable_conflict use_column
DECLARE
    c record;
BEGIN
    c := query_collection(collection, query);
    IF k IS NULL OR k < 1 OR k > {MAX_K} OR depth IS NULL OR depth < 1 OR depth > {MAX_K} THEN
        RAISE EXCEPTION 'lateinteract: k and depth must be in 1..{MAX_K}'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF fusion IS NULL OR fusion NOT IN ('rrf', 'weighted') OR weight IS NULL
       OR NOT weight BETWEEN 0 AND 1 OR rrf_k IS NULL OR rrf_k < 0 THEN
        RAISE EXCEPTION 'lateinteract: fusion must be ''rrf'' or ''weighted'', weight in 0..1, '
            'rrf_k >= 0'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF query_text IS NULL THEN
        RAISE EXCEPTION 'lateinteract: query_text must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- the collection id as a literal, so that the planner matches the partial GIN index
    RETURN QUERY EXECUTE pg_catalog.format($hybrid$
        WITH late AS (
            SELECT s.id, s.score, pg_catalog.row_number() OVER (ORDER BY s.score DESC, s.id) AS r
            FROM search($1, $2, $3, filter => $7, filter_vars => $8) AS s
        ), words AS (
            SELECT lexical_query(c.text_search_config::regconfig, $4) AS q
            FROM collections AS c WHERE c.id = %1$s
        ), lexical AS (
            SELECT d.external_id AS id, pg_catalog.ts_rank(d.tsv, w.q, 1)::double precision AS score,
                   pg_catalog.row_number() OVER (
                       ORDER BY pg_catalog.ts_rank(d.tsv, w.q, 1) DESC, d.id) AS r
            FROM documents AS d, words AS w
            WHERE d.collection_id = %1$s AND d.tsv @@ w.q AND passes(d.metadata, $7, $8)
            ORDER BY r
            LIMIT $3
        )
        SELECT f.id, f.score, f.late_rank, f.lexical_rank, d.text, d.metadata
        FROM fuse(
            (SELECT pg_catalog.array_agg(l.id ORDER BY l.r) FROM late AS l),
            (SELECT pg_catalog.array_agg(l.score ORDER BY l.r) FROM late AS l),
            (SELECT pg_catalog.array_agg(x.id ORDER BY x.r) FROM lexical AS x),
            (SELECT pg_catalog.array_agg(x.score ORDER BY x.r) FROM lexical AS x),
            $5, $6, $9, $10) AS f
        JOIN documents AS d ON d.collection_id = %1$s AND d.external_id = f.id
        ORDER BY f.score DESC, f.id
        $hybrid$, c.collection_id)
    USING collection, query, depth, query_text, fusion, weight, filter, filter_vars, rrf_k, k;
END
$body$;

COMMENT ON FUNCTION {schema}.search_hybrid(text, halfvec[], text, integer, text,
                                           double precision, integer, integer, jsonpath, jsonb) IS
    'lateinteract: late interaction fused with full-text search (RRF or weighted scores)';
