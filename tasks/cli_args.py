"""What the command line checks before a command runs: option types with their ranges, a parser
whose every mistake is one line, and the errors a handler raises for a refused request.

Kept apart from `tasks.cli` so that every command module (cli, cli_workflow, console) shares them
without importing one another.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from datetime import date
from typing import NoReturn

# The largest user id the workflow accepts (tasks.steps.models.MAX_USER_ID; not imported here so
# that parsing options never loads pydantic models).
MAX_USER_ID = 2**48 - 1


class UsageError(Exception):
    """A request the command refuses before doing anything (exit 2): names the option and rule."""


class PrerequisiteMissing(Exception):
    """A program the command needs is not installed (exit 6): names it and why."""


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line naming the command, and the help to read."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def _integer(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None


def int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """An integer option in [low, high]."""
    what = "a whole number" + (f" from {low} to {high}" if high is not None else f" >= {low}")

    def parse(text: str) -> int:
        value = _integer(text, what)
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
        return value

    return parse


user_id = int_at_least(1, MAX_USER_ID)
positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not value >= 0 or value == float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def iso_date(text: str) -> date:
    try:
        if len(text) != 10:
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a YYYY-MM-DD date, got {text!r}") from None


def date_range(date_from: date | None, date_to: date | None) -> None:
    """Refuse `--from` after `--to`."""
    if date_from and date_to and date_to < date_from:
        raise UsageError(f"--from {date_from} is after --to {date_to}: give the earlier day first")


def all_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every parser of the tree, the root first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield from all_parsers(child)


__all__ = [
    "MAX_USER_ID",
    "OneLineParser",
    "PrerequisiteMissing",
    "UsageError",
    "all_parsers",
    "date_range",
    "int_at_least",
    "iso_date",
    "non_negative_float",
    "non_negative_int",
    "positive_int",
    "user_id",
]
