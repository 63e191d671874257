"""The producer against moto's SQS and SSM: the switch, the seed's names, SSM lookups."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tasks.aws import PARAMETER_NAMES, parameter_name, stack_addresses
from tasks.producer import SsmSwitch, aws_trigger_client
from tasks.settings import MissingSetting, Settings

REGION = "eu-west-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for name in list(os.environ):
        if name.startswith(("HEALTHFLOW_", "ML_WORKER_", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        ssm = boto3.client("ssm", region_name=REGION)
        queue_url = sqs.create_queue(QueueName="trigger")["QueueUrl"]
        yield {"sqs": sqs, "ssm": ssm, "queue_url": queue_url}


def _publish(ssm: Any, env: str, **values: str) -> None:
    for setting, value in values.items():
        ssm.put_parameter(
            Name=parameter_name(env, setting), Value=value, Type="String", Overwrite=True
        )


def _received(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in messages.get("Messages", [])]


def test_the_seed_backend_config_sends_to_the_queue(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_WORKER_ENABLED", "true")
    monkeypatch.setenv("ML_WORKER_SQS_QUEUE_URL", aws["queue_url"])
    client = aws_trigger_client(Settings())
    assert client.send_lab_processing_trigger(7) is not None
    assert _received(aws["sqs"], aws["queue_url"]) == [
        {"job_type": "process_pending_labs", "user_id": 7, "priority": "normal"}
    ]


def test_the_environment_switch_off_sends_nothing(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_WORKER_ENABLED", "false")
    monkeypatch.setenv("ML_WORKER_SQS_QUEUE_URL", aws["queue_url"])
    assert aws_trigger_client(Settings()).send_vitals_processing_trigger(7) is None
    assert _received(aws["sqs"], aws["queue_url"]) == []


def test_the_env_name_finds_the_queue_and_honours_the_ssm_flag(aws: dict[str, Any]) -> None:
    _publish(aws["ssm"], "dev", queue_url=aws["queue_url"], enabled="false")
    client = aws_trigger_client(Settings(env="dev", enabled_cache_seconds=0))
    assert client.send_nutrition_processing_trigger(3) is None
    assert _received(aws["sqs"], aws["queue_url"]) == []

    _publish(aws["ssm"], "dev", enabled="true")  # an operator switches processing back on
    assert client.send_nutrition_processing_trigger(3) is not None
    assert [m["user_id"] for m in _received(aws["sqs"], aws["queue_url"])] == [3]


def test_the_ssm_flag_is_cached_and_survives_an_ssm_outage(aws: dict[str, Any]) -> None:
    _publish(aws["ssm"], "dev", enabled="false")

    class CountingSsm:
        def __init__(self, real: Any) -> None:
            self.real, self.reads, self.broken = real, 0, False

        def get_parameter(self, **kwargs: Any) -> Any:
            self.reads += 1
            if self.broken:
                raise ConnectionError("no route")
            return self.real.get_parameter(**kwargs)

    ssm = CountingSsm(aws["ssm"])
    now = [0.0]
    switch = SsmSwitch(ssm, parameter_name("dev", "enabled"), ttl_seconds=60, clock=lambda: now[0])
    assert switch() is False and switch() is False and ssm.reads == 1
    now[0] = 61.0
    ssm.broken = True
    assert switch() is False and ssm.reads == 2  # the last value read stays in force


def test_a_missing_queue_names_the_parameter(aws: dict[str, Any]) -> None:
    with pytest.raises(MissingSetting, match="/healthflow/prod/trigger-queue-url"):
        aws_trigger_client(Settings(env="prod"))
    with pytest.raises(MissingSetting, match="HEALTHFLOW_QUEUE_URL"):
        aws_trigger_client(Settings())


def test_stack_addresses_come_from_ssm_and_settings_win(aws: dict[str, Any]) -> None:
    _publish(
        aws["ssm"], "dev",
        queue_url=aws["queue_url"],
        state_machine_arn="arn:aws:states:eu-west-1:1:stateMachine:parent",
        labs_state_machine_arn="arn:aws:states:eu-west-1:1:stateMachine:labs",
        dead_letter_queue_url="https://sqs.eu-west-1.amazonaws.com/1/dlq",
    )  # fmt: skip
    found = stack_addresses(Settings(env="dev"))
    assert found.require("state_machine_arn").endswith(":parent")
    assert found.require("labs_state_machine_arn").endswith(":labs")
    assert found.require("dead_letter_queue_url").endswith("/dlq")
    override = stack_addresses(Settings(env="dev", dead_letter_queue_url="https://x/other-dlq"))
    assert override.require("dead_letter_queue_url") == "https://x/other-dlq"
    assert set(PARAMETER_NAMES) >= {"queue_url", "state_machine_arn", "dead_letter_queue_url"}
