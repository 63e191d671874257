"""An independent reference for the aggregates: plain Python over the same readings, with
zoneinfo for local time. It shares no code with the SQL engine on purpose."""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from tasks.precision import reported_precision, round_once

ZONES = {
    101: "America/New_York",
    102: "Asia/Kolkata",
    103: "Australia/Sydney",
    104: "Asia/Kathmandu",
    105: "UTC",
}
HEART_RATE = "8867-4"
WEIGHT = "29463-7"
STEPS = "55423-8"


@dataclass(frozen=True)
class Reading:
    user_id: int
    metric: str
    loinc: str
    value: float  # as sent
    unit: str
    canonical: float
    start: datetime

    def line(self) -> str:
        value = repr(self.value)
        return (
            f'{{"user_id": {self.user_id}, "metric": "{self.metric}", "value": {value}, '
            f'"unit": "{self.unit}", "start_time": "{self.start.isoformat()}"}}'
        )


# Instants chosen to cross: US DST start (2024-03-10) and end (2024-11-03), Sydney's DST end
# (2024-04-07) and start (2024-10-06), a leap day, month/quarter/year ends, Sunday/Monday.
CRITICAL_UTC = [
    "2023-12-31T23:30:00", "2024-01-01T00:30:00", "2024-02-28T23:59:00", "2024-02-29T12:00:00",
    "2024-03-01T00:10:00", "2024-03-10T06:30:00", "2024-03-10T07:30:00", "2024-03-31T23:50:00",
    "2024-04-06T15:30:00", "2024-04-06T16:30:00", "2024-06-30T23:45:00", "2024-07-01T00:15:00",
    "2024-10-05T16:30:00", "2024-10-05T15:30:00", "2024-11-03T05:30:00", "2024-11-03T06:30:00",
    "2024-11-03T05:59:00", "2024-11-03T06:01:00", "2024-12-29T23:59:00", "2024-12-30T00:01:00",
]  # fmt: skip


def generate(seed: int = 11, per_user: int = 400) -> list[Reading]:
    rng = random.Random(seed)
    readings: list[Reading] = []
    critical = [datetime.fromisoformat(t).replace(tzinfo=UTC) for t in CRITICAL_UTC]
    for user_id, zone in ZONES.items():
        tz = ZoneInfo(zone)
        instants = list(critical)
        base = datetime(2023, 12, 20, tzinfo=UTC)
        instants += [
            base + timedelta(minutes=rng.randrange(0, 60 * 24 * 400)) for _ in range(per_user)
        ]
        for i, instant in enumerate(instants):
            local = instant.astimezone(tz)
            kind = i % 3
            if kind == 0:
                value = float(rng.randrange(45, 180))
                readings.append(
                    Reading(user_id, "heart_rate", HEART_RATE, value, "bpm", value, local)
                )
            elif kind == 1:
                pounds = round(rng.uniform(120, 220), 1)
                readings.append(
                    Reading(user_id, "weight", WEIGHT, pounds, "lb", _kilograms(pounds), local)
                )
            else:
                value = float(rng.randrange(0, 3000))
                readings.append(Reading(user_id, "steps", STEPS, value, "count", value, local))
    return readings


def _kilograms(pounds: float) -> float:
    """A weight sent in lb, converted once and rounded once to the precision it was sent with
    (what the copy step does in SQL, here from tasks.precision's Python twin)."""
    decimals = reported_precision(None, pounds).decimals
    return round_once(pounds * 0.45359237, decimals, 0.45359237)[0]


