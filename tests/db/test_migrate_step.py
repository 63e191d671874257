from tasks.db.migrate import current_revision, head_revision
from tasks.steps.registry import run_step


def test_migrate_step_brings_an_empty_database_to_head(make_schema_engine) -> None:
    from tasks.db import engine as db_engine

    empty = make_schema_engine(migrate=False)
    db_engine.set_engine(empty)
    try:
        assert run_step("migrate", {}) == {"revision": head_revision()}
        assert current_revision(empty) == head_revision()
    finally:
        db_engine.set_engine(None)
