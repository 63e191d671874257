import pytest
from sqlalchemy import inspect

from tasks.db.migrate import current_revision, ensure_current, head_revision, upgrade
from tasks.db.models import Base
from tasks.errors import SchemaOutOfDate


def test_migrations_build_every_table_from_empty(make_schema_engine) -> None:
    engine = make_schema_engine(migrate=False)
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables


def test_an_out_of_date_schema_is_refused_with_the_command_to_run(make_schema_engine) -> None:
    engine = make_schema_engine(migrate=False)
    with pytest.raises(SchemaOutOfDate, match="healthflow db upgrade"):
        ensure_current(engine)
    upgrade(engine)
    ensure_current(engine)


def test_models_and_migrations_agree(migrated_engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with migrated_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
