"""SQL functions (search, maxsim, explain) and token character offsets for highlighting.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from alembic import op

from lateinteract_pg.migrate import run_step
from lateinteract_pg.sql_functions import apply_functions, restore_functions

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    run_step(op.get_bind(), "0002_offsets.sql", schema)
    apply_functions(op.get_bind(), revision, schema)


def downgrade(schema: str) -> None:
    restore_functions(op.get_bind(), revision, schema)
    run_step(op.get_bind(), "0002_offsets_drop.sql", schema)
