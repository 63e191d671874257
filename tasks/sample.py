"""Deterministic synthetic health data in the JSON Lines input formats of DESIGN.md "Contracts".

Used for demos (`healthflow run --demo`), tests and the ingest/aggregation benchmarks. Output is a
pure function of the arguments: every user-day draws from its own generator seeded with
(seed, domain, user_id, date), so a day's data does not depend on the window it was generated in
(generating January, then February, gives the same rows as generating both at once) and the same
seed gives byte-identical files.

Times are built the way a phone writes them: instants carry the user's local UTC offset *at that
instant* (DST days have 23 or 25 hours, and fifteen-minute step intervals follow real time, so a
fall-back day has 100 of them). Offsets are computed once per user-day with zoneinfo and reused
for every reading of the day, which keeps the generator at several hundred thousand rows per
second in pure Python plus numpy.

Users get a stable profile (device, unit habits, lab report style, conditions such as diabetes)
derived from (seed, user_id), so vitals, labs and nutrition of one user tell one consistent story.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np

Row = dict[str, Any]
Rate = Literal["device", "light"]

# Zones the brief requires (half-hour, 45-minute, southern-hemisphere DST, no DST), then a spread.
REQUIRED_ZONES: tuple[str, ...] = (
    "America/New_York",
    "Europe/Berlin",
    "Asia/Kolkata",
    "Australia/Sydney",
    "Asia/Kathmandu",
    "UTC",
)
EXTRA_ZONES: tuple[str, ...] = (
    "America/Los_Angeles",
    "America/Chicago",
    "Europe/London",
    "Asia/Kolkata",
    "America/Sao_Paulo",
    "America/St_Johns",
    "Pacific/Auckland",
    "Asia/Tokyo",
    "Asia/Singapore",
    "Asia/Dubai",
    "America/New_York",
)

# Seed-sequence tags keep the random streams of the domains independent of each other.
_TAG_USERS, _TAG_PROFILE, _TAG_SCHEDULE, _TAG_VITALS, _TAG_LABS, _TAG_LAB_BASE, _TAG_FOOD = range(
    1, 8
)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_QUARTER = 900  # seconds in a step/distance/energy interval
# "HH:MM:SS" for every second of a day: formatting by table lookup is what makes output fast.
_TWO_DIGITS = [f"{i:02d}" for i in range(60)]
_HMS: list[str] = [
    f"{h}:{m}:{s}" for h in _TWO_DIGITS[:24] for m in _TWO_DIGITS for s in _TWO_DIGITS
]


def _rng(seed: int, *parts: int) -> np.random.Generator:
    if seed < 0:
        raise ValueError("seed must be a non-negative integer")
    return np.random.default_rng([seed, *parts])


# --------------------------------------------------------------------------------------------
# Local time


def _offset_text(seconds: int) -> str:
    sign = "-" if seconds < 0 else "+"
    minutes = abs(seconds) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True, slots=True)
class _Day:
    """One local calendar day of one zone: its real-time span and UTC offset segments."""

    day: date
    prefix: str  # "YYYY-MM-DDT"
    naive: int  # local midnight read as if it were UTC; wall clock = t + offset - naive
    start: int  # epoch second of the day's first instant
    end: int  # epoch second of the next day's first instant
    starts: tuple[int, ...]  # where each offset segment begins; starts[0] == start
    offsets: tuple[int, ...]
    suffixes: tuple[str, ...]


class _Clock:
    """Per-zone cache of _Day records and fast ISO formatting of epoch seconds."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self._days: dict[int, _Day] = {}

    def _offset(self, t: int) -> int:
        offset = datetime.fromtimestamp(t, self.zone).utcoffset()
        assert offset is not None
        return int(offset.total_seconds())

    def _first_instant(self, d: date) -> int:
        # fold=0 maps a nonexistent local midnight (a gap at 00:00) to the instant after the gap.
        return int(datetime(d.year, d.month, d.day, tzinfo=self.zone).timestamp())

    def day(self, d: date) -> _Day:
        cached = self._days.get(d.toordinal())
        if cached is not None:
            return cached
        start = self._first_instant(d)
        end = self._first_instant(d + timedelta(days=1))
        first, last = self._offset(start), self._offset(end - 1)
        starts, offsets = [start], [first]
        if first != last:
            # One transition per day at most in real zones: binary search its instant.
            lo, hi = start, end - 1
            while lo < hi:
                mid = (lo + hi) // 2
                if self._offset(mid) == first:
                    lo = mid + 1
                else:
                    hi = mid
            starts.append(lo)
            offsets.append(last)
        result = _Day(
            day=d,
            prefix=d.isoformat() + "T",
            naive=(d.toordinal() - _EPOCH_ORDINAL) * 86400,
            start=start,
            end=end,
            starts=tuple(starts),
            offsets=tuple(offsets),
            suffixes=tuple(_offset_text(o) for o in offsets),
        )
        self._days[d.toordinal()] = result
        return result

    def wall(self, day: _Day, ts: np.ndarray) -> np.ndarray:
        """Local seconds since midnight for instants inside `day`."""
        if len(day.offsets) == 1:
            return ts + (day.offsets[0] - day.naive)
        segment = np.searchsorted(day.starts, ts, side="right") - 1
        return ts + np.asarray(day.offsets)[segment] - day.naive

    def stamps(self, day: _Day, ts: np.ndarray) -> list[str]:
        """ISO 8601 local time with the offset in force at each instant (all inside `day`)."""
        prefix = day.prefix
        if len(day.offsets) == 1:
            suffix = day.suffixes[0]
            return [prefix + _HMS[s] + suffix for s in (ts + (day.offsets[0] - day.naive)).tolist()]
        segment = np.searchsorted(day.starts, ts, side="right") - 1
        walls = (ts + np.asarray(day.offsets)[segment] - day.naive).tolist()
        return [
            prefix + _HMS[s] + day.suffixes[i] for s, i in zip(walls, segment.tolist(), strict=True)
        ]

    def stamp(self, t: int, hint: _Day) -> str:
        day = hint
        if not hint.start <= t < hint.end:
            day = self.day(datetime.fromtimestamp(t, self.zone).date())
        return self.stamps(day, np.array([t], dtype=np.int64))[0]

    def to_epoch(self, day: _Day, wall: int) -> int:
        """The instant of a local wall time (seconds after `day`'s midnight, may exceed a day).

        Like zoneinfo with fold=0: an ambiguous time takes the first occurrence and a time in a
        spring-forward gap lands after the gap.
        """
        if wall >= 86400:
            return self.to_epoch(self.day(day.day + timedelta(days=1)), wall - 86400)
        bounds = (*day.starts[1:], day.end)
        for begin, limit, offset in zip(day.starts, bounds, day.offsets, strict=True):
            candidate = day.naive + wall - offset
            if begin <= candidate < limit:
                return candidate
        return day.naive + wall - day.offsets[0]


