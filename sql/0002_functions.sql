-- lateinteract_pg SQL functions: search, maxsim and explain from plain SQL.
-- Installed (CREATE OR REPLACE) by migrations/versions/0002_sql_functions.py. This file is
-- revision 0002's: a later migration that changes a function gets its own copy
-- (sql/NNNN_functions.sql), so that downgrades can restore this one.
--
-- {schema} and {search_path} are composed in as quoted identifiers. The bodies name no
-- schema: each function runs with search_path = our schema, pgvector's schema, pg_temp, so
-- the caller's search_path does not matter. Built-ins that take polymorphic arguments
-- (unnest, cardinality, array_ndims, array_agg, format) are written pg_catalog.*: where
-- pgvector lives in a schema others may create objects in (public, before PostgreSQL 15),
-- a function of theirs with an exact-type signature would otherwise win the call. Every
-- value reaches SQL as a bound parameter; only integers read from our own collections table
-- (dimension, id) are formatted into the stage-1 statement, because the HNSW index is on an
-- expression with the dimension in its type.
--
-- Conventions: query_token is the 1-based index into the query array; position is the
-- 0-based index of the document token, as stored in the tokens table. Queries of vector[]
-- (float32) are accepted too: pgvector's cast from vector to halfvec is implicit, and so is
-- the array coercion built on it.

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


CREATE OR REPLACE FUNCTION {schema}.search(
    collection text,
    query halfvec[],
    k integer DEFAULT 10,
    candidates_per_token integer DEFAULT NULL,
    ef_search integer DEFAULT NULL,
    rerank_depth integer DEFAULT NULL,
    exact boolean DEFAULT false
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
BEGIN
    c := query_collection(collection, query);
    IF k IS NULL OR k < 1 OR k > 100000 THEN
        RAISE EXCEPTION 'lateinteract: k must be in 1..100000, got %', coalesce(k::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- the Python path's defaults (planner.default_knobs): recall@k >= 0.99 measured
    per_token := coalesce(candidates_per_token, least(1000, greatest(150, 15 * k)));
    ef := greatest(per_token, coalesce(ef_search, per_token));
    depth := coalesce(rerank_depth, greatest(200, 20 * k));
    IF per_token NOT BETWEEN 1 AND 1000 OR ef_search NOT BETWEEN 1 AND 1000
       OR depth NOT BETWEEN 1 AND 100000 THEN
        RAISE EXCEPTION 'lateinteract: candidates_per_token and ef_search must be in 1..1000, '
            'rerank_depth in 1..100000'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Stage 1 (skipped when every document would be re-scored anyway, or there is no index
    -- yet): per query token the HNSW index's per_token nearest document tokens; per
    -- (token, document) the best similarity; a token that found nothing of a document
    -- counts 0; the depth best documents by that sum. Same statement as candidates.py.
    IF NOT coalesce(exact, false) AND c.n_documents > depth
       AND to_regclass(pg_catalog.format('%I', 'tokens_' || c.collection_id || '_hnsw')) IS NOT NULL THEN
        previous_ef := current_setting('hnsw.ef_search', true);
        PERFORM set_config('hnsw.ef_search', ef::text, true);
        EXECUTE pg_catalog.format($stage1$
            WITH hits AS (
                SELECT q.i, t.doc_id, -t.dist AS sim
                FROM pg_catalog.unnest($1::halfvec[]) WITH ORDINALITY AS q(v, i)
                CROSS JOIN LATERAL (
                    SELECT x.doc_id, (x.embedding::halfvec(%1$s) <#> q.v) AS dist
                    FROM tokens AS x
                    WHERE x.collection_id = %2$s
                    ORDER BY x.embedding::halfvec(%1$s) <#> q.v
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
            $stage1$, c.dim, c.collection_id)
        INTO candidates
        USING query, per_token, depth;
        PERFORM set_config('hnsw.ef_search', coalesce(previous_ef, '40'), true);
        IF candidates IS NULL THEN
            RETURN;
        END IF;
    ELSE
        -- every document, as an array too: stage 2 is then one statement whose cached
        -- (generic) plan always looks documents up by id
        SELECT pg_catalog.array_agg(d.id) INTO candidates
        FROM documents AS d WHERE d.collection_id = c.collection_id;
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

COMMENT ON FUNCTION {schema}.search(text, halfvec[], integer, integer, integer, integer, boolean) IS
    'lateinteract: the k documents with the highest MaxSim against query (exact scores)';


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
#variable_conflict use_column
DECLARE
    c record;
BEGIN
    c := query_collection(collection, query);
    RETURN QUERY
    WITH doc AS (
        SELECT d.id, d.text, d.offsets FROM documents AS d
        WHERE d.collection_id = c.collection_id AND d.external_id = explain.id
    ), best AS (
        SELECT DISTINCT ON (q.i)
            q.i::integer AS query_token, t.position, -(t.embedding <#> q.v) AS similarity,
            doc.offsets[t.position + 1][1] AS start_offset,
            doc.offsets[t.position + 1][2] AS end_offset,
            doc.text
        FROM doc
        JOIN tokens AS t ON t.collection_id = c.collection_id AND t.doc_id = doc.id
        CROSS JOIN pg_catalog.unnest(query) WITH ORDINALITY AS q(v, i)
        ORDER BY q.i, similarity DESC, t.position
    )
    SELECT b.query_token, b.position, b.similarity, b.start_offset, b.end_offset,
           CASE WHEN b.end_offset > b.start_offset
                THEN substr(b.text, b.start_offset + 1, b.end_offset - b.start_offset) END
    FROM best AS b ORDER BY b.query_token;
END
$body$;

COMMENT ON FUNCTION {schema}.explain(halfvec[], text, text) IS
    'lateinteract: per query token, the best-matching token of one document and its text';
