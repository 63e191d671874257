"""cdk-nag 3 wiring and the one helper every suppression goes through.

cdk-nag 3 is a CDK policy-validation plugin (`Validations.of(app).add_plugins(...)`); the v2
`Aspects.of(app).add(AwsSolutionsChecks())` form no longer exists. Suppressions are CDK
acknowledgements: one per finding (`AwsSolutions-IAM5[Resource::*]`), each with a reason.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, App, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct


def add_nag_checks(app: App) -> None:
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def acknowledge(scope: IConstruct, rule_id: str, *, reason: str) -> None:
    """Suppress one cdk-nag finding on `scope` (and its children); the reason is mandatory."""
    if len(reason.strip()) < 20:
        raise ValueError(f"A suppression of {rule_id} needs a real reason, got {reason!r}")
    Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))
