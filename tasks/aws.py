"""AWS clients and the deployed stack's addresses, for the CLI and the producer.

Region: the runtime's. Lambda and ECS set ``AWS_REGION``; elsewhere boto3's default chain decides
(``AWS_DEFAULT_REGION``, then the profile). Nothing defaults to one region, so a stack deployed
outside us-east-1 works unchanged.

Addresses: a deployed stack publishes its queue URL, enabled flag, state machine ARNs and
dead-letter queue URL as SSM parameters under ``/healthflow/<env>/`` (the CDK stack writes the
same names, checked by a synth test). An explicit setting (``HEALTHFLOW_QUEUE_URL``, ...) wins
over the parameter, so a backend that already has the URL needs no SSM read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tasks.settings import MissingSetting, Settings, get_settings

#: Setting name -> SSM parameter name under /healthflow/<env>/ (the CDK stack uses these names).
PARAMETER_NAMES: dict[str, str] = {
    "queue_url": "trigger-queue-url",
    "enabled": "enabled",
    "state_machine_arn": "state-machine-arn",
    "labs_state_machine_arn": "labs-state-machine-arn",
    "dead_letter_queue_url": "dead-letter-queue-url",
}


def parameter_prefix(env: str) -> str:
    return f"/healthflow/{env}"


def parameter_name(env: str, setting: str) -> str:
    return f"{parameter_prefix(env)}/{PARAMETER_NAMES[setting]}"


def client(service: str, settings: Settings | None = None, **kwargs: Any) -> Any:
    """A boto3 client in the runtime's region (None lets boto3's default chain decide)."""
    import boto3

    region = (settings or get_settings()).aws_region
    return boto3.client(service, region_name=region, **kwargs)


def read_flag(value: str | None, *, default: bool = True) -> bool:
    """An enabled flag as SSM or the environment spells it ("true"/"false", "1"/"0")."""
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class StackAddresses:
    """Where a deployed healthflow lives; settings first, SSM for the rest."""

    env: str | None
    values: Mapping[str, str]

    def require(self, setting: str) -> str:
        value = self.values.get(setting)
        if value:
            return value
        if self.env:
            raise MissingSetting(
                f"SSM parameter {parameter_name(self.env, setting)} is not set: is the stack "
                f"for environment {self.env!r} deployed in this account and region?"
            )
        raise MissingSetting(
            f"HEALTHFLOW_{setting.upper()} must be set for this command, or pass --env "
            "(HEALTHFLOW_ENV) to read it from SSM"
        )

    @property
    def enabled(self) -> bool:
        return read_flag(self.values.get("enabled"))


def stack_addresses(
    settings: Settings | None = None, *, env: str | None = None, ssm: Any = None
) -> StackAddresses:
    """The stack's addresses: explicit settings, completed from SSM when an env name is known."""
    settings = settings or get_settings()
    env = env or settings.env
    values: dict[str, str] = {}
    for setting in PARAMETER_NAMES:
        if setting == "enabled":
            continue  # a flag, not an address: the producer combines both sources itself
        value = getattr(settings, setting)
        if value:
            values[setting] = str(value)
    if env:
        ssm = ssm or client("ssm", settings)
        found = _parameters(ssm, parameter_prefix(env))
        for setting, name in PARAMETER_NAMES.items():
            if setting not in values and name in found:
                values[setting] = found[name]
    return StackAddresses(env=env, values=values)


def _parameters(ssm: Any, prefix: str) -> dict[str, str]:
    """Every parameter directly under `prefix`, by its last path segment (all pages)."""
    found: dict[str, str] = {}
    for page in ssm.get_paginator("get_parameters_by_path").paginate(Path=prefix, Recursive=False):
        for parameter in page["Parameters"]:
            found[parameter["Name"].rsplit("/", 1)[-1]] = parameter["Value"]
    return found
