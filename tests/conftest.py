"""Shared fixtures: a real PostgreSQL (HEALTHFLOW_TEST_DATABASE_URL, else an embedded server),
one schema per test session, migrated once, emptied before each test."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tasks.db import engine as db_engine
from tasks.db.migrate import upgrade
from tasks.db.models import Base

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = os.environ.get("HEALTHFLOW_TEST_DATABASE_URL")
    if url:
        yield url
        return
    # Not under pytest's basetemp: every pytest session re-locks /tmp/pytest-of-<user> to 0700,
    # which takes away the access the embedded server's own system user needs while another
    # session (a second checkout's test run) is still using it.
    pgdata = Path(tempfile.mkdtemp(prefix="healthflow-test-pgdata-"))
    try:
        yield db_engine.embedded_url(pgdata)
    finally:
        db_engine.stop_embedded(pgdata)
        shutil.rmtree(pgdata, ignore_errors=True)


@pytest.fixture(scope="session")
def make_schema_engine(database_url: str) -> Iterator:
    """Factory for engines on fresh, empty schemas; every schema is dropped at the end."""
    created: list[tuple[Engine, str]] = []
    admin = db_engine.make_engine(database_url, pool_size=1)

    def make(*, migrate: bool = True) -> Engine:
        schema = f"hf_test_{uuid.uuid4().hex[:12]}"
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        engine = db_engine.make_engine(database_url, schema=schema, pool_size=8)
        created.append((engine, schema))
        if migrate:
            upgrade(engine)
        return engine

    yield make
    for engine, schema in created:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    admin.dispose()


@pytest.fixture(scope="session")
def migrated_engine(make_schema_engine) -> Engine:
    return make_schema_engine()


@pytest.fixture
def engine(migrated_engine: Engine) -> Iterator[Engine]:
    """The session's migrated schema, emptied, installed as the process's engine."""
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with migrated_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    db_engine.set_engine(migrated_engine)
    yield migrated_engine
    db_engine.set_engine(None)


@pytest.fixture(autouse=True, scope="session")
def _private_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Settings read HEALTHFLOW_* once; point the data dir (embedding cache, local cloud
    state) at a temporary directory so tests never write to the user's home."""
    from tasks.settings import get_settings

    patch = pytest.MonkeyPatch()
    patch.setenv("HEALTHFLOW_DATA_DIR", str(tmp_path_factory.mktemp("healthflow-data")))
    get_settings.cache_clear()
    yield
    patch.undo()
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def embedding_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of catalog embeddings for the whole run: computed once, shared by every
    matcher the tests build."""
    return tmp_path_factory.mktemp("lab-embeddings")


@pytest.fixture(scope="session")
def lab_matcher(embedding_cache_dir: Path):  # type: ignore[no-untyped-def]
    """The production matcher, loaded once per session and installed for the steps."""
    from tasks.labs import get_default_matcher
    from tasks.steps.labs import set_matcher

    matcher = get_default_matcher(cache_dir=embedding_cache_dir)
    set_matcher(matcher)
    return matcher


@pytest.fixture(autouse=True, scope="session")
def _quiet_libraries() -> None:
    for name in ("botocore", "boto3", "urllib3", "moto", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
