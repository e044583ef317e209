"""SQL functions from their sources: search() split into search_knobs(), search_candidates()
and search_rescore(); the limits Python shares filled in from lateinteract_pg.limits, the
filtered scan budget from the share of passing tokens (scan_budget()); maxsim() and explain()
take (collection, query, id), the old order kept as deprecated overloads; search()'s
rerank_depth renamed rescore_depth (the old name kept as a deprecated argument).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from alembic import op

from lateinteract_pg.sql_functions import apply_functions, restore_functions

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    apply_functions(op.get_bind(), revision, schema)


def downgrade(schema: str) -> None:
    restore_functions(op.get_bind(), revision, schema)
