"""StepFunctions (the `steps` Lambda) and its Docker-free bundling."""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_cdk import App, DockerImage, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk.assertions import Match, Template
from healthflow_infra.bundling import LocalPipBundling
from healthflow_infra.constructs.functions import (
    STEPS_HANDLER,
    StepFunctions,
    database_environment,
)

from .conftest import OFFLINE_CONTEXT


@pytest.fixture(scope="module")
def template() -> Template:
    stack = Stack(App(context=OFFLINE_CONTEXT), "Bare")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0)
    StepFunctions(
        stack,
        "Steps",
        env_name="test",
        vpc=vpc,
        subnets=vpc.isolated_subnets,
        database_environment=database_environment(
            host="db.example", port=5432, name="healthflow", user="healthflow_app"
        ),
        memory_size_mb=512,
        timeout=Duration.minutes(2),
        reserved_concurrency=None,
        log_retention=logs.RetentionDays.ONE_WEEK,
        install_dependencies=False,
    )
    return Template.from_stack(stack)


def test_one_function_runs_the_contract_handler(template: Template) -> None:
    template.resource_count_is("AWS::Lambda::Function", 1)
    assert STEPS_HANDLER == "tasks.runners.lambda_handler.handler"
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": STEPS_HANDLER,
            "Runtime": "python3.12",
            "Architectures": ["arm64"],
            "MemorySize": 512,
            "VpcConfig": {
                "SubnetIds": Match.any_value(),
                "SecurityGroupIds": [{"Fn::GetAtt": [Match.any_value(), "GroupId"]}],
            },
            "Environment": {
                "Variables": Match.object_like(
                    {"HEALTHFLOW_DB_HOST": "db.example", "HEALTHFLOW_DB_USER": "healthflow_app"}
                )
            },
        },
    )
    # No reservation by default: new accounts have 10 in all, Lambda keeps 100 unreserved.
    (function,) = template.find_resources("AWS::Lambda::Function").values()
    assert "ReservedConcurrentExecutions" not in function["Properties"]


def _fake_tasks_package(root: Path) -> Path:
    package = root / "tasks"
    (package / "runners").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "runners" / "lambda_handler.py").write_text("def handler(e, c): return e\n")
    (package / "runners" / "__pycache__").mkdir()
    (package / "runners" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"")
    return package


def test_source_only_bundling_copies_the_package_without_caches(tmp_path: Path) -> None:
    package = _fake_tasks_package(tmp_path / "src")
    output = tmp_path / "out"
    output.mkdir()
    bundler = LocalPipBundling(
        architecture=lambda_.Architecture.ARM_64, install_dependencies=False, package_dir=package
    )
    assert bundler.try_bundle(str(output), image=DockerImage.from_registry("unused")) is True
    assert (output / "tasks" / "runners" / "lambda_handler.py").exists()
    assert not (output / "tasks" / "runners" / "__pycache__").exists()


def test_dependency_bundling_asks_pip_for_lambda_platform_wheels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(
        "healthflow_infra.bundling.subprocess.run",
        lambda command, check: calls.append(command),
    )
    package = _fake_tasks_package(tmp_path / "src")
    output = tmp_path / "out"
    output.mkdir()
    LocalPipBundling(
        architecture=lambda_.Architecture.X86_64, install_dependencies=True, package_dir=package
    ).try_bundle(str(output), image=DockerImage.from_registry("unused"))
    (command,) = calls
    platforms = [command[i + 1] for i, arg in enumerate(command) if arg == "--platform"]
    assert platforms == ["manylinux_2_28_x86_64", "manylinux2014_x86_64"]
    assert command[command.index("--python-version") + 1] == "3.12"
    assert command[command.index("--target") + 1] == str(output)
    assert "--only-binary=:all:" in command
    assert "torch" not in command  # the model belongs to the ml-worker image only
    assert "rapidfuzz" in command  # ResolveKnownNames runs the catalog's model-free tier
