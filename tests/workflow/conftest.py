"""Fixtures for running what a deploy ships: the built steps asset and its environment."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, text

from tasks.ingest import ingest_lines
from tasks.localcloud.artifacts import LambdaAsset, build_lambda_asset
from tasks.localcloud.cloud import STEPS_FUNCTION_NAME, ExecutionResult, LocalCloud
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


def ingest_lab_report(
    engine: Engine, user_id: int, report: list[tuple[str, str, str | None]], collected_at: str
) -> None:
    """One lab report of (test name, value, unit) rows, as pending raw rows."""
    ingest_lines(
        engine,
        "labs",
        [
            json.dumps({"user_id": user_id, "report_id": "R1", "test_name": name,
                        "value": value, "unit": unit, "collected_at": collected_at})
            for name, value, unit in report
        ],
    )  # fmt: skip


def run_labs_message(
    user_id: int, **cloud_options: Any
) -> tuple[ExecutionResult, list[str], list[Any], list[Any]]:
    """One labs trigger through a LocalCloud: the result, the child's states, the container
    runs and the dead letters."""
    # A generous bound: the model may load in the container on a shared machine.
    with LocalCloud(execution_timeout_seconds=600, **cloud_options) as cloud:
        cloud.send_message({"job_type": "process_pending_labs", "user_id": user_id})
        [result] = cloud.drain()
        assert result.child is not None
        states = cloud.entered_states(result.child.execution_arn)
        letters = cloud.dlq_messages()
        runs = list(cloud.containers.runs) if cloud.containers else []
    return result, states, runs, letters
