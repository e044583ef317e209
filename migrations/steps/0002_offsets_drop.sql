-- Undoes 0002_offsets.sql (migration 0002), after its functions are dropped.
ALTER TABLE {schema}.documents DROP COLUMN IF EXISTS offsets;
