"""The first message after a long pause: a paused Aurora Serverless v2 holds a new connection
while it resumes (up to 30 s). `ResumingListener` plays that part in front of the real test
PostgreSQL: the first connection starts a resume, every connection is held until the resume is
over, then forwarded (or counted as abandoned when its client gave up meanwhile).

What is sized here, the connect timeout and the DatabaseUnavailable retrier, is checked two
ways: with real sockets at a small scale (attempts x connect timeout against a short resume,
asserting on the listener's counts, never on a clock), and on the ASL files at full scale."""

from __future__ import annotations

import json
import select
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import make_url, text

from tasks.db import engine as db_engine
from tasks.errors import DatabaseUnavailable
from tasks.settings import Settings
from tasks.statemachines import EXPRESS_ASL, LABS_ASL, SWEEP_ASL

#: The longest Aurora Serverless v2 resume the workflow must ride out (seconds).
RESUME_SECONDS = 30


@dataclass(frozen=True)
class Upstream:
    """Where the real server listens: TCP, or the Unix socket directory the embedded one uses."""

    host: str
    port: int

    def connect(self) -> socket.socket:
        if self.host.startswith("/"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(f"{self.host}/.s.PGSQL.{self.port}")
            return sock
        return socket.create_connection((self.host, self.port))


class ResumingListener:
    """A TCP listener on 127.0.0.1 in front of `upstream` (host, port) that behaves like a
    paused database: the first connection starts a resume of `resume_seconds`; until it ends,
    connections are accepted by the kernel but get no answer."""

    def __init__(self, upstream: Upstream, resume_seconds: float) -> None:
        self.upstream = upstream
        self.resume_seconds = resume_seconds
        self.resumed = threading.Event()
        self._resume_started = threading.Event()
        self._stop = threading.Event()
        self.accepted = 0
        self.abandoned = 0  # the client closed before the resume ended
        self.forwarded = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> ResumingListener:
        self._spawn(self._accept_loop)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.resumed.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._server.close()

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _resume(self) -> None:
        # The simulated resume itself: what a paused instance takes before it answers.
        self._stop.wait(self.resume_seconds)
        self.resumed.set()

    def _accept_loop(self) -> None:
        # A closed listening socket does not wake a blocked accept(): poll for the stop.
        self._server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                self.accepted += 1
            if not self._resume_started.is_set():
                self._resume_started.set()
                self._spawn(self._resume)
            self._spawn(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        with client:
            self.resumed.wait()
            pending, closed = self._drain(client)
            if closed:
                with self._lock:
                    self.abandoned += 1
                return
            with self._lock:
                self.forwarded += 1
            with self.upstream.connect() as upstream:
                upstream.sendall(pending)
                self._pump(client, upstream)

    @staticmethod
    def _drain(client: socket.socket) -> tuple[bytes, bool]:
        """What the client sent while held, and whether it has hung up since."""
        data = b""
        while select.select([client], [], [], 0)[0]:
            try:
                chunk = client.recv(65536)
            except ConnectionResetError:
                return data, True
            if not chunk:
                return data, True
            data += chunk
        return data, False

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        while not self._stop.is_set():
            readable, _, _ = select.select(list(peers), [], [], 0.5)
            for sock in readable:
                try:
                    chunk = sock.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                peers[sock].sendall(chunk)


def _through(listener: ResumingListener, database_url: str) -> str:
    url = make_url(db_engine.sqlalchemy_url(database_url))
    query = {k: v for k, v in url.query.items() if k != "host"}
    moved = url.set(host="127.0.0.1", port=listener.port, query=query)
    return moved.render_as_string(hide_password=False)


@pytest.fixture
def upstream(database_url: str) -> Upstream:
    url = make_url(db_engine.sqlalchemy_url(database_url))
    host = url.host or str(url.query.get("host", ""))
    assert host, database_url
    return Upstream(host, url.port or 5432)


def _select_one(url: str, connect_timeout: int) -> int:
    engine = db_engine.make_engine(url, per_invocation=True, connect_timeout=connect_timeout)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT 1")).scalar_one())
    finally:
        engine.dispose()


def test_a_connect_timeout_longer_than_the_resume_connects_at_the_first_attempt(
    upstream: Upstream, database_url: str
) -> None:
    with ResumingListener(upstream, resume_seconds=1) as listener:
        assert _select_one(_through(listener, database_url), connect_timeout=3) == 1
    assert (listener.accepted, listener.abandoned, listener.forwarded) == (1, 0, 1)


def test_retries_ride_out_a_resume_longer_than_one_attempt(
    upstream: Upstream, database_url: str
) -> None:
    """What the ASL's DatabaseUnavailable retrier does for a step: the first attempt gives up
    (the resume outlasts its connect timeout), the next one is held until the instance is up."""
    # The resume outlasts one attempt (2 s) and ends inside the second (2 s to 4 s): a timeout
    # fires late under load, never early, so the second attempt waits at least until 4 s.
    with ResumingListener(upstream, resume_seconds=3) as listener:
        url = _through(listener, database_url)
        with pytest.raises(DatabaseUnavailable):
            _select_one(url, connect_timeout=2)
        assert _select_one(url, connect_timeout=2) == 1
    # The first attempt hung up before the resume ended (abandoned), the second got through.
    assert (listener.accepted, listener.abandoned, listener.forwarded) == (2, 1, 1)


def _database_tasks(path: Path) -> list[tuple[str, dict]]:
    """(name, state) of every Task that retries DatabaseUnavailable, Map iterators included."""
    found = []

    def walk(states: dict) -> None:
        for name, state in states.items():
            if any("DatabaseUnavailable" in r["ErrorEquals"] for r in state.get("Retry", [])):
                found.append((name, state))
            processor = state.get("ItemProcessor") or state.get("Iterator")
            if processor:
                walk(processor["States"])

    walk(json.loads(path.read_text())["States"])
    return found


@pytest.mark.parametrize("asl", [EXPRESS_ASL, LABS_ASL, SWEEP_ASL], ids=lambda p: p.stem)
def test_every_database_step_rides_out_a_30_second_resume(asl: Path) -> None:
    """At full scale: a held connection fails after the connect timeout, whatever the jitter
    of the wait before the next attempt, so the attempts together must outlast the resume; and
    each attempt's connect must fit inside the state's TimeoutSeconds with room for the work."""
    connect_timeout = Settings().db_connect_timeout_seconds
    tasks = _database_tasks(asl)
    assert tasks
    for name, state in tasks:
        [retrier] = [r for r in state["Retry"] if "DatabaseUnavailable" in r["ErrorEquals"]]
        assert retrier["ErrorEquals"] == ["DatabaseUnavailable"], name  # its own budget
        attempts = 1 + retrier["MaxAttempts"]
        assert connect_timeout * attempts >= RESUME_SECONDS + connect_timeout, name
        # A connect that waited out its timeout still leaves the step time for its work.
        assert connect_timeout + 10 <= state["TimeoutSeconds"], name
