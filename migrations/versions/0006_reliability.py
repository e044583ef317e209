"""Reliability: search()'s default rerank_depth within its own limit for every k, and a
bound on the words of a hybrid query's text.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from alembic import op

from lateinteract_pg.migrate import run_sql_file

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    run_sql_file(op.get_bind(), "0006_reliability.sql", schema)


def downgrade(schema: str) -> None:
    run_sql_file(op.get_bind(), "0006_reliability_drop.sql", schema)
    run_sql_file(op.get_bind(), "0005_search.sql", schema)
