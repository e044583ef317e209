-- Lets {role} search every collection of {schema} but write nothing.
-- Run by `lateinteract-pg grant-read-only ROLE` (idempotent); run it again after an upgrade
-- that adds tables. The SQL functions run with the caller's privileges (SECURITY INVOKER),
-- so this SELECT grant is what allows them. New collections need no new grant: searches
-- read the partitioned token table through its parent.
GRANT USAGE ON SCHEMA {schema} TO {role};
GRANT USAGE ON SCHEMA {vector_schema} TO {role};  -- pgvector's types and operators
GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role};
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} TO {role};
