-- Real collections (migration 0005): full text for hybrid search, tenants under row-level
-- security, and metadata filters in the SQL functions. The migration installs revision
-- 0005's functions (documents_tsv, has_tenants, protect_tokens, ...) before this file.

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

ALTER TABLE {schema}.documents ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_documents ON {schema}.documents
    -- tenant_roles' own policy leaves the rows of the current role's tenants
    USING (tenant IS NULL OR tenant IN (SELECT m.tenant FROM {schema}.tenant_roles AS m));

-- A token row is visible with its document: protect_tokens() puts the policy on the parent
-- and on every partition; new collections' partitions get it when they are created.
SELECT {schema}.protect_tokens(t.oid)
FROM (SELECT pg_catalog.format('%I.tokens', {schema_literal})::regclass AS parent) AS p
CROSS JOIN LATERAL (
    SELECT p.parent::oid
    UNION ALL
    SELECT i.inhrelid FROM pg_catalog.pg_inherits AS i WHERE i.inhparent = p.parent
) AS t(oid);
