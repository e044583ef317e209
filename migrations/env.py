"""Alembic environment for lateinteract_pg.

Run through :func:`lateinteract_pg.migrate.upgrade`, which passes a live SQLAlchemy
connection and the target schema in ``config.attributes``. Our version table lives in that
schema under its own name, so a host application's alembic history never collides with ours.
"""

from alembic import context

from lateinteract_pg.migrate import VERSION_TABLE

config = context.config
connection = config.attributes.get("connection")
schema = config.attributes.get("schema", "lateinteract")
if connection is None:
    raise RuntimeError("run migrations through `lateinteract-pg migrate`, not the alembic CLI")

context.configure(
    connection=connection,
    version_table=VERSION_TABLE,
    version_table_schema=schema,
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations(schema=schema)
