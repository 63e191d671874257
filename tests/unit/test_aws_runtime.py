"""Running in AWS: the runtime's region, IAM database authentication, a connection per Lambda
invocation, and migrations that wait for a resuming database."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest
from sqlalchemy import NullPool, QueuePool, text

from tasks.db import engine as db_engine
from tasks.errors import DatabaseUnavailable, InvalidMessage
from tasks.runners.lambda_handler import Backoff, handler, retry_while_unavailable
from tasks.settings import MissingSetting, Settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(("HEALTHFLOW_", "ML_WORKER_", "AWS_")):
            monkeypatch.delenv(name)
    return monkeypatch


# ---------------------------------------------------------------------------- region


def test_region_is_the_runtimes(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AWS_REGION", "ap-southeast-2")
    assert Settings().aws_region == "ap-southeast-2"
    from tasks.aws import client

    assert client("sqs", Settings()).meta.region_name == "ap-southeast-2"


def test_without_aws_region_boto3s_default_chain_decides(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    assert Settings().aws_region is None  # nothing pins us-east-1
    from tasks.aws import client

    assert client("ssm", Settings()).meta.region_name == "eu-central-1"


def test_the_seed_producers_environment_names_are_accepted(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ML_WORKER_ENABLED", "false")
    clean_env.setenv("ML_WORKER_SQS_QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/1/q")
    settings = Settings()
    assert settings.enabled is False
    assert settings.queue_url == "https://sqs.eu-west-1.amazonaws.com/1/q"
    clean_env.setenv("HEALTHFLOW_QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/1/other")
    assert Settings().queue_url.endswith("/other")  # type: ignore[union-attr]


# ---------------------------------------------------------------------------- database


def test_iam_authentication_signs_a_token_per_connection_with_tls(
    clean_env: pytest.MonkeyPatch,
) -> None:
    settings = Settings(db_host="db.example.internal", db_user="healthflow_app", db_name="app")
    url = db_engine.database_url(settings)
    assert not isinstance(url, str)
    assert (url.host, url.port, url.username, url.database) == (
        "db.example.internal", 5432, "healthflow_app", "app"
    )  # fmt: skip
    assert url.query["sslmode"] == "require" and url.password is None

    class SigningClient:
        def __init__(self) -> None:
            self.calls: list[dict[str, Any]] = []

        def generate_db_auth_token(self, **kwargs: Any) -> str:
            self.calls.append(kwargs)
            return f"token-{len(self.calls)}"

    rds = SigningClient()
    engine = db_engine.engine_from_settings(settings, rds_client=rds)
    params: list[dict[str, Any]] = []

    from sqlalchemy import event

    @event.listens_for(engine, "do_connect")
    def _capture(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        params.append(dict(cparams))
        return object()  # a stand-in connection object: nothing is dialed

    engine.pool._creator()  # type: ignore[attr-defined]
    engine.pool._creator()  # type: ignore[attr-defined]
    assert [p["password"] for p in params] == ["token-1", "token-2"]
    assert rds.calls[0] == {
        "DBHostname": "db.example.internal", "Port": 5432, "DBUsername": "healthflow_app"
    }  # fmt: skip


def test_a_real_boto3_token_is_signed_offline(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    clean_env.setenv("AWS_REGION", "eu-west-1")
    from tasks.aws import client

    token = client("rds", Settings()).generate_db_auth_token(
        DBHostname="db.example.internal", Port=5432, DBUsername="healthflow_app"
    )
    assert token.startswith("db.example.internal:5432/?Action=connect")
    assert "X-Amz-Signature=" in token and "eu-west-1" in token


def test_the_database_name_is_never_guessed(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(MissingSetting, match="HEALTHFLOW_DB_NAME"):
        db_engine.database_url(Settings(db_host="h", db_user="u"))


def test_lambda_keeps_no_pool_across_invocations(clean_env: pytest.MonkeyPatch) -> None:
    url = "postgresql://u@127.0.0.1:9/x"
    in_lambda = db_engine.engine_from_settings(
        Settings(database_url=url, lambda_function_name="healthflow-steps"), per_invocation=True
    )
    assert isinstance(in_lambda.pool, NullPool)
    assert isinstance(db_engine.engine_from_settings(Settings(database_url=url)).pool, QueuePool)


def test_get_engine_in_lambda_uses_no_pool(clean_env: pytest.MonkeyPatch) -> None:
    from tasks.settings import get_settings

    clean_env.setenv("AWS_LAMBDA_FUNCTION_NAME", "healthflow-steps")
    clean_env.setenv("HEALTHFLOW_DATABASE_URL", "postgresql://u@127.0.0.1:9/x")
    get_settings.cache_clear()
    previous = db_engine._engine
    db_engine.set_engine(None)
    try:
        assert isinstance(db_engine.get_engine().pool, NullPool)
    finally:
        db_engine.set_engine(previous)
        get_settings.cache_clear()


def test_a_connection_per_invocation_really_closes(engine: Any) -> None:
    """Against the test database: a released connection is gone from the server."""
    per_invocation = db_engine.make_engine(engine.url, per_invocation=True)
    with per_invocation.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with engine.connect() as conn:
        alive = conn.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        ).scalar_one()
    assert alive == 0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_database_is_database_unavailable() -> None:
    unreachable = db_engine.make_engine(
        f"postgresql://u@127.0.0.1:{_closed_port()}/x", per_invocation=True, connect_timeout=2
    )
    with pytest.raises(DatabaseUnavailable), unreachable.connect():
        pass


# ---------------------------------------------------------------------------- migrations on deploy


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def test_migrations_wait_for_a_resuming_database() -> None:
    clock, attempts = FakeClock(), []

    def migrate() -> dict[str, Any]:
        attempts.append(clock.now)
        clock.now += 10  # each failed connect waits out its connect timeout
        if len(attempts) < 3:
            raise DatabaseUnavailable("database connection failed")
        return {"revision": "head"}

    assert retry_while_unavailable(migrate, sleep=clock.sleep, clock=clock) == {"revision": "head"}
    assert clock.sleeps == [2.0, 4.0]


def test_migrations_give_up_after_a_minute() -> None:
    clock, attempts = FakeClock(), []

    def never() -> dict[str, Any]:
        attempts.append(clock.now)
        raise DatabaseUnavailable("database connection failed")

    with pytest.raises(DatabaseUnavailable):
        retry_while_unavailable(never, Backoff(), sleep=clock.sleep, clock=clock)
    assert clock.now == pytest.approx(60.0)  # the last wait is cut to the deadline
    assert clock.sleeps == [2.0, 4.0, 8.0, 16.0, 16.0, 14.0] and len(attempts) == 7


def test_other_errors_fail_the_deploy_at_once() -> None:
    clock, attempts = FakeClock(), []

    def broken() -> dict[str, Any]:
        attempts.append(1)
        raise InvalidMessage("a migration failed")

    with pytest.raises(InvalidMessage):
        retry_while_unavailable(broken, sleep=clock.sleep, clock=clock)
    assert attempts == [1] and clock.sleeps == []


def test_the_custom_resource_retries_the_migrate_step(monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks.runners import lambda_handler

    clock = FakeClock()
    monkeypatch.setattr(lambda_handler.time, "sleep", clock.sleep)
    monkeypatch.setattr(lambda_handler.time, "monotonic", clock)
    calls: list[str] = []

    def runner(name: str, payload: dict[str, Any]) -> dict[str, Any]:
        calls.append(name)
        if len(calls) == 1:
            raise DatabaseUnavailable("database connection failed")
        return {"revision": "0001"}

    event = {"RequestType": "Update", "ResourceProperties": {"step": "migrate", "input": {}}}
    assert handler(event, None, run_step=runner)["Data"] == {"revision": "0001"}
    assert calls == ["migrate", "migrate"] and clock.sleeps == [2.0]
