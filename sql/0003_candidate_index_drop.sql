-- Undoes 0003_candidate_index.sql (migration 0003), after the migration has dropped the
-- binary indexes (revision 0002 knows only halfvec) and 0002_functions.sql has restored
-- revision 0002's search().
ALTER TABLE {schema}.collections DROP COLUMN candidate_index;
