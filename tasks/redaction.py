"""Exceptions as text that may leave the process: stderr, logs, traces, dead letters.

healthflow's own errors carry ids and counts only, so their messages stay. Any other message may
quote health data: a driver error's DETAIL and CONTEXT quote the failing row, SQLAlchemy adds the
statement's parameters, pydantic the input. Those messages are withheld (the SQLSTATE is kept);
the frames of a traceback stay, since they are code.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from types import TracebackType

from tasks.db.failures import sqlstate
from tasks.errors import HealthflowError

_CHAIN_LIMIT = 10


def safe_message(error: BaseException) -> str:
    if isinstance(error, HealthflowError):
        return str(error)
    code = sqlstate(error)
    if isinstance(error, OSError) and code is None:
        return str(error)  # a file's name and the system's reason
    return "message withheld (it may quote health data)" + (f"; SQLSTATE {code}" if code else "")


def _chain(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain and len(chain) < _CHAIN_LIMIT:
        chain.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return chain[::-1]


def data_free_traceback(error: BaseException, tb: TracebackType | None = None) -> str:
    """Like Python's own traceback of `error` and the exceptions it was raised from, with
    every message that may quote data replaced by `safe_message`."""
    parts: list[str] = []
    for position, item in enumerate(_chain(error)):
        if position:
            parts.append("\nwhile handling it, or because of it:\n\n")
        frames = tb if item is error and tb is not None else item.__traceback__
        if frames is not None:
            parts.append("Traceback (most recent call last):\n")
            parts.extend(traceback.format_tb(frames))
        name = type(item).__qualname__
        module = type(item).__module__
        parts.append(f"{name if module == 'builtins' else module + '.' + name}: ")
        parts.append(f"{safe_message(item)}\n")
    return "".join(parts)


class DataFreeFormatter(logging.Formatter):
    """A formatter whose tracebacks are `data_free_traceback`s."""

    def formatException(self, ei: object) -> str:
        error = ei[1] if isinstance(ei, tuple) else None
        if not isinstance(error, BaseException):
            return ""
        return data_free_traceback(error, ei[2]).rstrip("\n")  # type: ignore[index]


def _excepthook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
    sys.stderr.write(data_free_traceback(error, tb))


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        where = args.thread.name if args.thread is not None else "a thread"
        sys.stderr.write(f"exception in {where}:\n")
        sys.stderr.write(data_free_traceback(args.exc_value, args.exc_traceback))


def install_data_free_hooks(*, root_log_handlers: bool = True) -> None:
    """Uncaught exceptions (including what a C extension prints with PyErr_Print, which psycopg2
    does with a server error pending) and, with `root_log_handlers`, logged tracebacks, all
    without data. (The runners' own log lines name errors, never format them.)"""
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook
    if not root_log_handlers:
        return
    for handler in logging.getLogger().handlers:
        fmt = handler.formatter._fmt if handler.formatter else None
        handler.setFormatter(DataFreeFormatter(fmt))
