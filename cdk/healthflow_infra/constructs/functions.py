"""The one Lambda function that runs every light step (see tasks/steps/CONTRACT.md)."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from healthflow_infra.bundling import steps_function_code
from healthflow_infra.nag import acknowledge

STEPS_HANDLER = "tasks.runners.lambda_handler.handler"


class StepFunctions(Construct):
    """The `steps` Lambda: in the VPC next to the database, bounded concurrency, X-Ray on.

    Attributes: `function`, `security_group`, `log_group`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env_name: str,
        vpc: ec2.IVpc,
        subnet_selection: ec2.SubnetSelection,
        database_secret: secretsmanager.ISecret,
        memory_size_mb: int,
        timeout: Duration,
        reserved_concurrency: int | None,
        log_retention: logs.RetentionDays,
        install_dependencies: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        # Outbound only: to the database and the VPC endpoints (there is no internet route).
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=vpc, description="healthflow steps Lambda"
        )
        self.log_group = logs.LogGroup(
            self, "LogGroup", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        # x86_64, not the 20% cheaper arm64: the python3.11 runtime runs on Amazon Linux 2
        # (glibc 2.26) and the pinned psycopg2-binary ships aarch64 wheels only for glibc 2.27+
        # (manylinux_2_28); its x86_64 wheel is manylinux2014. Revisit with Python 3.12+ (AL2023).
        architecture = lambda_.Architecture.X86_64
        self.function = lambda_.Function(
            self,
            "Function",
            description=f"healthflow {env_name}: light workflow steps",
            runtime=lambda_.Runtime.PYTHON_3_11,
            architecture=architecture,
            handler=STEPS_HANDLER,
            code=steps_function_code(
                architecture=architecture, install_dependencies=install_dependencies
            ),
            memory_size=memory_size_mb,
            timeout=timeout,
            vpc=vpc,
            vpc_subnets=subnet_selection,
            security_groups=[self.security_group],
            # Opt-in only (healthflow:stepsFunctionReservedConcurrency): a reservation fails the
            # deploy in an account with the default 10 concurrent executions. Each invocation
            # holds at most one connection and closes it (no pool in Lambda), and a throttled
            # invoke is retried by the state machine with a long backoff.
            reserved_concurrent_executions=reserved_concurrency,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_group,
            environment={
                "HEALTHFLOW_ENV": env_name,
                # The secret's ARN, never its value: the code reads it at cold start.
                "HEALTHFLOW_DB_SECRET_ARN": database_secret.secret_arn,
            },
        )
        database_secret.grant_read(self.function)
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
            "AwsSolutions-IAM5[Resource::*]",
            reason="X-Ray tracing: xray:PutTraceSegments/PutTelemetryRecords have no "
            "resource-level permissions (added by CDK for Tracing.ACTIVE).",
        )
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            reason="Python 3.11 is the project's runtime (pyproject requires-python, ml-worker "
            "image); runtimes are upgraded together, deliberately.",
        )
