"""The claim sweep through the real ASL on the local cloud: rows an execution left claimed (it
timed out, or failed where no Catch runs) are re-driven once the claim's lease is over, without
a new upload from the user; a claim still within its lease is left alone."""

from __future__ import annotations

import logging

import boto3
from sqlalchemy import Engine, text

from tasks import lifecycle
from tasks.ingest import ingest_lines
from tasks.localcloud.cloud import ACCOUNT_ID, LocalCloud, definition_substitutions
from tasks.localcloud.moto_ext import silence_parser_logs
from tasks.statemachines import SWEEP_ASL, fill_placeholders, load_definition
from tasks.steps.registry import run_step
from tests.support.reference import ZONES, generate

LOST, RUNNING, UNTOUCHED = list(ZONES)[:3]


class CountingSteps:
    """The real steps, counting what each one was asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def __call__(self, name: str, payload: dict) -> dict:
        self.calls.append((name, payload))
        return run_step(name, payload)


def _seed(engine: Engine) -> None:
    users = [f'{{"user_id": {u}, "timezone": "{ZONES[u]}"}}' for u in (LOST, RUNNING, UNTOUCHED)]
    ingest_lines(engine, "users", users)
    lines = [
        r.line() for r in generate(seed=8, per_user=30) if r.user_id in (LOST, RUNNING, UNTOUCHED)
    ]
    ingest_lines(engine, "vitals", lines)
    with engine.begin() as conn:
        for user, claim_id in ((LOST, "lost-execution"), (RUNNING, "running-execution")):
            # Claimed as a Lambda claims: no process to check, only the lease.
            lifecycle.claim_pending(
                conn, domain="vitals", user_id=user, claim_id=claim_id,
                owner=lifecycle.ClaimOwner(),
            )  # fmt: skip
        # The lost execution's lease ended a minute ago; the running one's has hours left.
        conn.execute(
            text(
                "UPDATE claims SET lease_expires_at = now() - interval '1 minute' "
                "WHERE claim_id = 'lost-execution'"
            )
        )


def _statuses(engine: Engine) -> dict[int, set[str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT user_id, status FROM vitals_raw_data GROUP BY user_id, status")
        ).all()
    found: dict[int, set[str]] = {}
    for user_id, status in rows:
        found.setdefault(user_id, set()).add(status)
    return found


def test_the_sweep_redrives_an_expired_claim_through_the_workflow(engine: Engine) -> None:
    silence_parser_logs()
    logging.getLogger("tasks").setLevel(logging.ERROR)
    _seed(engine)
    assert _statuses(engine) == {
        LOST: {"processing"},
        RUNNING: {"processing"},
        UNTOUCHED: {"pending"},
    }
    steps = CountingSteps()
    with LocalCloud(run_step=steps, heartbeat_seconds=0.5) as cloud:
        sfn = boto3.client("stepfunctions", region_name=cloud.region)
        substitutions = definition_substitutions(
            cloud.region, cloud.dead_letter_queue_url, cloud.queue_url
        )
        sweep_arn = sfn.create_state_machine(
            name="healthflow-sweep",
            definition=fill_placeholders(load_definition(SWEEP_ASL), substitutions),
            roleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/healthflow-sweep",
            type="EXPRESS",
        )["stateMachineArn"]
        # What the schedule does: start the sweep with an empty input.
        swept = cloud.wait(cloud.start_execution({}, "sweep-1", state_machine_arn=sweep_arn))
        assert swept.succeeded, cloud.entered_states(swept.execution_arn)
        # The trigger it sent goes through the pipe and the real parent, like an upload's.
        results = cloud.drain()

    assert [r.succeeded for r in results] == [True]
    claims = [payload for name, payload in steps.calls if name == "claim"]
    assert [(c["domain"], c["user_id"]) for c in claims] == [("vitals", LOST)]
    # The lost claim's rows are taken over and aggregated; the running claim is left to its
    # execution; rows nobody claimed wait for their user's own trigger.
    assert _statuses(engine) == {
        LOST: {"aggregated"},
        RUNNING: {"processing"},
        UNTOUCHED: {"pending"},
    }
