"""Workflow commands (run, send, start-execution, trace, dlq, graph, cost)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Registered by the workflow package once it exists."""
