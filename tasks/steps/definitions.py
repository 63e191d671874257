"""The registered steps: thin functions that parse, call the domain code, return a model."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

from pydantic import ValidationError
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from tasks import aggregate as engine_sql
from tasks import lifecycle
from tasks.db.engine import get_engine
from tasks.db.migrate import ensure_current
from tasks.errors import InvalidMessage
from tasks.steps.models import (
    DOMAIN_OF_JOB,
    AggregateInput,
    AggregateOutput,
    ClaimInput,
    ClaimOutput,
    ClaimRef,
    CopyOutput,
    Domain,
    MarkFailedInput,
    MarkFailedOutput,
    MarkInput,
    MarkOutput,
    MigrateInput,
    MigrateOutput,
    TriggerMessage,
    ValidatedMessage,
    ValidateInput,
)
from tasks.steps.registry import step

_schema_checked = threading.Event()


@contextmanager
def transaction() -> Iterator[Connection]:
    """One step, one transaction, on the process's engine (schema checked once per process)."""
    engine = get_engine()
    if not _schema_checked.is_set():
        ensure_current(engine)
        _schema_checked.set()
    with Session(engine) as session, session.begin():
        yield session.connection()


def _message_body(payload: ValidateInput) -> object:
    records = payload.records
    if isinstance(records, list):
        if len(records) != 1:
            raise InvalidMessage(f"expected one SQS record, got {len(records)}")
        body = records[0].get("body")
        if not isinstance(body, str):
            raise InvalidMessage("SQS record has no body")
        try:
            return json.loads(body)
        except json.JSONDecodeError:
            raise InvalidMessage("message body is not valid JSON") from None
    if isinstance(records, dict):
        return records
    return payload.model_extra or {}


@step("validate_message", ValidateInput)
def validate_message(payload: ValidateInput) -> ValidatedMessage:
    body = _message_body(payload)
    try:
        message = TriggerMessage.model_validate(body)
    except ValidationError as error:
        problems = sorted(
            f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
            for e in error.errors(include_input=False, include_url=False)
        )
        raise InvalidMessage("; ".join(problems)[:500]) from None
    return ValidatedMessage(
        job_type=message.job_type,
        domain=DOMAIN_OF_JOB[message.job_type],
        user_id=message.user_id,
        priority=message.priority,
        reprocess=message.reprocess,
    )


def _claim_output(summary: lifecycle.ClaimSummary) -> ClaimOutput:
    return ClaimOutput(
        claim_id=summary.claim_id,
        user_id=summary.user_id,
        domain=cast(Domain, summary.domain),
        claimed=summary.claimed,
        has_pending=summary.claimed > 0,
        date_from=summary.date_from,
        date_to=summary.date_to,
        taken_over=summary.taken_over,
        retried=summary.retried,
        isolated=summary.isolated,
    )


@step("claim", ClaimInput)
def claim(payload: ClaimInput) -> ClaimOutput:
    with transaction() as conn:
        # A retried claim step must find what its first try took, not claim nothing.
        earlier = lifecycle.summarize_claim(conn, domain=payload.domain, claim_id=payload.claim_id)
        if earlier is not None:
            return _claim_output(earlier)
        if payload.reprocess is not None:
            lifecycle.reset_for_reprocessing(
                conn,
                domain=payload.domain,
                user_id=payload.user_id,
                date_from=payload.reprocess.date_from,
                date_to=payload.reprocess.date_to,
            )
        summary = lifecycle.claim_pending(
            conn, domain=payload.domain, user_id=payload.user_id, claim_id=payload.claim_id
        )
    return _claim_output(summary)


@step("copy_vitals_to_categorized", ClaimRef)
def copy_vitals_to_categorized(payload: ClaimRef) -> CopyOutput:
    with transaction() as conn:
        result = engine_sql.copy_vitals_to_categorized(
            conn, claim_id=payload.claim_id, user_id=payload.user_id
        )
    return CopyOutput(copied=result.copied, rejected=result.rejected, duplicates=result.duplicates)


@step("aggregate", AggregateInput)
def aggregate(payload: AggregateInput) -> AggregateOutput:
    with transaction() as conn:
        result = engine_sql.aggregate(
            conn,
            domain=payload.domain,
            claim_id=payload.claim_id,
            user_id=payload.user_id,
            granularity=payload.granularity,
        )
    return AggregateOutput(granularity=result.granularity, buckets=result.buckets)


@step("mark_aggregated", MarkInput)
def mark_aggregated(payload: MarkInput) -> MarkOutput:
    with transaction() as conn:
        marked = lifecycle.mark_aggregated(conn, domain=payload.domain, claim_id=payload.claim_id)
    return MarkOutput(marked=marked)


@step("mark_claim_failed", MarkFailedInput)
def mark_claim_failed(payload: MarkFailedInput) -> MarkFailedOutput:
    with transaction() as conn:
        result = lifecycle.mark_failed(
            conn, domain=payload.domain, claim_id=payload.claim_id, error=payload.error
        )
    return MarkFailedOutput(failed=result.failed, set_aside=result.set_aside)


@step("migrate", MigrateInput)
def migrate(payload: MigrateInput) -> MigrateOutput:
    """Apply the migrations (run by the deploy's custom resource before any execution)."""
    from tasks.db.migrate import current_revision, upgrade

    engine = get_engine()
    upgrade(engine)
    return MigrateOutput(revision=current_revision(engine) or "")


# The lab categorization step lives with the matcher it loads.
from tasks.steps import labs as _labs  # noqa: E402,F401
