-- Undoes 0005_real_collections.sql (migration 0005), after the migration has checked that no
-- document belongs to a tenant and dropped the full-text indexes and the token tables'
-- policies; the migration then drops revision 0005's functions and installs revision 0003's
-- search() again.
DROP POLICY tenant_documents ON {schema}.documents;
ALTER TABLE {schema}.documents DISABLE ROW LEVEL SECURITY;
ALTER TABLE {schema}.tokens DROP COLUMN tenant;
DROP TABLE {schema}.tenant_roles;
DROP INDEX {schema}.documents_tenant_idx;
DROP TRIGGER documents_tsv ON {schema}.documents;
ALTER TABLE {schema}.documents DROP COLUMN tsv, DROP COLUMN tenant;
ALTER TABLE {schema}.collections DROP COLUMN text_search_config;
