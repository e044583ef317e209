"""The SQLAlchemy table objects describe exactly what the migrations create."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import lateinteract_pg as lip
from lateinteract_pg.tables import create_engine, define_tables


@pytest.mark.filterwarnings("ignore:Did not recognize type 'halfvec'")
def test_tables_match_the_migrated_schema(store: lip.Store) -> None:
    described = define_tables(sa.MetaData(), schema=store.schema)
    engine = create_engine(store.dsn)
    try:
        inspector = sa.inspect(engine)
        for table in (described.collections, described.documents, described.tokens):
            actual = {c["name"]: c for c in inspector.get_columns(table.name, schema=store.schema)}
            assert set(actual) == set(table.c.keys()), table.name
            for column in table.c:
                found = actual[column.name]
                assert found["nullable"] == column.nullable, (table.name, column.name)
                if isinstance(found["type"], sa.types.NullType):  # halfvec: unknown to sa
                    assert column.name == "embedding"
                    continue
                assert str(found["type"].compile(dialect=engine.dialect)) == str(
                    column.type.compile(dialect=engine.dialect)
                ).replace("[][]", "[]"), (table.name, column.name)
            primary = inspector.get_pk_constraint(table.name, schema=store.schema)
            assert set(primary["constrained_columns"]) == {c.name for c in table.primary_key}
        uniques = inspector.get_unique_constraints("documents", schema=store.schema)
        assert ["collection_id", "external_id"] in [u["column_names"] for u in uniques]
    finally:
        engine.dispose()
