-- Undoes 0001_schema.sql: drops every collection's tokens, documents and collections.
DROP TABLE IF EXISTS {schema}.tokens CASCADE;
DROP TABLE IF EXISTS {schema}.documents CASCADE;
DROP TABLE IF EXISTS {schema}.collections CASCADE;
