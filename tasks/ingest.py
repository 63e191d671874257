"""JSON Lines ingest: validate each line with pydantic, store good and implausible rows in bulk.

A line that cannot be read as the domain's record (bad JSON, missing or blank field, naive
timestamp, NUL character, user id out of range) is reported by line number and skipped. A line
that reads but cannot be accepted (unknown metric, non-finite or impossible value, implausible
time, ambiguous decimal comma, unconvertible unit) is stored as `rejected` with its reason, so it
is kept and never aggregated: whatever could make a step fail on a value stops here. A line whose
user and `entry_id` are already stored is a duplicate and is not stored again. Every non-blank
line is counted exactly once: lines = pending + rejected + malformed + duplicates. Reasons and
errors name fields and rules, never the values (health data).
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import queue
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import psycopg2
import psycopg2.errors
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
)
from sqlalchemy import Engine, text

from tasks.catalog import meal_types, nutrients, vital_types
from tasks.db.failures import database_error_of, named_database_error
from tasks.errors import HealthflowError
from tasks.lifecycle import rezone_users
from tasks.steps.models import MAX_USER_ID

Row = tuple[Any, ...]


class IngestFailed(HealthflowError):
    """The database refused a batch; the file was rolled back. The message is one line with
    the error class and code, never the failing row (it would print health values)."""


# A number, not a string or a boolean; positive and within what the per-user lock key holds.
UserId = Annotated[int, Field(strict=True, gt=0, le=MAX_USER_ID)]


# A text field the row cannot do without (an empty CSV field would reach COPY as NULL): at least
# one character that is not blank, checked by pydantic's own (compiled) pattern matcher.
Required = Annotated[str, StringConstraints(pattern=r"\S")]
# Strict: `true` is no id and no number (pydantic would read it as 1), so it never becomes one.
EntryId = Annotated[StrictStr | StrictInt, Field(union_mode="left_to_right")]
# StrictInt first: a whole number 140 stays "140", not "140.0" (its reported precision).
Value = StrictInt | StrictFloat | StrictStr

# Times outside this window are no reading of a living person's health: rejected, never claimed
# (a year-1 instant is year 0 in a zone west of UTC, which no step can turn into a date).
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)
# No lab, vital or nutrient value comes near this; a larger one overflows conversions.
LARGEST_VALUE = 1e12


class _Window:
    """The plausible window, its end fixed once per ingest (not read from the clock per line)."""

    latest = datetime.now(UTC) + FUTURE_SLACK

    @classmethod
    def refresh(cls) -> None:
        cls.latest = datetime.now(UTC) + FUTURE_SLACK


def _implausible_instant(*instants: datetime | None) -> bool:
    latest = _Window.latest
    return any(t is not None and not EARLIEST <= t <= latest for t in instants)


def _implausible_date(day: date) -> bool:
    return not EARLIEST.date() <= day <= _Window.latest.date()


class Line(BaseModel):
    # Backends may send more fields than we use; unknown ones are ignored, not errors.
    # (No str_strip_whitespace: it doubles the validation time; text is stripped where used.)
    model_config = ConfigDict(extra="ignore")
    entry_id: EntryId | None = None

    @field_validator("entry_id")
    @classmethod
    def _entry_id(cls, value: str | int | None) -> str | int | None:
        if isinstance(value, str) and not 0 < len(value.strip()) <= 200:
            raise ValueError("must be 1 to 200 characters")
        return value


_NUMERIC = re.compile(r"\s*[+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?\s*")


def _iso_text(value: Any) -> Any:
    """Times are ISO 8601 text: pydantic would also read a number, or a numeric string such as
    "1700000000", as Unix time, which no sender of these files means."""
    if not isinstance(value, str) or _NUMERIC.fullmatch(value):
        raise ValueError("must be ISO 8601 text, not a number")
    return value


def _offset_with_seconds(value: Any, handler: ValidatorFunctionWrapHandler) -> datetime:
    """pydantic reads offsets to the minute only; ISO 8601 (and the hourly export's labels)
    also has offsets with seconds, like Africa/Monrovia's -00:44:30 before 1972. Only a value
    pydantic refuses pays for the second parse."""
    _iso_text(value)
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


LocalDate = Annotated[date, BeforeValidator(_iso_text)]


class VitalLine(Line):
    user_id: UserId
    metric: Required
    value: Value
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
    user_id: UserId
    test_name: Required
    value: Value | None = None
    unit: str | None = None
    reference_range: str | None = None
    # A date, a local wall time, or an instant with offset; read by hand because a union of
    # datetime types would let pydantic pick the wrong one.
    collected_at: str
    report_id: StrictStr | StrictInt | None = None

    @field_validator("collected_at")
    @classmethod
    def _collection_time(cls, value: str) -> str:
        try:
            parse_collection_time(value)
        except ValueError:
            # Not the parser's message: it quotes the value, which may be health data.
            raise ValueError("not an ISO 8601 date or date and time") from None
        return value


class NutritionLine(Line):
    model_config = ConfigDict(extra="allow")
    user_id: UserId
    meal_date: LocalDate
    meal_type: Required
    food_name: Required


class UserLine(Line):
    user_id: UserId
    timezone: str


@dataclass
class IngestReport:
    domain: str
    inserted: int = 0
    rejected: int = 0
    malformed: int = 0
    # Lines whose user and entry_id were already stored (or came earlier in the same file).
    duplicates: int = 0
    # Non-blank lines read: always inserted + rejected + malformed + duplicates.
    lines: int = 0
    # (line number, reason): malformed lines and rejected rows alike.
    problems: list[tuple[int, str]] = field(default_factory=list)

    @property
    def reasons(self) -> Counter[str]:
        return Counter(reason.split(":")[0] for _, reason in self.problems)

    def summary(self) -> str:
        if self.domain == "users":  # settings, not raw rows: nothing is pending
            return (
                f"users: {self.lines} lines: {self.inserted} time zones stored, "
                f"{self.malformed} malformed lines skipped"
            )
        return (
            f"{self.domain}: {self.lines} lines: {self.inserted} inserted as pending, "
            f"{self.rejected} stored as rejected, {self.malformed} malformed lines skipped, "
            f"{self.duplicates} duplicates"
        )


def _none_if_blank(value: str | None) -> str | None:
    value = value.strip() if value else value
    return value if value else None


# "1,234.5" groups thousands; "5,5" or "5,500" may be a decimal comma: never guessed.
_GROUPED = re.compile(r"[+-]?\d{1,3}(,\d{3})+\.\d+")
_NUMERIC_WITH_COMMA = re.compile(r"[+-]?[\d.,]*\d,[\d.,]*")


def _number(value: float | str | None) -> float | None:
    """The numeric reading of a value, or None when it is not a number."""
    if value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        # An integer beyond any float: as out of range as the infinity it would round to.
        try:
            return float(value)
        except OverflowError:
            return math.inf
    if "," in value:
        text = value.strip()
        if not _GROUPED.fullmatch(text):
            return None
        value = text.replace(",", "")
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _decimal_comma(value: object) -> bool:
    """A number written with a comma that could be a decimal separator ("5,5")."""
    if not isinstance(value, str) or "," not in value:
        return False
    text = value.strip()
    return bool(_NUMERIC_WITH_COMMA.fullmatch(text)) and not _GROUPED.fullmatch(text)


def _value_reason(number: float | None) -> str | None:
    if number is not None and not math.isfinite(number):
        return "non_finite_value"
    if number is not None and abs(number) > LARGEST_VALUE:
        return "out_of_range"
    return None


# Text that ends up in a unique index (a reading's metric, unit and source; a lab result's report
# id) must fit an index row (about 2.7 kB): longer values are no real metric, unit, source or
# report id, and would fail the step that copies them, so they are refused here with a reason.
TEXT_LIMITS = {"metric": 100, "unit": 100, "source": 200, "report_id": 200}


def _too_long(**fields: object) -> str | None:
    for name, value in fields.items():
        if value is not None and len(str(value)) > TEXT_LIMITS[name]:
            return f"too_long:{name}"
    return None


def _vital_row(line: VitalLine) -> tuple[Row, str | None]:
    number = _number(line.value)
    raw_value = None if number is not None else str(line.value)
    reason: str | None = None
    metric = line.metric.strip()
    vital = vital_types().get(metric) or vital_types().get(metric.lower())
    if too_long := _too_long(metric=metric, unit=line.unit, source=line.source):
        reason = too_long
    elif vital is None:
        reason = "unknown_metric"
    elif number is None:
        reason = "ambiguous_decimal_comma" if _decimal_comma(line.value) else "unparseable_value"
    elif _implausible_instant(line.start_time, line.end_time):
        reason = "implausible_time"
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
        _entry(line),
    )
    return row, reason


def _entry(line: Line) -> str | None:
    return None if line.entry_id is None else str(line.entry_id).strip()


def _lab_row(line: LabLine) -> tuple[Row, str | None]:
    number = _number(line.value)
    value_text = None if line.value is None else str(line.value).strip()
    reason = None
    test_name = line.test_name.strip()
    if too_long := _too_long(report_id=line.report_id):
        reason = too_long
    elif value_text is None or value_text == "":
        reason = "missing_value"
    elif _decimal_comma(value_text):
        reason = "ambiguous_decimal_comma"
    else:
        reason = _value_reason(number)
    collected = parse_collection_time(line.collected_at)
    if isinstance(collected, datetime) and collected.tzinfo is not None:
        implausible = _implausible_instant(collected)
    else:
        implausible = _implausible_date(
            collected.date() if isinstance(collected, datetime) else collected
        )
    if implausible:
        reason = reason or "implausible_time"
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
        _entry(line),
    )
    return row, reason


def _nutrition_row(line: NutritionLine) -> tuple[Row, str | None]:
    extra = line.model_extra or {}
    meal_type, food_name = line.meal_type.strip().lower(), line.food_name.strip()
    reason = None if meal_type in meal_types() else "unknown_meal_type"
    if _implausible_date(line.meal_date):
        reason = reason or "implausible_time"
    amounts: list[float | None] = []
    for nutrient in nutrients():
        raw = extra.get(nutrient.key)
        amount = _number(raw) if isinstance(raw, (int, float, str)) else None
        if raw is not None and (amount is None or isinstance(raw, bool)):
            problem = "ambiguous_decimal_comma" if _decimal_comma(raw) else "unparseable_value"
            reason = reason or f"{problem}:{nutrient.key}"
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
        _entry(line),
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
        (
            "user_id",
            "metric",
            "value",
            "raw_value",
            "unit",
            "start_time",
            "end_time",
            "source",
            "entry_id",
        ),
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
            "entry_id",
        ),
        _lab_row,
    ),
    "nutrition": DomainSpec(
        "nutrition_raw_data",
        NutritionLine,
        (
            "user_id",
            "meal_date",
            "meal_type",
            "food_name",
            *(n.key for n in nutrients()),
            "entry_id",
        ),
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
    a file lands whole or not at all (a rerun after a crash cannot leave half a file twice).

    A batch that carries entry ids is copied straight in under a savepoint; if an id is stored
    already it goes again through a temp table and `INSERT ... ON CONFLICT DO NOTHING`, so a
    line whose user and entry id are stored is dropped, not an error; `dropped` counts those
    duplicates by status.
    """

    def __init__(self, engine: Engine, table: str, columns: Iterable[str]) -> None:
        self._table, names = table, ", ".join(columns)
        self._sql = f"COPY {table} ({names}) FROM STDIN WITH (FORMAT csv)"
        self._stage_sql = f"COPY ingest_stage ({names}) FROM STDIN WITH (FORMAT csv)"
        self._create_stage = (
            f"CREATE TEMP TABLE ingest_stage ON COMMIT DROP AS "
            f"SELECT {names} FROM {table} WITH NO DATA"
        )
        self._merge = (
            f"WITH stored AS (INSERT INTO {table} ({names}) SELECT {names} FROM ingest_stage "
            "ON CONFLICT (user_id, entry_id) WHERE entry_id IS NOT NULL DO NOTHING "
            "RETURNING status) SELECT status, count(*) FROM stored GROUP BY status"
        )
        self._staged = False
        self.dropped: Counter[str] = Counter()
        self._raw = engine.raw_connection()
        self._batches: queue.Queue[tuple[io.StringIO, Counter[str] | None] | None] = queue.Queue(
            maxsize=2
        )
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="copy-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self._raw.cursor() as cursor:  # type: ignore[attr-defined]
            while (item := self._batches.get()) is not None:
                if self._error is None:
                    try:
                        self._store(cursor, *item)
                    except BaseException as error:  # reported by close(); keep draining
                        self._error = error

    def _store(self, cursor: Any, buffer: io.StringIO, statuses: Counter[str] | None) -> None:
        if statuses is None:
            cursor.copy_expert(self._sql, buffer)
            return
        # Fresh records, the usual case, are copied straight in; only a batch that repeats an
        # entry id already stored (or twice in itself) pays for the temp table.
        cursor.execute("SAVEPOINT entry_ids")
        try:
            cursor.copy_expert(self._sql, buffer)
            cursor.execute("RELEASE SAVEPOINT entry_ids")
            return
        except psycopg2.errors.UniqueViolation:
            cursor.execute("ROLLBACK TO SAVEPOINT entry_ids")
        buffer.seek(0)
        cursor.execute("TRUNCATE ingest_stage" if self._staged else self._create_stage)
        self._staged = True
        cursor.copy_expert(self._stage_sql, buffer)
        cursor.execute(self._merge)
        stored = dict(cursor.fetchall())
        for status, count in statuses.items():
            self.dropped[status] += count - stored.get(status, 0)

    def write(self, rows: Iterable[Row], *, statuses: Counter[str] | None = None) -> None:
        """Queue a batch; `statuses` (rows per status) asks for the duplicate-dropping path."""
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        buffer.seek(0)
        self._batches.put((buffer, statuses))

    def close(self, *, commit: bool = True) -> None:
        """Wait for every batch, then commit; roll back (and raise) if any batch failed, or
        when the caller failed and asks not to commit."""
        self._batches.put(None)
        self._thread.join()
        try:
            if self._error is not None or not commit:
                self._roll_back()
                if self._error is not None:
                    raise self._described(self._error) from None
            else:
                self._raw.commit()
        except psycopg2.Error as error:  # the commit itself failed (a connection lost)
            self._raw.invalidate()
            raise self._described(error) from None
        finally:
            self._raw.close()

    def _roll_back(self) -> None:
        """Roll back; a connection that died with the batch is only dropped from the pool (a
        rollback there fails, and so would the pool's own, logging its traceback)."""
        try:
            self._raw.rollback()
        except psycopg2.Error:
            self._raw.invalidate()

    def _described(self, error: BaseException) -> BaseException:
        """A database error as one line without row values (its DETAIL and CONTEXT quote the
        row). psycopg2 may raise a SystemError with the server's error as its cause."""
        found = database_error_of(error)
        if found is None:
            return error
        named = named_database_error(found)
        return IngestFailed(
            f"the database refused a batch for {self._table}: "
            f"{type(named or found).__name__} ({type(found).__name__}, SQLSTATE {found.pgcode}); "
            "nothing from this file was stored"
        )


def copy_rows(engine: Engine, table: str, columns: Iterable[str], rows: Iterable[Row]) -> None:
    """Bulk insert with COPY ... FROM STDIN in one transaction."""
    writer = CopyWriter(engine, table, columns)
    writer.write(rows)
    writer.close()


def _nul_fields(record: BaseModel) -> list[str]:
    """Fields whose text holds a NUL character, which PostgreSQL text cannot store."""
    values = {**dict(record), **(record.model_extra or {})}
    return sorted(k for k, v in values.items() if isinstance(v, str) and "\x00" in v)


# Errors one line's content can raise past validation (a number too large for a float, an
# integer with more digits than Python converts): that line is malformed, the file goes on.
_LINE_ERRORS = (ArithmeticError, ValueError, TypeError, UnicodeError, RecursionError)
_BOM = "\ufeff"


def _readable_lines(
    lines: Iterable[str | bytes], report: IngestReport
) -> Iterator[tuple[int, str]]:
    """(line number, text) of each non-blank line, counted in `report.lines`.

    Lines may come as bytes or as text read with `errors="surrogateescape"`: a line that is
    not UTF-8 is counted malformed with its number, never an exception that stops the file.
    A byte-order mark before the first line is not part of it."""
    for number, line in enumerate(lines, start=1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError:
                line = "\udcff"  # counted below as not UTF-8
        if number == 1:
            line = line.removeprefix(_BOM)
        if not line.strip():
            continue
        report.lines += 1
        if not line.isascii():
            try:
                line.encode("utf-8")
            except UnicodeEncodeError:  # undecodable bytes, kept as lone surrogates
                report.malformed += 1
                report.problems.append((number, "malformed: line: not valid UTF-8"))
                continue
        yield number, line


def _malformed_by_content(report: IngestReport, number: int, error: Exception) -> None:
    report.malformed += 1
    report.problems.append((number, f"malformed: line: unreadable value ({type(error).__name__})"))


def _parse_lines(
    spec: DomainSpec, lines: Iterable[str | bytes], report: IngestReport
) -> Iterator[tuple[Row, str | None]]:
    for number, line in _readable_lines(lines, report):
        try:
            record = spec.model.model_validate_json(line)
        except ValidationError as error:
            report.malformed += 1
            report.problems.append((number, describe_validation_error(error)))
            continue
        except _LINE_ERRORS as error:
            _malformed_by_content(report, number, error)
            continue
        # JSON can only carry a NUL as the escape \u0000: look closer only then.
        if "\\u0000" in line and (fields := _nul_fields(record)):
            report.malformed += 1
            report.problems.append(
                (number, f"malformed: {', '.join(fields)}: contains a NUL character")
            )
            continue
        try:
            row, reason = spec.to_row(record)
        except _LINE_ERRORS as error:
            _malformed_by_content(report, number, error)
            continue
        if reason is not None:
            report.problems.append((number, reason))
        yield row, reason


def ingest_lines(
    engine: Engine, domain: str, lines: Iterable[str | bytes], *, batch_rows: int = 50_000
) -> IngestReport:
    """Insert a domain's JSON lines: good ones as pending, implausible ones as rejected,
    repeated entry ids counted as duplicates."""
    if domain == "users":
        return ingest_users(engine, lines)
    spec = DOMAIN_SPECS[domain]
    report = IngestReport(domain)
    _Window.refresh()
    writer = CopyWriter(engine, spec.table, (*spec.columns, "status", "error"))
    entry_at = spec.columns.index("entry_id")
    batch: list[Row] = []
    statuses: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    with_entry_ids = False

    def flush() -> None:
        writer.write(batch, statuses=statuses if with_entry_ids else None)

    try:
        for row, reason in _parse_lines(spec, lines, report):
            status = "pending" if reason is None else "rejected"
            batch.append((*row, status, reason))
            statuses[status] += 1
            totals[status] += 1
            with_entry_ids = with_entry_ids or row[entry_at] is not None
            if len(batch) >= batch_rows:
                flush()
                batch, statuses, with_entry_ids = [], Counter(), False
        if batch:
            flush()
    except BaseException:
        writer.close(commit=False)
        raise
    writer.close()
    report.inserted = totals["pending"] - writer.dropped["pending"]
    report.rejected = totals["rejected"] - writer.dropped["rejected"]
    report.duplicates = sum(writer.dropped.values())
    analyze_if_grown(engine, spec.table, report.inserted + report.rejected)
    return report


# Fewer new rows than this never make the planner's picture of a table wrong enough to matter.
ANALYZE_MIN_ROWS = 1_000


def analyze_if_grown(engine: Engine, table: str, added: int) -> bool:
    """ANALYZE `table` when `added` rows grew it by a tenth or more of what the planner
    believes it holds: the next claim then plans with the table's real size instead of
    waiting for autoanalyze (which may even have run mid-load and recorded an empty table)."""
    if added < ANALYZE_MIN_ROWS:
        return False
    with engine.begin() as conn:
        believed = conn.execute(
            text("SELECT reltuples FROM pg_class WHERE oid = CAST(:table AS regclass)"),
            {"table": table},
        ).scalar_one()
        if believed >= 0 and added < believed / 10:
            return False
        conn.execute(text(f"ANALYZE {table}"))
    return True


# The tz database's variants: right/ counts leap seconds (PostgreSQL reads right/UTC 27 s off
# in 2024, Python not at all), posix/ duplicates the main names. Buckets would differ by reader.
_VARIANT_PREFIXES = ("right/", "posix/", "posixrules")


def _zone_problem(zone: str, server_zones: frozenset[str], python_zones: set[str]) -> str | None:
    """Why a zone name cannot be stored, or None. Buckets are computed by the database and
    labeled by Python (exports): both must read the name, and read it alike."""
    if zone.startswith(_VARIANT_PREFIXES):
        return "malformed: timezone: a leap-second or POSIX variant the database reads differently"
    if zone not in python_zones:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            return "malformed: timezone: not an IANA time zone"
    if zone not in server_zones:
        return "malformed: timezone: not in the database's time zone data"
    return None


def _server_zones(engine: Engine) -> frozenset[str]:
    with engine.connect() as conn:
        return frozenset(conn.execute(text("SELECT name FROM pg_timezone_names")).scalars())


# How far around today the server's reading of a zone is compared with Python's: the span a
# health app's readings come from. A day's step finds a rule that differs for a day or more
# (a newer tz release abolishing DST, a moved transition); Python's own transitions in the span
# are probed to the second on both sides.
_ZONE_PROBE_SPAN = (timedelta(days=5 * 366), timedelta(days=2 * 366))


def _zone_probe_instants(zone: ZoneInfo, now: datetime) -> list[datetime]:
    start = (now - _ZONE_PROBE_SPAN[0]).replace(hour=12, minute=0, second=0, microsecond=0)
    days = [start + timedelta(days=n) for n in range(sum(_ZONE_PROBE_SPAN, timedelta()).days)]
    instants = list(days)
    for before, after in itertools.pairwise(days):
        if before.astimezone(zone).utcoffset() == after.astimezone(zone).utcoffset():
            continue
        low, high = before, after  # the transition is in (low, high]: bisect it to the second
        while high - low > timedelta(seconds=1):
            middle = low + (high - low) / 2
            middle = middle.replace(microsecond=0)
            if middle.astimezone(zone).utcoffset() == low.astimezone(zone).utcoffset():
                low = middle
            else:
                high = middle
        instants += [high - timedelta(seconds=1), high]
    return instants


def zones_read_differently(
    engine: Engine, zones: Iterable[str], now: datetime | None = None
) -> dict[str, str]:
    """The zones whose UTC offset the server and Python disagree on at some probed instant,
    with the reason. The server may ship an older tz database (a zone whose rules changed since
    reads differently), and it reads a name that is also a time zone abbreviation (CET, EET,
    MET, WET) as that abbreviation's fixed offset in AT TIME ZONE."""
    now = now or datetime.now(UTC)
    probes = [(z, at) for z in zones for at in _zone_probe_instants(ZoneInfo(z), now)]
    if not probes:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT p.zone, p.at, "
                "EXTRACT(EPOCH FROM (p.at AT TIME ZONE p.zone) - (p.at AT TIME ZONE 'UTC')) "
                "FROM unnest(CAST(:zones AS text[]), CAST(:ats AS timestamptz[])) AS p(zone, at)"
            ),
            {"zones": [z for z, _ in probes], "ats": [at for _, at in probes]},
        ).all()
    differ: dict[str, str] = {}
    for zone, at, server_seconds in rows:
        server_offset = timedelta(seconds=float(server_seconds))
        python_offset = at.astimezone(ZoneInfo(zone)).utcoffset()
        if zone not in differ and python_offset != server_offset:
            differ[zone] = (
                "malformed: timezone: the database reads it differently (UTC offset "
                f"{_offset_text(server_offset)} instead of {_offset_text(python_offset)} "
                f"at {at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}; its tz data may be older)"
            )
    return differ