# --------------------------------------------------------------------------------------------
# Users and their stable profiles


def _style_of(zone: str) -> str:
    """Lab report style and unit habits follow the region: US units, Indian labs, or SI."""
    if zone.startswith("America/") and zone != "America/Sao_Paulo":
        return "us"
    if zone in ("Asia/Kolkata", "Asia/Kathmandu", "Asia/Dubai"):
        return "in"
    return "si"


def generate_users(n_users: int, seed: int) -> list[dict[str, Any]]:
    """Users 1..n; the first six cover REQUIRED_ZONES (in a seeded order), the rest are drawn."""
    rng = _rng(seed, _TAG_USERS)
    first = [REQUIRED_ZONES[i] for i in rng.permutation(len(REQUIRED_ZONES)).tolist()]
    pool = REQUIRED_ZONES + EXTRA_ZONES
    rest = [pool[i] for i in rng.integers(0, len(pool), size=max(0, n_users - len(first)))]
    zones = (first + rest)[:n_users]
    return [{"user_id": i + 1, "timezone": z} for i, z in enumerate(zones)]


@dataclass(frozen=True, slots=True)
class _Profile:
    user_id: int
    zone: ZoneInfo
    style: str
    female: bool
    age: int
    height_cm: float
    weight_kg: float
    body_fat: float
    resting_hr: float
    hrv_ms: float
    systolic: float
    diastolic: float
    daily_steps: float
    stride_m: float
    workout_prob: float
    wake_s: float  # usual wall-clock wake time, seconds after midnight
    bed_s: float  # usual bedtime; above 86400 means after midnight
    diabetic: bool
    hypothyroid: bool
    dyslipidemic: bool
    vitamin_d_low: bool
    wearable: str
    scale_source: str | None  # None: weight is typed in by hand, no BMI/body fat
    bp_source: str
    glucometer_source: str | None
    weight_unit: str
    temp_unit: str
    glucose_unit: str


def _profile(user: Mapping[str, Any], seed: int) -> _Profile:
    uid = int(user["user_id"])
    zone_name = str(user.get("timezone") or "UTC")
    style = _style_of(zone_name)
    r = _rng(seed, _TAG_PROFILE, uid)
    female = bool(r.random() < 0.5)
    age = int(r.integers(22, 75))
    height = float(r.normal(163 if female else 176, 7))
    bmi = float(np.clip(r.lognormal(math.log(25.5), 0.15), 18, 42))
    diabetic = bool(r.random() < 0.15 + (0.1 if bmi > 30 else 0.0))
    us = style == "us"
    return _Profile(
        user_id=uid,
        zone=ZoneInfo(zone_name),
        style=style,
        female=female,
        age=age,
        height_cm=height,
        weight_kg=bmi * (height / 100) ** 2,
        body_fat=float(np.clip((1.2 * bmi + 0.23 * age - (5.4 if female else 16.2)), 8, 50)),
        resting_hr=float(r.normal(64, 7)),
        hrv_ms=float(np.clip(r.lognormal(math.log(45), 0.35), 12, 150)),
        systolic=float(r.normal(122 + 0.3 * (age - 40), 10)),
        diastolic=float(r.normal(79, 7)),
        daily_steps=float(np.clip(r.lognormal(math.log(7500), 0.4), 2000, 20000)),
        stride_m=height / 100 * 0.415,
        workout_prob=float(r.choice([0.05, 0.2, 0.45])),
        wake_s=float(r.normal(6.8, 0.6)) * 3600,
        bed_s=float(r.normal(23.2, 0.7)) * 3600,
        diabetic=diabetic,
        hypothyroid=bool(r.random() < (0.12 if female else 0.04)),
        dyslipidemic=bool(r.random() < 0.25),
        vitamin_d_low=bool(r.random() < (0.5 if style == "in" else 0.25)),
        wearable=str(r.choice(["apple_health", "fitbit", "garmin"])),
        scale_source=(None if r.random() < 0.3 else str(r.choice(["withings", "renpho"]))),
        bp_source=str(r.choice(["omron", "withings", "manual"])),
        glucometer_source=("accu_chek" if diabetic or r.random() < 0.1 else None),
        weight_unit="lb" if (us and r.random() < 0.85) or r.random() < 0.05 else "kg",
        temp_unit="degF" if us else "degC",
        glucose_unit="mg/dL" if style != "si" or r.random() < 0.1 else "mmol/L",
    )


# --------------------------------------------------------------------------------------------
# Vitals

# Relative step activity per local quarter hour: morning commute, lunch, evening walk.
_HOURLY_ACTIVITY = [0.1] * 6 + [0.6, 1.2, 1.6, 1.0, 0.8, 0.9, 1.5, 1.0, 0.8, 0.8, 0.9, 1.4, 1.6]
_HOURLY_ACTIVITY += [1.2, 0.9, 0.6, 0.4, 0.2]
_QUARTER_ACTIVITY = np.repeat(np.asarray(_HOURLY_ACTIVITY), 4)


def _schedule(seed: int, p: _Profile, d: date) -> tuple[int, int]:
    """Wall-clock (wake, bed) seconds for day `d`; its own stream so neighbours can recompute it."""
    r = _rng(seed, _TAG_SCHEDULE, p.user_id, d.toordinal())
    weekend = d.weekday() >= 5
    wake = p.wake_s + (2700 if weekend else 0) + r.normal(0, 1500)
    bed = p.bed_s + (2400 if d.weekday() in (4, 5) else 0) + r.normal(0, 1800)
    return int(np.clip(wake, 4 * 3600, 11 * 3600)), int(np.clip(bed, 20.5 * 3600, 27 * 3600))


def _point_rows(
    uid: int, metric: str, unit: str, source: str, stamps: list[str], values: list[Any]
) -> list[Row]:
    return [
        {
            "user_id": uid,
            "metric": metric,
            "value": v,
            "unit": unit,
            "start_time": s,
            "source": source,
        }
        for s, v in zip(stamps, values, strict=True)
    ]


