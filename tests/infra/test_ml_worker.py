"""MlWorker: Fargate + Fargate Spot, Container Insights, the task definition and its roles."""

from __future__ import annotations

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk.assertions import Match, Template
from healthflow_infra.constructs.ml_worker import TASK_TOKEN_CALLBACK_ACTIONS, MlWorker


@pytest.fixture(scope="module")
def template() -> Template:
    stack = Stack(App(), "Bare")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0)
    MlWorker(
        stack,
        "MlWorker",
        env_name="test",
        vpc=vpc,
        database_secret=secretsmanager.Secret(stack, "DbSecret"),
        cpu=2048,
        memory_limit_mib=4096,
        log_retention=logs.RetentionDays.ONE_WEEK,
    )
    return Template.from_stack(stack)


def test_cluster_has_fargate_and_spot_capacity_and_container_insights(template: Template) -> None:
    template.has_resource_properties(
        "AWS::ECS::ClusterCapacityProviderAssociations",
        {"CapacityProviders": Match.array_with(["FARGATE", "FARGATE_SPOT"])},
    )
    template.has_resource_properties(
        "AWS::ECS::Cluster",
        {"ClusterSettings": Match.array_with([{"Name": "containerInsights", "Value": "enabled"}])},
    )


def test_task_definition_size_stop_timeout_and_logs(template: Template) -> None:
    template.has_resource_properties(
        "AWS::ECS::TaskDefinition",
        {
            "Cpu": "2048",
            "Memory": "4096",
            "RequiresCompatibilities": ["FARGATE"],
            "ContainerDefinitions": [
                Match.object_like(
                    {
                        "Name": "ml-worker",
                        "StopTimeout": 120,
                        "LogConfiguration": Match.object_like({"LogDriver": "awslogs"}),
                        # The image is an asset: built at deploy time, never at synth.
                        "Image": Match.any_value(),
                    }
                )
            ],
        },
    )


def test_task_role_may_only_answer_task_tokens_and_read_the_secret(template: Template) -> None:
    task_definition = next(iter(template.find_resources("AWS::ECS::TaskDefinition").values()))
    task_role_id = task_definition["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    statements = [
        statement
        for policy in template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": task_role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    wildcard = [s for s in statements if s["Resource"] == "*"]
    assert len(wildcard) == 1
    assert sorted(wildcard[0]["Action"]) == sorted(TASK_TOKEN_CALLBACK_ACTIONS)
    secret_reads = [s for s in statements if s["Resource"] != "*"]
    assert {a for s in secret_reads for a in s["Action"]} == {
        "secretsmanager:GetSecretValue",
        "secretsmanager:DescribeSecret",
    }


def test_the_image_is_built_for_the_tasks_architecture(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An arm64 laptop must build an x86_64 image for an x86_64 task (not its own CPU's)."""
    import json

    app = App(outdir=str(tmp_path))
    stack = Stack(app, "Platform")
    MlWorker(
        stack,
        "MlWorker",
        env_name="test",
        vpc=ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0),
        database_secret=secretsmanager.Secret(stack, "DbSecret"),
        cpu=2048,
        memory_limit_mib=4096,
        log_retention=logs.RetentionDays.ONE_WEEK,
    )
    app.synth()
    manifest = json.loads((tmp_path / "Platform.assets.json").read_text())
    [image] = manifest["dockerImages"].values()
    task = Template.from_stack(stack).find_resources("AWS::ECS::TaskDefinition")
    [definition] = task.values()
    architecture = definition["Properties"]["RuntimePlatform"]["CpuArchitecture"]
    expected = {"X86_64": "linux/amd64", "ARM64": "linux/arm64"}[architecture]
    assert image["source"].get("platform") == expected
