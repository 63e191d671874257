"""The synthetic data generator: determinism, contract formats, local times, plausible values."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tasks import sample
from tasks.catalog import vital_types

SEED = 7
NEW_YORK = ZoneInfo("America/New_York")

# (low, high) per metric and unit: wide enough for real people, narrow enough to catch unit slips.
PLAUSIBLE: dict[tuple[str, str], tuple[float, float]] = {
    ("heart_rate", "bpm"): (35, 210),
    ("resting_heart_rate", "bpm"): (35, 110),
    ("hrv", "ms"): (5, 300),
    ("steps", "count"): (1, 4000),
    ("distance", "m"): (0.1, 5000),
    ("active_energy", "kcal"): (0.01, 400),  # a few steps burn a fraction of a kcal
    ("blood_pressure_systolic", "mmHg"): (80, 210),
    ("blood_pressure_diastolic", "mmHg"): (45, 130),
    ("weight", "kg"): (35, 200),
    ("weight", "lb"): (77, 440),
    ("height", "cm"): (130, 215),
    ("bmi", "kg/m2"): (15, 50),
    ("body_fat", "%"): (3, 60),
    ("spo2", "%"): (85, 100),
    ("body_temperature", "degC"): (35, 40.5),
    ("body_temperature", "degF"): (95, 105),
    ("respiratory_rate", "breaths/min"): (8, 25),
    ("sleep_duration", "h"): (2, 13),
    ("blood_glucose", "mg/dL"): (40, 450),
    ("blood_glucose", "mmol/L"): (2.2, 25),
}


def _users(n: int = 6) -> list[dict[str, Any]]:
    return sample.generate_users(n, SEED)


@cache
def _quarter_of_vitals() -> tuple[dict[str, Any], ...]:
    """12 users, 91 days (height is entered every 90 days), light rate: shared by value tests."""
    return tuple(sample.iter_vitals(_users(12), date(2024, 1, 1), 91, SEED, rate="light"))


def _zone_by_user(users: list[dict[str, Any]]) -> dict[int, ZoneInfo]:
    return {u["user_id"]: ZoneInfo(u["timezone"]) for u in users}


def _assert_local_instant(text: str, zone: ZoneInfo) -> datetime:
    """`text` is ISO 8601 with an offset, and that offset is the zone's at that instant."""
    parsed = datetime.fromisoformat(text)
    assert parsed.tzinfo is not None, text
    local = parsed.astimezone(zone)
    assert local.utcoffset() == parsed.utcoffset(), text
    assert local.replace(tzinfo=None) == parsed.replace(tzinfo=None), text
    return parsed


# ---------------------------------------------------------------------------- users, determinism


def test_users_cover_required_zones() -> None:
    assert {u["timezone"] for u in _users(6)} == set(sample.REQUIRED_ZONES)
    many = _users(40)
    assert [u["user_id"] for u in many] == list(range(1, 41))
    for user in many:
        assert set(user) == {"user_id", "timezone"}
        ZoneInfo(user["timezone"])


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    def dataset(name: str, seed: int) -> dict[str, bytes]:
        paths = sample.write_sample_dataset(tmp_path / name, 4, date(2024, 3, 8), 5, seed, "light")
        assert set(paths) == {"users", "vitals", "labs", "nutrition"}
        return {kind: path.read_bytes() for kind, path in paths.items()}

    first, again, other = dataset("a", SEED), dataset("b", SEED), dataset("c", SEED + 1)
    assert first == again
    assert all(first[kind] for kind in first)
    assert first["vitals"] != other["vitals"]


