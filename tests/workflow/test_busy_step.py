"""A step busy in computation (the pipe's drain runs in the main thread, each execution in its
own): the drain's timeout and Ctrl-C still stop `run`. Only a step that holds the interpreter
lock for long (a backtracking pattern over a huge name, see tests/db/test_labs_long_names.py)
could stop them, and the lab name patterns no longer see such input."""

from __future__ import annotations

import signal
import threading
from typing import Any

import pytest

from tasks.localcloud.cloud import LocalCloud
from tasks.localcloud.moto_ext import silence_parser_logs


class BusyClaim:
    """Validates like the real step, then computes in the claim until released. (Only the claim:
    an execution left running by an earlier test may call the next test's runner.)"""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.spins = 0

    def __call__(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        if name == "validate_message":
            return {"job_type": "process_pending_vitals", "domain": "vitals", "user_id": 1,
                    "priority": "normal", "reprocess": None, "trigger": {}}  # fmt: skip
        if name != "claim":
            return {}
        self.entered.set()
        while not self.release.is_set():  # pure computation: never waits on anything
            self.spins += 1
        return {}


@pytest.fixture
def busy() -> Any:
    silence_parser_logs()
    step = BusyClaim()
    yield step
    step.release.set()


def test_the_drain_timeout_fires_while_a_step_computes(busy: BusyClaim) -> None:
    with LocalCloud(run_step=busy, execution_timeout_seconds=0.5) as cloud:
        cloud.send_message({"job_type": "process_pending_vitals", "user_id": 1})
        with pytest.raises(TimeoutError, match="1 still running"):
            cloud.drain()
    assert busy.entered.is_set() and not busy.release.is_set()


def test_ctrl_c_stops_the_drain_while_a_step_computes(busy: BusyClaim) -> None:
    def interrupt_once_busy() -> None:
        busy.entered.wait()
        signal.raise_signal(signal.SIGINT)

    with LocalCloud(run_step=busy, execution_timeout_seconds=600) as cloud:
        cloud.send_message({"job_type": "process_pending_vitals", "user_id": 1})
        threading.Thread(target=interrupt_once_busy, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            cloud.drain()
    assert not busy.release.is_set()
