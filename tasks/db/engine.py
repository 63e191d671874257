"""One engine per process: the URL from settings, else an embedded PostgreSQL (pgserver)."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import psycopg2
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext

from tasks.errors import DatabaseUnavailable
from tasks.settings import Settings, get_settings

# pgserver asks platformdirs for a runtime dir that root shells often lack, at start and again at
# exit; its /tmp fallback is fine, so the warning is noise.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

_lock = threading.Lock()
_engine: Engine | None = None
_servers: dict[Path, object] = {}


def embedded_url(pgdata: Path) -> str:
    """Start (or join) the embedded server that keeps its data in `pgdata`; return its URL."""
    import pgserver  # imported late: only the embedded mode needs it

    pgdata.mkdir(parents=True, exist_ok=True)
    if pgdata not in _servers:
        _servers[pgdata] = pgserver.get_server(pgdata, cleanup_mode="stop")
    uri: str = _servers[pgdata].get_uri()  # type: ignore[attr-defined]
    return uri.replace("postgresql://", "postgresql+psycopg2://", 1)


def sqlalchemy_url(url: str) -> str:
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


def make_engine(url: str, *, schema: str | None = None, pool_size: int = 5) -> Engine:
    """An engine for `url`; `schema` pins the search_path (tests isolate themselves that way)."""
    connect_args: dict[str, object] = {"connect_timeout": 10}
    if schema:
        connect_args["options"] = f"-csearch_path={schema}"
    engine = create_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=10,
        pool_pre_ping=True,
        connect_args=connect_args,
    )

    @event.listens_for(engine, "handle_error")
    def _name_unreachable(context: ExceptionContext) -> None:
        # Step Functions retries DatabaseUnavailable; every other error is final.
        # (psycopg2's OperationalError also covers deadlocks and serialization failures,
        # which a retry resolves as well.)
        if context.is_disconnect or isinstance(
            context.original_exception, psycopg2.OperationalError
        ):
            raise DatabaseUnavailable("database connection failed") from context.original_exception

    return engine


def url_from_secret(secret_arn: str, region: str) -> str:
    """A URL built from an RDS-style secret (host, port, username, password, dbname); TLS on."""
    import json
    from urllib.parse import quote

    import boto3

    client = boto3.client("secretsmanager", region_name=region)
    secret = json.loads(client.get_secret_value(SecretId=secret_arn)["SecretString"])
    user, password = quote(secret["username"], safe=""), quote(secret["password"], safe="")
    host, port = secret["host"], secret.get("port", 5432)
    name = secret.get("dbname", "postgres")
    return f"postgresql+psycopg2://{user}:{password}@{host}:{port}/{name}?sslmode=require"


def database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    if settings.db_secret_arn:
        return url_from_secret(settings.db_secret_arn, settings.aws_region)
    return embedded_url(settings.embedded_pgdata)


def get_engine() -> Engine:
    global _engine
    with _lock:
        if _engine is None:
            _engine = make_engine(database_url(get_settings()))
        return _engine


def set_engine(engine: Engine | None) -> None:
    """Install the process's engine (the local cloud and tests share theirs with the steps)."""
    global _engine
    with _lock:
        _engine = engine
