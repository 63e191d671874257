"""The steps Lambda as `cdk deploy` ships it: the asset built by the CDK bundler (for this machine's
platform and Python), run in isolated interpreters that see only the asset, the runtime's boto3
and the standard library. The deploy's migrations custom resource and every step of every branch,
failures included, run through it on the real ASL."""

from __future__ import annotations

import json
import sys
import sysconfig
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tasks.db.migrate import current_revision, head_revision
from tasks.localcloud.artifacts import LambdaAsset
from tasks.localcloud.cloud import LocalCloud
from tasks.localcloud.moto_ext import FunctionError
from tasks.localcloud.sandbox import LambdaSandboxPool, lambda_environment
from tasks.process import process_pending
from tests.support.history import assert_no_phrases
from tests.support.reference import ZONES

from .conftest import REGION, database_environment, ingest_lab_report
from .test_end_to_end import FOODS, _seed, snapshot, statuses, vitals_message

CUSTOM_RESOURCE = {
    "RequestType": "Create",
    "ResourceType": "Custom::HealthflowMigrations",
    "LogicalResourceId": "DatabaseMigrations",
    "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/healthflow-test/1",
    "RequestId": "0b5f3c9e",
    "ResourceProperties": {"step": "migrate", "input": {}},
}
KNOWN_LABS = [
    ("HbA1c", "6.1", "%"),
    ("Serum Creatinine", "0.9", "mg/dL"),
]


def _allowed_roots(asset: LambdaAsset) -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    return [asset.code_dir.resolve(), asset.runtime_dir, stdlib]


def assert_loaded_only_from_the_asset(pool: LambdaSandboxPool) -> int:
    """Every module a sandbox loaded came from the asset, the runtime or the standard library
    (the interpreter's isolation is what the other tests rely on: check it held)."""
    answers = pool.each_sandbox({"modules": None})
    assert answers, "no sandbox ran"
    roots = _allowed_roots(pool.asset)
    runtime = pool.asset.runtime_dir
    for answer in answers:
        for name, file in answer["modules"].items():
            if file is None or name == "__main__":
                continue  # built into the interpreter, or the runtime's own bootstrap
            path = Path(file)
            # The runtime directory holds links into this interpreter's site-packages.
            if path.is_relative_to(runtime):
                continue
            resolved = path.resolve()
            assert any(resolved.is_relative_to(root) for root in roots), (name, file)
            assert "site-packages" not in resolved.parts or resolved.is_relative_to(roots[0]), (
                name,
                file,
            )
    return len(answers)


def test_the_migrations_custom_resource_runs_on_an_empty_database(
    lambda_asset: LambdaAsset, database_url: str, make_schema_engine
) -> None:
    empty = make_schema_engine(migrate=False)
    environment = lambda_environment(
        database_environment(database_url, empty), REGION, "healthflow-steps"
    )
    with LambdaSandboxPool(lambda_asset, environment) as pool:
        created = pool.invoke(CUSTOM_RESOURCE)
        assert created["PhysicalResourceId"] == "healthflow-database-migrations"
        assert created["Data"]["revision"] == head_revision()
        assert current_revision(empty) == head_revision()
        # An update re-runs it (nothing to do); a delete leaves the schema alone.
        updated = pool.invoke({**CUSTOM_RESOURCE, "RequestType": "Update"})
        assert updated["Data"]["revision"] == head_revision()
        deleted = pool.invoke(
            {**CUSTOM_RESOURCE, "RequestType": "Delete", "PhysicalResourceId": "x"}
        )
        assert deleted == {"PhysicalResourceId": "x"}
        assert current_revision(empty) == head_revision()
        # A resource that names no known step fails the deploy with a named error.
        wrong = {**CUSTOM_RESOURCE, "ResourceProperties": {"step": "drop_everything"}}
        with pytest.raises(FunctionError) as failure:
            pool.invoke(wrong)
        assert failure.value.error_type == "InvalidMessage"
        assert_loaded_only_from_the_asset(pool)


def test_every_branch_runs_through_the_asset_and_equals_direct_mode(
    engine: Engine,
    make_schema_engine,
    lambda_asset: LambdaAsset,
    shipped_environment: dict[str, str],
) -> None:
    users = {101: ZONES[101], 102: ZONES[102]}
    _seed(engine, users=users)
    ingest_lab_report(engine, 101, KNOWN_LABS, "2024-05-02")
    # A bounded claim smaller than a user's vitals: the backlog branch re-queues the trigger.
    environment = {**shipped_environment, "HEALTHFLOW_CLAIM_MAX_ROWS": "50"}
    with LocalCloud(
        lambda_asset=lambda_asset, shipped_environment=environment, execution_timeout_seconds=300
    ) as cloud:
        for user in users:
            cloud.send_message(vitals_message(user))
            cloud.send_message({"job_type": "process_pending_nutrition", "user_id": user})
        cloud.send_message({"job_type": "process_pending_labs", "user_id": 101})
        cloud.send_message(vitals_message(4242))  # nothing pending
        results = cloud.drain()
        assert all(r.succeeded for r in results), [d.body for d in cloud.dlq_messages()]
        paths = [cloud.entered_states(r.execution_arns[-1]) for r in results]
        histories = [e for r in results for arn in r.execution_arns for e in cloud.history(arn)]
        assert cloud.sandboxes.started >= 1
        assert_loaded_only_from_the_asset(cloud.sandboxes)
    ends = Counter(path[-1] for path in paths)
    assert ends["VitalsDone"] == 2 and ends["NutritionDone"] == 2
    assert ends["LabsDone"] == 1 and ends["NothingToDo"] == 1
    assert sum("ContinueVitalsBacklog" in path for path in paths) >= 2
    assert "ResolveKnownNames" in next(p for p in paths if p[-1] == "LabsDone")
    assert_no_phrases(histories, [*FOODS, *(name for name, _, _ in KNOWN_LABS)])
    through_asset = snapshot(engine)
    with engine.connect() as conn:
        labs = conn.execute(text("SELECT count(*) FROM labs_agg_daily")).scalar_one()
    assert labs == len(KNOWN_LABS)

    from tasks.db import engine as db_engine

    direct = make_schema_engine()
    db_engine.set_engine(direct)
    _seed(direct, users=users)
    assert all(run.error is None for run in process_pending(["vitals", "nutrition"]))
    db_engine.set_engine(engine)
    assert snapshot(direct) == through_asset


