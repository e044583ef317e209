"""search()'s default knobs also depend on the query's number of vectors: search_knobs()
takes query_vectors, and the candidate documents re-scored grow with it (ColBERT's 32 query
vectors need about 400 for recall@10 >= 0.99 against exact MaxSim).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

from alembic import op

from lateinteract_pg.sql_functions import apply_functions, restore_functions

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    apply_functions(op.get_bind(), revision, schema)


def downgrade(schema: str) -> None:
    restore_functions(op.get_bind(), revision, schema)
