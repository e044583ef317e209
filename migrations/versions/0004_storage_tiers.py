"""Storage options (token pooling, int8 re-scoring matrices) and the dense tier.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from alembic import op
from psycopg import sql

from lateinteract_pg.errors import InvalidInput
from lateinteract_pg.migrate import run_step
from lateinteract_pg.sql_functions import apply_functions, restore_functions

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _collections(schema: str, where: str = "true") -> list[tuple[int, int]]:
    raw = op.get_bind().connection.driver_connection
    query = sql.SQL("SELECT id, dim FROM {}.collections WHERE " + where + " ORDER BY id")
    return raw.execute(query.format(sql.Identifier(schema))).fetchall()


def upgrade(schema: str) -> None:
    """Rewrites every document row (the dense column) and builds one index per collection,
    in one transaction that blocks searches meanwhile: run it in a quiet moment."""
    run_step(op.get_bind(), "0004_storage_tiers.sql", schema)
    apply_functions(op.get_bind(), revision, schema)
    raw = op.get_bind().connection.driver_connection
    for collection_id, dim in _collections(schema):
        raw.execute(
            sql.SQL(
                "CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw ((dense::halfvec({})) "
                "halfvec_ip_ops) WHERE collection_id = {}"
            ).format(
                sql.Identifier(f"documents_{collection_id}_dense_hnsw"),
                sql.Identifier(schema, "documents"),
                sql.Literal(dim),
                sql.Literal(collection_id),
            )
        )


def downgrade(schema: str) -> None:
    if _collections(schema, "rescore_storage <> 'float16' OR pool_factor > 1"):
        raise InvalidInput(
            "collections with rescore_storage='int8' or pool_factor > 1 exist: revision 0003 "
            "would read int8 matrices as float16 and store new documents unpooled; drop them "
            "first"
        )
    raw = op.get_bind().connection.driver_connection
    for collection_id, _ in _collections(schema):
        raw.execute(
            sql.SQL("DROP INDEX IF EXISTS {}").format(
                sql.Identifier(schema, f"documents_{collection_id}_dense_hnsw")
            )
        )
    restore_functions(op.get_bind(), revision, schema)
    run_step(op.get_bind(), "0004_storage_tiers_drop.sql", schema)