def _offset_text(offset: timedelta | None) -> str:
    seconds = int((offset or timedelta()).total_seconds())
    sign, seconds = ("-" if seconds < 0 else "+"), abs(seconds)
    text_ = f"{sign}{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"
    return text_ + (f":{seconds % 60:02d}" if seconds % 60 else "")


def ingest_users(engine: Engine, lines: Iterable[str | bytes]) -> IngestReport:
    report = IngestReport("users")
    python_zones = available_timezones()
    server_zones = _server_zones(engine)
    users: dict[int, str] = {}
    lines_of: dict[int, int] = {}
    for number, line in _readable_lines(lines, report):
        try:
            record = UserLine.model_validate_json(line)
        except ValidationError as error:
            report.malformed += 1
            report.problems.append((number, describe_validation_error(error)))
            continue
        zone = record.timezone.strip()
        if problem := _zone_problem(zone, server_zones, python_zones):
            report.malformed += 1
            report.problems.append((number, problem))
            continue
        users[record.user_id] = zone
        lines_of[record.user_id] = number
    differ = zones_read_differently(engine, set(users.values()))
    for user_id, zone in list(users.items()):
        if zone in differ:
            report.malformed += 1
            report.problems.append((lines_of[user_id], differ[zone]))
            del users[user_id]
    report.problems.sort()
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


def ingest_file(
    engine: Engine, domain: str, path: Path | IO[str] | IO[bytes], **kwargs: Any
) -> IngestReport:
    if isinstance(path, Path):
        with path.open("rb") as handle:
            return ingest_lines(engine, domain, handle, **kwargs)
    return ingest_lines(engine, domain, path, **kwargs)
