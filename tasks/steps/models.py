"""Step inputs and outputs. They carry ids, counts, dates and error names only: never test
names, values or food names, which would land in execution history."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PositiveInt, model_validator

from tasks.domains import Domain, Granularity

# The largest user id: the per-user advisory lock key packs the domain above 48 bits of user id.
MAX_USER_ID = 2**48 - 1
# SQS refuses larger message bodies; a trigger that big is no trigger.
MAX_MESSAGE_BYTES = 256 * 1024

# A JSON number, never a boolean or a string ("2", true are refused, not read as 2 and 1).
StrictUserId = Annotated[int, Field(strict=True, gt=0, le=MAX_USER_ID)]


def _iso_date(value: Any) -> Any:
    # Only `YYYY-MM-DD` text (or a date built in Python): lax parsing would read a number as a
    # Unix time.
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or len(value) != 10:
        raise ValueError("must be a YYYY-MM-DD date")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError("must be a YYYY-MM-DD date") from None


IsoDate = Annotated[date, BeforeValidator(_iso_date)]

JobType = Literal["process_pending_labs", "process_pending_vitals", "process_pending_nutrition"]

DOMAIN_OF_JOB: dict[str, Domain] = {
    "process_pending_labs": "labs",
    "process_pending_vitals": "vitals",
    "process_pending_nutrition": "nutrition",
}
JOB_OF_DOMAIN: dict[str, str] = {domain: job for job, domain in DOMAIN_OF_JOB.items()}


class StepModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DateRange(StepModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    date_from: IsoDate = Field(alias="from")
    date_to: IsoDate = Field(alias="to")

    @model_validator(mode="after")
    def _ordered(self) -> DateRange:
        if self.date_to < self.date_from:
            raise ValueError("reprocess.to is before reprocess.from")
        return self


class TriggerMessage(StepModel):
    """What a backend sends to the queue (and an operator to StartExecution)."""

    job_type: JobType
    user_id: StrictUserId
    priority: Literal["normal", "high"] = "normal"
    reprocess: DateRange | None = None

    def to_json_body(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)


class ValidateInput(BaseModel):
    # The pipe's one-element record array, or a message given directly.
    model_config = ConfigDict(extra="allow", frozen=True)
    records: list[dict] | dict | None = None


class ValidatedMessage(StepModel):
    job_type: JobType
    domain: Domain
    user_id: int
    priority: Literal["normal", "high"]
    reprocess: DateRange | None = None
    # The trigger as validated (its fields only, extras never pass validation): what a dead
    # letter keeps and `dlq redrive` re-sends, instead of the raw execution input.
    trigger: TriggerMessage | None = None


class ClaimInput(StepModel):
    domain: Domain
    user_id: PositiveInt
    claim_id: str = Field(min_length=1, max_length=200)
    reprocess: DateRange | None = None
    # The workflow's claims are bounded (settings.claim_max_rows); direct mode's are not.
    bounded: bool = False


class ClaimOutput(StepModel):
    claim_id: str
    user_id: int
    domain: Domain
    claimed: int
    has_pending: bool
    date_from: date | None
    date_to: date | None
    # Of `claimed`: rows taken over from a claim whose execution is gone, failed rows retried.
    taken_over: int = 0
    retried: int = 0
    # One suspect row claimed alone (poison-row isolation).
    isolated: bool = False
    # A bounded claim left pending rows: the workflow re-queues its trigger for them.
    more_pending: bool = False
    # Pending rows another transaction held when the claim looked: it waited for them (until
    # its deadline, else it failed with DatabaseTimeout) instead of reporting nothing to do.
    skipped_locked: int = 0


class ClaimRef(StepModel):
    claim_id: str
    user_id: PositiveInt


class CopyOutput(StepModel):
    copied: int
    rejected: int
    duplicates: int


class CategorizeOutput(StepModel):
    categorized: int
    uncategorized: int
    rejected: int
    duplicates: int


class ResolveOutput(StepModel):
    """What ResolveKnownNames did: rows it categorized, distinct names left for the model."""

    resolved: int
    needs_model: int
    rejected: int
    duplicates: int


class AggregateInput(StepModel):
    claim_id: str
    user_id: PositiveInt
    domain: Domain
    granularity: Granularity


class AggregateOutput(StepModel):
    granularity: Granularity
    buckets: int


class MarkInput(StepModel):
    claim_id: str
    domain: Domain


class MarkOutput(StepModel):
    marked: int


class MarkFailedInput(StepModel):
    claim_id: str
    domain: Domain
    error: str = Field(min_length=1, max_length=200)


class MarkFailedOutput(StepModel):
    failed: int
    # Rows that reached the maximum number of attempts: they stay `failed`, not retried.
    set_aside: int = 0
    # A failed bisection step: the workflow re-sends the trigger to go on with it.
    bisect_further: bool = False


class MigrateInput(StepModel):
    pass


class MigrateOutput(StepModel):
    revision: str


class SweepInput(StepModel):
    pass


class SweepTrigger(StepModel):
    job_type: str
    user_id: int


class SweepOutput(StepModel):
    triggers: list[SweepTrigger]
