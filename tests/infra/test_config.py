"""HealthflowConfig: context values as the CLI passes them (strings) and their validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_cdk import App
from healthflow_infra.config import HealthflowConfig


def _config(**context: object) -> HealthflowConfig:
    app = App(context={f"healthflow:{key}": value for key, value in context.items()})
    return HealthflowConfig.from_context(app)


def test_defaults() -> None:
    config = _config()
    assert config.env_name == "dev"
    assert config.parameter_prefix == "/healthflow/dev"
    assert config.db_min_capacity_acu == 0
    assert not config.brings_database and not config.brings_vpc
    assert config.network == "public"
    assert config.steps_function_reserved_concurrency is None
    assert config.asl_path.name == "healthflow.asl.json"
    assert config.labs_asl_path.name == "labs.asl.json"


def test_cli_strings_are_parsed() -> None:
    config = _config(
        env="prod",
        enabled="false",
        skipBundling="true",
        dbMaxCapacity="4",
        stepsFunctionReservedConcurrency="3",
        aslPath="x/y.asl.json",
    )
    assert config.env_name == "prod"
    assert config.enabled is False
    assert config.skip_bundling is True
    assert config.db_max_capacity_acu == 4.0
    assert config.steps_function_reserved_concurrency == 3
    assert config.asl_path == Path("x/y.asl.json")


def test_your_vpc_and_database_take_ids_from_context() -> None:
    config = _config(
        vpcId="vpc-1",
        availabilityZones="az-a, az-b",
        lambdaSubnetIds="subnet-1,subnet-2",
        mlWorkerSubnetIds=["subnet-3", "subnet-4"],
        mlWorkerPublicIp="false",
        dbHost="db.example",
        dbResourceId="db-ABC",
        dbPort="6432",
    )
    assert config.brings_vpc and config.brings_database
    assert config.availability_zones == ("az-a", "az-b")
    assert config.ml_worker_subnet_ids == ("subnet-3", "subnet-4")
    assert config.ml_worker_public_ip is False
    assert config.db_port == 6432


def test_your_database_needs_your_vpc_and_its_resource_id() -> None:
    with pytest.raises(ValueError, match="vpcId"):
        _config(dbHost="db.example", dbResourceId="db-ABC")
    with pytest.raises(ValueError, match="dbResourceId"):
        _config(
            vpcId="vpc-1",
            availabilityZones="a,b",
            lambdaSubnetIds="s1,s2",
            mlWorkerSubnetIds="s3,s4",
            dbHost="db.example",
        )
    with pytest.raises(ValueError, match="two"):
        _config(vpcId="vpc-1", availabilityZones="a,b", lambdaSubnetIds="s1")


def test_invalid_values_are_rejected() -> None:
    with pytest.raises(ValueError):
        _config(env="has space")
    with pytest.raises(ValueError):
        _config(dbMinCapacity="3", dbMaxCapacity="2")
    with pytest.raises(ValueError, match="network"):
        _config(network="nat")


def test_the_sweep_interval_follows_who_pays_for_waking_the_database() -> None:
    # A new Aurora: every sweep holds its auto-pause off, so it is swept every 6 hours.
    assert _config().effective_sweep_interval_hours == 6
    yours = _config(
        vpcId="vpc-0123456789abcdef0",
        availabilityZones="eu-west-1a,eu-west-1b",
        lambdaSubnetIds="subnet-1,subnet-2",
        mlWorkerSubnetIds="subnet-3,subnet-4",
        dbHost="db.example.internal",
        dbResourceId="cluster-ABC",
    )
    assert yours.effective_sweep_interval_hours == 1
    assert _config(sweepIntervalHours="2").effective_sweep_interval_hours == 2
    for refused in ("0", "25"):
        with pytest.raises(ValueError, match="sweepIntervalHours"):
            _config(sweepIntervalHours=refused)


def test_the_alarm_topic_key_is_a_switch() -> None:
    assert _config().alarm_topic_key is False
    assert _config(alarmTopicKey="true").alarm_topic_key is True
