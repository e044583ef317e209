-- Revision 0006's search(): revision 0005's with its default rerank_depth capped at 100000
-- (for k over 5000 it was 20 * k, beyond the limit it checks, so a valid k was refused).

CREATE OR REPLACE FUNCTION {schema}.search(
    collection text,
    query halfvec[],
    k integer DEFAULT 10,
    candidates_per_token integer DEFAULT NULL,
    ef_search integer DEFAULT NULL,
    rerank_depth integer DEFAULT NULL,
    exact boolean DEFAULT false,
    filter jsonpath DEFAULT NULL,
    filter_vars jsonb DEFAULT NULL
)
RETURNS TABLE (id text, score double precision, text text, metadata jsonb)
LANGUAGE plpgsql VOLATILE
SET search_path = {search_path}
AS $body$
#variable_conflict use_column
DECLARE
    c record;
    per_token integer;
    ef integer;
    depth integer;
    previous_ef text;
    candidates bigint[];
    probe_order text;
    restricted boolean;
    matching bigint;
    previous_scan text;
    previous_sort text;
    previous_budget text;
    iterative boolean;
BEGIN
    c := query_collection(collection, query);
    IF k IS NULL OR k < 1 OR k > 100000 THEN
        RAISE EXCEPTION 'lateinteract: k must be in 1..100000, got %', coalesce(k::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- the Python path's defaults (planner.default_knobs): recall@k >= 0.99 measured
    per_token := coalesce(candidates_per_token, least(1000, greatest(150, 15 * k)));
    ef := greatest(per_token, coalesce(ef_search, per_token));
    depth := coalesce(rerank_depth, least(100000, greatest(200, 20 * k)));
    IF per_token NOT BETWEEN 1 AND 1000 OR ef_search NOT BETWEEN 1 AND 1000
       OR depth NOT BETWEEN 1 AND 100000 THEN
        RAISE EXCEPTION 'lateinteract: candidates_per_token and ef_search must be in 1..1000, '
            'rerank_depth in 1..100000'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Documents may be hidden by the filter, or by the tenants' policies (for a role they
    -- apply to, in a collection that has tenants): count those that pass.
    restricted := filter IS NOT NULL OR (
        pg_catalog.row_security_active('documents'::regclass)
        AND has_tenants(c.collection_id));
    IF restricted THEN
        SELECT count(*) INTO matching FROM documents AS d
        WHERE d.collection_id = c.collection_id AND passes(d.metadata, filter, filter_vars);
    END IF;

    -- Stage 1 (skipped when every passing document would be re-scored anyway, or there is
    -- no index yet): per query token the HNSW index's per_token nearest document tokens; per
    -- (token, document) the best similarity; a token that found nothing of a document
    -- counts 0; the depth best documents by that sum. Same statement as candidates.py.
    IF NOT coalesce(exact, false) AND c.n_documents > depth
       AND (NOT restricted OR matching > depth)
       AND to_regclass(pg_catalog.format('%I', 'tokens_' || c.collection_id || '_hnsw')) IS NOT NULL THEN
        -- the index's own expression, so that ORDER BY ... LIMIT walks it
        SELECT CASE col.candidate_index
                   WHEN 'binary' THEN pg_catalog.format(
                       'binary_quantize(x.embedding::halfvec(%1$s))::bit(%1$s) '
                       '<~> binary_quantize(q.v)', c.dim)
                   ELSE pg_catalog.format('x.embedding::halfvec(%1$s) <#> q.v', c.dim)
               END
        INTO probe_order
        FROM collections AS col WHERE col.id = c.collection_id;
        previous_ef := current_setting('hnsw.ef_search', true);
        PERFORM set_config('hnsw.ef_search', ef::text, true);
        SELECT pg_catalog.string_to_array(e.extversion, '.')::integer[] >= '{{0,8}}'
        INTO iterative FROM pg_catalog.pg_extension AS e WHERE e.extname = 'vector';
        IF restricted AND iterative THEN  -- scan on until per_token tokens pass
            previous_scan := current_setting('hnsw.iterative_scan', true);
            previous_budget := current_setting('hnsw.max_scan_tuples', true);
            PERFORM set_config('hnsw.iterative_scan', 'relaxed_order', true);
            -- about ef / (share of documents passing) tokens to visit, as the Python path
            PERFORM set_config('hnsw.max_scan_tuples', greatest(20000, least(2000000,
                4 * ef * c.n_documents / greatest(matching, 1)))::text, true);
        END IF;
        IF restricted THEN
            -- or the planner, misled by estimates of the filter, may fetch the passing
            -- documents' tokens and sort them: seconds when many pass (fewer than depth
            -- passing are scored exactly below, without stage 1)
            previous_sort := current_setting('enable_sort');
            PERFORM set_config('enable_sort', 'off', true);
        END IF;
        EXECUTE pg_catalog.format($stage1$
            WITH hits AS (
                SELECT q.i, t.doc_id, -t.dist AS sim
                FROM pg_catalog.unnest($1::halfvec[]) WITH ORDINALITY AS q(v, i)
                CROSS JOIN LATERAL (
                    SELECT x.doc_id, (x.embedding::halfvec(%1$s) <#> q.v) AS dist
                    FROM tokens AS x%4$s
                    WHERE x.collection_id = %2$s
                    ORDER BY %3$s
                    LIMIT $2
                ) AS t
            ), best AS (
                SELECT hits.i, hits.doc_id, max(hits.sim) AS sim
                FROM hits GROUP BY hits.i, hits.doc_id
            ), ranked AS (
                SELECT best.doc_id, sum(best.sim) AS score
                FROM best GROUP BY best.doc_id
                ORDER BY score DESC, best.doc_id
                LIMIT $3
            )
            SELECT pg_catalog.array_agg(ranked.doc_id) FROM ranked
            $stage1$, c.dim, c.collection_id, probe_order,
            CASE WHEN restricted THEN ' JOIN documents AS d ON d.id = x.doc_id'
                 ' AND passes(d.metadata, $4, $5)' ELSE '' END)
        INTO candidates
        USING query, per_token, depth, filter, filter_vars;
        PERFORM set_config('hnsw.ef_search', coalesce(previous_ef, '40'), true);
        IF restricted AND iterative THEN
            PERFORM set_config('hnsw.iterative_scan', coalesce(previous_scan, 'off'), true);
            PERFORM set_config('hnsw.max_scan_tuples', coalesce(previous_budget, '20000'), true);
        END IF;
        IF restricted THEN
            PERFORM set_config('enable_sort', previous_sort, true);
        END IF;
        IF candidates IS NULL THEN
            RETURN;
        END IF;
    ELSE
        -- every passing document, as an array too: stage 2 is then one statement whose
        -- cached (generic) plan always looks documents up by id
        SELECT pg_catalog.array_agg(d.id) INTO candidates
        FROM documents AS d
        WHERE d.collection_id = c.collection_id AND passes(d.metadata, filter, filter_vars);
    END IF;

    -- Stage 2: exact MaxSim of the candidates.
    -- Each document's token vectors are read once into an array, and every query token
    -- takes its max over that array: no join of query tokens with token rows, which
    -- needs a hash aggregate over (document, query token) and, above work_mem, spills
    -- the token rows to disk and reads them back once per query token.
    RETURN QUERY
    WITH scored AS (
        SELECT d.id AS doc_id,
               (SELECT sum((SELECT max(-(e <#> q.v)) FROM pg_catalog.unnest(doc.vectors) AS e))
                FROM pg_catalog.unnest(query) AS q(v)) AS score
        FROM documents AS d
        CROSS JOIN LATERAL (
            SELECT pg_catalog.array_agg(t.embedding) AS vectors
            FROM tokens AS t
            WHERE t.collection_id = c.collection_id AND t.doc_id = d.id
        ) AS doc
        WHERE d.collection_id = c.collection_id
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

COMMENT ON FUNCTION {schema}.search(text, halfvec[], integer, integer, integer, integer, boolean,
                                    jsonpath, jsonb) IS
    'lateinteract: the k documents with the highest MaxSim against query (exact scores), of those passing filter';
