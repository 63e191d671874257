"""One engine per process: the URL from settings, else an embedded PostgreSQL (pgserver).

Three ways to reach PostgreSQL, chosen by settings:
- ``HEALTHFLOW_DATABASE_URL``: a URL (local runs, tests, CI);
- ``HEALTHFLOW_DB_HOST`` + ``HEALTHFLOW_DB_USER`` + ``HEALTHFLOW_DB_NAME``: IAM database
  authentication, as the steps Lambda and the ml-worker connect in AWS. Each new connection gets
  a token signed locally by boto3 (``rds.generate_db_auth_token``: no API call, valid 15 minutes),
  so nothing cached at cold start expires or rotates, and TLS is required;
- neither: the embedded server under the data directory.
In Lambda (the runtime sets AWS_LAMBDA_FUNCTION_NAME) there is no pool: each checkout opens a
connection that the step's transaction closes, so a warm function holds no idle connection (Aurora
Serverless v2 can pause at 0 ACU, and the open connections never exceed the running steps).
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
from sqlalchemy import URL, Engine, NullPool, create_engine, event
from sqlalchemy.engine import ExceptionContext

from tasks.db.failures import named_database_error
from tasks.progress import notice
from tasks.settings import MissingSetting, Settings, get_settings

# pgserver asks platformdirs for a runtime dir that root shells often lack, at start and again at
# exit; its /tmp fallback is fine, so the warning is noise.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

_lock = threading.Lock()
_engine: Engine | None = None
_servers: dict[Path, object] = {}


def keep_running_marker(pgdata: Path) -> Path:
    """While this file exists the embedded server outlives the processes that use it:
    `healthflow db url` starts it for other programs, `healthflow db stop` removes the file and
    stops the server."""
    return pgdata.with_name(pgdata.name + ".keep-running")


def forget_dead_handles(pgdata: Path) -> list[int]:
    """pgserver lists the processes that use a server in `.handle_pids.json` and stops it when
    the last of them exits. A process killed with SIGKILL never takes its pid off, so the
    server ran on for good: later commands found another user listed and left it running, and
    `db stop` said it was still in use. Take the pids of processes that no longer exist off the
    list; returns them."""
    path = pgdata / ".handle_pids.json"
    try:
        pids = [int(pid) for pid in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError):
        return []
    dead = [pid for pid in pids if not _process_exists(pid)]
    if dead:
        path.write_text(json.dumps([pid for pid in pids if pid not in dead]))
    return dead


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def embedded_url(pgdata: Path) -> str:
    """Start (or join) the embedded server that keeps its data in `pgdata`; return its URL."""
    import pgserver  # imported late: only the embedded mode needs it

    pgdata.mkdir(parents=True, exist_ok=True)
    if pgdata not in _servers:
        notice(f"starting the embedded PostgreSQL in {pgdata} (a few seconds)")
        keep = keep_running_marker(pgdata).exists()
        forget_dead_handles(pgdata)
        _servers[pgdata] = pgserver.get_server(pgdata, cleanup_mode=None if keep else "stop")
        _log_no_statements(_servers[pgdata].get_uri())  # type: ignore[attr-defined]
    uri: str = _servers[pgdata].get_uri()  # type: ignore[attr-defined]
    return uri.replace("postgresql://", "postgresql+psycopg2://", 1)


# What the server writes to its log about a failing statement: by default the statement itself
# (an INSERT with other rows' test names and values), the error's DETAIL and CONTEXT (the row)
# and its message, which may quote a value (`invalid input syntax for type integer: "..."`).
# Errors of statements are not logged at all (the application names them by SQLSTATE); fatal
# ones (a connection ended) still are. A managed PostgreSQL needs the same settings (README,
# "Health data and the database log").
SERVER_LOG_SETTINGS = {
    "log_min_messages": "fatal",
    "log_min_error_statement": "panic",
    "log_error_verbosity": "terse",
    "log_parameter_max_length_on_error": "0",
    "log_min_duration_statement": "-1",
    "log_statement": "none",
}


def _log_no_statements(uri: str) -> None:
    """Apply SERVER_LOG_SETTINGS to the embedded server (kept in its postgresql.auto.conf)."""
    connection = psycopg2.connect(uri)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            for name, value in SERVER_LOG_SETTINGS.items():
                cursor.execute(f"ALTER SYSTEM SET {name} = %s", (value,))
            cursor.execute("SELECT pg_reload_conf()")
    finally:
        connection.close()


def stop_embedded(pgdata: Path) -> None:
    """Stop the embedded server of `pgdata` now (it otherwise stops when the process exits)."""
    server = _servers.pop(pgdata, None)
    if server is not None:
        server.cleanup()  # type: ignore[attr-defined]


def sqlalchemy_url(url: str) -> str:
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


def make_engine(
    url: str | URL,
    *,
    schema: str | None = None,
    pool_size: int = 5,
    per_invocation: bool = False,
    connect_timeout: int = 10,
) -> Engine:
    """An engine for `url`; `schema` pins the search_path (tests isolate themselves that way).

    `per_invocation`: no pool, each checkout opens a connection and its release closes it."""
    connect_args: dict[str, object] = {"connect_timeout": connect_timeout}
    if schema:
        connect_args["options"] = f"-csearch_path={schema}"
    pooling: dict[str, Any] = (
        {"poolclass": NullPool}
        if per_invocation
        else {"pool_size": pool_size, "max_overflow": 10, "pool_pre_ping": True}
    )
    engine = create_engine(
        sqlalchemy_url(url) if isinstance(url, str) else url,
        connect_args=connect_args,
        **pooling,
    )

    @event.listens_for(engine, "handle_error")
    def _name_failure(context: ExceptionContext) -> None:
        # The workflow retries by these names (connection, timeout, resources, conflict) and
        # isolates rows by DatabaseRejectedRow; see tasks/db/failures.py.
        named = named_database_error(context.original_exception, disconnected=context.is_disconnect)
        if named is not None:
            raise named from context.original_exception

    return engine


def url_from_secret(secret_arn: str, region: str | None, db_name: str | None = None) -> str:
    """A URL built from an RDS-style secret (host, port, username, password); TLS on.

    The database name is `db_name` (HEALTHFLOW_DB_NAME), else the secret's `dbname`: never a
    guess, since the server's default database is not where healthflow's tables are."""
    import json
    from urllib.parse import quote

    import boto3

    client = boto3.client("secretsmanager", region_name=region)
    secret = json.loads(client.get_secret_value(SecretId=secret_arn)["SecretString"])
    user, password = quote(secret["username"], safe=""), quote(secret["password"], safe="")
    host, port = secret["host"], secret.get("port", 5432)
    name = db_name or secret.get("dbname")
    if not name:
        raise MissingSetting("HEALTHFLOW_DB_NAME must be set: the secret names no database")
    return f"postgresql+psycopg2://{user}:{password}@{host}:{port}/{name}?sslmode=require"


def iam_url(settings: Settings) -> URL:
    """The URL of an IAM-authenticated connection (no password: a token is added per connect)."""
    return URL.create(
        "postgresql+psycopg2",
        username=settings.require("db_user"),
        host=settings.require("db_host"),
        port=settings.db_port,
        database=settings.require("db_name"),
        query={"sslmode": "require"},
    )


def uses_iam_authentication(settings: Settings) -> bool:
    return not settings.database_url and bool(settings.db_host)


def add_iam_token(engine: Engine, rds_client: Any) -> None:
    """Sign a fresh IAM token for every new connection (locally: SigV4, no network call)."""
    url = engine.url

    @event.listens_for(engine, "do_connect")
    def _token(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        cparams["password"] = rds_client.generate_db_auth_token(
            DBHostname=url.host, Port=url.port or 5432, DBUsername=url.username
        )


def database_url(settings: Settings) -> str | URL:
    if settings.database_url:
        return settings.database_url
    if uses_iam_authentication(settings):
        return iam_url(settings)
    if settings.db_secret_arn:
        return url_from_secret(settings.db_secret_arn, settings.aws_region, settings.db_name)
    return embedded_url(settings.embedded_pgdata)


def engine_from_settings(
    settings: Settings, *, per_invocation: bool = False, rds_client: Any = None
) -> Engine:
    url = database_url(settings)
    engine = make_engine(
        url, per_invocation=per_invocation, connect_timeout=settings.db_connect_timeout_seconds
    )
    if uses_iam_authentication(settings):
        from tasks.aws import client

        add_iam_token(engine, rds_client or client("rds", settings))
    return engine


def database_key(settings: Settings) -> str:
    """A short, stable name for the database the settings point at, without connecting or
    starting anything: state that belongs to one database (the local cloud's queue, traces and
    dead letters) is kept under it, so two databases never see each other's."""
    import hashlib

    from sqlalchemy.engine import make_url

    if settings.database_url:
        url = make_url(sqlalchemy_url(settings.database_url))
        identity = url.set(password=None).render_as_string(hide_password=False)
    elif settings.db_host:
        where = f"{settings.db_host}:{settings.db_port}/{settings.db_name}"
        identity = f"iam:{settings.db_user}@{where}"
    elif settings.db_secret_arn:
        identity = settings.db_secret_arn
    else:
        identity = f"embedded:{settings.embedded_pgdata.resolve()}"
    return hashlib.sha256(identity.encode()).hexdigest()[:12]


def get_engine() -> Engine:
    global _engine
    with _lock:
        if _engine is None:
            settings = get_settings()
            in_lambda = settings.lambda_function_name is not None
            _engine = engine_from_settings(settings, per_invocation=in_lambda)
        return _engine


def current_engine() -> Engine | None:
    """The process's engine if one is installed or made already (never starts a server)."""
    return _engine


def set_engine(engine: Engine | None) -> None:
    """Install the process's engine (the local cloud and tests share theirs with the steps)."""
    global _engine
    with _lock:
        _engine = engine