def test_failures_in_the_asset_reach_catch_by_their_error_names(
    engine: Engine, lambda_asset: LambdaAsset, shipped_environment: dict[str, str]
) -> None:
    lines = _seed(engine, users={102: ZONES[102]})
    # A real failure inside the sandbox after the claim: the weekly table is gone.
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE vitals_agg_weekly RENAME TO vitals_agg_weekly_away"))
    try:
        with LocalCloud(
            lambda_asset=lambda_asset, shipped_environment=shipped_environment
        ) as cloud:
            cloud.send_message(vitals_message(102))
            cloud._sqs.send_message(QueueUrl=cloud.queue_url, MessageBody='{"job_type": "x"}')
            results = cloud.drain()
            states = [cloud.entered_states(r.execution_arn) for r in results]
            letters = {d.body["execution_arn"]: d.body for d in cloud.dlq_messages()}
    finally:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE vitals_agg_weekly_away RENAME TO vitals_agg_weekly"))
    assert sorted(r.status for r in results) == ["FAILED", "FAILED"]
    by_error = {letter["error"]["Error"]: letter for letter in letters.values()}
    # The validation error is the step's own exception class, raised in the sandbox.
    assert set(by_error) == {"InvalidMessage", "ProgrammingError"}
    assert "job_type" in by_error["InvalidMessage"]["error"]["Cause"]
    # The cause is the runtime's error document, as Lambda reports it to Step Functions; the
    # driver's message is reduced to the error's name (it could quote data).
    cause = json.loads(by_error["ProgrammingError"]["error"]["Cause"])
    assert cause == {
        "errorType": "ProgrammingError",
        "errorMessage": "step aggregate failed with ProgrammingError",
    }
    claim_failed = [s for s in states if "MarkClaimFailed" in s]
    assert claim_failed and claim_failed[0][-2:] == ["SendToDeadLetterQueue", "ProcessingFailed"]
    assert statuses(engine)["vitals_raw_data"] == {"failed": len(lines)}


def test_the_handler_fails_like_lambda_when_its_module_cannot_be_imported(
    lambda_asset: LambdaAsset, tmp_path: Path
) -> None:
    broken = LambdaAsset(
        code_dir=lambda_asset.code_dir,
        runtime_dir=lambda_asset.runtime_dir,
        handler="tasks.runners.no_such_module.handler",
    )
    with (
        LambdaSandboxPool(broken, lambda_environment({}, REGION, "f")) as pool,
        pytest.raises(FunctionError) as failure,
    ):
        pool.invoke({"step": "validate_message", "input": {}})
    assert failure.value.error_type == "Runtime.ImportModuleError"


def test_the_sandbox_sees_nothing_of_this_interpreter(sandboxes: LambdaSandboxPool) -> None:
    here: Any = sys.modules["pytest"]
    assert here is not None
    answer = sandboxes.request({"find": ["pytest", "moto", "pgserver", "torch", "tasks", "boto3"]})
    assert sorted(answer["missing"]) == ["moto", "pgserver", "pytest", "torch"]


def test_the_setting_runs_the_local_cloud_through_the_asset(
    engine: Engine,
    lambda_asset: LambdaAsset,
    shipped_environment: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HEALTHFLOW_LOCAL_STEPS=shipped: what `healthflow run` uses (the asset comes from the
    cache the fixture filled)."""
    from tasks.settings import get_settings

    monkeypatch.setenv("HEALTHFLOW_LOCAL_STEPS", "shipped")
    get_settings.cache_clear()
    try:
        with LocalCloud(shipped_environment=shipped_environment) as cloud:
            cloud.send_message(vitals_message(4242))
            [result] = cloud.drain()
            started = cloud.sandboxes.started
            assert cloud.sandboxes.asset.code_dir == lambda_asset.code_dir
    finally:
        monkeypatch.delenv("HEALTHFLOW_LOCAL_STEPS")
        get_settings.cache_clear()
    assert result.succeeded and started >= 1


def test_the_asset_ships_the_state_machines_its_step_deadlines_come_from(
    lambda_asset: LambdaAsset,
) -> None:
    """tasks.statemachines finds the ASL beside the package; without it a deployed step would
    bound its statements by the Lambda's timeout only, not by its state's TimeoutSeconds."""
    from tasks.statemachines import STATEMACHINES_DIR

    shipped = lambda_asset.code_dir / "statemachines"
    for asl in STATEMACHINES_DIR.glob("*.asl.json"):
        assert (shipped / asl.name).read_bytes() == asl.read_bytes(), asl.name
