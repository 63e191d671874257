"""JSON Lines ingest: validate each line with pydantic, store good and implausible rows in bulk.

A line that cannot be read as the domain's record (bad JSON, missing field, naive timestamp) is
reported by line number and skipped. A line that reads but cannot be accepted (unknown metric,
non-finite or impossible value, unconvertible unit) is stored as `rejected` with its reason, so it
is kept and never aggregated. Reasons name fields and rules, never the values (health data).
"""

from __future__ import annotations

import csv
import io
import math
import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import IO, Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    PositiveInt,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
)
from sqlalchemy import Engine, text

from tasks.aggregate import rezone_users
from tasks.catalog import meal_types, nutrients, vital_types

Row = tuple[Any, ...]


class Line(BaseModel):
    # Backends may send more fields than we use; unknown ones are ignored, not errors.
    # (No str_strip_whitespace: it doubles the validation time; text is stripped where used.)
    model_config = ConfigDict(extra="ignore")


def _offset_with_seconds(value: Any, handler: ValidatorFunctionWrapHandler) -> datetime:
    """pydantic reads offsets to the minute only; ISO 8601 (and the hourly export's labels)
    also has offsets with seconds, like Africa/Monrovia's -00:44:30 before 1972. Only a value
    pydantic refuses pays for the second parse."""
    try:
        return handler(value)
    except ValidationError:
        if not isinstance(value, str) or len(value) < 25:  # no room for seconds in the offset
            raise
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is None:
            raise  # pydantic's own error, which names no value
        return handler(parsed)


Instant = Annotated[AwareDatetime, WrapValidator(_offset_with_seconds)]


class VitalLine(Line):
    user_id: PositiveInt
    metric: str
    value: float | str
    unit: str | None = None
    start_time: Instant
    end_time: Instant | None = None
    source: str | None = None


def parse_collection_time(value: str) -> datetime | date:
    """`YYYY-MM-DD` is a local date; an ISO datetime is an instant if it has an offset."""
    if len(value) == 10:
        return date.fromisoformat(value)
    return datetime.fromisoformat(value)


class LabLine(Line):
    user_id: PositiveInt
    test_name: str
    value: float | str | None = None
    unit: str | None = None
    reference_range: str | None = None
    # A date, a local wall time, or an instant with offset; read by hand because a union of
    # datetime types would let pydantic pick the wrong one.
    collected_at: str
    report_id: str | int | None = None

    @field_validator("collected_at")
    @classmethod
    def _collection_time(cls, value: str) -> str:
        parse_collection_time(value)
        return value


class NutritionLine(Line):
    model_config = ConfigDict(extra="allow")
    user_id: PositiveInt
    meal_date: date
    meal_type: str
    food_name: str


class UserLine(Line):
    user_id: PositiveInt
    timezone: str


@dataclass
class IngestReport:
    domain: str
    inserted: int = 0
    rejected: int = 0
    malformed: int = 0
    # (line number, reason): malformed lines and rejected rows alike.
    problems: list[tuple[int, str]] = field(default_factory=list)

    @property
    def reasons(self) -> Counter[str]:
        return Counter(reason.split(":")[0] for _, reason in self.problems)

    def summary(self) -> str:
        return (
            f"{self.domain}: {self.inserted} inserted as pending, {self.rejected} stored as "
            f"rejected, {self.malformed} malformed lines skipped"
        )


def _none_if_blank(value: str | None) -> str | None:
    value = value.strip() if value else value
    return value if value else None


def _number(value: float | str | None) -> float | None:
    """The numeric reading of a value, or None when it is not a number."""
    if value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return float(value)
    try:
        return float(value.replace(",", "")) if value else None
    except ValueError:
        return None


def _vital_row(line: VitalLine) -> tuple[Row, str | None]:
    number = _number(line.value)
    raw_value = None if number is not None else str(line.value)
    reason: str | None = None
    metric = line.metric.strip()
    vital = vital_types().get(metric) or vital_types().get(metric.lower())
    if vital is None:
        reason = "unknown_metric"
    elif number is None:
        reason = "unparseable_value"
    elif line.end_time is not None and line.end_time < line.start_time:
        reason = "end_before_start"
    else:
        reason = vital.rejection(number, line.unit)
    row = (
        line.user_id,
        metric,
        number,
        raw_value,
        _none_if_blank(line.unit),
        # str() of an aware datetime is ISO 8601 with the offset, which COPY reads as is.
        line.start_time,
        line.end_time,
        _none_if_blank(line.source),
    )
    return row, reason


