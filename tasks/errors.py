"""Named domain errors. The class name is the error name Step Functions matches in Retry/Catch,
so renaming one is a breaking change to the state machine."""


class HealthflowError(Exception):
    """Base of all healthflow errors. Messages hold ids and counts only, never health data."""


class InvalidMessage(HealthflowError):
    """A trigger message that does not follow the message contract."""


class DatabaseUnavailable(HealthflowError):
    """The database could not be reached; transient, retried by the workflow."""


class DatabaseTimeout(HealthflowError):
    """A statement or lock wait ran past its timeout (the step's deadline, tasks.db.deadline) and
    the server cancelled it; the transaction was rolled back, so the step holds no rows and no
    locks any more. Retried after a pause."""


class SchemaOutOfDate(HealthflowError):
    """The database schema is behind the code's migrations."""


class ClaimNotFound(HealthflowError):
    """A step was asked to work on a claim that holds no rows."""


class UnknownStep(HealthflowError):
    """A runner was asked for a step that is not registered."""


class ExecutionNotFound(HealthflowError):
    """No execution of that name (local cloud) or ARN (AWS) exists."""


# Database failures other than an unreachable server, each named for what it needs: a timeout
# and exhausted resources are retried with a longer wait, a conflict at once, a refused row never
# (it is isolated with its reason). The messages carry the SQLSTATE, never the server's text,
# whose DETAIL and CONTEXT quote the row.


class DatabaseResourceExhausted(HealthflowError):
    """The server ran out of disk, memory or another configured resource; retried later."""


class DatabaseConflict(HealthflowError):
    """A deadlock or serialization failure with a concurrent transaction; retried at once."""


class DatabaseRejectedRow(HealthflowError):
    """The database refused a value (too large for an index, out of its type's range, a
    constraint): a permanent fault of the rows, not of the database; never retried as is."""
