"""Index pooling: token rows (and the HNSW candidate index over them) may hold pooled
vectors while each document keeps every vector once, as ``documents.vectors``; the SQL
functions that score exactly (search_rescore, maxsim, explain) read it there.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from alembic import op
from psycopg import sql

from lateinteract_pg.errors import InvalidInput
from lateinteract_pg.migrate import run_step
from lateinteract_pg.sql_functions import apply_functions, restore_functions

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    """Adds columns only (no row is rewritten)."""
    run_step(op.get_bind(), "0008_index_pooling.sql", schema)
    apply_functions(op.get_bind(), revision, schema)


def downgrade(schema: str) -> None:
    raw = op.get_bind().connection.driver_connection
    pooled = raw.execute(
        sql.SQL("SELECT name FROM {} WHERE index_pool_factor > 1 ORDER BY id").format(
            sql.Identifier(schema, "collections")
        )
    ).fetchall()
    if pooled:
        raise InvalidInput(
            f"collections {[r[0] for r in pooled]} pool their token rows (index_pool_factor "
            "> 1): revision 0007 would score them against the pooled rows; drop them first"
        )
    restore_functions(op.get_bind(), revision, schema)
    run_step(op.get_bind(), "0008_index_pooling_drop.sql", schema)
