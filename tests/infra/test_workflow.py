"""Workflow: the Express parent and the Standard labs child from the real ASL files, their logs,
and IAM grants DERIVED from each definition's Task states (a gap fails the synth)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk.assertions import Match, Template
from healthflow_infra.constructs.workflow import MissingGrant, Workflow

from tasks.statemachines import EXPRESS_ASL, LABS_ASL, PLACEHOLDERS, placeholders_in


def _build(asl_path: Path = EXPRESS_ASL, labs_asl_path: Path = LABS_ASL) -> Stack:
    stack = Stack(App(), "Bare")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0)
    function = lambda_.Function(
        stack,
        "Steps",
        runtime=lambda_.Runtime.PYTHON_3_12,
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
    Workflow(
        stack,
        "Workflow",
        env_name="test",
        asl_path=asl_path,
        labs_asl_path=labs_asl_path,
        steps_function=function,
        cluster=cluster,
        task_definition=task_definition,
        container_name="ml-worker",
        task_subnet_ids=[s.subnet_id for s in vpc.public_subnets],
        task_security_group_id=ec2.SecurityGroup(stack, "WorkerSg", vpc=vpc).security_group_id,
        task_public_ip=True,
        dead_letter_queue=sqs.Queue(stack, "Dlq"),
        trigger_queue=sqs.Queue(stack, "Trigger"),
        queue_key=None,
        log_retention=logs.RetentionDays.ONE_WEEK,
    )
    return stack


@pytest.fixture(scope="module")
def template() -> Template:
    return Template.from_stack(_build())


def _machine(template: Template, machine_type: str) -> dict[str, Any]:
    machines = template.find_resources(
        "AWS::StepFunctions::StateMachine", {"Properties": {"StateMachineType": machine_type}}
    )
    assert len(machines) == 1, machine_type
    return next(iter(machines.values()))["Properties"]


def _role_statements(template: Template, machine_type: str) -> list[dict[str, Any]]:
    role_id = _machine(template, machine_type)["RoleArn"]["Fn::GetAtt"][0]
    policies = template.find_resources("AWS::IAM::Policy")
    return [
        statement
        for policy in policies.values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statements: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for statement in statements:
        actions = statement["Action"]
        for action in actions if isinstance(actions, list) else [actions]:
            out[action] = statement
    return out


def test_every_placeholder_of_the_one_list_is_used_by_an_asl() -> None:
    used = placeholders_in(EXPRESS_ASL.read_text()) | placeholders_in(LABS_ASL.read_text())
    assert used == set(PLACEHOLDERS)


def test_parent_is_express_and_logs_all_without_execution_data(template: Template) -> None:
    template.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "StateMachineType": "EXPRESS",
            "LoggingConfiguration": {
                "Level": "ALL",
                "IncludeExecutionData": False,
                "Destinations": [Match.any_value()],
            },
        },
    )


def test_labs_child_is_standard_and_runs_ecs_sync_on_spot_then_on_demand(
    template: Template,
) -> None:
    properties = _machine(template, "STANDARD")
    definition = json.loads(properties["DefinitionString"])
    states = definition["States"]
    spot, on_demand = states["CategorizeLabs"], states["CategorizeLabsOnDemand"]
    assert spot["Resource"] == on_demand["Resource"] == "arn:aws:states:::ecs:runTask.sync"
    assert spot["Parameters"]["CapacityProviderStrategy"][0]["CapacityProvider"] == "FARGATE_SPOT"
    assert on_demand["Parameters"]["CapacityProviderStrategy"][0]["CapacityProvider"] == "FARGATE"
    fallbacks = {error: catch["Next"] for catch in spot["Catch"] for error in catch["ErrorEquals"]}
    assert fallbacks["ECS.AmazonECSException"] == "CategorizeLabsOnDemand"
    assert fallbacks["AmazonECS.Unknown"] == "CategorizeLabsOnDemand"
    # A stopped task (States.TaskFailed) goes on demand only with stop code SpotInterruption.
    reclaimed = states[fallbacks["States.TaskFailed"]]
    assert reclaimed["Choices"][0]["StringMatches"] == "*SpotInterruption*"
    assert reclaimed["Choices"][0]["Next"] == "CategorizeLabsOnDemand"
    assert reclaimed["Default"] == "MarkClaimFailed"
    assert "HEALTHFLOW_TASK_TOKEN" not in properties["DefinitionString"]


def test_parent_starts_the_child_request_response_with_a_derived_name(template: Template) -> None:
    definition = json.loads(_machine(template, "EXPRESS")["DefinitionString"])
    start = definition["States"]["StartLabsWorkflow"]
    assert start["Resource"] == "arn:aws:states:::states:startExecution"
    assert start["Parameters"]["Name.$"] == "$$.Execution.Name"
    for resource in (s.get("Resource", "") for s in definition["States"].values()):
        assert not resource.endswith((".sync", ".waitForTaskToken")), resource


def test_express_grants_are_derived_from_its_tasks(template: Template) -> None:
    by_action = _actions(_role_statements(template, "EXPRESS"))
    labs_id = next(
        iter(
            template.find_resources(
                "AWS::StepFunctions::StateMachine",
                {"Properties": {"StateMachineType": "STANDARD"}},
            )
        )
    )
    assert by_action["states:StartExecution"]["Resource"] == {"Ref": labs_id}
    # The dead-letter queue (Catch) and the trigger queue (a large backlog's continuation).
    queues = {
        json.dumps(s["Resource"])
        for s in _role_statements(template, "EXPRESS")
        if s["Action"] == "sqs:SendMessage"
    }
    assert queues == {
        json.dumps({"Fn::GetAtt": [queue_id, "Arn"]})
        for queue_id in template.find_resources("AWS::SQS::Queue")
    }
    assert "lambda:InvokeFunction" in by_action
    # Express runs no ECS task: no ECS, events or PassRole grant.
    assert not any(a.startswith(("ecs:", "events:", "iam:")) for a in by_action)


def test_labs_grants_cover_ecs_sync_and_nothing_more(template: Template) -> None:
    by_action = _actions(_role_statements(template, "STANDARD"))
    [task_definition] = template.find_resources("AWS::ECS::TaskDefinition").values()
    # Every revision of the family: an execution started before a deploy names the old one.
    family = task_definition["Properties"]["Family"]
    run_task = json.dumps(by_action["ecs:RunTask"]["Resource"])
    assert f":task-definition/{family}:*" in run_task
    assert by_action["ecs:StopTask"]["Condition"]["ArnEquals"]["ecs:cluster"]
    assert {"events:PutTargets", "events:PutRule", "events:DescribeRule"} <= set(by_action)
    assert by_action["iam:PassRole"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }
    assert "states:StartExecution" not in by_action
    assert not any("*" in action for action in by_action)
    # SQS-managed encryption: no KMS grant at all.
    assert not any(action.startswith("kms:") for action in by_action)


def _with_state(tmp_path: Path, source: Path, name: str, state: dict[str, Any]) -> Path:
    definition = json.loads(source.read_text())
    definition["States"][name] = state
    path = tmp_path / source.name
    path.write_text(json.dumps(definition))
    return path


def test_a_task_without_a_grant_rule_fails_the_synth(tmp_path: Path) -> None:
    asl = _with_state(
        tmp_path,
        LABS_ASL,
        "Unreachable",
        {
            "Type": "Task",
            "Resource": "arn:aws:states:::dynamodb:putItem",
            "Parameters": {"TableName": "t", "Item": {}},
            "End": True,
        },
    )
    with pytest.raises(MissingGrant, match="dynamodb:putItem"):
        _build(labs_asl_path=asl)


def test_a_task_on_a_target_outside_the_stack_fails_the_synth(tmp_path: Path) -> None:
    asl = _with_state(
        tmp_path,
        EXPRESS_ASL,
        "Unreachable",
        {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "arn:aws:lambda:us-east-1:111122223333:function:x"},
            "End": True,
        },
    )
    with pytest.raises(MissingGrant, match="not a resource of the stack"):
        _build(asl_path=asl)


def test_unknown_placeholder_fails_the_synth(tmp_path: Path) -> None:
    asl = _with_state(
        tmp_path,
        EXPRESS_ASL,
        "Done",
        {"Type": "Pass", "Result": "${NotInTheList}", "End": True},
    )
    with pytest.raises(ValueError, match="NotInTheList"):
        _build(asl_path=asl)
