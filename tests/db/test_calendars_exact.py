"""Calendar buckets in every zone of the tz database that changes its UTC offset in the tested
years, against the independent zoneinfo reference: a local day is [its first instant, the next
day's first instant) whether the change falls at midnight (America/Havana and Atlantic/Azores
repeat 00:00-01:00; America/Santiago's day starts at 01:00), shifts by 30 minutes
(Australia/Lord_Howe) or by an offset with seconds (Africa/Monrovia's -00:44:30 until 1972).

One schema, one batch: every zone is a user with readings around each of its changes; the
batch is processed once, then each zone is compared on its own (one test per zone)."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import Engine, text

from tasks.db import engine as db_engine
from tasks.ingest import ingest_lines, zones_read_differently
from tasks.process import process_pending
from tests.support.reference import (
    REQUIRED_ZONES,
    Reading,
    vitals_reference,
    zone_readings,
    zones_with_changes,
)

GRANULARITIES = ("hourly", "daily", "weekly", "monthly")
ZONE_NAMES = zones_with_changes()
USERS = {10_000 + i: zone for i, zone in enumerate(ZONE_NAMES)}
USER_OF = {zone: user for user, zone in USERS.items()}


def _zones_the_server_reads_alike(engine: Engine, readings: list[Reading]) -> dict[str, str]:
    """Zones the server's tz database does not know or reads differently from Python's at the
    tested instants, with the reason (the server may ship an older tz database)."""
    with engine.connect() as conn:
        known = set(conn.execute(text("SELECT name FROM pg_timezone_names")).scalars())
        differ: dict[str, str] = {z: "unknown to the server" for z in ZONE_NAMES if z not in known}
        probes = [r for r in readings if USERS[r.user_id] not in differ]
        rows = conn.execute(
            text(
                "SELECT p.zone, p.at, (p.at AT TIME ZONE p.zone) AS local "
                "FROM unnest(CAST(:zones AS text[]), CAST(:ats AS timestamptz[])) AS p(zone, at)"
            ),
            {"zones": [USERS[r.user_id] for r in probes], "ats": [r.start for r in probes]},
        ).all()
    from zoneinfo import ZoneInfo

    for row in rows:
        if row.at.astimezone(ZoneInfo(row.zone)).replace(tzinfo=None) != row.local:
            differ.setdefault(row.zone, f"the server's tz database differs at {row.at}")
    # Zones that ingest refuses: the server reads them differently around today.
    for zone, reason in zones_read_differently(engine, set(ZONE_NAMES) - set(differ)).items():
        differ[zone] = reason
    return differ


@pytest.fixture(scope="module")
def calendars(make_schema_engine):  # type: ignore[no-untyped-def]
    engine = make_schema_engine()
    readings = zone_readings(USERS)
    skipped = _zones_the_server_reads_alike(engine, readings)
    users = {u: z for u, z in USERS.items() if z not in skipped}
    readings = [r for r in readings if r.user_id in users]
    db_engine.set_engine(engine)
    try:
        ingest_lines(
            engine, "users", [f'{{"user_id": {u}, "timezone": "{z}"}}' for u, z in users.items()]
        )
        ingest_lines(engine, "vitals", [r.line() for r in readings])
        runs = process_pending(["vitals"], workers=2)
    finally:
        db_engine.set_engine(None)
    tables = {}
    with engine.connect() as conn:
        for granularity in GRANULARITIES:
            rows = conn.execute(
                text(
                    "SELECT user_id, loinc_code, bucket_start, count, sum, min, max, last_value, "
                    f"last_time FROM vitals_agg_{granularity}"
                )
            ).all()
            tables[granularity] = {(r[0], r[1], r[2]): tuple(r[3:]) for r in rows}
    return {"readings": readings, "skipped": skipped, "runs": runs, "tables": tables}


def test_every_claim_succeeded(calendars) -> None:  # type: ignore[no-untyped-def]
    assert calendars["runs"] and all(run.error is None for run in calendars["runs"])


def test_the_named_zones_are_covered(calendars) -> None:  # type: ignore[no-untyped-def]
    assert set(REQUIRED_ZONES) <= set(ZONE_NAMES)
    assert not set(REQUIRED_ZONES) & set(calendars["skipped"])
    assert len(ZONE_NAMES) > 200  # guards the filter itself


@pytest.mark.parametrize("zone", ZONE_NAMES)
def test_buckets_match_the_reference(calendars, zone: str) -> None:  # type: ignore[no-untyped-def]
    if zone in calendars["skipped"]:
        pytest.skip(calendars["skipped"][zone])
    user = USER_OF[zone]
    readings = [r for r in calendars["readings"] if r.user_id == user]
    assert readings
    for granularity in GRANULARITIES:
        expected = vitals_reference(readings, granularity, USERS)
        actual = {k: v for k, v in calendars["tables"][granularity].items() if k[0] == user}
        assert sorted(actual) == sorted(expected), granularity
        for key, stats in expected.items():
            count, total, low, high, last, last_time = actual[key]
            assert count == stats.count, (granularity, key)
            assert math.isclose(total, stats.total, rel_tol=1e-9), (granularity, key)
            assert math.isclose(low, stats.low) and math.isclose(high, stats.high)
            assert math.isclose(last, stats.last), (granularity, key)
            assert last_time == stats.last_time, (granularity, key)
        # Every reading is in exactly one bucket of every granularity.
        assert sum(s.count for s in expected.values()) == len({r.start for r in readings})


def test_the_reported_cases(engine) -> None:  # type: ignore[no-untyped-def]
    # Seven readings in Havana's first 00:00-01:00 of 2015-11-01 were in an hourly bucket but in
    # no daily one; four readings in Lord_Howe's 30-minute fall-back were counted five times.
    ingest_lines(
        engine,
        "users",
        ['{"user_id": 1, "timezone": "America/Havana"}',
         '{"user_id": 2, "timezone": "Australia/Lord_Howe"}'],
    )  # fmt: skip
    havana = [f"2015-11-01T00:09:0{i}-04:00" for i in range(7)]
    lord_howe = ["2024-04-07T01:40:00+11:00", "2024-04-07T01:50:00+11:00",
                 "2024-04-07T01:40:00+10:30", "2024-04-07T01:50:00+10:30"]  # fmt: skip
    ingest_lines(
        engine,
        "vitals",
        [
            f'{{"user_id": {user}, "metric": "heart_rate", "value": 60, "unit": "bpm", '
            f'"start_time": "{at}"}}'
            for user, times in ((1, havana), (2, lord_howe))
            for at in times
        ],
    )
    assert all(run.error is None for run in process_pending(["vitals"]))
    from tasks.export import export_rows

    daily = [(r[0], r[3], r[4]) for r in list(export_rows(engine, "vitals", "daily"))[1:]]
    assert daily == [("1", "2015-11-01", "7"), ("2", "2024-04-07", "4")]
    hourly = [(r[0], r[3], r[4]) for r in list(export_rows(engine, "vitals", "hourly"))[1:]]
    assert hourly == [
        ("1", "2015-11-01T00:00:00-04:00", "7"),
        ("2", "2024-04-07T01:00:00+11:00", "2"),
        ("2", "2024-04-07T01:30:00+10:30", "2"),
    ]


def test_offsets_with_seconds_round_trip(engine) -> None:  # type: ignore[no-untyped-def]
    # Africa/Monrovia kept -00:44:30 until 1972: the hourly export labels its hours with that
    # offset, and ingest reads such an offset back as the same instant.
    from tasks.export import export_rows

    ingest_lines(engine, "users", ['{"user_id": 3, "timezone": "Africa/Monrovia"}'])
    report = ingest_lines(
        engine,
        "vitals",
        [
            '{"user_id": 3, "metric": "heart_rate", "value": 60, "unit": "bpm", '
            '"start_time": "1971-06-01T10:20:00-00:44:30", "end_time": "1971-06-01T11:05:00Z"}',
            '{"user_id": 3, "metric": "heart_rate", "value": 70, "unit": "bpm", '
            '"start_time": "1971-06-01T11:04:30Z"}',
        ],
    )
    assert (report.inserted, report.malformed) == (2, 0)
    assert all(run.error is None for run in process_pending(["vitals"]))
    hourly = [(r[3], r[4]) for r in list(export_rows(engine, "vitals", "hourly"))[1:]]
    assert hourly == [("1971-06-01T10:00:00-00:44:30", "2")]  # the same instant, twice
    again = ingest_lines(
        engine,
        "vitals",
        [
            '{"user_id": 3, "metric": "steps", "value": 5, "unit": "count", '
            f'"start_time": "{hourly[0][0]}"}}'
        ],
    )
    assert (again.inserted, again.malformed) == (1, 0)


def _settled(engine, table: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return dict(conn.execute(text(f"SELECT status, count(*) FROM {table} GROUP BY 1")).all())


def test_a_zone_that_arrives_or_changes_recomputes_the_users_buckets(engine) -> None:  # type: ignore[no-untyped-def]
    from tests.support.reference import generate

    readings = [r for r in generate(seed=17, per_user=150) if r.user_id == 104]
    ingest_lines(engine, "vitals", [r.line() for r in readings])
    lab = (
        '{"user_id": 104, "test_name": "Glucose", "value": 90, "unit": "mg/dL", '
        '"collected_at": "2024-03-10T20:30:00+00:00", "report_id": "r1"}'
    )
    ingest_lines(engine, "labs", [lab])
    with engine.begin() as conn:  # labs as an earlier run left them: aggregated in UTC
        conn.execute(text("UPDATE lab_report_raw SET status = 'aggregated'"))
        conn.execute(
            text(
                "INSERT INTO labs_agg_daily (user_id, loinc_code, bucket_start, count, sum, min, "
                "max, last_value, last_time, unit) VALUES (104, '2345-7', '2024-03-10', 1, 90, "
                "90, 90, 90, '2024-03-10T20:30:00+00:00', 'mg/dL')"
            )
        )
    assert all(run.error is None for run in process_pending(["vitals"]))
    # No zone yet: UTC.
    assert_vitals_match(engine, readings, {104: "UTC"})
    for zone in ("Asia/Kathmandu", "America/Havana"):  # the zone arrives, then changes
        report = ingest_lines(engine, "users", [f'{{"user_id": 104, "timezone": "{zone}"}}'])
        assert report.inserted == 1
        assert _settled(engine, "vitals_raw_data") == {"pending": len(readings)}
        assert _settled(engine, "lab_report_raw") == {"pending": 1}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM labs_agg_daily")).scalar_one() == 0
        assert all(run.error is None for run in process_pending(["vitals"]))
        assert_vitals_match(engine, readings, {104: zone})
    # The same zone again changes nothing.
    ingest_lines(engine, "users", ['{"user_id": 104, "timezone": "America/Havana"}'])
    assert _settled(engine, "vitals_raw_data") == {"aggregated": len(readings)}


def assert_vitals_match(engine, readings, zones) -> None:  # type: ignore[no-untyped-def]
    for granularity in GRANULARITIES:
        expected = vitals_reference(readings, granularity, zones)
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT user_id, loinc_code, bucket_start, count, sum "
                    f"FROM vitals_agg_{granularity}"
                )
            ).all()
        actual = {(r[0], r[1], r[2]): (r[3], r[4]) for r in rows}
        assert sorted(actual) == sorted(expected), granularity
        for key, stats in expected.items():
            assert actual[key][0] == stats.count, (granularity, key)
            assert math.isclose(actual[key][1], stats.total, rel_tol=1e-9), (granularity, key)
