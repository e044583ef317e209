"""Storage options (token pooling, int8 re-scoring matrices) and the dense tier.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from alembic import op
from psycopg import sql

from lateinteract_pg.errors import InvalidInput
from lateinteract_pg.migrate import run_sql_file

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _collections(schema: str, where: str = "true") -> list[tuple[int, int]]:
    raw = op.get_bind().connection.driver_connection
    query = sql.SQL("SELECT id, dim FROM {}.collections WHERE " + where + " ORDER BY id")
    return raw.execute(query.format(sql.Identifier(schema))).fetchall()


def upgrade(schema: str) -> None:
    from lateinteract_pg.store import dense_index_sql

    run_sql_file(op.get_bind(), "0004_storage_tiers.sql", schema)
    raw = op.get_bind().connection.driver_connection
    for collection_id, dim in _collections(schema):
        raw.execute(dense_index_sql(schema, collection_id, dim))


def downgrade(schema: str) -> None:
    if _collections(schema, "rescore_storage <> 'float16'"):
        raise InvalidInput(
            "collections with rescore_storage='int8' exist: revision 0003 would read their "
            "matrices as float16; drop them (or re-add their documents as float16) first"
        )
    raw = op.get_bind().connection.driver_connection
    for collection_id, _ in _collections(schema):
        raw.execute(
            sql.SQL("DROP INDEX IF EXISTS {}").format(
                sql.Identifier(schema, f"documents_{collection_id}_dense_hnsw")
            )
        )
    run_sql_file(op.get_bind(), "0004_storage_tiers_drop.sql", schema)
