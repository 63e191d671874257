"""The PostgreSQL database: a new Aurora Serverless v2 cluster, or an existing one by secret.

Either way the rest of the stack sees the same three things: `secret` (host, port, username,
password, dbname as Secrets Manager JSON), `security_group` and `port`, plus `allow_from()`.
"""

from __future__ import annotations

from aws_cdk import CustomResource, Duration, RemovalPolicy, Stack, custom_resources
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from healthflow_infra.nag import acknowledge

DATABASE_NAME = "healthflow"
ADMIN_USERNAME = "healthflow_admin"
POSTGRES_PORT = 5432
# Serverless v2 can pause at 0 ACU from aurora-postgresql 16.3 (13.15, 14.12, 15.7) on; 16.6 and
# older 16.x can no longer create new clusters (cfn-lint W3690, checked by tests/infra).
ENGINE_VERSION = rds.AuroraPostgresEngineVersion.VER_16_8


class Database(Construct):
    """Aurora PostgreSQL Serverless v2 (pauses at 0 ACU) or an existing database.

    Attributes: `secret`, `security_group`, `port`, `cluster` and `rotation_security_group`
    (both None for an existing database).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env_name: str,
        vpc: ec2.IVpc,
        subnet_selection: ec2.SubnetSelection,
        min_capacity_acu: float,
        max_capacity_acu: float,
        auto_pause: Duration,
        deletion_protection: bool,
        log_retention: logs.RetentionDays,
        secrets_manager_endpoint: ec2.IInterfaceVpcEndpoint | None = None,
        existing_secret_arn: str | None = None,
        existing_security_group_id: str | None = None,
        existing_port: int = POSTGRES_PORT,
    ) -> None:
        super().__init__(scope, construct_id)
        self.cluster: rds.DatabaseCluster | None = None
        self.rotation_security_group: ec2.SecurityGroup | None = None
        if existing_secret_arn and existing_security_group_id:
            # The existing database must be reachable from this stack's VPC (same VPC peered,
            # or Transit Gateway); we only add ingress rules to its security group.
            self.secret: secretsmanager.ISecret = secretsmanager.Secret.from_secret_complete_arn(
                self, "ExistingSecret", existing_secret_arn
            )
            self.security_group: ec2.ISecurityGroup = ec2.SecurityGroup.from_security_group_id(
                self, "ExistingSecurityGroup", existing_security_group_id
            )
            self.port = existing_port
            return

        self.port = POSTGRES_PORT
        cluster_identifier = f"healthflow-{env_name}"
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="healthflow database: only the steps Lambda and ml-worker connect",
            allow_all_outbound=False,
        )
        # Created before the cluster, with the name RDS will write to, so that the retention
        # applies without CDK's LogRetention custom resource (one Lambda fewer).
        self.postgresql_log_group = logs.LogGroup(
            self,
            "PostgresqlLogs",
            log_group_name=f"/aws/rds/cluster/{cluster_identifier}/postgresql",
            retention=log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.cluster = rds.DatabaseCluster(
            self,
            "Cluster",
            cluster_identifier=cluster_identifier,
            engine=rds.DatabaseClusterEngine.aurora_postgres(version=ENGINE_VERSION),
            credentials=rds.Credentials.from_generated_secret(ADMIN_USERNAME),
            default_database_name=DATABASE_NAME,
            writer=rds.ClusterInstance.serverless_v2("Writer", auto_minor_version_upgrade=True),
            # 0 ACU: the cluster pauses after `auto_pause` without connections and costs only
            # storage; the first claim after a pause waits ~15 s for the resume, which the
            # workflow's DatabaseUnavailable retry absorbs.
            serverless_v2_min_capacity=min_capacity_acu,
            serverless_v2_max_capacity=max_capacity_acu,
            serverless_v2_auto_pause_duration=auto_pause,
            vpc=vpc,
            vpc_subnets=subnet_selection,
            security_groups=[self.security_group],
            storage_encrypted=True,
            iam_authentication=True,
            deletion_protection=deletion_protection,
            removal_policy=RemovalPolicy.SNAPSHOT,
            backup=rds.BackupProps(retention=Duration.days(7)),
            cloudwatch_logs_exports=["postgresql"],
        )
        self.cluster.node.add_dependency(self.postgresql_log_group)
        assert self.cluster.secret is not None  # from_generated_secret always creates one
        self.secret = self.cluster.secret
        # Monthly rotation by the AWS-hosted single-user rotation function (in the VPC, through
        # the Secrets Manager endpoint). The code must re-read the secret on an auth failure.
        self.rotation_security_group = ec2.SecurityGroup(
            self, "RotationSecurityGroup", vpc=vpc, description="healthflow secret rotation"
        )
        self.cluster.add_rotation_single_user(
            automatically_after=Duration.days(30),
            vpc_subnets=subnet_selection,
            endpoint=secrets_manager_endpoint,
            security_group=self.rotation_security_group,
        )
        acknowledge(
            self.cluster,
            "AwsSolutions-RDS11",
            reason="The default port is kept: the cluster sits in isolated subnets behind a "
            "security group that admits two known security groups; a port change hides nothing.",
        )
        if not deletion_protection:
            acknowledge(
                self.cluster,
                "AwsSolutions-RDS10",
                reason="Deletion protection is switched off by context "
                "(healthflow:dbDeletionProtection=false), for a disposable environment.",
            )

    def allow_from(self, peer: ec2.ISecurityGroup, *, description: str) -> None:
        """Admit `peer` to the database port (an ingress rule on the database's group)."""
        self.security_group.add_ingress_rule(peer, ec2.Port.tcp(self.port), description)


class DatabaseMigrations(Construct):
    """Apply the Alembic migrations on every deploy that changes the steps function's code.

    Chosen over a one-off ECS task because the steps Lambda already has the package, the secret
    and a network path to the database, and a custom resource makes a failed migration fail (and
    roll back) the deployment. The CDK provider framework invokes the steps function with a
    CloudFormation custom-resource event: `RequestType` (Create/Update/Delete) and
    `ResourceProperties` {"step": "migrate", "input": {}}; the handler runs the step on Create
    and Update, does nothing on Delete, and returns {"Data": <step output>}.

    Attributes: `provider`, `resource`.
    """

    MIGRATE_STEP = "migrate"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        steps_function: lambda_.Function,
        database: Database,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self.provider = custom_resources.Provider(
            self,
            "Provider",
            on_event_handler=steps_function,
            log_group=logs.LogGroup(
                self, "ProviderLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
            ),
        )
        self.resource = CustomResource(
            self,
            "Migrate",
            service_token=self.provider.service_token,
            resource_type="Custom::HealthflowMigrations",
            properties={
                "step": self.MIGRATE_STEP,
                "input": {},
                # A new function version (new code) makes CloudFormation send an Update, so the
                # migrations shipped with that code are applied.
                "codeVersion": steps_function.current_version.version,
            },
        )
        if database.cluster is not None:
            self.resource.node.add_dependency(database.cluster)
        acknowledge(
            self.provider,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSLambdaBasicExecutionRole]",
            reason="The CDK provider framework's function only writes its own logs.",
        )
        function_id = Stack.of(steps_function).get_logical_id(
            steps_function.node.default_child  # type: ignore[arg-type]
        )
        acknowledge(
            self.provider,
            f"AwsSolutions-IAM5[Resource::<{function_id}.Arn>:*]",
            reason="The provider framework invokes the steps function and its versions (ARN:*).",
        )
        acknowledge(
            self.provider,
            "AwsSolutions-L1",
            reason="The CDK provider framework pins its own Node.js runtime.",
        )
