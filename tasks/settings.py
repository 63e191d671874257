"""One typed settings object, read once at start-up from HEALTHFLOW_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class MissingSetting(RuntimeError):
    """A setting that the chosen mode needs has no value."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HEALTHFLOW_", extra="ignore", frozen=True, populate_by_name=True
    )

    # A PostgreSQL URL wins over the embedded server. In AWS the steps connect with IAM database
    # authentication instead: host, port, user and database name come from these settings, and
    # the password is a token signed locally for each connection (no secret, no API call).
    database_url: str | None = None
    db_host: str | None = None
    db_port: int = 5432
    db_user: str | None = None
    db_name: str | None = None
    # Kept for a database that cannot use IAM authentication: an RDS-style secret.
    db_secret_arn: str | None = None
    # How long one connection attempt may wait. A paused Aurora Serverless v2 holds a new
    # connection while it resumes (15 s typically, 30 s at worst): 20 s covers the typical
    # resume in one attempt and leaves room inside a step's 60 s TimeoutSeconds; the ASL's
    # DatabaseUnavailable retrier gives a slower resume four more attempts (100 s in all).
    db_connect_timeout_seconds: int = Field(default=20, ge=2)
    # Set by the Lambda runtime. In Lambda a connection lives for one invocation: a warm function
    # keeps none open (Aurora can pause at 0 ACU), and the open connections never exceed the
    # running steps.
    lambda_function_name: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AWS_LAMBDA_FUNCTION_NAME", "lambda_function_name"),
    )
    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir("healthflow")))

    # Where `send`, `start-execution`, `trace` and `dlq` act.
    target: Literal["local", "aws"] = "local"
    # The runtime's region: Lambda and ECS set AWS_REGION. Unset, boto3's default chain decides
    # (AWS_DEFAULT_REGION, then the profile's region).
    aws_region: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_REGION", "aws_region")
    )
    # The deployed stack's name (`cdk deploy -c healthflow:env=...`): with it, every address
    # below that is unset is read from SSM under /healthflow/<env>/.
    env: str | None = None
    # The seed system's producer names (ML_WORKER_*) are accepted so a backend keeps its config.
    queue_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "HEALTHFLOW_QUEUE_URL", "ML_WORKER_SQS_QUEUE_URL", "queue_url"
        ),
    )
    dead_letter_queue_url: str | None = None
    state_machine_arn: str | None = None
    labs_state_machine_arn: str | None = None
    # The old API's switch: when false, producers send nothing. With an environment name, the
    # SSM flag /healthflow/<env>/enabled must say true as well.
    enabled: bool = Field(
        default=True,
        validation_alias=AliasChoices("HEALTHFLOW_ENABLED", "ML_WORKER_ENABLED", "enabled"),
    )
    # The SSM parameter the producer reads its switch from (default: /healthflow/<env>/enabled
    # when an environment name is set); seconds a value read from it is trusted.
    enabled_parameter: str | None = None
    enabled_cache_seconds: float = 60.0

    state_machine_file: Path = REPO_ROOT / "statemachines" / "healthflow.asl.json"

    # How the local cloud runs what a deploy ships. "in-process" calls the steps' Python entry
    # points directly (fast); "shipped" builds the steps Lambda asset with the CDK bundler and
    # the ml-worker's environment from its Dockerfile (both cached), and runs each in a separate
    # process as AWS would (see README, "What a deploy ships, run here").
    local_steps: Literal["in-process", "shipped"] = "in-process"
    local_ml_worker: Literal["in-process", "shipped"] = "in-process"
    # Where those builds are cached (kept across runs: the first build takes minutes).
    artifact_cache_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_cache_dir("healthflow")) / "artifacts"
    )

    # Lab categorization.
    model_path: Path | None = None
    # Whether the embedding model proposes codes for names the alias tier leaves (independent
    # checks accept or refuse each proposal). None: on everywhere but in a Lambda, whose memory
    # and start-up budget the model does not fit; the ml-worker and the CLI use it.
    lab_model: bool | None = None
    match_threshold: float | None = None
    embedding_cache_dir: Path | None = None

    ingest_batch_rows: int = 50_000

    # Business metrics (EMF lines) from the steps in AWS; off saves their CloudWatch price.
    metrics: bool = True

    # Recovery. A claim made where its process can be checked (this machine) is taken over as
    # soon as that process is gone; any other claim (Lambda, ECS, another machine) once its
    # lease ends. The lease must outlast every state machine's TimeoutSeconds plus a Lambda's
    # longest run (15 min), so a claim is never taken from an execution that may still write.
    claim_lease_seconds: int = Field(default=3 * 3600, gt=0)
    # Failures a row may have before it is set aside (stays `failed`, no longer retried).
    max_attempts: int = Field(default=3, ge=1)
    # Rows one bounded claim (the workflow's) takes at most: an Express execution lasts at most
    # five minutes, so a backlog is taken in slices and the execution re-queues its trigger for
    # the rest (see README, "Large backlogs"). Direct mode claims without a bound.
    claim_max_rows: int = Field(default=100_000, ge=1)
    # Set by the ECS agent (Lambda sets lambda_function_name): in AWS a claim is leased, since
    # its process cannot be checked from elsewhere.
    ecs_container_metadata_uri_v4: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "ECS_CONTAINER_METADATA_URI_V4", "ecs_container_metadata_uri_v4"
        ),
    )

    @field_validator("database_url")
    @classmethod
    def _postgresql_url(cls, value: str | None) -> str | None:
        # Checked here, so that a malformed URL is a configuration error before anything runs.
        if not value:
            return None
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if parts.scheme not in ("postgresql", "postgres", "postgresql+psycopg2"):
            raise ValueError(
                "must be a PostgreSQL URL: postgresql://USER[:PASSWORD]@HOST[:PORT]/DB"
            )
        try:
            parts.port  # noqa: B018  (raises on a port that is not a number)
        except ValueError:
            raise ValueError("the port must be a number from 1 to 65535") from None
        if not parts.path.strip("/"):
            raise ValueError("must name a database: postgresql://USER@HOST:PORT/DB")
        return value

    def require(self, name: str) -> str:
        """The value of a setting the caller cannot work without, or a loud error."""
        value = getattr(self, name)
        if value in (None, ""):
            raise MissingSetting(f"HEALTHFLOW_{name.upper()} must be set for this command")
        return str(value)

    @property
    def runs_in_aws(self) -> bool:
        return bool(self.lambda_function_name or self.ecs_container_metadata_uri_v4)

    @property
    def lab_model_enabled(self) -> bool:
        return self.lab_model if self.lab_model is not None else not self.lambda_function_name

    @property
    def embedded_pgdata(self) -> Path:
        return self.data_dir / "pgdata"


def env_name(field: str) -> str:
    """The environment variable a setting is read from (the first of its names)."""
    info = Settings.model_fields.get(field.split(".")[0])
    alias = info.validation_alias if info else None
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    return f"HEALTHFLOW_{field.upper()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
