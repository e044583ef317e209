-- Undoes 0003_candidate_index.sql (migration 0003), after the migration has dropped the
-- binary indexes (revision 0002 knows only halfvec) and restored revision 0002's search().
ALTER TABLE {schema}.collections DROP COLUMN candidate_index;
