"""Fixtures for the CDK synth tests: offline, no Docker, one full synth shared by the session.

jsii starts a Node.js process on first use (a few seconds), so the full app is synthesized once
(`full_app`) and the per-construct tests build small bare stacks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# Before jsii starts: the runtime prints a banner for an end-of-life Node.js on every start.
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "1")

from aws_cdk import App, Stack
from aws_cdk.assertions import Template
from healthflow_infra.app_factory import build_app, cdk_json_context

# Tests must never bundle for real (pip + network): sources only.
OFFLINE_CONTEXT: dict[str, Any] = {"healthflow:skipBundling": True}


@dataclass
class SynthesizedApp:
    template: dict[str, Any]
    assertions: Template
    validation_report: dict[str, Any] | None
    synth_error: str | None
    warnings: list[str] = field(default_factory=list)  # synth-time warnings (Annotations)

    def resources_of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.template["Resources"].items()
            if resource["Type"] == resource_type
        }


def synthesize_full_app(
    outdir: Path,
    *,
    context: dict[str, Any] | None = None,
    asl_path: Path | None = None,
    before_synth: Callable[[Stack], None] | None = None,
) -> SynthesizedApp:
    app, stack = build_app(
        context={**OFFLINE_CONTEXT, **(context or {})},
        outdir=outdir,
        asl_path=asl_path,
    )
    if before_synth is not None:
        before_synth(stack)
    synth_error: str | None = None
    try:
        app.synth()
    except Exception as error:  # cdk-nag errors make synth raise ValidationFailed
        synth_error = str(error)
    template_path = outdir / f"{stack.stack_name}.template.json"
    report_path = outdir / "validation-report.json"
    metadata_path = outdir / f"{stack.stack_name}.metadata.json"
    template = json.loads(template_path.read_text())
    metadata = json.loads(metadata_path.read_text()) if metadata_path.exists() else {}
    return SynthesizedApp(
        template=template,
        assertions=Template.from_json(template),
        validation_report=json.loads(report_path.read_text()) if report_path.exists() else None,
        synth_error=synth_error,
        warnings=[
            str(entry["data"])
            for entries in metadata.values()
            for entry in entries
            if entry["type"] == "aws:cdk:warning"
        ],
    )


@pytest.fixture(scope="session")
def full_app(tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    """The whole app as `cdk synth` builds it (cdk-nag on), synthesized once."""
    return synthesize_full_app(tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture
def bare_stack() -> Callable[[], Stack]:
    """A new, empty stack (cdk.json's feature flags, offline context) per call."""

    def make() -> Stack:
        app = App(context={**cdk_json_context(), **OFFLINE_CONTEXT})
        return Stack(app, "Bare")

    return make
