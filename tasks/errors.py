"""Named domain errors. The class name is the error name Step Functions matches in Retry/Catch,
so renaming one is a breaking change to the state machine."""


class HealthflowError(Exception):
    """Base of all healthflow errors. Messages hold ids and counts only, never health data."""


class InvalidMessage(HealthflowError):
    """A trigger message that does not follow the message contract."""


class DatabaseUnavailable(HealthflowError):
    """The database could not be reached; transient, retried by the workflow."""


class DatabaseTimeout(HealthflowError):
    """A statement or lock wait ran into the step's deadline and the server cancelled it; the
    transaction was rolled back, so the step holds no rows and no locks any more."""


class SchemaOutOfDate(HealthflowError):
    """The database schema is behind the code's migrations."""


class ClaimNotFound(HealthflowError):
    """A step was asked to work on a claim that holds no rows."""


class UnknownStep(HealthflowError):
    """A runner was asked for a step that is not registered."""


class ExecutionNotFound(HealthflowError):
    """No execution of that name (local cloud) or ARN (AWS) exists."""
