"""TriggerPipe: SQS -> state machine, batch 1, FIRE_AND_FORGET, least-privilege role, logs."""

from __future__ import annotations

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk.assertions import Match, Template
from healthflow_infra.constructs.pipe import TriggerPipe
from healthflow_infra.constructs.queue import TriggerQueue


@pytest.fixture(scope="module")
def template() -> Template:
    stack = Stack(App(), "Bare")
    queue = TriggerQueue(stack, "TriggerQueue", env_name="test")
    machine = sfn.StateMachine(
        stack, "Machine", definition_body=sfn.DefinitionBody.from_chainable(sfn.Pass(stack, "P"))
    )
    TriggerPipe(
        stack,
        "Pipe",
        env_name="test",
        queue=queue.queue,
        queue_key=queue.key,
        state_machine=machine,
        enabled=True,
        log_retention=logs.RetentionDays.ONE_WEEK,
    )
    return Template.from_stack(stack)


def _logical_id(template: Template, resource_type: str, properties: dict) -> str:
    found = template.find_resources(resource_type, {"Properties": properties})
    assert len(found) == 1, found
    return next(iter(found))


def test_pipe_reads_the_trigger_queue_and_starts_the_state_machine(template: Template) -> None:
    queue_id = _logical_id(template, "AWS::SQS::Queue", {"RedrivePolicy": Match.any_value()})
    machine_id = next(iter(template.find_resources("AWS::StepFunctions::StateMachine")))
    template.has_resource_properties(
        "AWS::Pipes::Pipe",
        {
            "Source": {"Fn::GetAtt": [queue_id, "Arn"]},
            "SourceParameters": {"SqsQueueParameters": {"BatchSize": 1}},
            "Target": {"Ref": machine_id},
            "TargetParameters": {
                "StepFunctionStateMachineParameters": {"InvocationType": "FIRE_AND_FORGET"}
            },
            "DesiredState": "RUNNING",
        },
    )


def test_pipe_logs_errors_to_its_log_group_without_execution_data(template: Template) -> None:
    template.has_resource_properties(
        "AWS::Pipes::Pipe",
        {
            "LogConfiguration": {
                "Level": "ERROR",
                "CloudwatchLogsLogDestination": {
                    "LogGroupArn": {"Fn::GetAtt": [Match.any_value(), "Arn"]}
                },
                "IncludeExecutionData": Match.absent(),
            }
        },
    )


def test_pipe_role_has_exactly_the_actions_it_needs(template: Template) -> None:
    pipe = next(iter(template.find_resources("AWS::Pipes::Pipe").values()))
    role_id = pipe["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    policies = [
        p
        for p in template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    actions = set()
    for policy in policies:
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert statement["Resource"] != "*"
            granted = statement["Action"]
            actions.update([granted] if isinstance(granted, str) else granted)
    assert actions == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "states:StartExecution",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }
    template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": {
                "Statement": [Match.object_like({"Principal": {"Service": "pipes.amazonaws.com"}})]
            }
        },
    )


def test_disabled_pipe_is_stopped() -> None:
    stack = Stack(App(), "Bare")
    queue = TriggerQueue(stack, "TriggerQueue", env_name="test")
    machine = sfn.StateMachine(
        stack, "Machine", definition_body=sfn.DefinitionBody.from_chainable(sfn.Pass(stack, "P"))
    )
    TriggerPipe(
        stack,
        "Pipe",
        env_name="test",
        queue=queue.queue,
        queue_key=queue.key,
        state_machine=machine,
        enabled=False,
        log_retention=logs.RetentionDays.ONE_WEEK,
    )
    Template.from_stack(stack).has_resource_properties(
        "AWS::Pipes::Pipe", {"DesiredState": "STOPPED"}
    )
