"""The PostgreSQL database the app connects to with IAM authentication: yours, or a new Aurora.

Either way the rest of the stack sees `host`, `port`, `name`, `user` (the environment the code
needs to sign a token locally: no password, no Secrets Manager read at run time),
`grant_connect()` (`rds-db:connect` for that one database user) and `allow_from()`.

Your database (the first-class path, `-c healthflow:dbHost=... dbResourceId=...`) needs one SQL
grant, once, by its owner (`iam_auth_grant_sql`, spelled out in cdk/README.md).
A new Aurora Serverless v2 cluster gets that grant at deploy time through the RDS Data API (an
HTTPS API: no interface endpoint, no Lambda in the VPC), run by a custom resource.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, CustomResource, Duration, RemovalPolicy, Stack, custom_resources
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from constructs import Construct

from healthflow_infra.nag import acknowledge

DATABASE_NAME = "healthflow"
APP_USER = "healthflow_app"
ADMIN_USERNAME = "healthflow_admin"
POSTGRES_PORT = 5432
_AWS_CUSTOM_RESOURCE_SINGLETON_ID = "AWS679f53fac002430cb0da5b7982bd2287"
# Serverless v2 can pause at 0 ACU from aurora-postgresql 16.3 (13.15, 14.12, 15.7) on; 16.6 and
# older 16.x can no longer create new clusters (cfn-lint W3690, checked by tests/infra).
ENGINE_VERSION = rds.AuroraPostgresEngineVersion.VER_16_8


def iam_auth_grant_sql(user: str, database: str) -> str:
    """The grant IAM authentication needs, idempotent, as one statement (the Data API runs one).

    The same grant cdk/README.md asks the owner of an existing database for: the app user may
    connect, and create the schema's tables (migrations run as that user).
    """
    return (
        "DO $$ BEGIN "
        f"IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{user}') THEN "
        f"CREATE ROLE {user} LOGIN; END IF; "
        f"GRANT rds_iam TO {user}; "
        f"GRANT CREATE, CONNECT ON DATABASE {database} TO {user}; "
        f"GRANT ALL ON SCHEMA public TO {user}; "
        "END $$"
    )


class Database(Construct):
    """Attributes: `host`, `port`, `name`, `user`, `security_group` (None for yours without
    one), `cluster` (None for yours), `grant` (the Data API custom resource, or None)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env_name: str,
        vpc: ec2.IVpc,
        subnets: list[ec2.ISubnet],
        min_capacity_acu: float,
        max_capacity_acu: float,
        auto_pause: Duration,
        deletion_protection: bool,
        log_retention: logs.RetentionDays,
        host: str | None = None,
        port: int = POSTGRES_PORT,
        name: str = DATABASE_NAME,
        user: str = APP_USER,
        resource_id: str | None = None,
        security_group_id: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.cluster: rds.DatabaseCluster | None = None
        self.grant: custom_resources.AwsCustomResource | None = None
        self.name = name
        self.user = user
        self.port = port
        self.security_group: ec2.ISecurityGroup | None = None
        if host is not None:
            if resource_id is None:
                raise ValueError("Your database needs its resource id for rds-db:connect")
            self.host = host
            self._resource_id = resource_id
            if security_group_id:
                self.security_group = ec2.SecurityGroup.from_security_group_id(
                    self, "ExistingSecurityGroup", security_group_id, mutable=True
                )
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
        # Created before the cluster, with the name RDS writes to, so that the retention applies
        # without CDK's LogRetention custom resource (one Lambda fewer).
        self.postgresql_log_group = logs.LogGroup(
            self,
            "PostgresqlLogs",
            log_group_name=f"/aws/rds/cluster/{cluster_identifier}/postgresql",
            retention=log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        cluster = rds.DatabaseCluster(
            self,
            "Cluster",
            cluster_identifier=cluster_identifier,
            engine=rds.DatabaseClusterEngine.aurora_postgres(version=ENGINE_VERSION),
            # The admin secret is read only at deploy time, by the Data API grant below.
            credentials=rds.Credentials.from_generated_secret(ADMIN_USERNAME),
            default_database_name=name,
            writer=rds.ClusterInstance.serverless_v2("Writer", auto_minor_version_upgrade=True),
            # 0 ACU: the cluster pauses after `auto_pause` without connections and costs only
            # storage; the first claim after a pause waits for the resume, which the
            # workflow's DatabaseUnavailable retry absorbs.
            serverless_v2_min_capacity=min_capacity_acu,
            serverless_v2_max_capacity=max_capacity_acu,
            serverless_v2_auto_pause_duration=auto_pause,
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnets=subnets),
            security_groups=[self.security_group],
            storage_encrypted=True,
            iam_authentication=True,
            enable_data_api=True,
            deletion_protection=deletion_protection,
            removal_policy=RemovalPolicy.SNAPSHOT,
            backup=rds.BackupProps(retention=Duration.days(7)),
            cloudwatch_logs_exports=["postgresql"],
        )
        cluster.node.add_dependency(self.postgresql_log_group)
        self.cluster = cluster
        self.host = cluster.cluster_endpoint.hostname
        self._resource_id = cluster.cluster_resource_identifier
        self.grant = self._grant_iam_auth(cluster)
        acknowledge(
            cluster,
            "AwsSolutions-RDS11",
            reason="The default port is kept: the cluster sits in isolated subnets behind a "
            "security group that admits two known security groups; a port change hides nothing.",
        )
        acknowledge(
            cluster,
            "AwsSolutions-SMG4",
            reason="The admin secret is used only at deploy time (the Data API grant); the app "
            "authenticates with short-lived IAM tokens, so there is no long-lived app password "
            "to rotate, and a rotation Lambda would need a Secrets Manager endpoint.",
        )
        if not deletion_protection:
            acknowledge(
                cluster,
                "AwsSolutions-RDS10",
                reason="Deletion protection is switched off by context "
                "(healthflow:dbDeletionProtection=false), for a disposable environment.",
            )

    def _grant_iam_auth(self, cluster: rds.DatabaseCluster) -> custom_resources.AwsCustomResource:
        assert cluster.secret is not None  # from_generated_secret always creates one
        statement = custom_resources.AwsSdkCall(
            service="rds-data",
            action="executeStatement",
            parameters={
                "resourceArn": cluster.cluster_arn,
                "secretArn": cluster.secret.secret_arn,
                "database": self.name,
                "sql": iam_auth_grant_sql(self.user, self.name),
            },
            physical_resource_id=custom_resources.PhysicalResourceId.of(f"iam-grant-{self.user}"),
        )
        grant = custom_resources.AwsCustomResource(
            self,
            "IamAuthGrant",
            on_create=statement,
            on_update=statement,
            install_latest_aws_sdk=False,
            # The Data API waits for a paused cluster to resume; give it time.
            timeout=Duration.minutes(2),
            policy=custom_resources.AwsCustomResourcePolicy.from_statements(
                [
                    iam.PolicyStatement(
                        actions=["rds-data:ExecuteStatement"], resources=[cluster.cluster_arn]
                    ),
                    iam.PolicyStatement(
                        actions=["secretsmanager:GetSecretValue"],
                        resources=[cluster.secret.secret_arn],
                    ),
                ]
            ),
        )
        grant.node.add_dependency(cluster)
        # The function behind every AwsCustomResource is one singleton at the stack's root.
        singleton = Stack.of(self).node.try_find_child(_AWS_CUSTOM_RESOURCE_SINGLETON_ID)
        acknowledge(
            singleton or grant,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSLambdaBasicExecutionRole]",
            reason="The CDK custom-resource function only writes its own logs.",
        )
        acknowledge(
            singleton or grant,
            "AwsSolutions-L1",
            reason="CDK's AwsCustomResource singleton pins its own Node.js runtime.",
        )
        return grant

    def connect_arn(self) -> str:
        """The `rds-db:connect` resource of the app user."""
        return Stack.of(self).format_arn(
            service="rds-db",
            resource="dbuser",
            resource_name=f"{self._resource_id}/{self.user}",
            # arn:aws:rds-db:<region>:<account>:dbuser:<resource id>/<user>
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

    def grant_connect(self, grantee: iam.IGrantable) -> None:
        """`rds-db:connect` as the app user, and nothing else."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["rds-db:connect"], resources=[self.connect_arn()])
        )

    def allow_from(self, peer: ec2.ISecurityGroup, *, description: str) -> None:
        """Admit `peer` to the database port (an ingress rule on the database's group)."""
        if self.security_group is not None:
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
        if database.grant is not None:
            # Migrations connect as the app user, which the grant creates.
            self.resource.node.add_dependency(database.grant)
        # ...and through the network path: the ingress rules on the database's security group
        # (an existing database's too), created inside `database`.
        self.resource.node.add_dependency(database)
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
