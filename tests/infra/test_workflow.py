"""Workflow: definition from the ASL file with every CONTRACT placeholder filled, logging,
tracing and explicit grants. Built on the fixture ASL so it does not depend on the real one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk.assertions import Match, Template
from healthflow_infra.constructs.workflow import ASL_PLACEHOLDERS, Workflow, placeholders_in

from .conftest import FIXTURE_ASL


def _build(asl_path: Path) -> Stack:
    stack = Stack(App(), "Bare")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0)
    function = lambda_.Function(
        stack,
        "Steps",
        runtime=lambda_.Runtime.PYTHON_3_11,
        handler="index.handler",
        code=lambda_.Code.from_inline("def handler(event, context): return event"),
    )
    cluster = ecs.Cluster(stack, "Cluster", vpc=vpc, enable_fargate_capacity_providers=True)
    task_definition = ecs.FargateTaskDefinition(stack, "Task")
    task_definition.add_container(
        "Worker",
        container_name="ml-worker",
        image=ecs.ContainerImage.from_registry("public.ecr.aws/docker/library/busybox:1"),
        logging=ecs.LogDrivers.aws_logs(stream_prefix="w"),
    )
    key = kms.Key(stack, "Key")
    dead_letter_queue = sqs.Queue(
        stack, "Dlq", encryption=sqs.QueueEncryption.KMS, encryption_master_key=key
    )
    Workflow(
        stack,
        "Workflow",
        env_name="test",
        asl_path=asl_path,
        steps_function=function,
        cluster=cluster,
        task_definition=task_definition,
        container_name="ml-worker",
        task_subnets=vpc.isolated_subnets,
        task_security_group=ec2.SecurityGroup(stack, "WorkerSg", vpc=vpc),
        dead_letter_queue=dead_letter_queue,
        queue_key=key,
        log_retention=logs.RetentionDays.ONE_WEEK,
    )
    return stack


@pytest.fixture(scope="module")
def template() -> Template:
    return Template.from_stack(_build(FIXTURE_ASL))


def _state_machine(template: Template) -> dict:
    machines = template.find_resources("AWS::StepFunctions::StateMachine")
    assert len(machines) == 1
    return next(iter(machines.values()))["Properties"]


def test_fixture_uses_every_contract_placeholder() -> None:
    assert placeholders_in(FIXTURE_ASL.read_text()) == set(ASL_PLACEHOLDERS)


def test_definition_is_inlined_and_every_placeholder_is_substituted(template: Template) -> None:
    properties = _state_machine(template)
    definition = properties["DefinitionString"]
    assert isinstance(definition, str), "from_string inlines the definition (no S3 asset)"
    json.loads(definition)
    assert placeholders_in(definition) <= set(properties["DefinitionSubstitutions"])
    assert set(properties["DefinitionSubstitutions"]) == set(ASL_PLACEHOLDERS)


def test_substitutions_point_at_resources_of_the_stack(template: Template) -> None:
    resources = template.to_json()["Resources"]
    substitutions = _state_machine(template)["DefinitionSubstitutions"]
    for name, value in substitutions.items():
        if name == "MlWorkerContainerName":
            assert value == "ml-worker"
            continue
        logical_id = value["Ref"] if "Ref" in value else value["Fn::GetAtt"][0]
        assert logical_id in resources, name


def test_logs_errors_only_without_execution_data_and_traces(template: Template) -> None:
    template.has_resource_properties(
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


def _state_machine_statements(template: Template) -> list[dict]:
    role_id = _state_machine(template)["RoleArn"]["Fn::GetAtt"][0]
    statements: list[dict] = []
    for policy in template.find_resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return statements


def _actions(statement: dict) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else action


def test_grants_are_explicit_and_scoped(template: Template) -> None:
    statements = _state_machine_statements(template)
    by_action = {action: s for s in statements for action in _actions(s)}
    task_definition_id = next(iter(template.find_resources("AWS::ECS::TaskDefinition")))
    assert by_action["ecs:RunTask"]["Resource"] == {"Ref": task_definition_id}
    assert by_action["ecs:StopTask"]["Condition"]["ArnEquals"]["ecs:cluster"]
    pass_role = by_action["iam:PassRole"]
    assert len(pass_role["Resource"]) == 2  # task role and execution role
    assert pass_role["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }
    assert "lambda:InvokeFunction" in by_action
    dlq_id = next(iter(template.find_resources("AWS::SQS::Queue")))
    assert by_action["sqs:SendMessage"]["Resource"] == {"Fn::GetAtt": [dlq_id, "Arn"]}
    assert {"kms:GenerateDataKey", "kms:Decrypt"} <= set(by_action)
    assert not any("*" in action for s in statements for action in _actions(s))


def test_unknown_placeholder_fails_the_synth(tmp_path: Path) -> None:
    definition = json.loads(FIXTURE_ASL.read_text())
    definition["States"]["Done"] = {"Type": "Pass", "Result": "${NotInTheContract}", "End": True}
    asl = tmp_path / "bad.asl.json"
    asl.write_text(json.dumps(definition))
    with pytest.raises(ValueError, match="NotInTheContract"):
        _build(asl)
