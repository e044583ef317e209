-- fuse(late_ids, late_scores, lexical_ids, lexical_scores, fusion, weight, rrf_k, k): two
-- ranked lists of document ids (best first, with their scores) fused into the top k:
--   'rrf':      weight / (rrf_k + late rank) + (1 - weight) / (rrf_k + lexical rank);
--   'weighted': weight * late score + (1 - weight) * lexical score, each scaled to 0..1 by
--               the min and max of its list (1 when they are equal).
-- A document missing from a list gets nothing from it. Ranks are 1-based, NULL when absent.
-- Used by search_hybrid() and by the Python API.

CREATE OR REPLACE FUNCTION {schema}.fuse(
    late_ids text[], late_scores double precision[],
    lexical_ids text[], lexical_scores double precision[],
    fusion text, weight double precision, rrf_k integer, k integer
)
RETURNS TABLE (id text, score double precision, late_rank bigint, lexical_rank bigint)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $body$
    WITH late AS (
        SELECT u.id, u.score, u.r
        FROM ROWS FROM (pg_catalog.unnest(late_ids), pg_catalog.unnest(late_scores))
             WITH ORDINALITY AS u(id, score, r)
    ), lexical AS (
        SELECT u.id, u.score, u.r
        FROM ROWS FROM (pg_catalog.unnest(lexical_ids), pg_catalog.unnest(lexical_scores))
             WITH ORDINALITY AS u(id, score, r)
    ), bounds AS (
        SELECT (SELECT min(l.score) FROM late AS l) AS late_lo,
               (SELECT max(l.score) FROM late AS l) AS late_hi,
               (SELECT min(x.score) FROM lexical AS x) AS lexical_lo,
               (SELECT max(x.score) FROM lexical AS x) AS lexical_hi
    ), fused AS (
        SELECT coalesce(l.id, x.id) AS id,
               CASE WHEN fusion = 'rrf' THEN
                   coalesce(weight / (rrf_k + l.r), 0) + coalesce((1 - weight) / (rrf_k + x.r), 0)
               ELSE
                   weight * CASE WHEN l.id IS NULL THEN 0 WHEN b.late_hi > b.late_lo
                       THEN (l.score - b.late_lo) / (b.late_hi - b.late_lo) ELSE 1 END
                   + (1 - weight) * CASE WHEN x.id IS NULL THEN 0 WHEN b.lexical_hi > b.lexical_lo
                       THEN (x.score - b.lexical_lo) / (b.lexical_hi - b.lexical_lo) ELSE 1 END
               END AS score,
               l.r AS late_rank, x.r AS lexical_rank
        FROM late AS l FULL JOIN lexical AS x ON x.id = l.id CROSS JOIN bounds AS b
    )
    SELECT f.id, f.score, f.late_rank, f.lexical_rank
    FROM fused AS f
    ORDER BY f.score DESC, f.id
    LIMIT k
$body$;

COMMENT ON FUNCTION {schema}.fuse(text[], double precision[], text[], double precision[], text,
                                  double precision, integer, integer) IS
    'lateinteract: two ranked lists fused into the top k (RRF or weighted min-max scores)';
