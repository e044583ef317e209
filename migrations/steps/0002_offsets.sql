-- Character offsets of each stored token in the document text: an n_tokens x 2 integer
-- array of (start, end), 0-based, end exclusive, as Python slices; -1 where a token has no
-- span (markers, [CLS], [SEP]). NULL when the text was stored without offsets.
ALTER TABLE {schema}.documents ADD COLUMN offsets integer[];

-- Stage 1 now reads the token table through its partitioned parent, filtered on
-- collection_id: without statistics the planner would sort instead of using HNSW.
ANALYZE {schema}.tokens (collection_id);
