"""The Lambda handler and the ECS container runner, with a fake registry and a fake client."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from typing import Any

import pytest

from tasks.errors import DatabaseUnavailable, InvalidMessage
from tasks.runners import ecs, lambda_handler

from .localcloud_fakes import load_event

TOKEN = "token-1"


class ValueLeak(Exception):
    """Stands for a library error whose message quotes data (e.g. SQL parameters)."""


class FakeStepFunctions:
    """Records what the container sends to Step Functions."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        # Released once per heartbeat: a test waits for heartbeats, never for time to pass.
        self.heartbeat_arrived = threading.Semaphore(0)

    def send_task_success(self, **kwargs: Any) -> None:
        self.sent.append(("success", kwargs))

    def send_task_failure(self, **kwargs: Any) -> None:
        self.sent.append(("failure", kwargs))

    def send_task_heartbeat(self, **kwargs: Any) -> None:
        self.sent.append(("heartbeat", kwargs))
        self.heartbeat_arrived.release()

    def outcomes(self) -> list[tuple[str, dict[str, Any]]]:
        return [(kind, args) for kind, args in self.sent if kind != "heartbeat"]


def container_env(step: str = "categorize_labs", payload: Any = None) -> dict[str, str]:
    return {
        ecs.STEP_VARIABLE: step,
        ecs.INPUT_VARIABLE: json.dumps(payload if payload is not None else {"claim_id": "c"}),
        ecs.TOKEN_VARIABLE: TOKEN,
    }


CONFIG = ecs.WorkerConfig(region="us-east-1", heartbeat_seconds=0.05)


# --------------------------------------------------------------------------- lambda


def test_handler_calls_the_step_and_returns_its_output() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    def run_step(step: str, payload: dict[str, Any]) -> dict[str, Any]:
        calls.append((step, payload))
        return {"buckets": 2}

    event = {"step": "aggregate", "input": {"claim_id": "c", "granularity": "daily"}}
    assert lambda_handler.handler(event, None, run_step=run_step) == {"buckets": 2}
    assert calls == [("aggregate", {"claim_id": "c", "granularity": "daily"})]


def test_handler_unwraps_a_manual_message_for_validation() -> None:
    seen: list[dict[str, Any]] = []
    manual = load_event("manual_reprocess_labs.json")
    pipe = load_event("pipe_sqs_batch_vitals.json")

    def run_step(step: str, payload: dict[str, Any]) -> dict[str, Any]:
        seen.append(payload)
        return {}

    lambda_handler.handler(
        {"step": "validate_message", "input": {"records": manual}}, run_step=run_step
    )
    lambda_handler.handler(
        {"step": "validate_message", "input": {"records": pipe}}, run_step=run_step
    )
    assert seen == [manual, {"records": pipe}]


def test_handler_keeps_healthflow_errors_and_strips_foreign_messages() -> None:
    def raises(error: Exception) -> Any:
        def run_step(step: str, payload: dict[str, Any]) -> dict[str, Any]:
            raise error

        return run_step

    with pytest.raises(DatabaseUnavailable, match="connection refused"):
        lambda_handler.handler(
            {"step": "claim"}, run_step=raises(DatabaseUnavailable("connection refused"))
        )
    with pytest.raises(Exception) as caught:
        lambda_handler.handler({"step": "claim"}, run_step=raises(ValueLeak("glucose=5.4")))
    assert type(caught.value).__name__ == "ValueLeak"
    assert "glucose" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize("event", [None, [], {"input": {}}, {"step": "s", "input": []}])
def test_handler_rejects_malformed_events(event: Any) -> None:
    with pytest.raises(InvalidMessage):
        lambda_handler.handler(event, run_step=lambda step, payload: {})


# --------------------------------------------------------------------------- ecs


def test_container_reports_success_with_the_step_output() -> None:
    client = FakeStepFunctions()
    code = ecs.run_from_environment(
        container_env(payload={"claim_id": "c", "user_id": 3}),
        run_step=lambda step, payload: {"categorized": payload["user_id"]},
        config=CONFIG,
        client=client,
    )
    assert code == ecs.EXIT_OK
    assert client.outcomes() == [("success", {"taskToken": TOKEN, "output": '{"categorized": 3}'})]


def test_container_reports_failure_by_class_name_without_data() -> None:
    client = FakeStepFunctions()

    def leaky(step: str, payload: dict[str, Any]) -> dict[str, Any]:
        raise ValueLeak("hemoglobin 13.5 g/dL")

    code = ecs.run_from_environment(container_env(), run_step=leaky, config=CONFIG, client=client)
    assert code == ecs.EXIT_STEP_FAILED
    ((kind, args),) = client.outcomes()
    assert kind == "failure" and args["error"] == "ValueLeak"
    assert "hemoglobin" not in args["cause"]


def test_container_heartbeats_while_the_step_runs() -> None:
    client = FakeStepFunctions()

    def slow(step: str, payload: dict[str, Any]) -> dict[str, Any]:
        # The step runs until two heartbeats went out (the bound only stops a broken build).
        for _ in range(2):
            assert client.heartbeat_arrived.acquire(timeout=60)
        return {}

    ecs.run_from_environment(container_env(), run_step=slow, config=CONFIG, client=client)
    heartbeats = [args for kind, args in client.sent if kind == "heartbeat"]
    assert len(heartbeats) >= 2
    assert heartbeats[0] == {"taskToken": TOKEN}
    assert client.sent[-1][0] == "success"


