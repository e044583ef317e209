-- protect_tokens(partition): puts the tenants' policy on a token table. A token row is
-- visible with its document: the policy goes on the parent and on every partition (a role
-- granted SELECT on a partition reads it directly); new collections' partitions get it when
-- they are created. The tenant list is a hashed subplan, built once per statement.

CREATE OR REPLACE FUNCTION {schema}.protect_tokens(partition regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = {search_path}
AS $body$
DECLARE
    home name;  -- tenant_roles lives next to the token table
BEGIN
    SELECT n.nspname INTO home
    FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    WHERE c.oid = partition;
    EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', partition);
    EXECUTE pg_catalog.format(
        'CREATE POLICY tenant_tokens ON %s USING ('
        'tenant IS NULL OR tenant IN (SELECT m.tenant FROM %I.tenant_roles AS m))',
        partition, home);
END
$body$;

COMMENT ON FUNCTION {schema}.protect_tokens(regclass) IS
    'lateinteract: row-level security of the tenants on a token table (the parent or a partition)';
