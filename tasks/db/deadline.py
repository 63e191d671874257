"""Every statement of a step ends before the step's state times out.

Step Functions gives each Task state a TimeoutSeconds (the ASL). When the state times out, or
the runner gives up, nothing stops the step's statement on the server: it went on holding its
row locks, and later claims skipped those rows and reported nothing to do. So the runner opens
a deadline for the state it runs (`for_state`), and each transaction of the step bounds its
statements and lock waits by the time left (`bound`): `statement_timeout` and `lock_timeout`
are set per transaction (SET LOCAL, gone with it) and lowered as the deadline nears. A
statement that hits them is cancelled by the server, its transaction rolls back, and the step
fails with DatabaseTimeout holding nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, event

from tasks.errors import DatabaseTimeout

# Statements end this share of the deadline early (at most MAX_MARGIN seconds): the step still
# has to turn the cancellation into its error and return before the state gives up.
MARGIN = 0.1
MAX_MARGIN = 5.0


@lru_cache(maxsize=1)
def _asl_timeouts() -> dict[str, int]:
    from tasks.statemachines import state_timeouts

    return state_timeouts()


@dataclass
class Deadline:
    """The moment a step's statements must have ended, on the monotonic clock `clock`."""

    seconds: float
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def remaining_ms(self) -> int:
        margin = min(MAX_MARGIN, self.seconds * MARGIN)
        return int((self.seconds - margin - (self.clock() - self.started)) * 1000)


_current: ContextVar[Deadline | None] = ContextVar("step_deadline", default=None)


def current() -> Deadline | None:
    return _current.get()


@contextmanager
def for_state(
    state: str | None, *, seconds: float | None = None, lambda_context: Any = None
) -> Iterator[Deadline | None]:
    """The deadline of a step run for `state`: the earliest of its TimeoutSeconds in the ASL,
    `seconds` (the runner's own limit) and, in Lambda, the invocation's end."""
    limits = [_asl_timeouts().get(state or ""), seconds]
    if lambda_context is not None and hasattr(lambda_context, "get_remaining_time_in_millis"):
        limits.append(lambda_context.get_remaining_time_in_millis() / 1000)
    known = [limit for limit in limits if limit is not None]
    deadline = Deadline(min(known)) if known else None
    token = _current.set(deadline)
    try:
        yield deadline
    finally:
        _current.reset(token)


_SET_TIMEOUTS = (
    "SELECT set_config('statement_timeout', %(ms)s, true), set_config('lock_timeout', %(ms)s, true)"
)


def _milliseconds(deadline: Deadline) -> str:
    remaining = deadline.remaining_ms()
    if remaining <= 0:
        raise DatabaseTimeout("the step's deadline passed before its next statement")
    return str(remaining)


def bound(conn: Connection) -> None:
    """Bound every statement of `conn`'s transaction by the current step's deadline (if any).

    The timeouts are lowered again before a statement once a second or more went by, so a
    step's many statements together end in time, not only each on its own."""
    deadline = current()
    if deadline is None:
        return
    conn.exec_driver_sql(_SET_TIMEOUTS, {"ms": _milliseconds(deadline)})
    last_set = deadline.clock()

    def _lower(conn, cursor, statement, parameters, context, executemany):
        nonlocal last_set
        if deadline.clock() - last_set >= 1.0:
            last_set = deadline.clock()
            own = cursor.connection.cursor()
            try:
                own.execute(_SET_TIMEOUTS, {"ms": _milliseconds(deadline)})
            finally:
                own.close()

    event.listen(conn, "before_cursor_execute", _lower)
