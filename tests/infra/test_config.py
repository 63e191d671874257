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
    assert not config.uses_existing_database
    assert config.asl_path.name == "healthflow.asl.json"


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


def test_existing_database_needs_both_values() -> None:
    with pytest.raises(ValueError, match="both"):
        _config(existingDbSecretArn="arn:aws:secretsmanager:r:1:secret:x")


def test_invalid_values_are_rejected() -> None:
    with pytest.raises(ValueError):
        _config(env="has space")
    with pytest.raises(ValueError):
        _config(dbMinCapacity="3", dbMaxCapacity="2")
