"""Deployment settings, read from CDK context (`cdk deploy -c healthflow:env=prod ...`).

Nothing account-specific lives in code: the account and region come from the CLI environment,
everything else from these context keys (defaults in cdk.json or below).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from constructs import Construct

from healthflow_infra.paths import DEFAULT_ASL_PATH

CONTEXT_PREFIX = "healthflow:"


def _as_bool(value: Any) -> bool:
    # `-c key=false` arrives as the string "false": a plain bool() would make it True.
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def _as_optional_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


@dataclass(frozen=True, kw_only=True)
class HealthflowConfig:
    """Every knob of the stack; `from_context` fills it from `healthflow:*` context values."""

    env_name: str = "dev"
    asl_path: Path = DEFAULT_ASL_PATH
    # Whether the pipe moves messages (RUNNING) and what /healthflow/<env>/enabled says.
    enabled: bool = True
    # Tests and offline synth: package only the `tasks` sources, no `pip install` of deps.
    skip_bundling: bool = False
    # Database: a new Aurora Serverless v2 cluster unless both existing_* values are given.
    existing_db_secret_arn: str | None = None
    existing_db_security_group_id: str | None = None
    db_min_capacity_acu: float = 0.0
    db_max_capacity_acu: float = 2.0
    db_auto_pause_minutes: int = 10
    db_deletion_protection: bool = True
    run_migrations_on_deploy: bool = True
    # Compute sizes.
    steps_function_memory_mb: int = 1024
    steps_function_timeout_seconds: int = 300
    # None (default): no reservation. A new account has 10 concurrent executions in all and
    # Lambda keeps 100 unreserved, so any reservation fails the deploy there; the database is
    # protected instead by one connection per invocation and the throttling retry in the ASL.
    # An account with room may opt in: -c healthflow:stepsFunctionReservedConcurrency=20.
    steps_function_reserved_concurrency: int | None = None
    ml_worker_cpu: int = 2048
    ml_worker_memory_mib: int = 4096
    # Monitoring.
    alarm_email: str | None = None
    create_alarm_topic: bool = False
    oldest_message_age_alarm_seconds: int = 900
    log_retention_days: int = 30

    @property
    def uses_existing_database(self) -> bool:
        return bool(self.existing_db_secret_arn and self.existing_db_security_group_id)

    @property
    def wants_alarm_topic(self) -> bool:
        return self.create_alarm_topic or self.alarm_email is not None

    @property
    def parameter_prefix(self) -> str:
        return f"/healthflow/{self.env_name}"

    @classmethod
    def from_context(cls, scope: Construct, *, asl_path: Path | None = None) -> HealthflowConfig:
        def ctx(key: str) -> Any:
            return scope.node.try_get_context(CONTEXT_PREFIX + key)

        defaults = cls()
        kwargs: dict[str, Any] = {}
        string_keys = {
            "env": "env_name",
            "existingDbSecretArn": "existing_db_secret_arn",
            "existingDbSecurityGroupId": "existing_db_security_group_id",
            "alarmEmail": "alarm_email",
        }
        bool_keys = {
            "enabled": "enabled",
            "skipBundling": "skip_bundling",
            "dbDeletionProtection": "db_deletion_protection",
            "runMigrationsOnDeploy": "run_migrations_on_deploy",
            "createAlarmTopic": "create_alarm_topic",
        }
        number_keys = {
            "dbMinCapacity": ("db_min_capacity_acu", float),
            "dbMaxCapacity": ("db_max_capacity_acu", float),
            "dbAutoPauseMinutes": ("db_auto_pause_minutes", int),
            "stepsFunctionMemoryMb": ("steps_function_memory_mb", int),
            "stepsFunctionTimeoutSeconds": ("steps_function_timeout_seconds", int),
            "stepsFunctionReservedConcurrency": ("steps_function_reserved_concurrency", int),
            "mlWorkerCpu": ("ml_worker_cpu", int),
            "mlWorkerMemoryMib": ("ml_worker_memory_mib", int),
            "oldestMessageAgeAlarmSeconds": ("oldest_message_age_alarm_seconds", int),
            "logRetentionDays": ("log_retention_days", int),
        }
        for key, field in string_keys.items():
            value = _as_optional_str(ctx(key))
            if value is not None:
                kwargs[field] = value
        for key, field in bool_keys.items():
            value = ctx(key)
            if value is not None:
                kwargs[field] = _as_bool(value)
        for key, (field, convert) in number_keys.items():
            value = ctx(key)
            if value is not None:
                kwargs[field] = convert(value)
        asl_from_context = _as_optional_str(ctx("aslPath"))
        if asl_path is not None:
            kwargs["asl_path"] = asl_path
        elif asl_from_context is not None:
            kwargs["asl_path"] = Path(asl_from_context)
        config = cls(**{**defaults.__dict__, **kwargs})
        config.validate()
        return config

    def validate(self) -> None:
        if not self.env_name.replace("-", "").isalnum():
            raise ValueError(
                f"healthflow:env must be alphanumeric (dashes allowed): {self.env_name}"
            )
        if bool(self.existing_db_secret_arn) != bool(self.existing_db_security_group_id):
            raise ValueError(
                "An existing database needs both healthflow:existingDbSecretArn and "
                "healthflow:existingDbSecurityGroupId"
            )
        if not 0 <= self.db_min_capacity_acu <= self.db_max_capacity_acu:
            raise ValueError("Need 0 <= healthflow:dbMinCapacity <= healthflow:dbMaxCapacity")
        reserved = self.steps_function_reserved_concurrency
        if reserved is not None and reserved < 1:
            raise ValueError("healthflow:stepsFunctionReservedConcurrency must be at least 1")
