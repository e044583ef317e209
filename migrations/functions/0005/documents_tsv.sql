-- Revision 0005's documents_tsv(): the trigger that writes each document's text as a
-- tsvector in its collection's text search configuration (the first 250,000 characters).

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
