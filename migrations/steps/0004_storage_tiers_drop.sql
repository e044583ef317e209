-- Undoes 0004_storage_tiers.sql (migration 0004), after the migration has dropped the dense
-- indexes and checked that no collection keeps int8 matrices (revision 0003 reads float16),
-- and dropped search_dense().
ALTER TABLE {schema}.documents DROP COLUMN dense;
ALTER TABLE {schema}.collections DROP COLUMN pool_factor, DROP COLUMN rescore_storage;
