"""Build the app the same way for `cdk synth` (app.py) and for the tests."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from aws_cdk import App, Environment, Tags

from healthflow_infra.config import HealthflowConfig
from healthflow_infra.nag import add_nag_checks
from healthflow_infra.stack import HealthflowStack

CDK_JSON = Path(__file__).resolve().parents[1] / "cdk.json"


def cdk_json_context() -> dict[str, Any]:
    """cdk.json's context (feature flags and defaults), so tests synthesize what the CLI does."""
    return dict(json.loads(CDK_JSON.read_text(encoding="utf-8")).get("context", {}))


def build_app(
    *,
    context: dict[str, Any] | None = None,
    outdir: str | Path | None = None,
    asl_path: Path | None = None,
    with_nag: bool = True,
) -> tuple[App, HealthflowStack]:
    # Under the CLI, its context (cdk.json + `-c`) arrives through the environment and wins over
    # these values; in tests they are the whole context.
    merged_context = {**cdk_json_context(), **(context or {})}
    app = App(context=merged_context, outdir=str(outdir) if outdir is not None else None)
    config = HealthflowConfig.from_context(app, asl_path=asl_path)
    # Account and region come from the CLI profile at deploy time; unset (tests, offline synth)
    # the stack is environment-agnostic.
    account = os.environ.get("CDK_DEFAULT_ACCOUNT")
    region = os.environ.get("CDK_DEFAULT_REGION")
    env = Environment(account=account, region=region) if account and region else None
    stack = HealthflowStack(
        app,
        f"Healthflow-{config.env_name}",
        config=config,
        env=env,
        description=f"healthflow ({config.env_name}): SQS -> Pipe -> Step Functions -> "
        "Lambda / ECS Fargate -> Aurora PostgreSQL",
    )
    Tags.of(stack).add("project", "healthflow")
    Tags.of(stack).add("environment", config.env_name)
    if with_nag:
        add_nag_checks(app)
    return app, stack
