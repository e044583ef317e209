-- Which HNSW index stage 1 probes, per collection (migration 0003):
--   halfvec: over the token vectors themselves (inner product), about 1,170 bytes per 384-d
--            token with m = 16;
--   binary:  over their sign bits, binary_quantize(embedding)::bit(dim) (Hamming distance),
--            a fraction of that; the tokens it finds are scored with their full vectors.
-- Either index is named tokens_<id>_hnsw: a collection has one.
ALTER TABLE {schema}.collections
    ADD COLUMN candidate_index text NOT NULL DEFAULT 'halfvec'
    CONSTRAINT collections_candidate_index_check CHECK (candidate_index IN ('halfvec', 'binary'));
