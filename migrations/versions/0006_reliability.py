"""Reliability: search()'s default rerank_depth within its own limit for every k, and a
bound on the words of a hybrid query's text.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from alembic import op

from lateinteract_pg.sql_functions import apply_functions, restore_functions

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    apply_functions(op.get_bind(), revision, schema)


def downgrade(schema: str) -> None:
    restore_functions(op.get_bind(), revision, schema)
