"""What makes the stack deploy in a real account: no reserved concurrency by default (new
accounts have 10 in all), a long backoff on throttled invokes, the addresses the CLI reads from
SSM, and no physical name that two environments in one account would both claim."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match

from tasks.aws import PARAMETER_NAMES
from tasks.statemachines import EXPRESS_ASL, LABS_ASL

from .conftest import SynthesizedApp, synthesize_full_app

STEPS_HANDLER = "tasks.runners.lambda_handler.handler"
THROTTLED = "Lambda.TooManyRequestsException"
#: "...Name" properties that do not claim a name in the account: a database inside its cluster,
#: an inline policy inside its role, a metric read by an alarm, an AWS-owned default group.
NOT_ACCOUNT_SCOPED = {"DatabaseName", "PolicyName", "MetricName", "DBClusterParameterGroupName"}


def _steps_function(app: SynthesizedApp) -> dict[str, Any]:
    [function] = [
        r for r in app.resources_of_type("AWS::Lambda::Function").values()
        if r["Properties"].get("Handler") == STEPS_HANDLER
    ]  # fmt: skip
    return function


def test_no_reserved_concurrency_by_default(full_app: SynthesizedApp) -> None:
    assert "ReservedConcurrentExecutions" not in _steps_function(full_app)["Properties"]


def test_a_reservation_is_an_opt_in_context_value(tmp_path: Path) -> None:
    app = synthesize_full_app(
        tmp_path, context={"healthflow:stepsFunctionReservedConcurrency": "20"}
    )
    assert _steps_function(app)["Properties"]["ReservedConcurrentExecutions"] == 20


@pytest.mark.parametrize("asl", [EXPRESS_ASL, LABS_ASL], ids=["express", "labs"])
def test_throttled_invokes_retry_with_a_longer_backoff(asl: Path) -> None:
    definition = json.loads(asl.read_text())
    lambda_states = {
        name: state
        for name, state in definition["States"].items()
        if state.get("Resource") == "arn:aws:states:::lambda:invoke"
    }
    assert lambda_states
    for name, state in lambda_states.items():
        retriers = state.get("Retry", [])
        first = next(r for r in retriers if THROTTLED in r["ErrorEquals"])
        others = [
            r for r in retriers if r is not first and "DatabaseUnavailable" in r["ErrorEquals"]
        ]
        assert first["ErrorEquals"] == [THROTTLED], name  # its own retrier, listed first
        assert retriers.index(first) == 0, name
        assert first["MaxAttempts"] >= 5 and first["IntervalSeconds"] >= 2, name
        assert first.get("JitterStrategy") == "FULL", name
        for other in others:
            assert first["MaxAttempts"] > other["MaxAttempts"], name


def test_the_cli_finds_every_address_in_ssm(full_app: SynthesizedApp) -> None:
    for setting in ("queue_url", "enabled", "state_machine_arn", "dead_letter_queue_url"):
        full_app.assertions.has_resource_properties(
            "AWS::SSM::Parameter",
            Match.object_like({"Name": f"/healthflow/dev/{PARAMETER_NAMES[setting]}"}),
        )
    full_app.assertions.has_resource_properties(
        "AWS::SSM::Parameter",
        Match.object_like({
            "Name": "/healthflow/dev/state-machine-arn",
            "Value": {"Ref": Match.string_like_regexp("StateMachine")},
        }),
    )  # fmt: skip


def _physical_names(template: dict[str, Any]) -> set[tuple[str, str, str]]:
    names = set()
    for resource in template["Resources"].values():
        for key, value in resource.get("Properties", {}).items():
            named = key.endswith("Name") or key in {"Name", "DBClusterIdentifier"}
            if named and isinstance(value, str) and key not in NOT_ACCOUNT_SCOPED:
                names.add((resource["Type"], key, value))
    return names


@pytest.mark.slow
def test_two_environments_claim_no_common_name(full_app: SynthesizedApp, tmp_path: Path) -> None:
    prod = synthesize_full_app(tmp_path, context={"healthflow:env": "prod"})
    dev_names, prod_names = _physical_names(full_app.template), _physical_names(prod.template)
    assert dev_names, "the stack names some resources; the check must see them"
    assert dev_names & prod_names == set()
