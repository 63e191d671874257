"""cfn-lint on the synthesized template: no errors, and no engine version that AWS no longer
accepts for new clusters (W3690), so `cdk deploy` is not the first to find out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import SynthesizedApp

REGIONS = ["us-east-1", "eu-west-1"]
#: Warnings that are failures too: AWS refuses these at deploy time.
FATAL_WARNINGS = {"W3690"}


def cfn_lint(template: dict[str, Any]) -> list[str]:
    """`cfn-lint` on a template: its matches as "RULE message", errors and fatal warnings only."""
    from cfnlint.api import ManualArgs, lint

    matches = lint(json.dumps(template), config=ManualArgs(regions=REGIONS))
    return [
        f"{m.rule.id} {m.message}"
        for m in matches
        if m.rule.id.startswith("E") or m.rule.id in FATAL_WARNINGS
    ]


def test_the_default_stack_is_cfn_lint_clean(full_app: SynthesizedApp) -> None:
    assert cfn_lint(full_app.template) == []


def test_cfn_lint_catches_a_deprecated_engine(full_app: SynthesizedApp) -> None:
    """The check can fail: the engine version the stack used before is reported."""
    template = json.loads(json.dumps(full_app.template))
    clusters = [r for r in template["Resources"].values() if r["Type"] == "AWS::RDS::DBCluster"]
    if not clusters:
        pytest.skip("this stack creates no cluster")
    clusters[0]["Properties"]["EngineVersion"] = "16.6"
    assert any(m.startswith("W3690") for m in cfn_lint(template))