def _lab_row(line: LabLine) -> tuple[Row, str | None]:
    number = _number(line.value)
    value_text = None if line.value is None else str(line.value).strip()
    reason = None
    test_name = line.test_name.strip()
    if not test_name:
        reason = "missing_test_name"
    elif value_text is None or value_text == "":
        reason = "missing_value"
    elif number is not None and not math.isfinite(number):
        reason = "non_finite_value"
    collected = parse_collection_time(line.collected_at)
    collected_at: str | None
    collected_local: str | datetime | None
    if isinstance(collected, datetime) and collected.tzinfo is not None:
        collected_at, collected_local = collected.isoformat(), None
    elif isinstance(collected, datetime):
        collected_at, collected_local = None, collected.isoformat()
    else:
        collected_at, collected_local = None, datetime.combine(collected, datetime.min.time())
    row = (
        line.user_id,
        None if line.report_id is None else str(line.report_id),
        test_name,
        value_text,
        number if number is not None and math.isfinite(number) else None,
        _none_if_blank(line.unit),
        _none_if_blank(line.reference_range),
        collected_at,
        collected_local,
    )
    return row, reason


def _nutrition_row(line: NutritionLine) -> tuple[Row, str | None]:
    extra = line.model_extra or {}
    meal_type, food_name = line.meal_type.strip().lower(), line.food_name.strip()
    reason = None if meal_type in meal_types() else "unknown_meal_type"
    if not food_name:
        reason = reason or "missing_food_name"
    amounts: list[float | None] = []
    for nutrient in nutrients():
        raw = extra.get(nutrient.key)
        amount = _number(raw) if isinstance(raw, (int, float, str)) else None
        if raw is not None and (amount is None or isinstance(raw, bool)):
            reason = reason or f"unparseable_value:{nutrient.key}"
            amount = None
        elif amount is not None and not math.isfinite(amount):
            reason = reason or f"non_finite_value:{nutrient.key}"
            amount = None
        elif amount is not None and not nutrient.low <= amount <= nutrient.high:
            reason = reason or f"out_of_range:{nutrient.key}"
        amounts.append(amount)
    row = (
        line.user_id,
        line.meal_date.isoformat(),
        meal_type,
        food_name,
        *amounts,
    )
    return row, reason


@dataclass(frozen=True)
class DomainSpec:
    table: str
    model: type[Line]
    columns: tuple[str, ...]
    to_row: Callable[[Any], tuple[Row, str | None]]


DOMAIN_SPECS: dict[str, DomainSpec] = {
    "vitals": DomainSpec(
        "vitals_raw_data",
        VitalLine,
        ("user_id", "metric", "value", "raw_value", "unit", "start_time", "end_time", "source"),
        _vital_row,
    ),
    "labs": DomainSpec(
        "lab_report_raw",
        LabLine,
        (
            "user_id",
            "report_id",
            "test_name",
            "value_text",
            "value",
            "unit",
            "reference_range",
            "collected_at",
            "collected_local",
        ),
        _lab_row,
    ),
    "nutrition": DomainSpec(
        "nutrition_raw_data",
        NutritionLine,
        ("user_id", "meal_date", "meal_type", "food_name", *(n.key for n in nutrients())),
        _nutrition_row,
    ),
}


def describe_validation_error(error: ValidationError) -> str:
    """Field and rule of each problem, without the input value (it may be health data)."""
    parts = []
    for item in error.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "line"
        parts.append(f"{where}: {item['msg']}")
    return "malformed: " + "; ".join(parts)


