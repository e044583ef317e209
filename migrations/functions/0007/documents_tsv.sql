-- documents_tsv(): the trigger that writes each document's text as a tsvector (documents.tsv)
-- in its collection's text search configuration (kept by name, not as a regconfig, which
-- pg_upgrade cannot carry), on insert and on a change of the text. Only the first 250,000
-- characters of a text are indexed: a tsvector holds at most 1 MB.

CREATE OR REPLACE FUNCTION {schema}.documents_tsv() RETURNS trigger
LANGUAGE plpgsql
SET search_path = {search_path}
AS $body$
BEGIN
    NEW.tsv := pg_catalog.to_tsvector(
        (SELECT c.text_search_config FROM collections AS c WHERE c.id = NEW.collection_id)::regconfig,
        left(coalesce(NEW.text, ''), 250000));
    RETURN NEW;
END
$body$;

COMMENT ON FUNCTION {schema}.documents_tsv() IS
    'lateinteract: trigger: documents.tsv from the text, in the collection''s text search configuration';
