"""The registered steps: thin functions that parse, call the domain code, return a model."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

from pydantic import ValidationError
from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from tasks import aggregation, lifecycle, sweep
from tasks.db import deadline
from tasks.db.engine import get_engine
from tasks.db.migrate import ensure_current
from tasks.errors import InvalidMessage
from tasks.settings import get_settings
from tasks.steps.models import (
    DOMAIN_OF_JOB,
    MAX_MESSAGE_BYTES,
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
    SweepInput,
    SweepOutput,
    SweepTrigger,
    TriggerMessage,
    ValidatedMessage,
    ValidateInput,
)
from tasks.steps.registry import step

_schema_checked = threading.Event()


@contextmanager
def transaction() -> Iterator[Connection]:
    """One step, one transaction, on the process's engine (schema checked once per process),
    its statements bounded by the step's deadline."""
    engine = get_engine()
    if not _schema_checked.is_set():
        ensure_current(engine)
        _schema_checked.set()
    with Session(engine) as session, session.begin():
        conn = session.connection()
        deadline.bound(conn)
        yield conn


def _fingerprint(body: bytes) -> str:
    """What a dead letter may keep of a body that failed validation: size and hash, not text."""
    return f"body of {len(body)} bytes, sha256 {hashlib.sha256(body).hexdigest()}"


def _message_body(payload: ValidateInput) -> tuple[object, bytes]:
    """The trigger message and the bytes it came as (the SQS body, or the manual input)."""
    records = payload.records
    if isinstance(records, list):
        if len(records) != 1:
            raise InvalidMessage(f"expected one SQS record, got {len(records)}")
        body = records[0].get("body")
        if not isinstance(body, str):
            raise InvalidMessage("SQS record has no body")
        raw = body.encode("utf-8", "surrogatepass")
        if len(raw) > MAX_MESSAGE_BYTES:
            raise InvalidMessage(f"message body is larger than 256 KiB; {_fingerprint(raw)}")
        try:
            return json.loads(body), raw
        except json.JSONDecodeError:
            raise InvalidMessage(f"message body is not valid JSON; {_fingerprint(raw)}") from None
    message = records if isinstance(records, dict) else (payload.model_extra or {})
    raw = json.dumps(message, sort_keys=True, default=str).encode()
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(f"message is larger than 256 KiB; {_fingerprint(raw)}")
    return message, raw


_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")


def describe_problems(error: ValidationError) -> str:
    """Field and rule of each problem, never the value. An unexpected field's name is the
    sender's text: it is named only when it looks like a field name, else counted."""
    problems, unnamed = set(), 0
    for item in error.errors(include_input=False, include_url=False, include_context=False):
        where = ".".join(map(str, item["loc"])) or "body"
        if item["type"] == "extra_forbidden" and not all(
            _FIELD_NAME.fullmatch(str(part)) for part in item["loc"]
        ):
            unnamed += 1
            continue
        problems.add(f"{where}: {item['msg']}")
    if unnamed:
        problems.add(f"{unnamed} unexpected field(s): Extra inputs are not permitted")
    return "; ".join(sorted(problems))


@step("validate_message", ValidateInput)
def validate_message(payload: ValidateInput) -> ValidatedMessage:
    body, raw = _message_body(payload)
    try:
        message = TriggerMessage.model_validate(body)
    except ValidationError as error:
        raise InvalidMessage(f"{describe_problems(error)[:400]}; {_fingerprint(raw)}") from None
    return ValidatedMessage(
        job_type=message.job_type,
        domain=DOMAIN_OF_JOB[message.job_type],
        user_id=message.user_id,
        priority=message.priority,
        reprocess=message.reprocess,
        trigger=message,
    )


def _more_pending(conn: Connection, domain: str, user_id: int) -> bool:
    """Pending rows of the user left after a bounded claim (served by the pending index)."""
    table = lifecycle.table_of(domain)
    return bool(
        conn.execute(
            text(
                f"SELECT EXISTS (SELECT 1 FROM {table} "
                "WHERE user_id = :user_id AND status = 'pending')"
            ),
            {"user_id": user_id},
        ).scalar_one()
    )


def _claim_output(summary: lifecycle.ClaimSummary, more_pending: bool = False) -> ClaimOutput:
    return ClaimOutput(
        more_pending=more_pending,
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
        skipped_locked=summary.skipped_locked,
    )


@step("claim", ClaimInput)
def claim(payload: ClaimInput) -> ClaimOutput:
    with transaction() as conn:
        # A retried claim step must find what its first try took, not claim nothing.
        earlier = lifecycle.summarize_claim(conn, domain=payload.domain, claim_id=payload.claim_id)
        if earlier is not None:
            more = payload.bounded and _more_pending(conn, payload.domain, payload.user_id)
            return _claim_output(earlier, more)
        if payload.reprocess is not None:
            lifecycle.reset_for_reprocessing(
                conn,
                domain=payload.domain,
                user_id=payload.user_id,
                date_from=payload.reprocess.date_from,
                date_to=payload.reprocess.date_to,
            )
        limit = get_settings().claim_max_rows if payload.bounded else None
        summary = lifecycle.claim_pending(
            conn,
            domain=payload.domain,
            user_id=payload.user_id,
            claim_id=payload.claim_id,
            limit=limit,
        )
        more = limit is not None and (
            _more_pending(conn, payload.domain, payload.user_id)
            # Suspects are bisected one half per execution: continue with the next one.
            or lifecycle.has_suspects(conn, payload.domain, payload.user_id)
        )
    return _claim_output(summary, more)


@step("copy_vitals_to_categorized", ClaimRef)
def copy_vitals_to_categorized(payload: ClaimRef) -> CopyOutput:
    with transaction() as conn:
        result = aggregation.copy_vitals_to_categorized(
            conn, claim_id=payload.claim_id, user_id=payload.user_id
        )
    return CopyOutput(copied=result.copied, rejected=result.rejected, duplicates=result.duplicates)


@step("aggregate", AggregateInput)
def aggregate(payload: AggregateInput) -> AggregateOutput:
    with transaction() as conn:
        result = aggregation.aggregate(
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
    return MarkFailedOutput(
        failed=result.failed, set_aside=result.set_aside, bisect_further=result.bisect_further
    )


@step("migrate", MigrateInput)
def migrate(payload: MigrateInput) -> MigrateOutput:
    """Apply the migrations (run by the deploy's custom resource before any execution)."""
    from tasks.db.migrate import current_revision, upgrade

    engine = get_engine()
    upgrade(engine)
    return MigrateOutput(revision=current_revision(engine) or "")


# The lab categorization step lives with the matcher it loads.
from tasks.steps import labs as _labs  # noqa: E402,F401


@step("find_expired_claims", SweepInput)
def find_expired_claims(payload: SweepInput) -> SweepOutput:
    with transaction() as conn:
        found = sweep.expired_claims(conn)
    return SweepOutput(
        triggers=[SweepTrigger(job_type=c.job_type, user_id=c.user_id) for c in found]
    )
