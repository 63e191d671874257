"""MlWorker: Fargate + Fargate Spot (Container Insights off), the task definition and its roles."""

from __future__ import annotations

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from aws_cdk.assertions import Match, Template
from healthflow_infra.constructs.ml_worker import MlWorker


@pytest.fixture(scope="module")
def template() -> Template:
    stack = Stack(App(), "Bare")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0)
    MlWorker(
        stack,
        "MlWorker",
        env_name="test",
        vpc=vpc,
        database_environment={"HEALTHFLOW_DB_HOST": "db.example"},
        cpu=512,
        memory_limit_mib=1024,
        log_retention=logs.RetentionDays.ONE_WEEK,
    )
    return Template.from_stack(stack)


def test_cluster_has_fargate_and_spot_capacity_without_container_insights(
    template: Template,
) -> None:
    template.has_resource_properties(
        "AWS::ECS::ClusterCapacityProviderAssociations",
        {"CapacityProviders": Match.array_with(["FARGATE", "FARGATE_SPOT"])},
    )
    template.has_resource_properties(
        "AWS::ECS::Cluster",
        {"ClusterSettings": [{"Name": "containerInsights", "Value": "disabled"}]},
    )


def test_task_definition_size_platform_and_logs(template: Template) -> None:
    template.has_resource_properties(
        "AWS::ECS::TaskDefinition",
        {
            "Cpu": "512",
            "Memory": "1024",
            "RequiresCompatibilities": ["FARGATE"],
            "RuntimePlatform": {"CpuArchitecture": "X86_64", "OperatingSystemFamily": "LINUX"},
            "ContainerDefinitions": [
                Match.object_like(
                    {
                        "Name": "ml-worker",
                        "LogConfiguration": Match.object_like({"LogDriver": "awslogs"}),
                        "Environment": Match.array_with(
                            [{"Name": "HEALTHFLOW_DB_HOST", "Value": "db.example"}]
                        ),
                        # The image is an asset: built at deploy time, never at synth.
                        "Image": Match.any_value(),
                    }
                )
            ],
        },
    )


def test_task_role_has_no_policy_of_its_own(template: Template) -> None:
    # The container calls no AWS API: only the stack's rds-db:connect grant is added later.
    task_definition = next(iter(template.find_resources("AWS::ECS::TaskDefinition").values()))
    task_role_id = task_definition["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    statements = [
        statement
        for policy in template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": task_role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert statements == []


def test_security_group_admits_nothing(template: Template) -> None:
    groups = template.find_resources("AWS::EC2::SecurityGroup")
    (worker,) = [g for g in groups.values() if "ml-worker" in g["Properties"]["GroupDescription"]]
    assert "SecurityGroupIngress" not in worker["Properties"]
    template.resource_count_is("AWS::EC2::SecurityGroupIngress", 0)


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
        database_environment={},
        cpu=512,
        memory_limit_mib=1024,
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
