"""The one Lambda function that runs every light step (see tasks/steps/CONTRACT.md)."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from healthflow_infra.bundling import steps_function_code
from healthflow_infra.nag import acknowledge

STEPS_HANDLER = "tasks.runners.lambda_handler.handler"
RUNTIME = lambda_.Runtime.PYTHON_3_12
PYTHON_VERSION = "3.12"


def database_environment(*, host: str, port: int, name: str, user: str) -> dict[str, str]:
    """What the code needs to connect with IAM authentication (no password anywhere)."""
    return {
        "HEALTHFLOW_DB_HOST": host,
        "HEALTHFLOW_DB_PORT": str(port),
        "HEALTHFLOW_DB_NAME": name,
        "HEALTHFLOW_DB_USER": user,
    }


LIVE_ALIAS = "live"


class StepFunctions(Construct):
    """The `steps` Lambda: arm64, in the VPC next to the database.

    The state machines never call the function itself (its $LATEST code changes as soon as
    CloudFormation updates it) but `live`, an alias on a published version: the stack makes the
    alias depend on the migrations, so it moves to the new version only after they ran, and a
    failed migration rolls back with the old version and schema still serving.

    Attributes: `function`, `live` (the alias the workflow calls), `security_group`,
    `log_group`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env_name: str,
        vpc: ec2.IVpc,
        subnets: list[ec2.ISubnet],
        database_environment: dict[str, str],
        memory_size_mb: int,
        timeout: Duration,
        reserved_concurrency: int | None,
        log_retention: logs.RetentionDays,
        install_dependencies: bool,
        tracing: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        # Outbound to the database only: the function calls no AWS API at run time (the IAM
        # database token is signed locally), so its subnets need no route out.
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=vpc, description="healthflow steps Lambda"
        )
        self.log_group = logs.LogGroup(
            self, "LogGroup", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        # arm64 (20% cheaper per GB-second): python3.12 runs on Amazon Linux 2023, for which
        # psycopg2-binary, numpy and rapidfuzz ship manylinux_2_28 aarch64 wheels.
        architecture = lambda_.Architecture.ARM_64
        self.function = lambda_.Function(
            self,
            "Function",
            description=f"healthflow {env_name}: light workflow steps",
            runtime=RUNTIME,
            architecture=architecture,
            handler=STEPS_HANDLER,
            code=steps_function_code(
                architecture=architecture,
                python_version=PYTHON_VERSION,
                install_dependencies=install_dependencies,
            ),
            memory_size=memory_size_mb,
            timeout=timeout,
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnets=subnets),
            security_groups=[self.security_group],
            # Opt-in only (healthflow:stepsFunctionReservedConcurrency): a reservation fails the
            # deploy in an account with the default 10 concurrent executions. Each invocation
            # holds at most one connection and closes it (no pool in Lambda), and a throttled
            # invoke is retried by the state machine with a long backoff.
            reserved_concurrent_executions=reserved_concurrency,
            # Off by default: at a few messages a minute X-Ray's sampler keeps nearly every
            # invocation, and traces bill per million (healthflow:tracing=true turns it on).
            tracing=lambda_.Tracing.ACTIVE if tracing else lambda_.Tracing.DISABLED,
            log_group=self.log_group,
            environment={"HEALTHFLOW_ENV": env_name, **database_environment},
        )
        # current_version publishes a version per code or configuration change (old versions
        # are retained, so the alias can stay on one until it moves).
        self.live = lambda_.Alias(
            self, "Live", alias_name=LIVE_ALIAS, version=self.function.current_version
        )
        acknowledge(
            self.function,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSLambdaBasicExecutionRole]",
            reason="The AWS-managed basic execution policy only writes the function's own logs.",
        )
        acknowledge(
            self.function,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSLambdaVPCAccessExecutionRole]",
            reason="The AWS-managed VPC access policy is the documented minimum for ENI creation.",
        )
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            reason="python3.12 is the newest runtime for which every pinned dependency of the "
            "steps (requirements.lock) ships aarch64 wheels that are tested here; runtimes "
            "are upgraded deliberately, together with the lock.",
        )
        if tracing:
            acknowledge(
                self.function,
                "AwsSolutions-IAM5[Resource::*]",
                reason="X-Ray tracing: xray:PutTraceSegments/PutTelemetryRecords have no "
                "resource-level permissions (added by CDK for Tracing.ACTIVE).",
            )
