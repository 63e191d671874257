"""The full app as `cdk synth` builds it: wiring, definition, IAM, alarms, cdk-nag."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Stack
from aws_cdk import aws_sqs as sqs
from aws_cdk.assertions import Match
from healthflow_infra.constructs.workflow import ASL_PLACEHOLDERS, placeholders_in

from .conftest import FIXTURE_ASL, SynthesizedApp, synthesize_full_app

# Actions that have no resource-level permissions, so an Allow with Resource "*" is the only
# form AWS accepts. Each entry says who adds it; anything else with "*" fails the test.
ACTIONS_THAT_REQUIRE_A_WILDCARD_RESOURCE = {
    # ml-worker task role: task-token callbacks (our statement; the token authorizes).
    "states:SendTaskSuccess",
    "states:SendTaskFailure",
    "states:SendTaskHeartbeat",
    # X-Ray tracing (Lambda Tracing.ACTIVE, state machine tracing_enabled): added by CDK.
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    # State machine logging to CloudWatch Logs (vended log delivery): added by CDK.
    "logs:CreateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:DescribeLogGroups",
    "logs:DescribeResourcePolicies",
    "logs:GetLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:UpdateLogDelivery",
    # ECS task execution role: the registry login token: added by CDK.
    "ecr:GetAuthorizationToken",
}
# Parameters of Task states that name an AWS resource.
RESOURCE_PARAMETERS = ("FunctionName", "Cluster", "TaskDefinition", "QueueUrl")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _identity_policy_statements(app: SynthesizedApp) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, resource in app.template["Resources"].items():
        properties = resource.get("Properties", {})
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents = [properties["PolicyDocument"]]
        elif resource["Type"] == "AWS::IAM::Role":
            documents = [p["PolicyDocument"] for p in properties.get("Policies", [])]
        else:
            continue
        for document in documents:
            for statement in document["Statement"]:
                yield logical_id, statement


def _task_states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in states.items():
        if state["Type"] == "Task":
            yield name, state
        for branch in state.get("Branches", []):
            yield from _task_states(branch["States"])
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                yield from _task_states(state[key]["States"])


def _strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings_in(item)


def _state_machine_properties(app: SynthesizedApp) -> dict[str, Any]:
    (machine,) = app.resources_of_type("AWS::StepFunctions::StateMachine").values()
    return machine["Properties"]


def _referenced_logical_id(value: Any) -> str | None:
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    return None


def _nag_errors(app: SynthesizedApp) -> list[str]:
    report = app.validation_report or {"pluginReports": []}
    return sorted(
        f"{violation['ruleName']} at {construct['constructPath']}"
        for plugin in report["pluginReports"]
        if plugin["pluginName"] == "AwsSolutions"
        for violation in plugin["violations"]
        if violation["severity"] == "error"
        for construct in violation["violatingConstructs"]
    )


def test_cdk_nag_reports_zero_unsuppressed_errors(full_app: SynthesizedApp) -> None:
    # A clean run lists no plugin at all; the canary test below proves the checks do run.
    assert _nag_errors(full_app) == []
    assert full_app.synth_error is None, full_app.synth_error


def test_cdk_nag_runs_on_the_app(tmp_path: Path) -> None:
    """Canary: one non-compliant queue added to the real app is the only thing nag reports."""

    def add_canary(stack: Stack) -> None:
        sqs.Queue(stack, "NagCanary")

    app = synthesize_full_app(tmp_path, before_synth=add_canary)
    assert app.synth_error is not None and "ValidationFailed" in app.synth_error
    errors = _nag_errors(app)
    assert errors
    assert all("/NagCanary/" in error for error in errors), errors


def test_definition_has_no_unfilled_placeholder(full_app: SynthesizedApp) -> None:
    properties = _state_machine_properties(full_app)
    definition = properties["DefinitionString"]
    assert isinstance(definition, str)
    substitutions = properties["DefinitionSubstitutions"]
    assert placeholders_in(definition) <= set(substitutions)
    assert set(substitutions) == set(ASL_PLACEHOLDERS)
    # Nothing account-specific is written into the definition.
    assert not re.search(r"\b\d{12}\b", definition)


def test_every_task_resource_points_at_a_resource_of_the_stack(full_app: SynthesizedApp) -> None:
    properties = _state_machine_properties(full_app)
    resources = full_app.template["Resources"]
    substitutions = properties["DefinitionSubstitutions"]
    definition = json.loads(properties["DefinitionString"])
    tasks = list(_task_states(definition["States"]))
    assert tasks
    for name, state in tasks:
        # Service integrations only: no hard-coded function or activity ARN.
        assert state["Resource"].startswith("arn:aws:states:::"), name
        assert "TimeoutSeconds" in state or "TimeoutSecondsPath" in state, name
        parameters = state.get("Parameters", {})
        named = [parameters[key] for key in RESOURCE_PARAMETERS if key in parameters]
        network = parameters.get("NetworkConfiguration", {}).get("AwsvpcConfiguration", {})
        named += network.get("Subnets", []) + network.get("SecurityGroups", [])
        assert named, f"{name} names no resource"
        for value in named:
            match = re.fullmatch(r"\$\{(\w+)\}", value)
            assert match, f"{name}: {value!r} is not a placeholder"
            logical_id = _referenced_logical_id(substitutions[match.group(1)])
            assert logical_id in resources, f"{name}: {value} -> {logical_id}"
    for value in _strings_in(definition):
        for placeholder in placeholders_in(value):
            assert placeholder in substitutions


def test_state_machine_logging_and_tracing(full_app: SynthesizedApp) -> None:
    full_app.assertions.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "LoggingConfiguration": {
                "Level": "ERROR",
                "IncludeExecutionData": False,
                "Destinations": [Match.any_value()],
            },
            "TracingConfiguration": {"Enabled": True},
        },
    )


def test_pipe_wires_queue_to_state_machine(full_app: SynthesizedApp) -> None:
    (pipe,) = full_app.resources_of_type("AWS::Pipes::Pipe").values()
    source_id = _referenced_logical_id(pipe["Properties"]["Source"])
    target_id = _referenced_logical_id(pipe["Properties"]["Target"])
    assert full_app.template["Resources"][source_id]["Type"] == "AWS::SQS::Queue"
    assert "RedrivePolicy" in full_app.template["Resources"][source_id]["Properties"]
    assert full_app.template["Resources"][target_id]["Type"] == "AWS::StepFunctions::StateMachine"
    assert pipe["Properties"]["SourceParameters"]["SqsQueueParameters"]["BatchSize"] == 1
    target = pipe["Properties"]["TargetParameters"]["StepFunctionStateMachineParameters"]
    assert target["InvocationType"] == "FIRE_AND_FORGET"


def test_queues_are_kms_encrypted(full_app: SynthesizedApp) -> None:
    queues = full_app.resources_of_type("AWS::SQS::Queue")
    assert len(queues) == 2
    for queue in queues.values():
        key_id = _referenced_logical_id(queue["Properties"]["KmsMasterKeyId"])
        assert full_app.template["Resources"][key_id]["Type"] == "AWS::KMS::Key"


def test_cluster_capacity_providers(full_app: SynthesizedApp) -> None:
    full_app.assertions.has_resource_properties(
        "AWS::ECS::ClusterCapacityProviderAssociations",
        {"CapacityProviders": Match.array_with(["FARGATE", "FARGATE_SPOT"])},
    )


def test_no_identity_policy_grants_a_wildcard_action(full_app: SynthesizedApp) -> None:
    offenders = [
        (logical_id, action)
        for logical_id, statement in _identity_policy_statements(full_app)
        if statement["Effect"] == "Allow"
        for action in _as_list(statement["Action"])
        if "*" in action
    ]
    assert offenders == []


def test_wildcard_resources_only_for_actions_without_resource_permissions(
    full_app: SynthesizedApp,
) -> None:
    offenders = [
        (logical_id, action)
        for logical_id, statement in _identity_policy_statements(full_app)
        if statement["Effect"] == "Allow" and "*" in _as_list(statement["Resource"])
        for action in _as_list(statement["Action"])
        if action not in ACTIONS_THAT_REQUIRE_A_WILDCARD_RESOURCE
    ]
    assert offenders == []


def test_alarms_and_dashboard(full_app: SynthesizedApp) -> None:
    alarms = full_app.resources_of_type("AWS::CloudWatch::Alarm").values()
    metrics = {
        (alarm["Properties"].get("Namespace"), alarm["Properties"].get("MetricName"))
        for alarm in alarms
    }
    assert {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage"),
        ("AWS/States", "ExecutionsFailed"),
        ("AWS/States", "ExecutionsTimedOut"),
        ("Healthflow", "EcsTaskFailures"),
        ("AWS/Lambda", "Errors"),
    } <= metrics
    full_app.assertions.resource_count_is("AWS::CloudWatch::Dashboard", 1)
    full_app.assertions.has_resource_properties(
        "AWS::Logs::MetricFilter",
        {"FilterPattern": Match.string_like_regexp(r"resourceType.*ecs")},
    )


def test_ssm_parameters_for_queue_url_and_enabled_flag(full_app: SynthesizedApp) -> None:
    full_app.assertions.has_resource_properties(
        "AWS::SSM::Parameter",
        {"Name": "/healthflow/dev/trigger-queue-url", "Value": {"Ref": Match.any_value()}},
    )
    full_app.assertions.has_resource_properties(
        "AWS::SSM::Parameter", {"Name": "/healthflow/dev/enabled", "Value": "true"}
    )


def test_migrations_run_through_the_steps_function(full_app: SynthesizedApp) -> None:
    full_app.assertions.has_resource_properties(
        "Custom::HealthflowMigrations", {"step": "migrate", "input": {}}
    )


def test_nothing_account_specific_is_hard_coded(full_app: SynthesizedApp) -> None:
    # Mappings hold CDK's per-partition tables (the AWS-owned rotation application's ARN).
    ours = {k: v for k, v in full_app.template.items() if k != "Mappings"}
    text = json.dumps(ours)
    assert not re.search(r"\b\d{12}\b", text)
    assert not re.search(r"\b(us|eu|ap|sa|ca|me|af)-[a-z]+-\d\b", text)


@pytest.mark.parametrize("asl", [FIXTURE_ASL], ids=["fixture-asl"])
def test_context_chooses_environment_database_and_alarm_topic(tmp_path: Path, asl: Path) -> None:
    app = synthesize_full_app(
        tmp_path,
        asl_path=asl,
        context={
            "healthflow:env": "prod",
            "healthflow:existingDbSecretArn": (
                "arn:aws:secretsmanager:eu-west-1:111122223333:secret:healthflow-AbCdEf"
            ),
            "healthflow:existingDbSecurityGroupId": "sg-0123456789abcdef0",
            "healthflow:alarmEmail": "ops@example.com",
            "healthflow:enabled": "false",
        },
    )
    app.assertions.resource_count_is("AWS::RDS::DBCluster", 0)
    app.assertions.has_resource_properties(
        "AWS::SSM::Parameter", {"Name": "/healthflow/prod/enabled", "Value": "false"}
    )
    app.assertions.has_resource_properties("AWS::Pipes::Pipe", {"DesiredState": "STOPPED"})
    app.assertions.has_resource_properties(
        "AWS::SNS::Topic", {"KmsMasterKeyId": {"Fn::GetAtt": [Match.any_value(), "Arn"]}}
    )
    for alarm in app.resources_of_type("AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"]
    assert app.synth_error is None, app.synth_error
