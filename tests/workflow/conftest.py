"""Fixtures for running what a deploy ships: the built steps asset and its environment."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, text

from tasks.localcloud.artifacts import LambdaAsset, build_lambda_asset
from tasks.localcloud.cloud import STEPS_FUNCTION_NAME
from tasks.localcloud.sandbox import LambdaSandboxPool, lambda_environment

REGION = "us-east-1"


@pytest.fixture(scope="session")
def lambda_asset() -> LambdaAsset:
    """The steps asset, built by the CDK bundler for this machine (cached across runs under
    HEALTHFLOW_ARTIFACT_CACHE_DIR, by default ~/.cache/healthflow/artifacts)."""
    asset, _report = build_lambda_asset()
    return asset


def database_environment(database_url: str, engine: Engine) -> dict[str, str]:
    """HEALTHFLOW_DATABASE_URL for another process: the test's database and its schema."""
    with engine.connect() as conn:
        schema = conn.execute(text("SHOW search_path")).scalar_one()
    separator = "&" if "?" in database_url else "?"
    return {
        "HEALTHFLOW_DATABASE_URL": (
            f"{database_url}{separator}options={quote(f'-csearch_path={schema}')}"
        )
    }


@pytest.fixture
def shipped_environment(database_url: str, engine: Engine) -> dict[str, str]:
    """What the stack sets on the function and the task definition, pointed at this test's
    schema (the stack sets the database's address; here it is a URL)."""
    return {"HEALTHFLOW_ENV": "test", **database_environment(database_url, engine)}


@pytest.fixture
def sandboxes(
    lambda_asset: LambdaAsset, shipped_environment: dict[str, str]
) -> Iterator[LambdaSandboxPool]:
    environment = lambda_environment(shipped_environment, REGION, STEPS_FUNCTION_NAME)
    with LambdaSandboxPool(lambda_asset, environment) as pool:
        yield pool