def test_a_day_does_not_depend_on_the_window() -> None:
    users = _users(2)
    whole = list(sample.iter_vitals(users[:1], date(2024, 5, 1), 4, SEED))
    parts = list(sample.iter_vitals(users[:1], date(2024, 5, 1), 2, SEED))
    parts += sample.iter_vitals(users[:1], date(2024, 5, 3), 2, SEED)
    assert whole == parts
    meals = list(sample.iter_nutrition(users, date(2024, 5, 1), 4, SEED))
    assert meals == [
        *sample.iter_nutrition(users[:1], date(2024, 5, 1), 4, SEED),
        *sample.iter_nutrition(users[1:], date(2024, 5, 1), 4, SEED),
    ]


def test_write_jsonl_counts_and_round_trips(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [{"a": 1, "b": None, "c": "x"}, {"a": 2.5}]
    path = tmp_path / "sub" / "rows.jsonl"
    assert sample.write_jsonl(path, iter(rows)) == 2
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows


def test_rate_is_validated() -> None:
    with pytest.raises(ValueError):
        list(sample.iter_vitals(_users(1), date(2024, 1, 1), 1, SEED, rate="fast"))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- local time


DST_WINDOWS = (  # both transitions of New York, Berlin and (southern) Sydney in 2024
    (date(2024, 3, 9), 3),
    (date(2024, 3, 30), 3),
    (date(2024, 4, 6), 3),
    (date(2024, 10, 5), 3),
    (date(2024, 10, 26), 3),
    (date(2024, 11, 2), 3),
)


@pytest.mark.parametrize(("start", "days"), DST_WINDOWS)
def test_every_instant_carries_its_zone_offset(start: date, days: int) -> None:
    users = _users(6)
    zones = _zone_by_user(users)
    for row in sample.iter_vitals(users, start, days, SEED):
        zone = zones[row["user_id"]]
        begin = _assert_local_instant(row["start_time"], zone)
        assert start <= begin.date() < start + timedelta(days=days)
        if "end_time" in row:
            assert _assert_local_instant(row["end_time"], zone) > begin


def test_offsets_of_odd_zones() -> None:
    users = _users(6)
    by_zone = {u["timezone"]: u["user_id"] for u in users}
    rows = list(sample.iter_vitals(users, date(2024, 7, 1), 2, SEED, rate="light"))
    suffix = {"Asia/Kathmandu": "+05:45", "Asia/Kolkata": "+05:30", "UTC": "+00:00"}
    for zone, offset in suffix.items():
        mine = [r for r in rows if r["user_id"] == by_zone[zone]]
        assert mine and all(r["start_time"].endswith(offset) for r in mine)
        # Step intervals follow the local quarter hours, even at +05:45.
        steps = [r for r in mine if r["metric"] == "steps"]
        assert steps and all(r["start_time"][14:19] in ("00:00", "15:00", "30:00", "45:00")
                             for r in steps)  # fmt: skip


def test_new_york_spring_forward_day() -> None:
    user = [u for u in _users(6) if u["timezone"] == "America/New_York"]
    rows = list(sample.iter_vitals(user, date(2024, 3, 10), 1, SEED))
    for row in rows:
        text = row["start_time"]
        assert text.startswith("2024-03-10T")
        hour = int(text[11:13])
        assert hour != 2, "02:xx does not exist on this day"
        assert text.endswith("-05:00" if hour < 2 else "-04:00"), text
    # Fifteen-minute intervals are fifteen real minutes, and the day has 92 of them.
    for row in rows:
        if row["metric"] == "steps":
            span = datetime.fromisoformat(row["end_time"]) - datetime.fromisoformat(
                row["start_time"]
            )
            assert span == timedelta(minutes=15)
    assert _day_hours(NEW_YORK, date(2024, 3, 10)) == 23


def test_new_york_fall_back_day() -> None:
    user = [u for u in _users(6) if u["timezone"] == "America/New_York"]
    rows = list(sample.iter_vitals(user, date(2024, 11, 2), 2, SEED))
    midnight = datetime(2024, 11, 3, tzinfo=NEW_YORK)
    for row in rows:
        begin = datetime.fromisoformat(row["start_time"])
        if begin.date() == date(2024, 11, 3):
            hour = begin.hour
            if hour >= 2:
                assert begin.utcoffset() == timedelta(hours=-5), row
            if hour < 1:
                assert begin.utcoffset() == timedelta(hours=-4), row
            if row["metric"] == "steps":  # the grid counts real quarter hours from midnight
                assert (begin - midnight).total_seconds() % 900 == 0
    # The night across the change: reported sleep fits in the real (not wall-clock) time in bed.
    night = [r for r in rows if r["metric"] == "sleep_duration" and "-04:00" in r["start_time"]
             and "-05:00" in r["end_time"]]  # fmt: skip
    assert len(night) == 1
    in_bed = datetime.fromisoformat(night[0]["end_time"]) - datetime.fromisoformat(
        night[0]["start_time"]
    )
    wall = datetime.fromisoformat(night[0]["end_time"][:19]) - datetime.fromisoformat(
        night[0]["start_time"][:19]
    )
    assert in_bed == wall + timedelta(hours=1)
    assert night[0]["value"] <= in_bed.total_seconds() / 3600
    assert _day_hours(NEW_YORK, date(2024, 11, 3)) == 25


def _day_hours(zone: ZoneInfo, day: date) -> float:
    record = sample._Clock(zone).day(day)
    return (record.end - record.start) / 3600


def test_southern_hemisphere_and_plain_day_lengths() -> None:
    sydney = ZoneInfo("Australia/Sydney")
    assert _day_hours(sydney, date(2024, 4, 7)) == 25
    assert _day_hours(sydney, date(2024, 10, 6)) == 23
    assert _day_hours(ZoneInfo("Asia/Kathmandu"), date(2024, 10, 6)) == 24


# ---------------------------------------------------------------------------- vitals values


def test_vitals_have_contract_fields_and_every_metric() -> None:
    rows = _quarter_of_vitals()
    metrics = Counter(r["metric"] for r in rows)
    assert set(metrics) == {metric for metric, _ in PLAUSIBLE}
    for row in rows:
        assert set(row) <= {"user_id", "metric", "value", "unit", "start_time", "end_time",
                            "source"}  # fmt: skip
        assert row["source"] in {"apple_health", "fitbit", "garmin", "withings", "renpho",
                                 "omron", "manual", "accu_chek"}  # fmt: skip
    units = {(r["metric"], r["unit"]) for r in rows}
    assert {("weight", "lb"), ("weight", "kg")} <= units  # some users weigh in pounds
    assert {("body_temperature", "degF"), ("body_temperature", "degC")} <= units


def test_vitals_values_are_plausible_and_accepted_by_the_catalog() -> None:
    catalog = vital_types()
    for row in _quarter_of_vitals():
        value = row["value"]
        assert isinstance(value, int | float) and math.isfinite(value)
        low, high = PLAUSIBLE[(row["metric"], row["unit"])]
        assert low <= value <= high, row
        assert catalog[row["metric"]].rejection(float(value), row["unit"]) is None, row


def test_daily_totals_look_like_people() -> None:
    steps: dict[tuple[int, str], int] = defaultdict(int)
    for row in _quarter_of_vitals():
        if row["metric"] == "steps":
            steps[(row["user_id"], row["start_time"][:10])] += row["value"]
    average = sum(steps.values()) / len(steps)
    assert 2000 < average < 20000
    sleep = [r["value"] for r in _quarter_of_vitals() if r["metric"] == "sleep_duration"]
    assert 5.5 < sum(sleep) / len(sleep) < 9


def test_device_rate_is_dense_and_light_rate_is_not() -> None:
    users = _users(2)
    device = Counter(r["metric"] for r in sample.iter_vitals(users, date(2024, 6, 1), 7, SEED))
    light = Counter(
        r["metric"] for r in sample.iter_vitals(users, date(2024, 6, 1), 7, SEED, rate="light")
    )
    assert device["heart_rate"] / 14 > 150  # every few minutes while awake
    assert light["heart_rate"] * 5 < device["heart_rate"]
    assert sum(device.values()) / 14 * 365 > 100_000  # ~100k+ rows per user-year


# ---------------------------------------------------------------------------- labs


def test_labs_format_and_values() -> None:
    users = _users(6)
    zones = _zone_by_user(users)
    rows = list(sample.iter_labs(users, date(2024, 1, 1), 366, SEED))
    names = {r["test_name"] for r in rows}
    expected = {
        "S. Creatinine",
        "Glycosylated Haemoglobin (HbA1c)",
        "SGPT (ALT)",
        "Total Leucocyte Count",
        "Fasting Blood Sugar",
        "T.S.H.",
        "Hemoglobin A1c",
    }
    assert expected <= names
    assert {r["unit"] for r in rows} >= {"mmol/L", "mg/dL", "g/dL", "%"}
    qualitative = {r["value"] for r in rows if isinstance(r["value"], str)}
    assert {"Negative", "Nil"} <= qualitative
    seen: set[tuple[str, str]] = set()
    for row in rows:
        assert set(row) == {"user_id", "report_id", "test_name", "value", "unit",
                            "reference_range", "collected_at"}  # fmt: skip
        key = (row["report_id"], row["test_name"])
        assert key not in seen  # one result per test per report
        seen.add(key)
        if isinstance(row["value"], int | float):
            assert row["value"] > 0 and math.isfinite(row["value"])
        if len(row["collected_at"]) == 10:
            date.fromisoformat(row["collected_at"])
        else:
            _assert_local_instant(row["collected_at"], zones[row["user_id"]])
    reports = Counter(user for user, _ in {(r["user_id"], r["report_id"]) for r in rows})
    assert all(1 <= n <= 10 for n in reports.values()) and len(reports) == 6


def test_labs_for_a_short_window_still_give_every_user_a_report() -> None:
    rows = list(sample.iter_labs(_users(6), date(2024, 2, 1), 3, SEED))
    assert {r["user_id"] for r in rows} == set(range(1, 7))
    assert all("2024-02-01" <= r["collected_at"][:10] <= "2024-02-03" for r in rows)


# ---------------------------------------------------------------------------- nutrition


def test_nutrition_rows_and_missing_nutrients_are_null() -> None:
    rows = list(sample.iter_nutrition(_users(6), date(2024, 1, 1), 30, SEED))
    table = {food[0]: food for foods in sample._FOODS.values() for food in foods}
    nutrients = ("calories", "protein_g", "carbs_g", "fat_g", "fiber_g", "sugar_g", "sodium_mg")
    nulls = Counter[str]()
    for row in rows:
        assert set(row) == {"user_id", "meal_date", "meal_type", "food_name", *nutrients}
        assert row["meal_type"] in {"breakfast", "lunch", "dinner", "snack"}
        assert "2024-01-01" <= row["meal_date"] <= "2024-01-30"
        assert row["calories"] > 0 or table[row["food_name"]][2] == 0
        for i, key in enumerate(nutrients):
            value = row[key]
            if value is None:
                nulls[key] += 1
            else:
                assert value >= 0
                # A zero is a real zero of the food (black coffee has no fiber), never "unknown".
                assert value > 0 or table[row["food_name"]][2 + i] == 0, row
    assert nulls["fiber_g"] and nulls["sugar_g"] and nulls["sodium_mg"] and nulls["protein_g"]
    assert nulls["calories"] == 0


def test_same_food_twice_a_day_is_two_meals() -> None:
    rows = list(sample.iter_nutrition(_users(6), date(2024, 1, 1), 30, SEED))
    meals: dict[tuple[int, str, str], set[str]] = defaultdict(set)
    for row in rows:
        meals[(row["user_id"], row["meal_date"], row["food_name"])].add(row["meal_type"])
    assert any(len(types) >= 2 for types in meals.values())
