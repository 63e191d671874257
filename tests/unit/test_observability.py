"""Structured logs and EMF metrics of the runners: every line's shape, and nothing leaks."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tasks import observability
from tasks.errors import HealthflowError
from tasks.runners import lambda_handler

SECRET_NAME, SECRET_VALUE = "Hemoglobin A1c", "9.13"


@pytest.fixture
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    package = logging.getLogger(observability.PACKAGE_LOGGER)
    saved = (list(package.handlers), package.level, package.propagate)
    for name in list(os.environ):
        if name.startswith(("HEALTHFLOW_", "AWS_")):
            monkeypatch.delenv(name)
    from tasks.settings import get_settings

    get_settings.cache_clear()
    yield
    package.handlers, package.level, package.propagate = saved[0], saved[1], saved[2]
    monkeypatch.setattr(lambda_handler, "_json_logging", False)
    get_settings.cache_clear()


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def _event(step: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"step": step, "input": payload, "execution": "msg-42", "state": "ClaimPendingLabs"}


def test_every_line_is_json_with_execution_state_and_step(restore_logging: None) -> None:
    stream = io.StringIO()
    observability.configure_json_logging(stream)
    step_log = logging.getLogger("tasks.steps.example")

    def runner(step: str, payload: dict[str, Any]) -> dict[str, Any]:
        step_log.info("claimed %d rows", 3)
        return {"claim_id": "msg-42", "user_id": 7, "claimed": 3, "has_pending": True}

    lambda_handler.handler(_event("claim", {"claim_id": "msg-42"}), None, run_step=runner)
    lines = _lines(stream)
    assert len(lines) == 2
    for line in lines:
        assert line["execution"] == "msg-42"
        assert line["state"] == "ClaimPendingLabs"
        assert line["step"] == "claim"
        assert line["service"] == "healthflow" and line["level"] == "INFO"
    assert lines[0]["message"] == "claimed 3 rows"
    assert lines[1]["message"] == "step claim succeeded" and lines[1]["RowsClaimed"] == 3
    # Keys do not outlive the invocation.
    step_log.info("between invocations")
    assert "execution" not in _lines(stream)[-1]


def test_a_failure_logs_its_name_and_no_value(restore_logging: None) -> None:
    stream = io.StringIO()
    observability.configure_json_logging(stream)

    def runner(step: str, payload: dict[str, Any]) -> dict[str, Any]:
        raise ValueError(f"could not parse {SECRET_NAME} = {SECRET_VALUE}")

    with pytest.raises(Exception) as raised:
        lambda_handler.handler(_event("categorize_labs", {"claim_id": "msg-42"}), None,
                               run_step=runner)  # fmt: skip
    assert type(raised.value).__name__ == "ValueError"
    text = stream.getvalue()
    assert SECRET_NAME not in text and SECRET_VALUE not in text
    assert SECRET_VALUE not in str(raised.value)
    [line] = _lines(stream)
    assert (
        line["level"] == "WARNING"
        and line["message"] == "step categorize_labs failed with ValueError"
    )
    assert line["execution"] == "msg-42"


def test_business_counts_are_counts_only() -> None:
    output = {"claim_id": "msg-1", "user_id": 5, "claimed": 4, "has_pending": True, "buckets": 2,
              "uncategorized": 1, "rejected": 0, "date_from": "2024-01-01"}  # fmt: skip
    assert observability.business_counts(output) == {
        "RowsClaimed": 4, "BucketsRecomputed": 2, "NamesUncategorized": 1, "RowsRejected": 0
    }  # fmt: skip
    assert observability.business_counts({"claimed": True, "buckets": "2"}) == {}


def test_emf_record_shape() -> None:
    record = observability.emf_record({"RowsClaimed": 4, "RowsRejected": 1}, "claim")
    assert record is not None
    [directive] = record["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "healthflow"
    assert {m["Name"] for m in directive["Metrics"]} == {"RowsClaimed", "RowsRejected"}
    assert all(m["Unit"] == "Count" for m in directive["Metrics"])
    assert sorted(directive["Dimensions"][0]) == ["service", "step"]
    assert record["RowsClaimed"] == [4.0] and record["step"] == "claim"  # EMF allows a list
    assert isinstance(record["_aws"]["Timestamp"], int)
    assert observability.emf_record({}, "claim") is None


def test_in_lambda_the_handler_prints_json_logs_and_emf(
    restore_logging: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "healthflow-steps")

    def runner(step: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {"granularity": "daily", "buckets": 6}

    lambda_handler.handler(_event("aggregate", {"claim_id": "msg-42"}), object(), run_step=runner)
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    log = next(p for p in printed if "message" in p)
    emf = next(p for p in printed if "_aws" in p)
    assert log["step"] == "aggregate" and log["BucketsRecomputed"] == 6
    assert emf["BucketsRecomputed"] == [6.0] and "user_id" not in emf and "claim_id" not in emf


def test_the_ml_worker_logs_with_its_execution(restore_logging: None) -> None:
    from tasks.runners import ecs

    stream = io.StringIO()
    observability.configure_json_logging(stream)

    class Reporter:
        def send_task_success(self, **kwargs: Any) -> None: ...
        def send_task_failure(self, **kwargs: Any) -> None: ...
        def send_task_heartbeat(self, **kwargs: Any) -> None: ...

    class NoNames(HealthflowError):
        pass

    def runner(step: str, payload: dict[str, Any]) -> dict[str, Any]:
        raise NoNames("3 names could not be categorized")

    env = {
        ecs.TOKEN_VARIABLE: "token",
        ecs.STEP_VARIABLE: "categorize_labs",
        ecs.INPUT_VARIABLE: json.dumps({"claim_id": "msg-7"}),
        ecs.STATE_VARIABLE: "CategorizeLabs",
    }
    code = ecs.run_from_environment(env, run_step=runner, client=Reporter())
    assert code == ecs.EXIT_STEP_FAILED
    [line] = _lines(stream)
    assert (line["execution"], line["state"], line["step"]) == (
        "msg-7", "CategorizeLabs", "categorize_labs"
    )  # fmt: skip
    assert line["message"] == "step categorize_labs failed with NoNames"
