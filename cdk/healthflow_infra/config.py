"""Deployment settings, read from CDK context (`cdk deploy -c healthflow:env=prod ...`).

Nothing account-specific lives in code: the account and region come from the CLI environment,
everything else from these context keys (defaults in cdk.json or below).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from constructs import Construct

from healthflow_infra.paths import DEFAULT_ASL_PATH, DEFAULT_LABS_ASL_PATH, DEFAULT_SWEEP_ASL_PATH

CONTEXT_PREFIX = "healthflow:"


def _as_bool(value: Any) -> bool:
    # `-c key=false` arrives as the string "false": a plain bool() would make it True.
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def _as_list(value: Any) -> tuple[str, ...]:
    # `-c healthflow:lambdaSubnetIds=subnet-a,subnet-b` arrives as one string; cdk.json may hold
    # a JSON list.
    if value is None:
        return ()
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    return tuple(str(item).strip() for item in items if str(item).strip())


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
    labs_asl_path: Path = DEFAULT_LABS_ASL_PATH
    sweep_asl_path: Path = DEFAULT_SWEEP_ASL_PATH
    # Whether the pipe moves messages (RUNNING) and what /healthflow/<env>/enabled says.
    enabled: bool = True
    # Tests and offline synth: package only the `tasks` sources, no `pip install` of deps.
    skip_bundling: bool = False
    # Network. "public" (default): no NAT and no interface endpoint; the ml-worker runs in public
    # subnets with a public IP and a security group without ingress. "isolated": no internet
    # route at all, the AWS APIs through interface endpoints (they bill by the hour, see
    # cdk/README.md). Ignored when the VPC is brought (vpc_id).
    network: str = "public"
    # Bring your own VPC (ids only: no lookup, so synth needs no credentials).
    vpc_id: str | None = None
    availability_zones: tuple[str, ...] = ()
    lambda_subnet_ids: tuple[str, ...] = ()
    ml_worker_subnet_ids: tuple[str, ...] = ()
    ml_worker_public_ip: bool = True
    # Bring your own PostgreSQL: the app connects as db_user with IAM authentication.
    db_host: str | None = None
    db_port: int = 5432
    db_name: str = "healthflow"
    db_user: str = "healthflow_app"
    # DbiResourceId (db-...) or DbClusterResourceId (cluster-...): the rds-db:connect ARN's id.
    db_resource_id: str | None = None
    db_security_group_id: str | None = None
    # New Aurora Serverless v2 (when no db_host is given).
    db_min_capacity_acu: float = 0.0
    db_max_capacity_acu: float = 2.0
    db_auto_pause_minutes: int = 10
    db_deletion_protection: bool = True
    run_migrations_on_deploy: bool = True
    # How often the claim sweep looks for claims whose lease is over. Unset: hourly with your
    # database (always on: a sweep costs nothing measurable), every 6 hours with a new Aurora,
    # whose auto-pause each sweep's connection holds off for db_auto_pause_minutes
    # (hourly: a 10-minute wake every hour, about $7 a month at idle; 6-hourly: about $1.20).
    sweep_interval_hours: int | None = None
    # Switches for what bills while idle.
    queue_cmk: bool = False
    dashboard: bool = False
    tracing: bool = False
    # Business metrics (EMF) from the steps: each metric and step pair is a custom metric billed
    # $0.30 a month for every hour it is written (about $1.80 a month at a message an hour).
    metrics: bool = False
    # Compute sizes. The ml-worker's measured peak RSS is 672 MB (bench/categorize.py), so
    # 1 GB with 0.5 vCPU (the smallest Fargate size that holds it with headroom).
    steps_function_memory_mb: int = 512
    steps_function_timeout_seconds: int = 120
    # None (default): no reservation. A new account has 10 concurrent executions in all and
    # Lambda keeps 100 unreserved, so any reservation fails the deploy there; the database is
    # protected instead by one connection per invocation and the throttling retry in the ASL.
    # An account with room may opt in: -c healthflow:stepsFunctionReservedConcurrency=20.
    steps_function_reserved_concurrency: int | None = None
    ml_worker_cpu: int = 512
    ml_worker_memory_mib: int = 1024
    # Monitoring.
    # The alarms always notify an SNS topic (it bills nothing while idle); without an email
    # nobody is subscribed and synth warns. A customer-managed key on it is a switch.
    alarm_email: str | None = None
    alarm_topic_key: bool = False
    # Above the time a trigger the pipe cannot start takes to reach the DLQ (3 receives x 300 s):
    # such a failure pages once, through the DLQ alarm; this one pages for a pipe that moves
    # nothing at all (stopped, or its target gone). The stack refuses a lower value.
    oldest_message_age_alarm_seconds: int = 1800
    log_retention_days: int = 30

    @property
    def brings_vpc(self) -> bool:
        return self.vpc_id is not None

    @property
    def brings_database(self) -> bool:
        return self.db_host is not None

    @property
    def effective_sweep_interval_hours(self) -> int:
        if self.sweep_interval_hours is not None:
            return self.sweep_interval_hours
        return 1 if self.brings_database else 6

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
            "network": "network",
            "vpcId": "vpc_id",
            "dbHost": "db_host",
            "dbName": "db_name",
            "dbUser": "db_user",
            "dbResourceId": "db_resource_id",
            "dbSecurityGroupId": "db_security_group_id",
            "alarmEmail": "alarm_email",
        }
        list_keys = {
            "availabilityZones": "availability_zones",
            "lambdaSubnetIds": "lambda_subnet_ids",
            "mlWorkerSubnetIds": "ml_worker_subnet_ids",
        }
        bool_keys = {
            "enabled": "enabled",
            "skipBundling": "skip_bundling",
            "mlWorkerPublicIp": "ml_worker_public_ip",
            "dbDeletionProtection": "db_deletion_protection",
            "runMigrationsOnDeploy": "run_migrations_on_deploy",
            "queueCmk": "queue_cmk",
            "dashboard": "dashboard",
            "tracing": "tracing",
            "metrics": "metrics",
            "alarmTopicKey": "alarm_topic_key",
        }
        number_keys = {
            "dbPort": ("db_port", int),
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
            "sweepIntervalHours": ("sweep_interval_hours", int),
        }
        for key, field in string_keys.items():
            value = _as_optional_str(ctx(key))
            if value is not None:
                kwargs[field] = value
        for key, field in list_keys.items():
            value = ctx(key)
            if value is not None:
                kwargs[field] = _as_list(value)
        for key, field in bool_keys.items():
            value = ctx(key)
            if value is not None:
                kwargs[field] = _as_bool(value)
        for key, (field, convert) in number_keys.items():
            value = ctx(key)
            if value is not None:
                kwargs[field] = convert(value)
        asl_from_context = _as_optional_str(ctx("aslPath"))
        labs_asl_from_context = _as_optional_str(ctx("labsAslPath"))
        if labs_asl_from_context is not None:
            kwargs["labs_asl_path"] = Path(labs_asl_from_context)
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
        if self.network not in {"public", "isolated"}:
            raise ValueError("healthflow:network must be public or isolated")
        if self.brings_vpc:
            if len(self.availability_zones) < 2:
                raise ValueError("healthflow:vpcId needs healthflow:availabilityZones (two)")
            if len(self.lambda_subnet_ids) < 2 or len(self.ml_worker_subnet_ids) < 2:
                raise ValueError(
                    "healthflow:vpcId needs two healthflow:lambdaSubnetIds and two "
                    "healthflow:mlWorkerSubnetIds"
                )
        if self.brings_database and not self.brings_vpc:
            raise ValueError(
                "healthflow:dbHost (your database) needs healthflow:vpcId (the VPC it lives in)"
            )
        if self.brings_database and not self.db_resource_id:
            raise ValueError(
                "healthflow:dbHost needs healthflow:dbResourceId (for the rds-db:connect grant)"
            )
        if not 0 <= self.db_min_capacity_acu <= self.db_max_capacity_acu:
            raise ValueError("Need 0 <= healthflow:dbMinCapacity <= healthflow:dbMaxCapacity")
        if self.sweep_interval_hours is not None and not 1 <= self.sweep_interval_hours <= 24:
            raise ValueError("healthflow:sweepIntervalHours must be between 1 and 24")
        reserved = self.steps_function_reserved_concurrency
        if reserved is not None and reserved < 1:
            raise ValueError("healthflow:stepsFunctionReservedConcurrency must be at least 1")
