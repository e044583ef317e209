"""Real collections: full text for hybrid search, tenants under row-level security, and
metadata filters in the SQL functions.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from alembic import op
from psycopg import sql

from lateinteract_pg.errors import InvalidInput
from lateinteract_pg.migrate import run_step
from lateinteract_pg.sql_functions import apply_functions, restore_functions

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _collection_ids(schema: str) -> list[int]:
    raw = op.get_bind().connection.driver_connection
    query = sql.SQL("SELECT id FROM {}.collections ORDER BY id").format(sql.Identifier(schema))
    return [row[0] for row in raw.execute(query).fetchall()]


def upgrade(schema: str) -> None:
    """Rewrites every document row (the tsvector column) and builds one GIN index per
    collection, in one transaction that blocks searches meanwhile: run it in a quiet moment.
    The functions come first: the step's trigger and policies use them."""
    apply_functions(op.get_bind(), revision, schema)
    run_step(op.get_bind(), "0005_real_collections.sql", schema)
    raw = op.get_bind().connection.driver_connection
    for collection_id in _collection_ids(schema):
        raw.execute(
            sql.SQL(
                "CREATE INDEX IF NOT EXISTS {} ON {} USING gin (tsv) WHERE collection_id = {}"
            ).format(
                sql.Identifier(f"documents_{collection_id}_tsv"),
                sql.Identifier(schema, "documents"),
                sql.Literal(collection_id),
            )
        )


def downgrade(schema: str) -> None:
    raw = op.get_bind().connection.driver_connection
    tenants = raw.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE tenant IS NOT NULL").format(
            sql.Identifier(schema, "documents")
        )
    ).fetchone()
    if tenants and tenants[0]:
        raise InvalidInput(
            f"{tenants[0]} documents belong to tenants: revision 0004 has no row-level "
            "security and would show them to every reader; delete them first"
        )
    tables = ["tokens"]
    for collection_id in _collection_ids(schema):
        raw.execute(
            sql.SQL("DROP INDEX IF EXISTS {}").format(
                sql.Identifier(schema, f"documents_{collection_id}_tsv")
            )
        )
        tables.append(f"tokens_{collection_id}")
    for table in tables:
        raw.execute(
            sql.SQL("DROP POLICY IF EXISTS tenant_tokens ON {}").format(
                sql.Identifier(schema, table)
            )
        )
        raw.execute(
            sql.SQL("ALTER TABLE {} DISABLE ROW LEVEL SECURITY").format(
                sql.Identifier(schema, table)
            )
        )
    # the trigger goes first, then its function
    run_step(op.get_bind(), "0005_real_collections_drop.sql", schema)
    restore_functions(op.get_bind(), revision, schema)
