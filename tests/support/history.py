"""Look for health data in an execution history as whole values, never as substrings.

A history is full of timestamps and ids ("...:16.8..."), so a substring search for a value such
as "6.8" fails at random. Instead, every JSON string inside the history (inputs and outputs are
JSON documents carried as strings) is decoded, and what is left is split into tokens."""

from __future__ import annotations

import json
import re
from typing import Any

# Tokens are split on blanks and JSON punctuation only: a timestamp ("12:41:06.8") or an ARN
# stays one token, so its digits never pass for a value.
_SEPARATORS = re.compile(r"[\s,;=\"'(){}\[\]]+")


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list | tuple):
        return [leaf for item in value for leaf in _leaves(item)]
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in ("{", "["):
            try:
                return _leaves(json.loads(stripped))
            except ValueError:
                pass
    return [value]


def history_values(history: Any) -> set[str]:
    """Every scalar of the history (as text) and every token of its strings."""
    found: set[str] = set()
    for leaf in _leaves(history):
        if isinstance(leaf, bool) or leaf is None:
            continue
        if isinstance(leaf, int | float):
            found.add(repr(float(leaf)))
            continue
        text = str(leaf)
        found.add(text)
        found.update(t for t in _SEPARATORS.split(text) if t)
    return found


def _forms(value: str) -> set[str]:
    try:
        return {value, repr(float(value))}
    except ValueError:
        return {value}


def assert_no_health_values(history: Any, values: list[str]) -> None:
    found = history_values(history)
    leaked = [v for v in values if _forms(v) & found]
    assert not leaked, f"health values in the execution history: {leaked}"


def assert_no_phrases(history: Any, phrases: list[str]) -> None:
    """Names (test or food names) may be several words: search them in the decoded strings."""
    texts = [leaf for leaf in _leaves(history) if isinstance(leaf, str)]
    leaked = [p for p in phrases if any(p in t for t in texts)]
    assert not leaked, f"names in the execution history: {leaked}"
