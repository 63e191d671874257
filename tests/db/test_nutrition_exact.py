"""Nutrition aggregates equal a plain-Python reference: sums per nutrient (null when every entry
lacks it), entry counts, per meal type and in total; two meals of one food are two meals."""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from datetime import date, timedelta

from sqlalchemy import text

from tasks.catalog import nutrient_keys
from tasks.ingest import ingest_lines
from tasks.process import process_pending
from tests.support.reference import period_start

MEALS = ("breakfast", "lunch", "dinner", "snack")


def _entries(seed: int = 4) -> list[dict]:
    rng = random.Random(seed)
    start = date(2023, 12, 25)
    entries = []
    for user in (7, 8):
        for _ in range(500):
            day = start + timedelta(days=rng.randrange(0, 130))  # crosses a leap day
            entry = {"user_id": user, "meal_date": day.isoformat(), "meal_type": rng.choice(MEALS),
                     "food_name": rng.choice(["Dal", "Rice", "Oats"])}  # fmt: skip
            for key in nutrient_keys():
                if rng.random() < 0.7:
                    entry[key] = round(rng.uniform(0, 50), 2)
            entries.append(entry)
        entries.append(dict(entries[-1]))  # the same food twice in one day: two meals
    return entries


def _reference(entries: list[dict], granularity: str) -> dict[tuple, dict]:
    out: dict[tuple, dict] = defaultdict(
        lambda: {"entries": 0, **{k: None for k in nutrient_keys()}}
    )
    for e in entries:
        bucket = period_start(date.fromisoformat(e["meal_date"]), granularity)
        for meal in (e["meal_type"], "all"):
            agg = out[(e["user_id"], meal, bucket)]
            agg["entries"] += 1
            for key in nutrient_keys():
                if e.get(key) is not None:
                    agg[key] = (agg[key] or 0.0) + e[key]
    return dict(out)


def test_nutrition_matches_reference_in_two_uploads(engine) -> None:
    entries = _entries()
    lines = [json.dumps(e) for e in entries]
    for batch in (lines[::2], lines[1::2]):  # the second upload lands in aggregated buckets
        ingest_lines(engine, "nutrition", batch)
        assert all(run.error is None for run in process_pending(["nutrition"]))
    for granularity in ("daily", "weekly", "monthly"):
        expected = _reference(entries, granularity)
        with engine.connect() as conn:
            rows = conn.execute(text(f"SELECT * FROM nutrition_agg_{granularity}")).mappings().all()
        actual = {(r["user_id"], r["meal_type"], r["bucket_start"]): r for r in rows}
        assert set(actual) == set(expected), granularity
        for key, want in expected.items():
            got = actual[key]
            assert got["entries"] == want["entries"], (granularity, key)
            for nutrient in nutrient_keys():
                if want[nutrient] is None:
                    assert got[nutrient] is None, (granularity, key, nutrient)
                else:
                    assert math.isclose(got[nutrient], want[nutrient], rel_tol=1e-9)


def test_sums_do_not_depend_on_the_order_rows_were_stored_in(engine) -> None:
    """Floats summed in stored order give 0.6000000000000001 one way and 0.6 the other: the
    workflow and direct mode once wrote different tables from the same data that way."""
    grams = [0.1, 0.2, 0.3]
    for user_id, order in ((7, grams), (8, grams[::-1])):
        ingest_lines(
            engine, "nutrition",
            [json.dumps({"user_id": user_id, "meal_date": "2024-03-04", "meal_type": "lunch",
                         "food_name": "Dal", "protein_g": g}) for g in order],
        )  # fmt: skip
        ingest_lines(
            engine, "vitals",
            [json.dumps({"user_id": user_id, "metric": "body_temperature", "value": 36 + g,
                         "unit": "degC", "start_time": f"2024-03-04T08:{i:02d}:00+00:00"})
             for i, g in enumerate(order)],
        )  # fmt: skip
    assert all(run.error is None for run in process_pending(["nutrition", "vitals"]))
    with engine.connect() as conn:
        for table, column in (
            ("nutrition_agg_daily", "protein_g"),
            ("nutrition_agg_weekly", "protein_g"),
            ("vitals_agg_hourly", "sum"),
            ("vitals_agg_daily", "sum"),
        ):
            sums = conn.execute(
                text(f"SELECT user_id, {column} FROM {table} ORDER BY user_id")
            ).all()
            assert len({s for _, s in sums}) == 1 and len(sums) >= 2, (table, sums)
