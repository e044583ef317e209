-- Real collections (migration 0005): full text for hybrid search, tenants under row-level
-- security, and metadata filters in the SQL functions. The conventions of
-- sql/0002_functions.sql hold here too.

-- Full text. Each document's text as a tsvector in its collection's text search
-- configuration (chosen when the collection is created; kept by name, not as a regconfig,
-- which pg_upgrade cannot carry), written by a trigger on insert and on a change of the
-- text. Each collection has a partial GIN index over it, documents_<id>_tsv. Only the first
-- 250,000 characters of a text are indexed: a tsvector holds at most 1 MB.
ALTER TABLE {schema}.collections
    ADD COLUMN text_search_config text NOT NULL DEFAULT 'english'
        CONSTRAINT collections_text_search_config_check
        CHECK (length(text_search_config) BETWEEN 1 AND 200);
ALTER TABLE {schema}.documents
    ADD COLUMN tsv tsvector,
    -- the tenant a document belongs to; NULL: shared by every role that may read
    ADD COLUMN tenant text CONSTRAINT documents_tenant_check CHECK (length(tenant) BETWEEN 1 AND 200);

UPDATE {schema}.documents
SET tsv = pg_catalog.to_tsvector('english', left(coalesce(text, ''), 250000));

CREATE FUNCTION {schema}.documents_tsv() RETURNS trigger
LANGUAGE plpgsql
SET search_path = {search_path}
AS $body$
BEGIN
    NEW.tsv := pg_catalog.to_tsvector(
        (SELECT c.text_search_config FROM collections AS c WHERE c.id = NEW.collection_id)::regconfig,
        left(coalesce(NEW.text, ''), 250000));
    RETURN NEW;
END
$body$;

CREATE TRIGGER documents_tsv BEFORE INSERT OR UPDATE OF text ON {schema}.documents
    FOR EACH ROW EXECUTE FUNCTION {schema}.documents_tsv();

-- a token row carries its document's tenant, so that its policy needs no join
ALTER TABLE {schema}.tokens ADD COLUMN tenant text;

CREATE INDEX documents_tenant_idx ON {schema}.documents (collection_id, tenant)
    WHERE tenant IS NOT NULL;

-- Tenants. A role reads the documents of the tenants it is a member of (directly or through
-- role membership), and the shared ones; table owners and superusers read everything.
CREATE TABLE {schema}.tenant_roles (
    tenant text NOT NULL CHECK (length(tenant) BETWEEN 1 AND 200),
    role   oid  NOT NULL,  -- pg_roles.oid: a dropped role matches nobody
    PRIMARY KEY (tenant, role)
);

COMMENT ON TABLE {schema}.tenant_roles IS
    'lateinteract_pg tenants: which roles read which tenant''s documents';

ALTER TABLE {schema}.tenant_roles ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_tenants ON {schema}.tenant_roles FOR SELECT
    USING (pg_catalog.pg_has_role(current_user, role, 'MEMBER'));
-- the documents' policy reads it for every reader, including those granted read access
-- before this revision; its own policy shows each role its own rows only
GRANT SELECT ON {schema}.tenant_roles TO PUBLIC;

-- whether a collection has documents of any tenant (then a role's searches of it may see
-- fewer documents than there are). It must see every document, whatever the caller may see:
-- SECURITY DEFINER; it reveals no more than that.
CREATE FUNCTION {schema}.has_tenants(collection_id integer) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = {search_path}
AS $body$
    SELECT EXISTS (
        SELECT 1 FROM documents AS d WHERE d.collection_id = $1 AND d.tenant IS NOT NULL
    )
$body$;

ALTER TABLE {schema}.documents ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_documents ON {schema}.documents
    -- tenant_roles' own policy leaves the rows of the current role's tenants
    USING (tenant IS NULL OR tenant IN (SELECT m.tenant FROM {schema}.tenant_roles AS m));

-- A token row is visible with its document. The policy goes on the parent and on every
-- partition (a role granted SELECT on a partition reads it directly); new collections'
-- partitions get it when they are created. The tenant list is a hashed subplan, built once
-- per statement.
CREATE FUNCTION {schema}.protect_tokens(partition regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = {search_path}
AS $body$
DECLARE
    home name;  -- tenant_roles lives next to the token table
BEGIN
    SELECT n.nspname INTO home
    FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    WHERE c.oid = partition;
    EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', partition);
    EXECUTE pg_catalog.format(
        'CREATE POLICY tenant_tokens ON %s USING ('
        'tenant IS NULL OR tenant IN (SELECT m.tenant FROM %I.tenant_roles AS m))',
        partition, home);
END
$body$;

SELECT {schema}.protect_tokens(t.oid)
FROM (SELECT pg_catalog.format('%I.tokens', {schema_literal})::regclass AS parent) AS p
CROSS JOIN LATERAL (
    SELECT p.parent::oid
    UNION ALL
    SELECT i.inhrelid FROM pg_catalog.pg_inherits AS i WHERE i.inhparent = p.parent
) AS t(oid);

-- The stage-1 condition of search() and search_hybrid(): a document passes the metadata
-- filter (a jsonpath predicate with its variables, NULL: every document).
CREATE FUNCTION {schema}.passes(metadata jsonb, filter jsonpath, filter_vars jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $body$
    SELECT filter IS NULL
        OR coalesce(pg_catalog.jsonb_path_match(metadata, filter, coalesce(filter_vars, '{{}}'), true), false)
$body$;

-- Hybrid search's pieces, used by search_hybrid() and by the Python API.
-- The full-text query of a text: any of its words (plainto_tsquery's terms, OR-ed).
CREATE FUNCTION {schema}.lexical_query(config regconfig, query_text text) RETURNS tsquery
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $body$
    SELECT pg_catalog.replace(pg_catalog.plainto_tsquery(config, query_text)::text, ' & ', ' | ')
           ::pg_catalog.tsquery
$body$;

-- Two ranked lists of document ids (best first, with their scores) fused into the top k:
--   'rrf':      weight / (rrf_k + late rank) + (1 - weight) / (rrf_k + lexical rank);
--   'weighted': weight * late score + (1 - weight) * lexical score, each scaled to 0..1 by
--               the min and max of its list (1 when they are equal).
-- A document missing from a list gets nothing from it. Ranks are 1-based, NULL when absent.
CREATE FUNCTION {schema}.fuse(
    late_ids text[], late_scores double precision[],
    lexical_ids text[], lexical_scores double precision[],
    fusion text, weight double precision, rrf_k integer, k integer
)
RETURNS TABLE (id text, score double precision, late_rank bigint, lexical_rank bigint)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $body$
    WITH late AS (
        SELECT u.id, u.score, u.r
        FROM unnest(late_ids, late_scores) WITH ORDINALITY AS u(id, score, r)
    ), lexical AS (
        SELECT u.id, u.score, u.r
        FROM unnest(lexical_ids, lexical_scores) WITH ORDINALITY AS u(id, score, r)
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