class CopyWriter:
    """COPY batches into one table on one connection, in a background thread, in one
    transaction: parsing the next batch (Python) overlaps the server storing the last one, and
    a file lands whole or not at all (a rerun after a crash cannot leave half a file twice)."""

    def __init__(self, engine: Engine, table: str, columns: Iterable[str]) -> None:
        self._sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)"
        self._raw = engine.raw_connection()
        self._batches: queue.Queue[io.StringIO | None] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="copy-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self._raw.cursor() as cursor:  # type: ignore[attr-defined]
            while (buffer := self._batches.get()) is not None:
                if self._error is None:
                    try:
                        cursor.copy_expert(self._sql, buffer)
                    except BaseException as error:  # reported by close(); keep draining
                        self._error = error

    def write(self, rows: Iterable[Row]) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        buffer.seek(0)
        self._batches.put(buffer)

    def close(self, *, commit: bool = True) -> None:
        """Wait for every batch, then commit; roll back (and raise) if any batch failed, or
        when the caller failed and asks not to commit."""
        self._batches.put(None)
        self._thread.join()
        try:
            if self._error is not None or not commit:
                self._raw.rollback()
                if self._error is not None:
                    raise self._error
            else:
                self._raw.commit()
        finally:
            self._raw.close()


def copy_rows(engine: Engine, table: str, columns: Iterable[str], rows: Iterable[Row]) -> None:
    """Bulk insert with COPY ... FROM STDIN in one transaction."""
    writer = CopyWriter(engine, table, columns)
    writer.write(rows)
    writer.close()


def _parse_lines(
    spec: DomainSpec, lines: Iterable[str], report: IngestReport
) -> Iterator[tuple[Row, str | None]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = spec.model.model_validate_json(line)
        except ValidationError as error:
            report.malformed += 1
            report.problems.append((number, describe_validation_error(error)))
            continue
        row, reason = spec.to_row(record)
        if reason is not None:
            report.problems.append((number, reason))
        yield row, reason


def ingest_lines(
    engine: Engine, domain: str, lines: Iterable[str], *, batch_rows: int = 50_000
) -> IngestReport:
    """Insert a domain's JSON lines: good ones as pending, implausible ones as rejected."""
    if domain == "users":
        return ingest_users(engine, lines)
    spec = DOMAIN_SPECS[domain]
    report = IngestReport(domain)
    writer = CopyWriter(engine, spec.table, (*spec.columns, "status", "error"))
    batch: list[Row] = []
    try:
        for row, reason in _parse_lines(spec, lines, report):
            if reason is None:
                batch.append((*row, "pending", None))
                report.inserted += 1
            else:
                batch.append((*row, "rejected", reason))
                report.rejected += 1
            if len(batch) >= batch_rows:
                writer.write(batch)
                batch = []
        if batch:
            writer.write(batch)
    except BaseException:
        writer.close(commit=False)
        raise
    writer.close()
    return report


def ingest_users(engine: Engine, lines: Iterable[str]) -> IngestReport:
    report = IngestReport("users")
    zones = available_timezones()
    users: dict[int, str] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = UserLine.model_validate_json(line)
            zone = record.timezone.strip()
            if zone not in zones:
                ZoneInfo(zone)  # raises for names the system does not know either
        except ValidationError as error:
            report.malformed += 1
            report.problems.append((number, describe_validation_error(error)))
            continue
        except (ZoneInfoNotFoundError, ValueError):
            report.malformed += 1
            report.problems.append((number, "malformed: timezone: not an IANA time zone"))
            continue
        users[record.user_id] = zone
    with engine.begin() as conn:
        if users:
            rezone_users(conn, users)
            conn.execute(
                text(
                    "INSERT INTO user_settings (user_id, timezone) VALUES (:user_id, :timezone) "
                    "ON CONFLICT (user_id) DO UPDATE SET timezone = EXCLUDED.timezone, "
                    "updated_at = now()"
                ),
                [{"user_id": u, "timezone": tz} for u, tz in users.items()],
            )
    report.inserted = len(users)
    return report


def ingest_file(engine: Engine, domain: str, path: Path | IO[str], **kwargs: Any) -> IngestReport:
    if isinstance(path, Path):
        with path.open(encoding="utf-8") as handle:
            return ingest_lines(engine, domain, handle, **kwargs)
    return ingest_lines(engine, domain, path, **kwargs)
