"""What a user sees while work takes longer than a moment: a bar on a terminal, a plain line
every few seconds otherwise (CI logs, pipes), and one-line notices for slow starts.

Library code reports through here (or the `tasks.progress` logger), never with print: the CLI
decides where it goes; in Lambda and ECS the notices land in the structured log."""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Any

logger = logging.getLogger("tasks.progress")


def notice(message: str) -> None:
    """A one-line note about something slow starting ("loading the model ...")."""
    logger.info(message)


def enable_notices(stream: IO[str] | None = None) -> None:
    """Send notices to stderr as plain lines (the CLI calls this once)."""
    if any(getattr(h, "_healthflow_notices", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("healthflow: %(message)s"))
    handler._healthflow_notices = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


class Progress:
    """Counts work done out of `total`: a tqdm bar on a terminal, else a line every `every` s."""

    def __init__(
        self,
        total: int | None,
        *,
        unit: str,
        description: str,
        stream: IO[str] | None = None,
        every: float = 5.0,
    ) -> None:
        self.total, self.unit, self.description = total, unit, description
        self.stream = stream or sys.stderr
        self.every = every
        self.done = 0
        self._started = self._last = time.monotonic()
        self._bar: Any = None
        if self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit=unit, desc=description, file=self.stream)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self._line()

    def grow(self, n: int = 1) -> None:
        """More work than announced: a finished execution queued its continuation."""
        if self.total is not None:
            self.total += n
            if self._bar is not None:
                self._bar.total = self.total
                self._bar.refresh()

    def _line(self) -> None:
        of = f"/{self.total:,}" if self.total is not None else ""
        elapsed = time.monotonic() - self._started
        print(
            f"healthflow: {self.description}: {self.done:,}{of} {self.unit} ({elapsed:.0f} s)",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