def test_container_without_token_reports_by_exit_code_only() -> None:
    # ecs:runTask.sync: Step Functions reads the exit code; the container calls no AWS API.
    client = FakeStepFunctions()
    env = container_env()
    del env[ecs.TOKEN_VARIABLE]
    ran: list[str] = []
    code = ecs.run_from_environment(
        env, run_step=lambda s, p: ran.append(s) or {}, config=CONFIG, client=client
    )
    assert code == ecs.EXIT_OK and ran == ["categorize_labs"] and client.sent == []

    def failing(step: str, payload: Any) -> Any:
        raise RuntimeError("boom")

    code = ecs.run_from_environment(env, run_step=failing, config=CONFIG, client=client)
    assert code == ecs.EXIT_STEP_FAILED and client.sent == []
    bad = {**env, ecs.INPUT_VARIABLE: "not json"}
    assert ecs.run_from_environment(bad, run_step=failing, config=CONFIG, client=client) == 1


@pytest.mark.parametrize("bad_input", ["not json", "[1, 2]"])
def test_container_with_bad_input_reports_invalid_step_input(bad_input: str) -> None:
    client = FakeStepFunctions()
    env = {**container_env(), ecs.INPUT_VARIABLE: bad_input}
    ecs.run_from_environment(env, run_step=lambda s, p: {}, config=CONFIG, client=client)
    assert client.outcomes()[0][1]["error"] == ecs.INVALID_STEP_INPUT


def test_sigterm_reports_spot_interrupted_once_and_restores_the_handler() -> None:
    assert threading.current_thread() is threading.main_thread()
    client = FakeStepFunctions()
    before = signal.getsignal(signal.SIGTERM)

    def interrupted(step: str, payload: dict[str, Any]) -> dict[str, Any]:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler raises SystemExit before this returns
        return {"categorized": 1}

    with pytest.raises(SystemExit) as exited:
        ecs.run_from_environment(
            container_env(), run_step=interrupted, config=CONFIG, client=client
        )
    assert exited.value.code == ecs.EXIT_SIGTERM
    assert [(k, a["error"]) for k, a in client.outcomes()] == [("failure", ecs.SPOT_INTERRUPTED)]
    assert signal.getsignal(signal.SIGTERM) == before


def test_worker_config_from_environment() -> None:
    config = ecs.WorkerConfig.from_environment(
        {"AWS_REGION": "eu-west-1", "HEALTHFLOW_HEARTBEAT_SECONDS": "7"}
    )
    assert config == ecs.WorkerConfig(region="eu-west-1", endpoint_url=None, heartbeat_seconds=7.0)


def test_the_deploy_custom_resource_runs_the_migrate_step() -> None:
    from tasks.runners.lambda_handler import handler

    calls: list[tuple[str, dict]] = []

    def runner(name: str, payload: dict) -> dict:
        calls.append((name, payload))
        return {"revision": "0001"}

    event = {"RequestType": "Create", "ResourceProperties": {"step": "migrate", "input": {}}}
    assert handler(event, None, run_step=runner)["Data"] == {"revision": "0001"}
    deleted = handler({"RequestType": "Delete", "PhysicalResourceId": "x"}, None, run_step=runner)
    assert deleted == {"PhysicalResourceId": "x"} and calls == [("migrate", {})]


def test_the_watchdog_fires_only_when_the_step_outlives_its_deadline() -> None:
    import threading

    fired = threading.Event()
    with ecs.Watchdog(0.05, fired.set):
        assert fired.wait(30)  # the step is still running: the deadline passes
    quick = threading.Event()
    with ecs.Watchdog(30, quick.set):
        pass  # the step ended first: nothing fires
    assert not quick.is_set()
    assert ecs.deadline_seconds({}) == ecs.DEFAULT_DEADLINE_SECONDS
    assert ecs.deadline_seconds({ecs.DEADLINE_VARIABLE: "0"}) is None


def test_a_container_past_its_deadline_stops_itself(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """No task outlives its state: the container process ends at the deadline, mid-step."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import sys, time\n"
        "import tasks.runners.ecs as ecs\n"
        "ecs.registry_run_step = lambda: (lambda step, payload: time.sleep(600) or {})\n"
        "sys.exit(ecs.main())\n"
    )
    root = Path(__file__).resolve().parents[3]
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        ecs.STEP_VARIABLE: "categorize_labs",
        ecs.INPUT_VARIABLE: "{}",
        ecs.DEADLINE_VARIABLE: "0.5",
    }
    # The callback launch (a task token) needs a client, never called before the deadline.
    env.update({ecs.TOKEN_VARIABLE: "token", "AWS_REGION": "eu-west-1",
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "HEALTHFLOW_HEARTBEAT_SECONDS": "3600"})  # fmt: skip
    completed = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    assert completed.returncode == ecs.EXIT_DEADLINE, completed.stderr[-2000:]
    assert "outlived its deadline" in completed.stdout
