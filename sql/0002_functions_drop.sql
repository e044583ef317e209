-- Undoes 0002_functions.sql and 0002_offsets.sql (migration 0002).
DROP FUNCTION IF EXISTS {schema}.search(text, halfvec[], integer, integer, integer, integer, boolean);
DROP FUNCTION IF EXISTS {schema}.maxsim(halfvec[], text, text);
DROP FUNCTION IF EXISTS {schema}.explain(halfvec[], text, text);
DROP FUNCTION IF EXISTS {schema}.query_collection(text, halfvec[]);
ALTER TABLE {schema}.documents DROP COLUMN IF EXISTS offsets;