def _interval_rows(
    uid: int,
    metric: str,
    unit: str,
    source: str,
    starts: list[str],
    ends: list[str],
    values: list[Any],
) -> list[Row]:
    return [
        {
            "user_id": uid,
            "metric": metric,
            "value": v,
            "unit": unit,
            "start_time": s,
            "end_time": e,
            "source": source,
        }
        for s, e, v in zip(starts, ends, values, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class _DayContext:
    p: _Profile
    clock: _Clock
    day: _Day
    r: np.random.Generator
    wake: int  # epoch of today's wake-up
    bed_wall: int  # today's bedtime, wall seconds after today's midnight
    prev_bed_wall: int  # yesterday's bedtime, wall seconds after yesterday's midnight

    def awake(self, ts: np.ndarray) -> np.ndarray:
        wall = self.clock.wall(self.day, ts)
        wake_wall = int(self.clock.wall(self.day, np.array([self.wake]))[0])
        # Before today's wake-up the user may still be up from last night (bed after midnight).
        return ((wall >= wake_wall) & (wall < self.bed_wall)) | (wall < self.prev_bed_wall - 86400)


def _activity(ctx: _DayContext) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per real quarter hour of the day: start instants, steps, and a workout flag."""
    day, r, p = ctx.day, ctx.r, ctx.p
    starts = np.arange(day.start, day.end, _QUARTER, dtype=np.int64)
    quarter = np.minimum(ctx.clock.wall(day, starts) // _QUARTER, 95)
    weight = _QUARTER_ACTIVITY[quarter] * ctx.awake(starts)
    today = p.daily_steps * r.lognormal(0, 0.3) * (0.85 if day.day.weekday() >= 5 else 1.0)
    lam = today * weight / max(float(weight.sum()), 1e-9)
    # Gamma noise makes activity bursty; a share of awake quarters is spent sitting still.
    lam = lam * r.gamma(0.7, 1 / 0.7, len(starts)) * (r.random(len(starts)) > 0.25)
    lam = np.minimum(lam, 1700)  # about as much as brisk walking for fifteen minutes
    workout = np.zeros(len(starts), dtype=bool)
    awake_idx = np.flatnonzero(weight > 0)
    if len(awake_idx) > 8 and r.random() < p.workout_prob:
        first = int(r.choice(awake_idx[:-4]))
        span = int(r.integers(2, 5))
        workout[first : first + span] = True
        lam[first : first + span] = r.uniform(1300, 2000, span)
    return starts, r.poisson(lam), workout


def _activity_rows(
    ctx: _DayContext, starts: np.ndarray, steps: np.ndarray, workout: np.ndarray
) -> list[Row]:
    p, uid, src = ctx.p, ctx.p.user_id, ctx.p.wearable
    keep = steps > 0
    starts, steps, workout = starts[keep], steps[keep], workout[keep]
    n = len(starts)
    start_text = ctx.clock.stamps(ctx.day, starts)
    end_text = _ends(ctx, starts + _QUARTER)
    stride = p.stride_m * np.where(workout, 1.45, 1.0) * ctx.r.uniform(0.92, 1.08, n)
    distance = np.round(steps * stride, 1).tolist()
    # Two decimals, as apps keep them: a quarter hour with a few steps burns a fraction of a kcal.
    kcal = steps * p.weight_kg * 0.00055 * ctx.r.uniform(0.9, 1.1, n)
    kcal = np.maximum(np.round(kcal, 2), 0.01).tolist()
    rows = _interval_rows(uid, "steps", "count", src, start_text, end_text, steps.tolist())
    rows += _interval_rows(uid, "distance", "m", src, start_text, end_text, distance)
    rows += _interval_rows(uid, "active_energy", "kcal", src, start_text, end_text, kcal)
    return rows


def _ends(ctx: _DayContext, ends: np.ndarray) -> list[str]:
    """Interval ends; the last one of the day is the next day's first instant."""
    inside = ends < ctx.day.end
    if bool(inside.all()):
        return ctx.clock.stamps(ctx.day, ends)
    text = ctx.clock.stamps(ctx.day, ends[inside])
    text += [ctx.clock.stamp(int(t), ctx.day) for t in ends[~inside].tolist()]
    return text


def _heart_rate_rows(
    ctx: _DayContext, starts: np.ndarray, steps: np.ndarray, rate: Rate
) -> list[Row]:
    day, r, p = ctx.day, ctx.r, ctx.p
    lo, hi = (150, 330) if rate == "device" else (1500, 2100)
    n = int((day.end - day.start) / lo) + 2
    ts = day.start + int(r.uniform(0, hi)) + np.cumsum(r.uniform(lo, hi, n).astype(np.int64))
    ts = ts[ts < day.end]
    ts = ts[ctx.awake(ts)]
    quarter = (ts - day.start) // _QUARTER
    wall_hour = ctx.clock.wall(day, ts) / 3600
    curve = 5 * np.sin(np.pi * (wall_hour - 8) / 12)  # a little higher in the afternoon
    effort = np.minimum(steps[quarter] * 0.05, 95)
    bpm = p.resting_hr + 12 + curve + effort + r.normal(0, 4, len(ts))
    values = np.clip(np.rint(bpm), 38, 205).astype(np.int64).tolist()
    stamps = ctx.clock.stamps(day, ts)
    return _point_rows(p.user_id, "heart_rate", "bpm", p.wearable, stamps, values)


def _night_rows(ctx: _DayContext) -> list[Row]:
    """Readings the watch takes while the user sleeps before today's wake-up."""
    day, r, p, clock = ctx.day, ctx.r, ctx.p, ctx.clock
    asleep_from = max(day.start, clock.to_epoch(day, max(ctx.prev_bed_wall - 86400, 0)))
    span = max(ctx.wake - asleep_from, 600)
    times = np.sort(ctx.wake - (r.uniform(0.1, 0.7, 4) * span).astype(np.int64))
    times = np.maximum(times, day.start)
    stamps = clock.stamps(day, times)
    uid, src = p.user_id, p.wearable
    hrv = [round(float(np.clip(p.hrv_ms * r.lognormal(0, 0.18), 8, 250)), 1)]
    resp = [round(float(np.clip(r.normal(14.5, 1.0), 9, 24)), 1)]
    spo2 = np.clip(np.rint(r.normal(96.5, 1.2, 2)), 88, 100).astype(np.int64).tolist()
    rhr = [round(p.resting_hr + float(r.normal(0, 1.8)))]
    wake_stamp = clock.stamps(day, np.array([ctx.wake]))
    return (
        _point_rows(uid, "hrv", "ms", src, stamps[:1], hrv)
        + _point_rows(uid, "respiratory_rate", "breaths/min", src, stamps[1:2], resp)
        + _point_rows(uid, "spo2", "%", src, stamps[2:4], spo2)
        + _point_rows(uid, "resting_heart_rate", "bpm", src, wake_stamp, rhr)
    )


def _sleep_row(
    ctx: _DayContext, bed_day: _Day, bed_wall: int, next_wake: tuple[_Day, int]
) -> list[Row]:
    clock, r, p = ctx.clock, ctx.r, ctx.p
    start = clock.to_epoch(bed_day, bed_wall)
    end = clock.to_epoch(*next_wake)
    # Time asleep is a bit less than time in bed, as devices report it.
    hours = round((end - start) / 3600 * float(r.uniform(0.86, 0.96)), 2)
    begin_text, end_text = [clock.stamp(start, ctx.day)], [clock.stamp(end, ctx.day)]
    return _interval_rows(
        p.user_id, "sleep_duration", "h", p.wearable, begin_text, end_text, [hours]
    )


def _sleep_rows(ctx: _DayContext, wake_today: int, wake_tomorrow: int) -> list[Row]:
    """Sleep sessions that *start* on this local day, so each is emitted exactly once."""
    clock, day = ctx.clock, ctx.day
    tomorrow = clock.day(day.day + timedelta(days=1))
    rows: list[Row] = []
    if ctx.prev_bed_wall >= 86400:  # last night's bedtime was after midnight, i.e. today
        rows += _sleep_row(ctx, day, ctx.prev_bed_wall - 86400, (day, wake_today))
    if ctx.bed_wall < 86400:
        rows += _sleep_row(ctx, day, ctx.bed_wall, (tomorrow, wake_tomorrow))
    return rows


def _morning(ctx: _DayContext, low_min: float, high_min: float) -> int:
    t = ctx.wake + int(ctx.r.uniform(low_min, high_min) * 60)
    return min(t, ctx.day.end - 1)


def _body_rows(ctx: _DayContext) -> list[Row]:
    """Scale, cuff, thermometer and glucometer readings: sparse, mostly in the morning."""
    p, r, clock, day = ctx.p, ctx.r, ctx.clock, ctx.day
    uid, rows = p.user_id, []
    ordinal = day.day.toordinal()
    kg = p.weight_kg + 1.2 * math.sin(2 * math.pi * ordinal / 365 + p.user_id) + r.normal(0, 0.35)
    if r.random() < (0.85 if p.scale_source else 0.3):
        stamp = [clock.stamp(_morning(ctx, 5, 40), day)]
        source = p.scale_source or "manual"
        value = kg * 2.20462 if p.weight_unit == "lb" else kg
        rows += _point_rows(uid, "weight", p.weight_unit, source, stamp, [round(value, 1)])
        if p.scale_source:
            bmi = round(kg / (p.height_cm / 100) ** 2, 1)
            fat = round(p.body_fat + 0.4 * (kg - p.weight_kg) + r.normal(0, 0.6), 1)
            rows += _point_rows(uid, "bmi", "kg/m2", source, stamp, [bmi])
            rows += _point_rows(uid, "body_fat", "%", source, stamp, [fat])
    if ordinal % 90 == p.user_id % 90:  # height is re-entered rarely
        stamp = [clock.stamp(_morning(ctx, 60, 600), day)]
        height = round(p.height_cm + r.normal(0, 0.4), 1)
        rows += _point_rows(uid, "height", "cm", "manual", stamp, [height])
    if r.random() < 0.4:  # a few blood pressure checks a week
        stamp = [clock.stamp(_morning(ctx, 10, 60), day)]
        noise = r.normal(0, 7)
        sys_ = round(float(np.clip(p.systolic + noise, 85, 200)))
        dia = round(float(np.clip(p.diastolic + 0.5 * noise + r.normal(0, 4), 50, 125)))
        rows += _point_rows(uid, "blood_pressure_systolic", "mmHg", p.bp_source, stamp, [sys_])
        rows += _point_rows(uid, "blood_pressure_diastolic", "mmHg", p.bp_source, stamp, [dia])
    if r.random() < 0.12:
        celsius = r.normal(36.7, 0.25) + (1.6 if r.random() < 0.05 else 0.0)
        value = celsius * 9 / 5 + 32 if p.temp_unit == "degF" else celsius
        stamp = [clock.stamp(_morning(ctx, 30, 720), day)]
        temp = [round(value, 1)]
        rows += _point_rows(uid, "body_temperature", p.temp_unit, "manual", stamp, temp)
    if p.glucometer_source:
        rows += _glucose_rows(ctx)
    return rows


def _glucose_rows(ctx: _DayContext) -> list[Row]:
    p, r = ctx.p, ctx.r
    base = 145.0 if p.diabetic else 94.0
    readings = [(15.0, 30.0, base)]  # fasting, soon after waking
    if p.diabetic:
        readings += [(330.0, 390.0, base + 55), (720.0, 800.0, base + 45)]  # after lunch, dinner
    times, values = [], []
    for low, high, mean in readings:
        if r.random() < 0.8:
            times.append(_morning(ctx, low, high))
            values.append(float(np.clip(r.normal(mean, mean * 0.15), 45, 450)))
    if p.glucose_unit == "mmol/L":
        values_out: list[Any] = [round(v / 18.016, 1) for v in values]
    else:
        values_out = [round(v) for v in values]
    stamps = [ctx.clock.stamp(t, ctx.day) for t in times]
    return _point_rows(
        p.user_id, "blood_glucose", p.glucose_unit, p.glucometer_source or "", stamps, values_out
    )


def iter_vitals(
    users: Iterable[Mapping[str, Any]],
    start: date,
    days: int,
    seed: int,
    rate: Rate = "device",
) -> Iterator[Row]:
    """Vitals rows, user by user and day by day.

    "device" samples heart rate every 2.5-5.5 minutes while awake (about 400 rows per user-day,
    ~150k a year); "light" every 25-35 minutes (about 200 rows per user-day) for quick demos.
    """
    if rate not in ("device", "light"):
        raise ValueError(f"rate must be 'device' or 'light', not {rate!r}")
    for user in users:
        p = _profile(user, seed)
        clock = _Clock(p.zone)
        schedule = {d: _schedule(seed, p, start + timedelta(days=d)) for d in (-1, 0)}
        for i in range(days):
            d = start + timedelta(days=i)
            schedule[i + 1] = _schedule(seed, p, d + timedelta(days=1))
            yield from _vitals_day(seed, p, clock, d, schedule, i, rate)
            del schedule[i - 1]


def _vitals_day(
    seed: int,
    p: _Profile,
    clock: _Clock,
    d: date,
    schedule: dict[int, tuple[int, int]],
    i: int,
    rate: Rate,
) -> list[Row]:
    day = clock.day(d)
    (wake_wall, bed_wall), prev_bed = schedule[i], schedule[i - 1][1]
    ctx = _DayContext(
        p=p,
        clock=clock,
        day=day,
        r=_rng(seed, _TAG_VITALS, p.user_id, d.toordinal()),
        wake=clock.to_epoch(day, wake_wall),
        bed_wall=bed_wall,
        prev_bed_wall=prev_bed,
    )
    starts, steps, workout = _activity(ctx)
    rows = _night_rows(ctx)
    rows += _heart_rate_rows(ctx, starts, steps, rate)
    rows += _activity_rows(ctx, starts, steps, workout)
    rows += _body_rows(ctx)
    rows += _sleep_rows(ctx, wake_wall, schedule[i + 1][0])
    return rows


# --------------------------------------------------------------------------------------------
# Labs


@dataclass(frozen=True, slots=True)
class _Analyte:
    """One lab analyte: its distribution in a canonical unit and how each report style writes it.

    `names` maps style -> (test name, unit, factor from the canonical unit, decimals). The
    factor may be a callable-free linear factor only; HbA1c in mmol/mol is special-cased.
    """

    key: str
    panel: str
    mean: float
    sd: float
    low: float | None
    high: float | None
    names: dict[str, tuple[str, str, float, int]]


def _a(key: str, panel: str, mean: float, sd: float, ref: tuple[float | None, float | None],
       us: tuple[str, str, float, int], india: tuple[str, str, float, int],
       si: tuple[str, str, float, int]) -> _Analyte:  # fmt: skip
    return _Analyte(key, panel, mean, sd, ref[0], ref[1], {"us": us, "in": india, "si": si})


# Names and units as real reports print them: US reference labs, Indian labs, UK/EU (SI units).
# fmt: off
_ANALYTES: tuple[_Analyte, ...] = (
    _a("hemoglobin", "cbc", 14.5, 1.2, (13.0, 17.0), ("Hemoglobin", "g/dL", 1, 1),
       ("Haemoglobin (Hb)", "g/dL", 1, 1), ("Haemoglobin", "g/L", 10, 0)),
    _a("wbc", "cbc", 7.0, 1.8, (4.0, 11.0), ("WBC", "K/uL", 1, 1),
       ("Total Leucocyte Count", "cells/cumm", 1000, -1), ("White cell count", "10^9/L", 1, 1)),
    _a("rbc", "cbc", 4.9, 0.4, (4.5, 5.5), ("RBC", "M/uL", 1, 2),
       ("RBC Count", "million/cumm", 1, 2), ("Red cell count", "10^12/L", 1, 2)),
    _a("platelets", "cbc", 250, 55, (150, 410), ("Platelets", "K/uL", 1, 0),
       ("Platelet Count", "lakhs/cumm", 0.01, 2), ("Platelet count", "10^9/L", 1, 0)),
    _a("hematocrit", "cbc", 43, 3.5, (40, 50), ("Hematocrit", "%", 1, 1),
       ("PCV (Haematocrit)", "%", 1, 1), ("Haematocrit", "L/L", 0.01, 3)),
    _a("mcv", "cbc", 88, 5, (83, 101), ("MCV", "fL", 1, 1), ("MCV", "fL", 1, 1),
       ("Mean cell volume", "fL", 1, 0)),
    _a("neutrophils", "cbc", 58, 8, (40, 80), ("Neutrophils %", "%", 1, 1),
       ("Neutrophils", "%", 1, 0), ("Neutrophils", "%", 1, 1)),
    _a("lymphocytes", "cbc", 31, 7, (20, 40), ("Lymphocytes %", "%", 1, 1),
       ("Lymphocytes", "%", 1, 0), ("Lymphocytes", "%", 1, 1)),
    _a("ldl", "lipid", 115, 28, (None, 100), ("LDL Cholesterol Calc", "mg/dL", 1, 0),
       ("LDL Cholesterol (Direct)", "mg/dL", 1, 0), ("LDL cholesterol", "mmol/L", 1 / 38.67, 1)),
    _a("hdl", "lipid", 50, 11, (40, None), ("HDL Cholesterol", "mg/dL", 1, 0),
       ("HDL Cholesterol", "mg/dL", 1, 0), ("HDL cholesterol", "mmol/L", 1 / 38.67, 1)),
    _a("triglycerides", "lipid", 135, 45, (None, 150), ("Triglycerides", "mg/dL", 1, 0),
       ("S. Triglycerides", "mg/dL", 1, 0), ("Triglycerides", "mmol/L", 1 / 88.57, 1)),
    _a("cholesterol", "lipid", 190, 30, (None, 200), ("Cholesterol, Total", "mg/dL", 1, 0),
       ("Total Cholesterol", "mg/dL", 1, 0), ("Total cholesterol", "mmol/L", 1 / 38.67, 1)),
    _a("vldl", "lipid", 27, 9, (5, 40), ("VLDL Cholesterol Cal", "mg/dL", 1, 0),
       ("VLDL Cholesterol", "mg/dL", 1, 0), ("VLDL cholesterol", "mmol/L", 1 / 38.67, 2)),
    _a("alt", "lft", 27, 11, (None, 44), ("ALT (SGPT)", "IU/L", 1, 0),
       ("SGPT (ALT)", "U/L", 1, 1), ("Alanine aminotransferase", "IU/L", 1, 0)),
    _a("ast", "lft", 25, 8, (None, 40), ("AST (SGOT)", "IU/L", 1, 0),
       ("SGOT (AST)", "U/L", 1, 1), ("Aspartate aminotransferase", "IU/L", 1, 0)),
    _a("alp", "lft", 80, 20, (44, 147), ("Alkaline Phosphatase", "IU/L", 1, 0),
       ("Alkaline Phosphatase", "U/L", 1, 0), ("Alkaline phosphatase", "IU/L", 1, 0)),
    _a("bilirubin", "lft", 0.7, 0.25, (0.2, 1.2), ("Bilirubin, Total", "mg/dL", 1, 1),
       ("S. Bilirubin (Total)", "mg/dL", 1, 2), ("Bilirubin", "umol/L", 17.1, 0)),
    _a("albumin", "lft", 4.3, 0.3, (3.5, 5.2), ("Albumin", "g/dL", 1, 1),
       ("S. Albumin", "g/dL", 1, 2), ("Albumin", "g/L", 10, 0)),
    _a("creatinine", "kft", 0.95, 0.17, (0.7, 1.3), ("Creatinine", "mg/dL", 1, 2),
       ("S. Creatinine", "mg/dL", 1, 2), ("Creatinine", "umol/L", 88.4, 0)),
    _a("bun", "kft", 14, 4, (7, 20), ("BUN", "mg/dL", 1, 0),
       ("Blood Urea", "mg/dL", 2.14, 1), ("Urea", "mmol/L", 0.357, 1)),
    _a("uric_acid", "kft", 5.4, 1.2, (3.5, 7.2), ("Uric Acid", "mg/dL", 1, 1),
       ("S. Uric Acid", "mg/dL", 1, 2), ("Urate", "umol/L", 59.48, 0)),
    _a("sodium", "kft", 140, 2.2, (135, 145), ("Sodium", "mmol/L", 1, 0),
       ("S. Sodium (Na+)", "mEq/L", 1, 1), ("Sodium", "mmol/L", 1, 0)),
    _a("potassium", "kft", 4.3, 0.35, (3.5, 5.1), ("Potassium", "mmol/L", 1, 1),
       ("S. Potassium (K+)", "mEq/L", 1, 2), ("Potassium", "mmol/L", 1, 1)),
    _a("egfr", "kft", 95, 15, (90, None), ("eGFR", "mL/min/1.73m2", 1, 0),
       ("eGFR (CKD-EPI)", "mL/min/1.73m2", 1, 0), ("eGFR", "mL/min/1.73m2", 1, 0)),
    _a("hba1c", "hba1c", 5.4, 0.3, (4.0, 5.6), ("Hemoglobin A1c", "%", 1, 1),
       ("Glycosylated Haemoglobin (HbA1c)", "%", 1, 1), ("HbA1c", "mmol/mol", 1, 0)),
    _a("glucose_fasting", "hba1c", 92, 8, (70, 99), ("Glucose, Fasting", "mg/dL", 1, 0),
       ("Fasting Blood Sugar", "mg/dL", 1, 0), ("Fasting glucose", "mmol/L", 1 / 18.016, 1)),
    _a("tsh", "thyroid", 2.1, 0.9, (0.4, 4.5), ("TSH", "uIU/mL", 1, 2),
       ("T.S.H.", "uIU/mL", 1, 2), ("TSH", "mU/L", 1, 2)),
    _a("ft4", "thyroid", 1.2, 0.18, (0.8, 1.8), ("T4, Free", "ng/dL", 1, 2),
       ("Free T4 (FT4)", "ng/dL", 1, 2), ("Free T4", "pmol/L", 12.87, 1)),
    _a("t3", "thyroid", 120, 20, (80, 200), ("T3, Total", "ng/dL", 1, 0),
       ("T3 (Total)", "ng/dL", 1, 1), ("Total T3", "nmol/L", 0.01536, 2)),
    _a("vitamin_d", "vitamins", 29, 9, (30, 100), ("Vitamin D, 25-Hydroxy", "ng/mL", 1, 1),
       ("25-OH Vitamin D (Total)", "ng/mL", 1, 2), ("Vitamin D (25-OH)", "nmol/L", 2.496, 0)),
    _a("b12", "vitamins", 420, 140, (200, 900), ("Vitamin B12", "pg/mL", 1, 0),
       ("Vitamin B12 (Cyanocobalamin)", "pg/mL", 1, 0), ("Vitamin B12", "ng/L", 1, 0)),
)
# fmt: on
_PANELS: tuple[tuple[str, float], ...] = (  # panel and how often a visit includes it
    ("cbc", 0.75),
    ("lipid", 0.6),
    ("lft", 0.5),
    ("kft", 0.6),
    ("hba1c", 0.45),
    ("thyroid", 0.35),
    ("vitamins", 0.3),
    ("urine", 0.4),
)  # fmt: skip


def _lab_distribution(p: _Profile, a: _Analyte) -> tuple[float, float]:
    """Mean and SD of an analyte for this user, shifted by sex and conditions."""
    shifts: dict[str, tuple[float, float]] = {}
    if p.female:
        shifts |= {"hemoglobin": (13.0, 1.0), "rbc": (4.4, 0.35), "hematocrit": (39, 3),
                   "creatinine": (0.75, 0.13), "uric_acid": (4.4, 1.0)}  # fmt: skip
    if p.diabetic:
        shifts |= {"hba1c": (7.6, 1.0), "glucose_fasting": (145, 30), "triglycerides": (185, 60)}
    if p.dyslipidemic:
        shifts |= {"ldl": (165, 25), "hdl": (40, 8), "triglycerides": (215, 60)}
    if p.hypothyroid:
        shifts |= {"tsh": (7.5, 2.5), "ft4": (0.9, 0.15)}
    if p.vitamin_d_low:
        shifts |= {"vitamin_d": (13, 4)}
    return shifts.get(a.key, (a.mean, a.sd))


def _egfr(p: _Profile, creatinine: float) -> float:
    """CKD-EPI 2021, so eGFR agrees with the creatinine on the same report."""
    k, alpha = (0.7, -0.241) if p.female else (0.9, -0.302)
    ratio = creatinine / k
    value = 142 * min(ratio, 1) ** alpha * max(ratio, 1) ** -1.2 * 0.9938**p.age
    return value * (1.012 if p.female else 1.0)


def _canonical_values(
    p: _Profile, base: dict[str, float], r: np.random.Generator
) -> dict[str, float]:
    """Canonical values of one visit: a stable per-user level plus visit-to-visit noise."""
    values: dict[str, float] = {}
    for a in _ANALYTES:
        mean, sd = _lab_distribution(p, a)
        values[a.key] = max(mean + sd * (0.8 * base[a.key] + 0.45 * r.normal()), 0.05 * mean)
    # Keep the arithmetic of a lipid profile and the kidney panel consistent, as labs print it.
    values["vldl"] = values["triglycerides"] / 5
    values["cholesterol"] = values["ldl"] + values["hdl"] + values["vldl"]
    values["egfr"] = min(_egfr(p, values["creatinine"]), 140)
    return values


def _style_value(a: _Analyte, style: str, canonical: float) -> float | int:
    _, unit, factor, decimals = a.names[style]
    value = (canonical - 2.15) * 10.929 if unit == "mmol/mol" else canonical * factor
    rounded = round(value, decimals)
    return int(rounded) if decimals <= 0 else rounded


# Reports print sex-specific ranges for these analytes.
_FEMALE_RANGES: dict[str, tuple[float, float]] = {
    "hemoglobin": (12.0, 15.5),
    "rbc": (3.8, 4.8),
    "hematocrit": (36, 46),
    "creatinine": (0.5, 1.1),
    "uric_acid": (2.6, 6.0),
}


def _reference_range(a: _Analyte, style: str, female: bool) -> str:
    """As printed on reports: "13.0 - 17.0", "< 200", "> 40"."""
    _, unit, factor, decimals = a.names[style]
    low, high = _FEMALE_RANGES.get(a.key, (a.low, a.high)) if female else (a.low, a.high)

    def fmt(x: float) -> str:
        value = (x - 2.15) * 10.929 if unit == "mmol/mol" else x * factor
        places = max(decimals, 0)
        return f"{round(value, places):.{places}f}"

    if low is None and high is not None:
        return f"< {fmt(high)}"
    if high is None and low is not None:
        return f"> {fmt(low)}"
    return f"{fmt(low or 0)} - {fmt(high or 0)}"


def _urine_results(p: _Profile, r: np.random.Generator) -> list[tuple[str, Any, str | None, str]]:
    """Urinalysis: mostly qualitative values ("Nil", "Negative", "Trace") without units."""
    negative = "Nil" if p.style == "in" else "Negative"
    absent = "Absent" if p.style == "in" else "Negative"
    sugar = negative
    if p.diabetic and r.random() < 0.35:
        sugar = str(r.choice(["Trace", "1+", "2+"]))
    protein = "Trace" if r.random() < 0.1 else negative
    names = {
        "in": ("Colour", "Urine Sugar", "Urine Albumin", "Ketone Bodies", "Specific Gravity",
               "Reaction (pH)", "Pus Cells"),
        "us": ("Color, Urine", "Glucose, Urine", "Protein, Urine", "Ketones, Urine",
               "Specific Gravity, Urine", "pH, Urine", "WBC, Urine"),
        "si": ("Urine colour", "Urine glucose", "Urine protein", "Urine ketones",
               "Urine specific gravity", "Urine pH", "Urine leucocytes"),
    }[p.style]  # fmt: skip
    pus = f"{int(r.integers(0, 3))}-{int(r.integers(3, 6))}"
    return [
        (names[0], str(r.choice(["Pale Yellow", "Straw", "Yellow"])), None, "Pale Yellow"),
        (names[1], sugar, None, negative),
        (names[2], protein, None, negative),
        (names[3], absent, None, absent),
        (names[4], round(float(r.choice(np.arange(1.005, 1.031, 0.005))), 3), None,
         "1.005 - 1.030"),
        (names[5], round(float(r.choice(np.arange(5.0, 8.0, 0.5))), 1), None, "4.6 - 8.0"),
        (names[6], pus, "/hpf", "0 - 5"),
    ]  # fmt: skip


def _visit_days(seed: int, p: _Profile, start: date, days: int) -> list[date]:
    """About 3-4 visits a year, decided per calendar month so any window agrees with a longer one.

    A window with no visit gets one anyway (a demo user without labs is useless).
    """
    visits: list[date] = []
    end = start + timedelta(days=days)
    y, m = start.year, start.month
    while date(y, m, 1) < end:
        r = _rng(seed, _TAG_LABS, p.user_id, y * 12 + m)
        if r.random() < 0.3:
            visit = date(y, m, int(r.integers(1, 29)))
            if start <= visit < end:
                visits.append(visit)
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    if not visits and days > 0:
        offset = _rng(seed, _TAG_LABS, p.user_id, start.toordinal()).integers(0, days)
        visits.append(start + timedelta(days=int(offset)))
    return visits


def _visit_panels(p: _Profile, r: np.random.Generator) -> list[str]:
    panels = [name for name, chance in _PANELS if r.random() < chance]
    if p.diabetic and "hba1c" not in panels:
        panels.append("hba1c")  # diabetics are followed up with HbA1c every visit
    if p.hypothyroid and "thyroid" not in panels:
        panels.append("thyroid")
    return panels or ["cbc"]


def _collected_at(p: _Profile, clock: _Clock, visit: date, r: np.random.Generator) -> str:
    """Indian reports often print just the date; portals export a datetime with offset."""
    if (p.style == "in" and r.random() < 0.6) or r.random() < 0.2:
        return visit.isoformat()
    day = clock.day(visit)
    wall = int(r.uniform(7 * 3600, 10.5 * 3600)) // 60 * 60  # fasting, morning draw
    return clock.stamp(clock.to_epoch(day, wall), day)


def iter_labs(
    users: Iterable[Mapping[str, Any]], start: date, days: int, seed: int
) -> Iterator[Row]:
    """Lab results, a report (several panels) per visit, a few visits per user per year."""
    for user in users:
        p = _profile(user, seed)
        clock = _Clock(p.zone)
        base_r = _rng(seed, _TAG_LAB_BASE, p.user_id)
        base = {a.key: float(base_r.normal()) for a in _ANALYTES}
        for visit in _visit_days(seed, p, start, days):
            r = _rng(seed, _TAG_LABS, p.user_id, visit.toordinal())
            yield from _report_rows(p, clock, visit, base, r)


def _report_rows(
    p: _Profile, clock: _Clock, visit: date, base: dict[str, float], r: np.random.Generator
) -> list[Row]:
    lab = {"us": "LC", "in": "SRL", "si": "PATH"}[p.style]
    report_id = f"{lab}-{visit:%y%m%d}-{p.user_id:05d}{int(r.integers(100, 1000))}"
    collected = _collected_at(p, clock, visit, r)
    panels = _visit_panels(p, r)
    canonical = _canonical_values(p, base, r)
    results: list[tuple[str, Any, str | None, str]] = []
    for a in _ANALYTES:
        if a.panel in panels:
            name, unit, _, _ = a.names[p.style]
            value = _style_value(a, p.style, canonical[a.key])
            results.append((name, value, unit, _reference_range(a, p.style, p.female)))
    if "urine" in panels:
        results += _urine_results(p, r)
    return [
        {
            "user_id": p.user_id,
            "report_id": report_id,
            "test_name": name,
            "value": value,
            "unit": unit,
            "reference_range": ref,
            "collected_at": collected,
        }
        for name, value, unit, ref in results
    ]


# --------------------------------------------------------------------------------------------
# Nutrition

# name, meal types it is eaten at, and per serving: kcal, protein, carbs, fat, fiber, sugar (g),
# sodium (mg). Rough label values; what matters is plausibility, not a nutrition database.
_Food = tuple[str, str, float, float, float, float, float, float, float]
_FOODS: dict[str, tuple[_Food, ...]] = {
    "in": (
        ("Masala Dosa", "B", 387, 8.0, 52, 16, 4.0, 3.0, 620),
        ("Idli (2 pcs) with Sambar", "B", 250, 8.5, 46, 3.5, 5.0, 4.0, 540),
        ("Poha", "B", 270, 5.5, 45, 8.0, 2.5, 3.0, 430),
        ("Aloo Paratha", "BL", 320, 7.0, 45, 13, 4.0, 2.0, 480),
        ("Masala Chai", "BS", 105, 3.5, 14, 4.0, 0.0, 12, 45),
        ("Dal Tadka", "LD", 198, 10, 26, 6.5, 7.0, 2.5, 560),
        ("Chapati", "LD", 120, 3.5, 20, 3.5, 3.0, 0.5, 190),
        ("Jeera Rice", "LD", 245, 4.5, 45, 5.0, 1.0, 0.5, 380),
        ("Paneer Butter Masala", "LD", 390, 15, 14, 31, 2.5, 7.0, 780),
        ("Chicken Curry", "LD", 320, 27, 9.0, 20, 2.0, 4.0, 690),
        ("Rajma Chawal", "L", 420, 14, 72, 8.0, 11, 4.0, 650),
        ("Curd (Dahi)", "LDS", 98, 5.5, 7.0, 5.0, 0.0, 7.0, 60),
        ("Samosa", "S", 262, 4.5, 31, 13.5, 2.5, 1.5, 420),
        ("Banana", "BS", 105, 1.3, 27, 0.4, 3.1, 14, 1),
    ),
    "western": (
        ("Oatmeal with Berries", "B", 300, 9.0, 54, 5.5, 8.0, 14, 120),
        ("Scrambled Eggs (2)", "B", 180, 12.5, 2.0, 13.5, 0.0, 1.5, 340),
        ("Whole Wheat Toast", "BS", 140, 6.0, 24, 2.0, 4.0, 3.0, 260),
        ("Greek Yogurt", "BS", 130, 17, 7.0, 3.5, 0.0, 6.0, 65),
        ("Black Coffee", "BLS", 5, 0.3, 0.0, 0.0, 0.0, 0.0, 5),
        ("Latte", "BS", 190, 12, 18, 7.0, 0.0, 17, 170),
        ("Grilled Chicken Salad", "LD", 350, 34, 14, 17, 5.0, 6.0, 620),
        ("Turkey Sandwich", "L", 420, 28, 44, 14, 5.0, 6.0, 1150),
        ("Spaghetti Bolognese", "LD", 620, 30, 72, 22, 6.0, 11, 890),
        ("Salmon with Rice", "D", 560, 36, 52, 21, 2.0, 1.5, 480),
        ("Cheeseburger", "LD", 540, 29, 40, 29, 2.0, 9.0, 1010),
        ("Apple", "S", 95, 0.5, 25, 0.3, 4.4, 19, 2),
        ("Almonds (28 g)", "S", 164, 6.0, 6.0, 14, 3.5, 1.2, 0),
        ("Protein Bar", "S", 210, 20, 23, 7.0, 5.0, 6.0, 190),
    ),
}
_MEAL_CODE = {"breakfast": "B", "lunch": "L", "dinner": "D", "snack": "S"}
_NUTRIENTS = ("calories", "protein_g", "carbs_g", "fat_g", "fiber_g", "sugar_g", "sodium_mg")


def _menu(p: _Profile) -> tuple[_Food, ...]:
    home = _FOODS["in"] if p.style == "in" else _FOODS["western"]
    return home + home + (_FOODS["western"] if p.style == "in" else _FOODS["in"])[:4]


def _food_row(
    p: _Profile, d: date, meal: str, food: _Food, r: np.random.Generator, skip: float
) -> Row:
    """One logged item. Apps leave nutrients they do not know empty (null), never 0."""
    portion = float(r.choice([0.5, 1.0, 1.0, 1.0, 1.5, 2.0]))
    amounts = [x * portion for x in food[2:]]
    # A nutrient the food has never rounds down to 0: in this data 0 means a real zero.
    values: list[float | int | None] = [
        max(round(amounts[0]), 1) if amounts[0] else 0,
        *(max(round(x, 1), 0.1) if x else 0.0 for x in amounts[1:6]),
        max(round(amounts[6]), 1) if amounts[6] else 0,
    ]
    if r.random() < 0.04:  # "quick add": calories only
        values = [values[0], None, None, None, None, None, None]
    else:
        for k in (4, 5, 6):  # fiber, sugar, sodium: the fields most often missing
            if r.random() < skip:
                values[k] = None
    row: Row = {"user_id": p.user_id, "meal_date": d.isoformat(), "meal_type": meal,
                "food_name": food[0]}  # fmt: skip
    row.update(zip(_NUTRIENTS, values, strict=True))
    return row


def _day_meals(p: _Profile, d: date, r: np.random.Generator, skip: float) -> list[Row]:
    menu = _menu(p)
    rows: list[Row] = []
    previous_lunch: list[_Food] = []
    for meal in ("breakfast", "lunch", "dinner", "snack"):
        if meal == "snack":
            count = int(r.integers(0, 3))
        elif r.random() < 0.08:
            continue  # skipped or not logged
        else:
            count = int(r.integers(1, 4))
        options = [f for f in menu if _MEAL_CODE[meal] in f[1]]
        chosen = [options[i] for i in r.choice(len(options), size=count, replace=False)]
        if meal == "dinner" and previous_lunch and r.random() < 0.12:
            chosen = previous_lunch  # leftovers: the same food twice a day, two meals
        if meal == "lunch":
            previous_lunch = chosen
        rows += [_food_row(p, d, meal, food, r, skip) for food in chosen]
    return rows


def iter_nutrition(
    users: Iterable[Mapping[str, Any]], start: date, days: int, seed: int
) -> Iterator[Row]:
    """Food log entries; users skip logging some days, as they do."""
    for user in users:
        p = _profile(user, seed)
        # Each user's app fills the optional nutrients with its own completeness.
        skip = float(_rng(seed, _TAG_FOOD, p.user_id).uniform(0.05, 0.5))
        for i in range(days):
            d = start + timedelta(days=i)
            r = _rng(seed, _TAG_FOOD, p.user_id, d.toordinal())
            if r.random() < 0.15:
                continue
            yield from _day_meals(p, d, r, skip)


# --------------------------------------------------------------------------------------------
# Files


def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> int:
    """Write one compact JSON object per line; returns the number of lines."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
    count = 0
    with path.open("w", encoding="utf-8", newline="\n") as out:
        batch: list[str] = []
        for row in rows:
            batch.append(encode(row))
            if len(batch) >= 10000:
                out.write("\n".join(batch) + "\n")
                count += len(batch)
                batch.clear()
        if batch:
            out.write("\n".join(batch) + "\n")
            count += len(batch)
    return count


def with_entry_ids(rows: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """Rows with the source record's id a backend would send (`entry_id`): derived from the
    record itself, so the same dataset written twice carries the same ids and ingesting it twice
    stores it once; identical records (the same meal eaten twice) get distinct ids."""
    seen: Counter[str] = Counter()
    for row in rows:
        digest = hashlib.sha256(json.dumps(row, sort_keys=True).encode()).hexdigest()[:24]
        seen[digest] += 1
        occurrence = seen[digest]
        yield {**row, "entry_id": digest if occurrence == 1 else f"{digest}-{occurrence}"}


def write_sample_dataset(
    out_dir: str | Path,
    n_users: int,
    start: date,
    days: int,
    seed: int,
    rate: Rate = "device",
) -> dict[str, Path]:
    """users.jsonl, vitals.jsonl, labs.jsonl, nutrition.jsonl in `out_dir`; returns the paths."""
    out = Path(out_dir)
    users = generate_users(n_users, seed)
    sources: dict[str, Iterable[Mapping[str, Any]]] = {
        "users": users,
        "vitals": with_entry_ids(iter_vitals(users, start, days, seed, rate)),
        "labs": with_entry_ids(iter_labs(users, start, days, seed)),
        "nutrition": with_entry_ids(iter_nutrition(users, start, days, seed)),
    }
    paths: dict[str, Path] = {}
    for name, rows in sources.items():
        paths[name] = out / f"{name}.jsonl"
        write_jsonl(paths[name], rows)
    return paths
