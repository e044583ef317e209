-- Undoes 0008_index_pooling.sql (migration 0008), after the migration has checked that no
-- collection pools its token rows (revision 0007 reads every document's matrix).
ALTER TABLE {schema}.documents
    DROP CONSTRAINT documents_vectors_check,
    DROP COLUMN vectors,
    ALTER COLUMN matrix SET NOT NULL;
ALTER TABLE {schema}.collections
    DROP CONSTRAINT collections_index_pool_storage_check,
    DROP COLUMN index_pool_factor;
