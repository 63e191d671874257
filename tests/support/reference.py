"""An independent reference for the aggregates: plain Python over the same readings, with
zoneinfo for local time. It shares no code with the SQL engine on purpose."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

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
                    Reading(user_id, "weight", WEIGHT, pounds, "lb", pounds * 0.45359237, local)
                )
            else:
                value = float(rng.randrange(0, 3000))
                readings.append(Reading(user_id, "steps", STEPS, value, "count", value, local))
    return readings


def hour_start(instant: datetime, zone: str) -> datetime:
    local = instant.astimezone(ZoneInfo(zone))
    return local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)


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


def vitals_reference(readings: list[Reading], granularity: str) -> dict[tuple, Stats]:
    """(user, loinc, bucket) -> stats over unique readings."""
    unique = {(r.user_id, r.metric, r.start, r.value, r.unit): r for r in readings}
    out: dict[tuple, Stats] = defaultdict(Stats)
    for r in unique.values():
        zone = ZONES[r.user_id]
        if granularity == "hourly":
            bucket: object = hour_start(r.start, zone)
        else:
            bucket = period_start(local_day(r.start, zone), granularity)
        out[(r.user_id, r.loinc, bucket)].add(r.canonical, r.start.astimezone(UTC))
    return dict(out)
