"""Database: a new Aurora Serverless v2 (pauses at 0 ACU, IAM auth, grant through the Data
API at deploy time) or yours by host and resource id; either way `rds-db:connect` only."""

from __future__ import annotations

import json

from aws_cdk import App, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk.assertions import Match, Template
from healthflow_infra.constructs.database import Database, iam_auth_grant_sql


def _database(*, deletion_protection: bool = True, **yours: object) -> tuple[Template, Database]:
    stack = Stack(App(), "Bare")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0)
    database = Database(
        stack,
        "Database",
        env_name="test",
        vpc=vpc,
        subnets=vpc.isolated_subnets,
        min_capacity_acu=0,
        max_capacity_acu=2,
        auto_pause=Duration.minutes(10),
        deletion_protection=deletion_protection,
        log_retention=logs.RetentionDays.ONE_WEEK,
        **yours,  # type: ignore[arg-type]
    )
    database.allow_from(ec2.SecurityGroup(stack, "Client", vpc=vpc), description="client")
    role = iam.Role(stack, "App", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    database.grant_connect(role)
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
            "EnableHttpEndpoint": True,
            "DeletionProtection": True,
            "EnableCloudwatchLogsExports": ["postgresql"],
        },
    )
    template.has_resource_properties("AWS::RDS::DBInstance", {"DBInstanceClass": "db.serverless"})
    # No rotation Lambda (it would need a Secrets Manager endpoint in the VPC).
    template.resource_count_is("AWS::SecretsManager::RotationSchedule", 0)
    template.has_resource_properties(
        "AWS::EC2::SecurityGroupIngress", {"FromPort": 5432, "ToPort": 5432}
    )
    assert database.cluster is not None


def test_new_cluster_grants_iam_auth_through_the_data_api_at_deploy_time() -> None:
    template, _ = _database()
    template.resource_count_is("Custom::AWS", 1)
    template.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Action": "rds-data:ExecuteStatement"})]
                )
            }
        },
    )
    sql = iam_auth_grant_sql("healthflow_app", "healthflow")
    assert "GRANT rds_iam TO healthflow_app" in sql and sql.startswith("DO $$")


def test_app_role_gets_rds_db_connect_for_the_app_user_only() -> None:
    template, _ = _database()
    policies = template.find_resources("AWS::IAM::Policy")
    connect = [
        statement
        for policy in policies.values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Action"] == "rds-db:connect"
    ]
    assert len(connect) == 1
    text = json.dumps(connect[0]["Resource"])
    assert ":dbuser:" in text and "/healthflow_app" in text


def test_deletion_protection_is_configurable() -> None:
    template, _ = _database(deletion_protection=False)
    template.has_resource_properties("AWS::RDS::DBCluster", {"DeletionProtection": False})


def test_your_database_by_host_and_resource_id() -> None:
    template, database = _database(
        host="db.internal.example",
        resource_id="db-ABCDEFGHIJKLMNOP",
        security_group_id="sg-0123456789abcdef0",
    )
    for absent in ("AWS::RDS::DBCluster", "AWS::SecretsManager::Secret", "Custom::AWS"):
        template.resource_count_is(absent, 0)
    template.has_resource_properties(
        "AWS::EC2::SecurityGroupIngress",
        {"GroupId": "sg-0123456789abcdef0", "FromPort": 5432, "ToPort": 5432},
    )
    assert database.cluster is None
    assert database.host == "db.internal.example"
    assert "db-ABCDEFGHIJKLMNOP/healthflow_app" in json.dumps(
        template.find_resources("AWS::IAM::Policy")
    )
