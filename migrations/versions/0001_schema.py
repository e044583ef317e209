"""Collections, documents and the partitioned token table.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from alembic import op

from lateinteract_pg.migrate import run_step

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    run_step(op.get_bind(), "0001_schema.sql", schema)


def downgrade(schema: str) -> None:
    run_step(op.get_bind(), "0001_schema_drop.sql", schema)
