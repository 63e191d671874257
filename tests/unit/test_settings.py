import json

import boto3
import pytest
from moto import mock_aws

from tasks.db.engine import database_url, url_from_secret
from tasks.settings import MissingSetting, Settings


@mock_aws
def test_database_url_comes_from_the_secret_with_tls_and_quoted_password() -> None:
    client = boto3.client("secretsmanager", region_name="eu-west-1")
    secret = {"username": "healthflow", "password": "p@ss/word", "host": "db.internal",
              "port": 5432, "dbname": "healthflow"}  # fmt: skip
    arn = client.create_secret(Name="db", SecretString=json.dumps(secret))["ARN"]
    url = url_from_secret(arn, "eu-west-1")
    assert url == (
        "postgresql+psycopg2://healthflow:p%40ss%2Fword@db.internal:5432/healthflow?sslmode=require"
    )
    settings = Settings(db_secret_arn=arn, aws_region="eu-west-1", database_url=None)
    assert database_url(settings) == url


def test_an_explicit_url_wins() -> None:
    settings = Settings(database_url="postgresql://u@h/db", db_secret_arn="arn:x")
    assert database_url(settings) == "postgresql://u@h/db"


def test_required_settings_fail_loudly() -> None:
    with pytest.raises(MissingSetting, match="HEALTHFLOW_QUEUE_URL"):
        Settings(queue_url=None).require("queue_url")
