"""Every vitals granularity equals an independent reference, across DST, week, month, quarter
and year boundaries, a leap day, several zones (half-hour and 45-minute offsets), late data for
buckets already aggregated, and re-synced duplicates."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from tasks import lifecycle
from tasks.ingest import ingest_lines
from tasks.process import process_claim, process_pending, step_plan
from tasks.steps.registry import run_step
from tests.support.reference import ZONES, generate, vitals_reference

GRANULARITIES = ("hourly", "daily", "weekly", "monthly")


def _users(engine) -> None:
    ingest_lines(
        engine, "users", [f'{{"user_id": {u}, "timezone": "{z}"}}' for u, z in ZONES.items()]
    )


def _table(engine, granularity: str) -> dict[tuple, tuple]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT user_id, loinc_code, bucket_start, count, sum, min, max, last_value, "
                f"last_time FROM vitals_agg_{granularity}"
            )
        ).all()
    return {(r.user_id, r.loinc_code, r.bucket_start): tuple(r[3:]) for r in rows}


def assert_matches_reference(engine, readings) -> None:
    for granularity in GRANULARITIES:
        expected = vitals_reference(readings, granularity)
        actual = _table(engine, granularity)
        assert set(actual) == set(expected), granularity
        for key, stats in expected.items():
            count, total, low, high, last, last_time = actual[key]
            assert count == stats.count, (granularity, key)
            assert math.isclose(total, stats.total, rel_tol=1e-9), (granularity, key)
            assert math.isclose(low, stats.low) and math.isclose(high, stats.high)
            assert math.isclose(last, stats.last), (granularity, key)
            assert last_time == stats.last_time, (granularity, key)


def test_batches_with_late_data_and_duplicates_match_the_reference(engine) -> None:
    _users(engine)
    readings = generate()
    lines = [r.line() for r in readings]
    # Three uploads: the second has late readings for buckets already aggregated and repeats
    # some of the first; the third re-syncs readings already processed.
    first, second = lines[::2], lines[1::2] + lines[:200:2]
    third = lines[100:300]
    for batch in (first, second, third):
        ingest_lines(engine, "vitals", batch)
        runs = process_pending(["vitals"])
        assert all(run.error is None for run in runs)
    assert_matches_reference(engine, readings)
    with engine.connect() as conn:
        statuses = dict(
            conn.execute(text("SELECT status, count(*) FROM vitals_raw_data GROUP BY 1")).all()
        )
    assert statuses == {"aggregated": len(first) + len(second) + len(third)}


def test_hours_follow_local_time_across_dst(engine) -> None:
    _users(engine)
    # New York falls back on 2024-11-03: 01:00-02:00 local happens twice (EDT then EST).
    lines = [
        '{"user_id": 101, "metric": "heart_rate", "value": 60, "unit": "bpm", '
        '"start_time": "2024-11-03T01:30:00-04:00"}',
        '{"user_id": 101, "metric": "heart_rate", "value": 80, "unit": "bpm", '
        '"start_time": "2024-11-03T01:30:00-05:00"}',
    ] + [
        f'{{"user_id": 101, "metric": "steps", "value": 1, "unit": "count", '
        f'"start_time": "2024-11-03T{h:02d}:10:00{"-04:00" if h < 1 else "-05:00"}"}}'
        for h in range(24)
    ]
    ingest_lines(engine, "vitals", lines)
    process_pending(["vitals"])
    from tasks.export import export_rows

    hourly = [r for r in export_rows(engine, "vitals", "hourly") if r[1] == "8867-4"]
    assert [(r[3], r[4]) for r in hourly] == [
        ("2024-11-03T01:00:00-04:00", "1"),
        ("2024-11-03T01:00:00-05:00", "1"),
    ]
    daily = [r for r in export_rows(engine, "vitals", "daily") if r[1] == "55423-8"]
    assert [(r[3], r[4]) for r in daily] == [("2024-11-03", "24")]


def test_the_same_claim_processed_twice_gives_the_same_tables(engine) -> None:
    _users(engine)
    readings = generate(seed=3, per_user=120)
    ingest_lines(engine, "vitals", [r.line() for r in readings])
    runs = process_pending(["vitals"])
    for run in runs:  # a duplicate delivery of every step of every claim
        for _, name, payload in step_plan("vitals", run.claim_id, run.user_id):
            run_step(name, payload)
    assert_matches_reference(engine, readings)


def test_a_crash_between_steps_then_a_rerun_completes_exactly(engine) -> None:
    _users(engine)
    readings = generate(seed=5, per_user=150)
    ingest_lines(engine, "vitals", [r.line() for r in readings])
    first_user = min(ZONES)
    claim = run_step("claim", {"domain": "vitals", "user_id": first_user, "claim_id": "crashy"})
    assert claim["has_pending"]
    plan = list(step_plan("vitals", "crashy", first_user))
    for _, name, payload in plan[:3]:  # copy, hourly, daily ... then the process dies
        run_step(name, payload)
    # The workflow retries the claim from its first step; a retried claim finds its rows.
    again = run_step("claim", {"domain": "vitals", "user_id": first_user, "claim_id": "crashy"})
    assert again == claim
    for _, name, payload in plan:
        run_step(name, payload)
    process_pending(["vitals"])
    assert_matches_reference(engine, readings)


def test_failed_claim_reprocessed_by_date_range_completes_exactly(engine) -> None:
    _users(engine)
    readings = generate(seed=8, per_user=100)
    ingest_lines(engine, "vitals", [r.line() for r in readings])
    user = 102
    run_step("claim", {"domain": "vitals", "user_id": user, "claim_id": "doomed"})
    run_step("copy_vitals_to_categorized", {"claim_id": "doomed", "user_id": user})
    run_step("mark_claim_failed", {"claim_id": "doomed", "domain": "vitals", "error": "Boom"})
    process_pending(["vitals"])
    run = process_claim("vitals", user, reprocess={"from": "2023-01-01", "to": "2025-12-31"})
    assert run.error is None and run.claimed > 0
    assert_matches_reference(engine, readings)


def test_two_claims_for_one_user_aggregating_at_once(engine) -> None:
    _users(engine)
    readings = [r for r in generate(seed=13, per_user=600) if r.user_id == 101]
    ingest_lines(engine, "vitals", [r.line() for r in readings])
    with Session(engine) as s, s.begin():
        half = lifecycle.claim_pending(
            s.connection(), domain="vitals", user_id=101, claim_id="a", limit=len(readings) // 2
        )
        rest = lifecycle.claim_pending(s.connection(), domain="vitals", user_id=101, claim_id="b")
    assert half.claimed and rest.claimed

    def run(claim_id: str) -> None:
        for _, name, payload in step_plan("vitals", claim_id, 101):
            run_step(name, payload)

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(run, ["a", "b"]))
    assert_matches_reference(engine, readings)


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_reference_covers_boundaries(granularity) -> None:
    # Guards the test itself: the generated data really crosses what it claims to cross.
    buckets = {k[2] for k in vitals_reference(generate(), granularity)}
    assert len(buckets) > 10
