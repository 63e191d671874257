"""Database errors by what happened, named for the workflow and described without their text.

psycopg2's message of a server error carries the server's DETAIL and CONTEXT lines, which quote
rows (`CONTEXT: COPY lab_report_raw, line 8116: "..."`), and even the primary message may quote a
value (`invalid input syntax for type double precision: "..."`). Only the SQLSTATE leaves.
"""

from __future__ import annotations

import psycopg2

from tasks.errors import (
    DatabaseConflict,
    DatabaseRejectedRow,
    DatabaseResourceExhausted,
    DatabaseTimeout,
    DatabaseUnavailable,
    HealthflowError,
)

# SQLSTATEs by meaning (PostgreSQL, Appendix A). Class 08 is the connection itself; 57P0x a
# server that shuts down or is not up yet; 53300 a server out of connection slots.
_UNAVAILABLE = ("08", "57P01", "57P02", "57P03", "53300")
_TIMEOUT = ("57014", "55P03", "25P03")  # statement timeout/cancel, lock timeout, idle timeout
_RESOURCES = ("53", "58030")  # insufficient resources (disk, memory, limits), I/O error
_CONFLICT = ("40001", "40P01")  # serialization failure, deadlock
_REJECTED = ("22", "23", "54")  # data exception, integrity constraint, program limit (row size)


def database_error_of(error: BaseException | None) -> psycopg2.Error | None:
    """The driver error that `error` is or was raised from (a SQLAlchemy wrapper, a SystemError
    that psycopg2 raised with a server error pending), if any."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, psycopg2.Error):
            return error
        orig = getattr(error, "orig", None)
        if isinstance(orig, psycopg2.Error):
            return orig
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


def sqlstate(error: BaseException | None) -> str | None:
    found = database_error_of(error)
    return None if found is None else found.pgcode


def _in(code: str, prefixes: tuple[str, ...]) -> bool:
    return any(code.startswith(prefix) for prefix in prefixes)


def error_class_of(code: str) -> type[HealthflowError] | None:
    """The named error of a SQLSTATE, or None when it names no failure the workflow handles."""
    for prefixes, named in (
        (_UNAVAILABLE, DatabaseUnavailable),
        (_TIMEOUT, DatabaseTimeout),
        (_RESOURCES, DatabaseResourceExhausted),
        (_CONFLICT, DatabaseConflict),
        (_REJECTED, DatabaseRejectedRow),
    ):
        if _in(code, prefixes):
            return named
    return None


_WHAT = {
    DatabaseUnavailable: "database connection failed",
    DatabaseTimeout: "a database statement timed out",
    DatabaseResourceExhausted: "the database ran out of a resource",
    DatabaseConflict: "conflict with a concurrent transaction",
    DatabaseRejectedRow: "the database refused a value",
}


def named_database_error(
    error: BaseException, *, disconnected: bool = False
) -> HealthflowError | None:
    """The named error for a database failure (its message is the SQLSTATE only), or None for
    an error of the code itself (a programming error keeps its driver name; not retried)."""
    found = database_error_of(error)
    code = found.pgcode if found is not None else None
    connection_level = isinstance(found, psycopg2.OperationalError | psycopg2.InterfaceError)
    named = error_class_of(code) if code else None
    if disconnected or (named is None and connection_level):
        # Any other operational failure (no SQLSTATE: the socket) is worth a retry, as before.
        named = DatabaseUnavailable
    if named is None:
        return None
    return named(f"{_WHAT[named]}: {type(found or error).__name__} (SQLSTATE {code or 'none'})")
