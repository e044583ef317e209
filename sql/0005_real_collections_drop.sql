-- Undoes 0005_real_collections.sql and 0005_search.sql (migration 0005), after the migration
-- has checked that no document belongs to a tenant, dropped the full-text indexes and the
-- token tables' policies;
-- migration 0005 then installs revision 0003's search() again.
DROP FUNCTION {schema}.search_hybrid(text, halfvec[], text, integer, text, double precision,
                                     integer, integer, jsonpath, jsonb);
DROP FUNCTION {schema}.search(text, halfvec[], integer, integer, integer, integer, boolean,
                              jsonpath, jsonb);
DROP FUNCTION {schema}.fuse(text[], double precision[], text[], double precision[], text,
                            double precision, integer, integer);
DROP FUNCTION {schema}.lexical_query(regconfig, text);
DROP FUNCTION {schema}.passes(jsonb, jsonpath, jsonb);

DROP POLICY tenant_documents ON {schema}.documents;
ALTER TABLE {schema}.documents DISABLE ROW LEVEL SECURITY;
DROP FUNCTION {schema}.protect_tokens(regclass);
DROP FUNCTION {schema}.has_tenants(integer);
ALTER TABLE {schema}.tokens DROP COLUMN tenant;
DROP TABLE {schema}.tenant_roles;
DROP INDEX {schema}.documents_tenant_idx;
DROP TRIGGER documents_tsv ON {schema}.documents;
DROP FUNCTION {schema}.documents_tsv();
ALTER TABLE {schema}.documents DROP COLUMN tsv, DROP COLUMN tenant;
ALTER TABLE {schema}.collections DROP COLUMN text_search_config;
