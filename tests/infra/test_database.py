"""Database: Aurora PostgreSQL Serverless v2 that pauses at 0 ACU, or an existing database."""

from __future__ import annotations

from aws_cdk import App, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from aws_cdk.assertions import Match, Template
from healthflow_infra.constructs.database import Database

SUBNETS = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)


def _database(*, deletion_protection: bool = True, **existing: str) -> tuple[Template, Database]:
    stack = Stack(App(), "Bare")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0)
    database = Database(
        stack,
        "Database",
        env_name="test",
        vpc=vpc,
        subnet_selection=SUBNETS,
        min_capacity_acu=0,
        max_capacity_acu=2,
        auto_pause=Duration.minutes(10),
        deletion_protection=deletion_protection,
        log_retention=logs.RetentionDays.ONE_WEEK,
        **existing,  # type: ignore[arg-type]
    )
    database.allow_from(ec2.SecurityGroup(stack, "Client", vpc=vpc), description="client")
    return Template.from_stack(stack), database


def test_new_cluster_pauses_at_zero_and_is_locked_down() -> None:
    template, database = _database()
    template.has_resource_properties(
        "AWS::RDS::DBCluster",
        {
            "Engine": "aurora-postgresql",
            "EngineVersion": Match.string_like_regexp(r"^16\."),
            "ServerlessV2ScalingConfiguration": {
                "MinCapacity": 0,
                "MaxCapacity": 2,
                "SecondsUntilAutoPause": 600,
            },
            "StorageEncrypted": True,
            "EnableIAMDatabaseAuthentication": True,
            "DeletionProtection": True,
            "EnableCloudwatchLogsExports": ["postgresql"],
            "MasterUserPassword": Match.any_value(),  # resolved from the generated secret
        },
    )
    template.has_resource_properties("AWS::RDS::DBInstance", {"DBInstanceClass": "db.serverless"})
    template.resource_count_is("AWS::SecretsManager::RotationSchedule", 1)
    template.has_resource_properties(
        "AWS::EC2::SecurityGroupIngress", {"FromPort": 5432, "ToPort": 5432}
    )
    assert database.cluster is not None


def test_deletion_protection_is_configurable() -> None:
    template, _ = _database(deletion_protection=False)
    template.has_resource_properties("AWS::RDS::DBCluster", {"DeletionProtection": False})


def test_existing_database_by_secret_and_security_group() -> None:
    secret_arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:healthflow-db-AbCdEf"
    template, database = _database(
        existing_secret_arn=secret_arn, existing_security_group_id="sg-0123456789abcdef0"
    )
    template.resource_count_is("AWS::RDS::DBCluster", 0)
    template.resource_count_is("AWS::SecretsManager::Secret", 0)
    template.has_resource_properties(
        "AWS::EC2::SecurityGroupIngress",
        {"GroupId": "sg-0123456789abcdef0", "FromPort": 5432, "ToPort": 5432},
    )
    assert database.cluster is None
    assert database.secret.secret_arn == secret_arn
