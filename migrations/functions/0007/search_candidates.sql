-- search_candidates(collection_id, query, per_token, ef, depth, exact, filter, filter_vars):
-- search()'s stage 1, the ids of the documents that stage 2 (search_rescore) scores exactly.
-- search() checks the arguments first (query_collection, search_knobs).
--
-- Each query token probes the collection's HNSW index for its per_token nearest document
-- tokens: halfvec (inner product over the vectors) or binary (Hamming distance over their
-- sign bits); either way the tokens found are scored with their full vectors. Per (query
-- token, document) the best similarity counts, a query token that found none of a
-- document's tokens adds 0, and the depth documents with the highest sums are the
-- candidates. The Python index plan (candidates.py) can do more: merge near-duplicate query
-- tokens into weighted probes, and impute a missing similarity with the probe's k-th; here
-- every query token probes on its own with weight 1, and a missing similarity is 0 (Python's
-- defaults).
--
-- A metadata filter (a jsonpath predicate over documents.metadata with its variables), or the
-- tenants' row-level security (for a role it applies to, in a collection that has tenants),
-- may hide documents: then each probe joins the tokens it finds to their documents and keeps
-- those that pass, with pgvector's iterative index scans (0.8 and later) going on until
-- per_token pass, within scan_budget() tokens.
--
-- No index walk when every passing document would be re-scored anyway (no more pass than
-- depth), when exact, or while the collection has no index: then every passing document is
-- a candidate. NULL: no candidate.

CREATE OR REPLACE FUNCTION {schema}.search_candidates(
    collection_id integer,
    query halfvec[],
    per_token integer,
    ef integer,
    depth integer,
    exact boolean DEFAULT false,
    filter jsonpath DEFAULT NULL,
    filter_vars jsonb DEFAULT NULL
)
RETURNS bigint[]
LANGUAGE plpgsql VOLATILE
SET search_path = {search_path}
AS $body$
#variable_conflict use_column
DECLARE
    c record;
    candidates bigint[];
    probe_order text;
    restricted boolean;
    matching bigint;
    matching_tokens bigint;
    previous_ef text;
    previous_scan text;
    previous_sort text;
    previous_budget text;
    iterative boolean;
BEGIN
    SELECT col.dim, col.n_documents, col.n_tokens, col.candidate_index INTO c
    FROM collections AS col WHERE col.id = search_candidates.collection_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;

    -- Documents may be hidden by the filter, or by the tenants' policies: count those that
    -- pass, and their tokens.
    restricted := filter IS NOT NULL OR (
        pg_catalog.row_security_active('documents'::regclass)
        AND has_tenants(search_candidates.collection_id));
    IF restricted THEN
        SELECT count(*), coalesce(sum(d.n_tokens), 0) INTO matching, matching_tokens
        FROM documents AS d
        WHERE d.collection_id = search_candidates.collection_id
          AND passes(d.metadata, filter, filter_vars);
    END IF;

    IF coalesce(exact, false) OR c.n_documents <= depth OR (restricted AND matching <= depth)
       OR to_regclass(pg_catalog.format('tokens_%s_hnsw', search_candidates.collection_id)) IS NULL
    THEN
        -- every passing document, as an array too: stage 2 is then one statement whose
        -- cached (generic) plan always looks documents up by id
        SELECT pg_catalog.array_agg(d.id) INTO candidates
        FROM documents AS d
        WHERE d.collection_id = search_candidates.collection_id
          AND passes(d.metadata, filter, filter_vars);
        RETURN candidates;
    END IF;

    -- the index's own expression, so that ORDER BY ... LIMIT walks it
    probe_order := CASE c.candidate_index
        WHEN 'binary' THEN pg_catalog.format(
            'binary_quantize(x.embedding::halfvec(%1$s))::bit(%1$s) <~> binary_quantize(q.v)',
            c.dim)
        ELSE pg_catalog.format('x.embedding::halfvec(%1$s) <#> q.v', c.dim)
    END;
    previous_ef := current_setting('hnsw.ef_search', true);
    PERFORM set_config('hnsw.ef_search', ef::text, true);
    SELECT pg_catalog.string_to_array(e.extversion, '.')::integer[] >= '{{0,8}}'
    INTO iterative FROM pg_catalog.pg_extension AS e WHERE e.extname = 'vector';
    IF restricted AND iterative THEN  -- scan on until per_token tokens pass
        previous_scan := current_setting('hnsw.iterative_scan', true);
        previous_budget := current_setting('hnsw.max_scan_tuples', true);
        PERFORM set_config('hnsw.iterative_scan', 'relaxed_order', true);
        PERFORM set_config('hnsw.max_scan_tuples',
                           scan_budget(ef, matching_tokens, c.n_tokens)::text, true);
    END IF;
    IF restricted THEN
        -- or the planner, misled by estimates of the filter, may fetch the passing
        -- documents' tokens and sort them: seconds when many pass (no more than depth
        -- passing are all candidates, above, without an index walk)
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
        $stage1$, c.dim, search_candidates.collection_id, probe_order,
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
    RETURN candidates;
END
$body$;

COMMENT ON FUNCTION {schema}.search_candidates(integer, halfvec[], integer, integer, integer,
                                               boolean, jsonpath, jsonb) IS
    'lateinteract: stage 1 of search(): the ids of the depth candidate documents, from HNSW probes per query token';
