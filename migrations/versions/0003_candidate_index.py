"""Per-collection candidate index: halfvec (default) or binary (sign bits, Hamming).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from alembic import op
from psycopg import sql

from lateinteract_pg.migrate import run_step
from lateinteract_pg.sql_functions import apply_functions, restore_functions

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    run_step(op.get_bind(), "0003_candidate_index.sql", schema)
    apply_functions(op.get_bind(), revision, schema)


def downgrade(schema: str) -> None:
    raw = op.get_bind().connection.driver_connection
    binary = raw.execute(
        sql.SQL("SELECT id FROM {}.collections WHERE candidate_index = 'binary'").format(
            sql.Identifier(schema)
        )
    ).fetchall()
    for (collection_id,) in binary:  # revision 0002 knows halfvec indexes only
        raw.execute(
            sql.SQL("DROP INDEX IF EXISTS {}").format(
                sql.Identifier(schema, f"tokens_{collection_id}_hnsw")
            )
        )
    restore_functions(op.get_bind(), revision, schema)
    run_step(op.get_bind(), "0003_candidate_index_drop.sql", schema)