@lru_cache(maxsize=2048)
def transitions(zone: str, year: int) -> tuple[datetime, ...]:
    """The instants in `year` (UTC) at which `zone`'s UTC offset changes, to the second.

    Found by stepping through the year an hour at a time and bisecting each change: it relies
    on nothing but zoneinfo's offset at an instant (two changes within one hour would be
    missed; the tz database has none in the years tested)."""
    tz = ZoneInfo(zone)

    def offset(seconds: int) -> timedelta | None:
        return datetime.fromtimestamp(seconds, UTC).astimezone(tz).utcoffset()

    start = int(datetime(year, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp())
    found = []
    before = offset(start)
    for hour in range(start + 3600, end + 3600, 3600):
        now = offset(hour)
        if now != before:
            low, high = hour - 3600, hour  # offset(low) == before, offset(high) == now
            while high - low > 1:
                mid = (low + high) // 2
                low, high = (mid, high) if offset(mid) == before else (low, mid)
            if high < end:
                found.append(datetime.fromtimestamp(high, UTC))
            before = now
    return tuple(found)


def hour_start(instant: datetime, zone: str) -> datetime:
    """The first instant of the hourly bucket that holds `instant`.

    An hourly bucket is the set of instants that share the local clock hour and the UTC offset.
    With whole-hour offset changes these are the hours of the clock (a fall-back day has 25).
    Where the offset changes inside a local hour (Australia/Lord_Howe's 30-minute shift, the
    end of Africa/Monrovia's -00:44:30 in 1972), the change starts a new bucket, so that hour
    is split in two buckets, each shorter than an hour, and no instant is in two buckets."""
    tz = ZoneInfo(zone)
    local = instant.astimezone(tz)
    since_hour = timedelta(
        minutes=local.minute, seconds=local.second, microseconds=local.microsecond
    )
    start = (instant - since_hour).astimezone(UTC)
    changes = transitions(zone, instant.year) + transitions(zone, instant.year - 1)
    changes = tuple(sorted(changes))
    latest = bisect_right(changes, instant.astimezone(UTC))
    if latest and changes[latest - 1] > start:
        return changes[latest - 1]
    return start


def local_day(instant: datetime, zone: str) -> date:
    return instant.astimezone(ZoneInfo(zone)).date()


def period_start(day: date, granularity: str) -> date:
    if granularity == "daily":
        return day
    if granularity == "weekly":
        return day - timedelta(days=day.weekday())
    if granularity == "monthly":
        return day.replace(day=1)
    if granularity == "quarterly":
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    if granularity == "yearly":
        return day.replace(month=1, day=1)
    raise ValueError(granularity)


@dataclass
class Stats:
    count: int = 0
    total: float = 0.0
    low: float = math.inf
    high: float = -math.inf
    last_time: datetime | None = None
    last: float = 0.0

    def add(self, value: float, at: datetime) -> None:
        self.count += 1
        self.total += value
        self.low = min(self.low, value)
        self.high = max(self.high, value)
        if self.last_time is None or (at, value) > (self.last_time, self.last):
            self.last_time, self.last = at, value


def vitals_reference(
    readings: list[Reading], granularity: str, zones: dict[int, str] | None = None
) -> dict[tuple, Stats]:
    """(user, loinc, bucket) -> stats over unique readings."""
    zones = ZONES if zones is None else zones
    unique = {(r.user_id, r.metric, r.start, r.value, r.unit): r for r in readings}
    out: dict[tuple, Stats] = defaultdict(Stats)
    for r in unique.values():
        zone = zones[r.user_id]
        if granularity == "hourly":
            bucket: object = hour_start(r.start, zone)
        else:
            bucket = period_start(local_day(r.start, zone), granularity)
        out[(r.user_id, r.loinc, bucket)].add(r.canonical, r.start.astimezone(UTC))
    return dict(out)


# --- every zone of the tz database -----------------------------------------------------------

# Years whose transitions the calendar tests cross: 1972 holds the end of Africa/Monrovia's
# -00:44:30 and many zones' first rules; 2015 holds America/Havana's fall-back at 01:00 to 00:00;
# 2024 is recent (Lord_Howe's 30-minute shifts, Santiago's and Azores' midnight changes).
CALENDAR_YEARS = (1972, 2015, 2024)
REQUIRED_ZONES = (
    "America/Havana", "Atlantic/Azores", "America/Santiago", "Australia/Lord_Howe",
    "Asia/Tehran", "Pacific/Chatham", "Africa/Monrovia",
)  # fmt: skip
# Around each change: the instants just before and at it, and a spread over the two hours
# around it (the hour buckets it splits and the day boundary when it happens at midnight).
_AROUND_CHANGE = [timedelta(seconds=s) for s in (-1, 0, 1)] + [
    timedelta(minutes=m) for m in (-75, -45, -20, 10, 25, 35, 50, 65, 95)
]


def zones_with_changes(years: tuple[int, ...] = CALENDAR_YEARS) -> list[str]:
    """Every tz database zone whose offset changes in one of `years`."""
    return sorted(z for z in available_timezones() if any(transitions(z, y) for y in years))


def _first_instants(day: date, tz: ZoneInfo) -> list[datetime]:
    """Candidates for the first instant of a local day: midnight read with either fold."""
    out = []
    for fold in (0, 1):
        instant = datetime(day.year, day.month, day.day, tzinfo=tz, fold=fold).astimezone(UTC)
        out += [instant, instant - timedelta(seconds=1)]
    return out


def zone_readings(zones: dict[int, str], years: tuple[int, ...] = CALENDAR_YEARS) -> list[Reading]:
    """Heart rates around every offset change of each user's zone in `years`, and around the
    local midnights of the days each change touches. Instants are sent in UTC (Z)."""
    readings: list[Reading] = []
    for user_id, zone in zones.items():
        tz = ZoneInfo(zone)
        instants: set[datetime] = set()
        for year in years:
            for change in transitions(zone, year):
                instants.update(change + delta for delta in _AROUND_CHANGE)
                day = change.astimezone(tz).date()
                for d in (day, day + timedelta(days=1)):
                    instants.update(_first_instants(d, tz))
        for i, instant in enumerate(sorted(instants)):
            value = float(50 + (user_id * 7 + i * 13) % 120)
            start = instant.astimezone(UTC)
            readings.append(Reading(user_id, "heart_rate", HEART_RATE, value, "bpm", value, start))
    return readings
