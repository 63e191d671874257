"""The ECS side: a Fargate / Fargate Spot cluster and the ml-worker task definition.

The labs state machine starts the task with `ecs:runTask.sync`: Step Functions waits for the
task to stop and stops it on timeout or abort. The container calls no AWS API: it connects to the
database with an IAM token signed locally, writes its results there, and exits 0 or non-zero.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from healthflow_infra.nag import acknowledge
from healthflow_infra.paths import ML_WORKER_DOCKERFILE, REPO_ROOT

ML_WORKER_CONTAINER_NAME = "ml-worker"
#: The task's CPU architecture and, from it, the platform its image is built for.
ML_WORKER_ARCHITECTURE = "x86_64"
ARCHITECTURES: dict[str, tuple[ecs.CpuArchitecture, ecr_assets.Platform]] = {
    "x86_64": (ecs.CpuArchitecture.X86_64, ecr_assets.Platform.LINUX_AMD64),
    "arm64": (ecs.CpuArchitecture.ARM64, ecr_assets.Platform.LINUX_ARM64),
}


class MlWorker(Construct):
    """ECS cluster (FARGATE + FARGATE_SPOT, Container Insights off) and the ml-worker task.

    Attributes: `cluster`, `task_definition`, `container`, `container_name`, `task_role`,
    `execution_role`, `security_group`, `log_group`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env_name: str,
        vpc: ec2.IVpc,
        database_environment: dict[str, str],
        cpu: int,
        memory_limit_mib: int,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=vpc,
            # Registers FARGATE and FARGATE_SPOT; the ASL asks for Spot first and falls back to
            # on-demand FARGATE in a second state.
            enable_fargate_capacity_providers=True,
            # Off: Container Insights bills custom metrics per task even for a task that runs a
            # few minutes a month; the state machine's history and the task's logs suffice.
            container_insights_v2=ecs.ContainerInsights.DISABLED,
        )
        acknowledge(
            self.cluster,
            "AwsSolutions-ECS4",
            reason="Container Insights is off on purpose: it bills per task metric while the "
            "task runs minutes a month; failures surface in the labs execution and its alarm.",
        )
        # No ingress at all; egress to the database, ECR and CloudWatch Logs.
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=vpc, description="healthflow ml-worker tasks (no ingress)"
        )
        self.log_group = logs.LogGroup(
            self, "LogGroup", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.task_role = iam.Role(
            self,
            "TaskRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="healthflow ml-worker: rds-db:connect as the app user, nothing else",
        )
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            cpu=cpu,
            memory_limit_mib=memory_limit_mib,
            task_role=self.task_role,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ARCHITECTURES[ML_WORKER_ARCHITECTURE][0],
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        self.container_name = ML_WORKER_CONTAINER_NAME
        self.container = self.task_definition.add_container(
            "MlWorker",
            container_name=self.container_name,
            # Built by `cdk deploy` (needs Docker there); synth only fingerprints the context.
            image=ecs.ContainerImage.from_asset(
                str(REPO_ROOT),
                file=ML_WORKER_DOCKERFILE,
                # The task's architecture, whatever machine deploys: an arm64 laptop would
                # otherwise build an image the x86_64 task cannot start.
                platform=ARCHITECTURES[ML_WORKER_ARCHITECTURE][1],
                exclude=_ML_WORKER_CONTEXT_EXCLUDES,
            ),
            logging=ecs.LogDrivers.aws_logs(stream_prefix="ml-worker", log_group=self.log_group),
            environment={"HEALTHFLOW_ENV": env_name, **database_environment},
            readonly_root_filesystem=False,
        )
        self.execution_role = self.task_definition.obtain_execution_role()
        acknowledge(
            self.execution_role,
            "AwsSolutions-IAM5[Resource::*]",
            reason="Image pull: ecr:GetAuthorizationToken has no resource-level permissions; "
            "the layer actions are limited to the asset repository by CDK.",
        )
        acknowledge(
            self.task_definition,
            "AwsSolutions-ECS2",
            reason="The environment holds the environment name and where the database is (host, "
            "port, name, user): no secret; the step input is a per-run override.",
        )


# The image context is the repository root: an allowlist keeps the fingerprint (a change elsewhere
# in the repository must not rebuild the image) and the deploy-time upload to what the Dockerfile
# copies. This list plays the role a root .dockerignore would.
_ML_WORKER_CONTEXT_EXCLUDES: list[str] = [
    "*",
    "!pyproject.toml",
    "!requirements.lock",
    "!tasks",
    "!tasks/**",
    "!statemachines",
    "!statemachines/**",
    "!containers",
    "!containers/ml-worker",
    "!containers/ml-worker/**",
    "**/__pycache__",
    "**/*.pyc",
]
