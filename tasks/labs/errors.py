"""Named errors of lab categorization (their class names are Step Functions error names)."""


class CategorizationFailed(Exception):
    """Categorization cannot run at all, e.g. the embedding model cannot be loaded.

    The message never contains test names or values: only paths and exception types.
    """
