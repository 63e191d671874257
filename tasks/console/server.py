"""The console's HTTP server: the standard library's, on a loopback address only.

Handlers stay thin: parse the query into a pydantic model, call :class:`Console`, return JSON.
There is no login because nothing listens beyond this machine; requests whose Host is not the
loopback address are refused (a web page elsewhere cannot reach the console by DNS tricks), and
the actions need a header a cross-site form cannot send. The server logs nothing: request lines
carry user ids, and the page shows the user's own lab names.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tasks.console.executions import Filters, Machine
from tasks.console.live import RunAlreadyActive
from tasks.console.state import Console
from tasks.errors import ExecutionNotFound, HealthflowError

ACTION_HEADER = "X-Healthflow-Console"
STATIC_FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "chart.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}


class NotLoopback(HealthflowError):
    """The console serves this machine only."""


def check_loopback(host: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise NotLoopback(f"the console binds a loopback address only, not {host!r}") from None
    if not address.is_loopback:
        raise NotLoopback(f"the console binds a loopback address only, not {host}")
    return host


class ExecutionQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    status: Literal["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"] | None = None
    domain: Literal["labs", "vitals", "nutrition"] | None = None
    user_id: int | None = Field(default=None, gt=0)

    @field_validator("status", "domain", "user_id", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


class AggregateQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    domain: Literal["labs", "vitals", "nutrition"]
    granularity: Literal["hourly", "daily", "weekly", "monthly", "quarterly", "yearly"]
    user_id: int = Field(gt=0)


def _query(path: str) -> dict[str, str]:
    return {key: values[-1] for key, values in parse_qs(urlsplit(path).query).items()}


def _static(name: str) -> bytes:
    return (resources.files("tasks.console") / "static" / name).read_bytes()


Route = Callable[["ConsoleHandler", re.Match[str]], Any]


class ConsoleHandler(BaseHTTPRequestHandler):
    console: Console  # set on the subclass `make_server` builds
    server_version = "healthflow-console"

    def log_message(self, format: str, *args: Any) -> None:
        """Silent on purpose: see the module's docstring."""

    # ------------------------------------------------------------------ plumbing

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        # The page may load only what this server serves.
        self.send_header(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; connect-src 'self'",
        )
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _host_ok(self) -> bool:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        return host in ("127.0.0.1", "localhost", "::1")

    def _dispatch(self, routes: list[tuple[re.Pattern[str], Route]]) -> None:
        if not self._host_ok():
            self._json(HTTPStatus.FORBIDDEN, {"error": "the console answers on loopback only"})
            return
        path = unquote(urlsplit(self.path).path)
        for pattern, route in routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            try:
                result = route(self, match)
            except ValidationError as error:
                first = error.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                self._json(HTTPStatus.BAD_REQUEST, {"error": f"{where}: {first['msg']}"})
            except ExecutionNotFound as error:
                self._json(HTTPStatus.NOT_FOUND, {"error": str(error)})
            except RunAlreadyActive as error:
                self._json(HTTPStatus.CONFLICT, {"error": str(error)})
            except Exception as error:  # the page shows the name; nothing else leaves
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": type(error).__name__})
            else:
                if result is not None:
                    self._json(HTTPStatus.OK, result)
            return
        self._json(HTTPStatus.NOT_FOUND, {"error": "no such page"})

    def do_GET(self) -> None:
        self._dispatch(GET_ROUTES)

    def do_POST(self) -> None:
        if self.headers.get(ACTION_HEADER) != "1":
            self._json(HTTPStatus.FORBIDDEN, {"error": f"actions need the {ACTION_HEADER} header"})
            return
        self._dispatch(POST_ROUTES)

    # ------------------------------------------------------------------ handlers

    def page(self, _: re.Match[str]) -> None:
        self._send(HTTPStatus.OK, _static("index.html"), "text/html; charset=utf-8")

    def static(self, match: re.Match[str]) -> None:
        name = match["name"]
        if name not in STATIC_FILES:
            self._json(HTTPStatus.NOT_FOUND, {"error": "no such file"})
            return
        self._send(HTTPStatus.OK, _static(name), STATIC_FILES[name])

    def list_executions(self, _: re.Match[str]) -> dict[str, Any]:
        query = ExecutionQuery.model_validate(_query(self.path))
        filters = Filters(query.status, query.domain, query.user_id)
        report = self.console.live.report
        return {
            "executions": [s.as_json() for s in self.console.executions(filters)],
            "run": {**vars(report), "active": self.console.live.active},
        }

    def one_execution(self, match: re.Match[str]) -> dict[str, Any]:
        machine: Machine = "express" if match["machine"] == "express" else "labs"
        return self.console.execution(machine, match["name"])

    def dead_letters(self, _: re.Match[str]) -> dict[str, Any]:
        return {"dead_letters": self.console.dead_letters(), "queued": self.console.queued()}

    def redrive(self, _: re.Match[str]) -> dict[str, Any]:
        return self.console.redrive()

    def run(self, _: re.Match[str]) -> dict[str, Any]:
        self.console.live.start()
        return {"started": True}

    def users(self, _: re.Match[str]) -> dict[str, Any]:
        return {"users": self.console.users()}

    def aggregates(self, _: re.Match[str]) -> dict[str, Any]:
        query = AggregateQuery.model_validate(_query(self.path))
        return self.console.aggregates(query.domain, query.granularity, query.user_id)


GET_ROUTES: list[tuple[re.Pattern[str], Route]] = [
    (re.compile(r"/"), ConsoleHandler.page),
    (re.compile(r"/static/(?P<name>[a-z]+\.[a-z]+)"), ConsoleHandler.static),
    (re.compile(r"/api/executions"), ConsoleHandler.list_executions),
    (
        re.compile(r"/api/executions/(?P<machine>express|labs)/(?P<name>[A-Za-z0-9_.:-]{1,80})"),
        ConsoleHandler.one_execution,
    ),
    (re.compile(r"/api/dead-letters"), ConsoleHandler.dead_letters),
    (re.compile(r"/api/users"), ConsoleHandler.users),
    (re.compile(r"/api/aggregates"), ConsoleHandler.aggregates),
]
POST_ROUTES: list[tuple[re.Pattern[str], Route]] = [
    (re.compile(r"/api/dead-letters/redrive"), ConsoleHandler.redrive),
    (re.compile(r"/api/run"), ConsoleHandler.run),
]


def make_server(console: Console, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """A server bound to a loopback address (port 0 picks a free one)."""
    handler = type("BoundConsoleHandler", (ConsoleHandler,), {"console": console})
    server = ThreadingHTTPServer((check_loopback(host), port), handler)
    server.daemon_threads = True
    return server
