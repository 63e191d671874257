"""The ECS side: a Fargate / Fargate Spot cluster and the ml-worker task definition.

The state machine starts the task with `ecs:runTask.waitForTaskToken`; the container reports back
with SendTaskSuccess/SendTaskFailure and heartbeats (tasks/steps/CONTRACT.md).
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
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
# Task-token callbacks: none of these three actions supports resource-level permissions (the
# token, not an ARN, identifies the task), so the statement must use Resource "*".
TASK_TOKEN_CALLBACK_ACTIONS = (
    "states:SendTaskSuccess",
    "states:SendTaskFailure",
    "states:SendTaskHeartbeat",
)


class MlWorker(Construct):
    """ECS cluster (FARGATE + FARGATE_SPOT, Container Insights) and the ml-worker task.

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
        database_secret: secretsmanager.ISecret,
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
            # on-demand FARGATE in a second state when Spot has no capacity.
            enable_fargate_capacity_providers=True,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
        )
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=vpc, description="healthflow ml-worker tasks"
        )
        self.log_group = logs.LogGroup(
            self, "LogGroup", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.task_role = iam.Role(
            self,
            "TaskRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="healthflow ml-worker: task-token callbacks and the database secret",
        )
        self.task_role.add_to_policy(
            iam.PolicyStatement(actions=list(TASK_TOKEN_CALLBACK_ACTIONS), resources=["*"])
        )
        database_secret.grant_read(self.task_role)
        acknowledge(
            self.task_role,
            "AwsSolutions-IAM5[Resource::*]",
            reason="states:SendTaskSuccess/SendTaskFailure/SendTaskHeartbeat do not support "
            "resource-level permissions; the task token authorizes the single task.",
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
            # The context is the repository root so the image can COPY the package sources; the
            # root .dockerignore (not one in containers/ml-worker) decides what is sent.
            image=ecs.ContainerImage.from_asset(
                str(REPO_ROOT),
                file=ML_WORKER_DOCKERFILE,
                # The task's architecture, whatever machine deploys: an arm64 laptop would
                # otherwise build an image the x86_64 task cannot start.
                platform=ARCHITECTURES[ML_WORKER_ARCHITECTURE][1],
                exclude=_ML_WORKER_CONTEXT_EXCLUDES,
            ),
            logging=ecs.LogDrivers.aws_logs(stream_prefix="ml-worker", log_group=self.log_group),
            # Fargate Spot sends SIGTERM two minutes before reclaiming the task; 120 s (the
            # Fargate maximum) lets the runner send SendTaskFailure(SpotInterrupted) in time.
            stop_timeout=Duration.seconds(120),
            environment={
                "HEALTHFLOW_ENV": env_name,
                "HEALTHFLOW_DB_SECRET_ARN": database_secret.secret_arn,
            },
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
            reason="The environment holds only the environment name and the secret's ARN; the "
            "step input and task token are per-run overrides, the password stays in the secret.",
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
