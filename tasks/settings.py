"""One typed settings object, read once at start-up from HEALTHFLOW_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class MissingSetting(RuntimeError):
    """A setting that the chosen mode needs has no value."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HEALTHFLOW_", extra="ignore", frozen=True)

    # A PostgreSQL URL wins over the embedded server. In AWS the credentials come from a
    # Secrets Manager secret instead (the password never sits in the environment).
    database_url: str | None = None
    db_secret_arn: str | None = None
    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir("healthflow")))

    # Where `send`, `start-execution`, `trace` and `dlq` act.
    target: Literal["local", "aws"] = "local"
    aws_region: str = "us-east-1"
    queue_url: str | None = None
    dead_letter_queue_url: str | None = None
    state_machine_arn: str | None = None
    # The old API's switch: when false, producers send nothing.
    enabled: bool = True

    state_machine_file: Path = REPO_ROOT / "statemachines" / "healthflow.asl.json"

    # Lab categorization.
    model_path: Path | None = None
    match_threshold: float | None = None
    embedding_cache_dir: Path | None = None

    ingest_batch_rows: int = 50_000

    def require(self, name: str) -> str:
        """The value of a setting the caller cannot work without, or a loud error."""
        value = getattr(self, name)
        if value in (None, ""):
            raise MissingSetting(f"HEALTHFLOW_{name.upper()} must be set for this command")
        return str(value)

    @property
    def embedded_pgdata(self) -> Path:
        return self.data_dir / "pgdata"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
