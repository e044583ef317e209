"""SQL functions (search, maxsim, explain) and token character offsets for highlighting.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from alembic import op

from lateinteract_pg.migrate import run_sql_file

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    run_sql_file(op.get_bind(), "0002_offsets.sql", schema)
    run_sql_file(op.get_bind(), "0002_functions.sql", schema)


def downgrade(schema: str) -> None:
    run_sql_file(op.get_bind(), "0002_functions_drop.sql", schema)
