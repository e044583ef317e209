-- Revision 0005's has_tenants(collection_id): whether a collection has documents of any
-- tenant (then a role's searches of it may see fewer documents than there are). It must see
-- every document, whatever the caller may see: SECURITY DEFINER; it reveals no more than
-- that.

CREATE OR REPLACE FUNCTION {schema}.has_tenants(collection_id integer) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = {search_path}
AS $body$
    SELECT EXISTS (
        SELECT 1 FROM documents AS d WHERE d.collection_id = $1 AND d.tenant IS NOT NULL
    )
$body$;
