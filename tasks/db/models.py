"""The schema as typed SQLAlchemy 2 models. Alembic migrations create it; keep them in step."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Double,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

from tasks.catalog import nutrient_keys
from tasks.steps.models import MAX_USER_ID as MAX_USER_ID

STATUSES = ("pending", "processing", "aggregated", "failed", "rejected")
DOMAINS = ("labs", "vitals", "nutrition")


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {  # noqa: RUF012 (SQLAlchemy reads it as a class attribute)
        datetime: DateTime(timezone=True),
        date: Date,
        float: Double,
        str: Text,
        int: BigInteger,
        dict[str, Any]: JSONB,
        list[Any]: JSONB,
    }


class UserSettings(Base):
    __tablename__ = "user_settings"
    user_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    timezone: Mapped[str]
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    __table_args__ = (CheckConstraint("user_id > 0", name="positive_user"),)


class Claim(Base):
    """Who runs a claim, so that a claim whose execution is gone can be taken over.

    `host` (the machine's boot id), `pid` and `process_started` name the process that runs the
    claim when it can be checked from another process on the same machine (local cloud,
    direct mode); a reused pid has another start time. Every claim also has a lease: past it,
    the claim is stale wherever it ran. Rows stay with their claim id; this table holds one row
    per claim that still has `processing` rows.
    """

    __tablename__ = "claims"
    claim_id: Mapped[str] = mapped_column(primary_key=True)
    domain: Mapped[str]
    user_id: Mapped[int]
    host: Mapped[str | None]
    pid: Mapped[int | None] = mapped_column(Integer)
    process_started: Mapped[float | None]
    lease_expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    __table_args__ = (
        CheckConstraint(f"domain IN ({', '.join(repr(d) for d in DOMAINS)})", name="domain"),
        CheckConstraint("num_nulls(host, pid, process_started) IN (0, 3)", name="owner"),
    )


class RawRow:
    """Lifecycle columns every raw table shares: pending -> processing -> aggregated | failed,
    or rejected at ingest/categorization. The checks make impossible states unrepresentable."""

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    user_id: Mapped[int]
    status: Mapped[str] = mapped_column(server_default="pending")
    claim_id: Mapped[str | None]
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    error: Mapped[str | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    claimed_at: Mapped[datetime | None]
    processed_at: Mapped[datetime | None]
    # The source record's id: the same user and id arriving again is a duplicate, not a row.
    entry_id: Mapped[str | None]

    @declared_attr.directive
    @classmethod
    def __table_args__(cls) -> tuple[Any, ...]:
        statuses = ", ".join(f"'{s}'" for s in STATUSES)
        return (
            CheckConstraint(f"status IN ({statuses})", name="known_status"),
            CheckConstraint("user_id > 0", name="positive_user"),
            CheckConstraint("attempts >= 0", name="attempts_not_negative"),
            CheckConstraint(
                "status <> 'processing' OR (claim_id IS NOT NULL AND claimed_at IS NOT NULL)",
                name="processing_has_claim",
            ),
            CheckConstraint(
                "status NOT IN ('failed', 'rejected') OR error IS NOT NULL",
                name="failure_has_reason",
            ),
            # Claims only ever look at one user's pending rows: keep that lookup cheap and small.
            Index(
                f"ix_{cls.__tablename__}_pending",  # type: ignore[attr-defined]
                "user_id",
                postgresql_where=text("status = 'pending'"),
            ),
            # The rows of a claim while it runs. Settled rows keep their claim id but leave
            # the index: marking them then writes no index entry for it (a non-HOT update
            # adds one to every index whose condition the new row meets), and the index stays
            # as small as the work in flight however long the history grows.
            Index(
                f"ix_{cls.__tablename__}_claim",  # type: ignore[attr-defined]
                "claim_id",
                postgresql_where=text("status = 'processing'"),
            ),
            Index(
                f"uq_{cls.__tablename__}_entry",  # type: ignore[attr-defined]
                "user_id",
                "entry_id",
                unique=True,
                postgresql_where=text("entry_id IS NOT NULL"),
            ),
            # Claims also look for a user's stale `processing` and retryable `failed` rows;
            # both are few, so this index stays small however long the history grows.
            Index(
                f"ix_{cls.__tablename__}_unsettled",  # type: ignore[attr-defined]
                "user_id",
                postgresql_where=text("status IN ('processing', 'failed')"),
            ),
            *cls.extra_table_args(),
        )

    @classmethod
    def extra_table_args(cls) -> tuple[Any, ...]:
        return ()


class VitalsRaw(RawRow, Base):
    __tablename__ = "vitals_raw_data"
    metric: Mapped[str]
    value: Mapped[float | None]
    # The value as sent, kept only when it was not a number (the row is then rejected).
    raw_value: Mapped[str | None]
    unit: Mapped[str | None]
    start_time: Mapped[datetime]
    end_time: Mapped[datetime | None]
    source: Mapped[str | None]

    @classmethod
    def extra_table_args(cls) -> tuple[Any, ...]:
        return (
            CheckConstraint("value IS NOT NULL OR status = 'rejected'", name="value_or_rejected"),
        )


class LabRaw(RawRow, Base):
    __tablename__ = "lab_report_raw"
    report_id: Mapped[str | None]
    test_name: Mapped[str]
    # Results are text on reports ("5.4", "Positive", "<0.01"); `value` holds the number if any.
    value_text: Mapped[str | None]
    value: Mapped[float | None]
    unit: Mapped[str | None]
    reference_range: Mapped[str | None]
    # An instant when the report gave an offset, else the local wall time (a date is midnight).
    collected_at: Mapped[datetime | None]
    collected_local: Mapped[datetime | None] = mapped_column(DateTime(timezone=False))

    @classmethod
    def extra_table_args(cls) -> tuple[Any, ...]:
        return (
            CheckConstraint(
                "num_nonnulls(collected_at, collected_local) = 1", name="one_collection_time"
            ),
        )


class NutritionRaw(RawRow, Base):
    __tablename__ = "nutrition_raw_data"
    meal_date: Mapped[date]
    meal_type: Mapped[str]
    food_name: Mapped[str]

    @classmethod
    def extra_table_args(cls) -> tuple[Any, ...]:
        # Daily recomputes read a user's accepted entries of the touched days.
        return (Index("ix_nutrition_raw_data_user_day", "user_id", "meal_date"),)


for _key in nutrient_keys():
    # One nullable column per catalog nutrient: missing stays null, never 0.
    cast(Table, NutritionRaw.__table__).append_column(Column(_key, Double, nullable=True))


class VitalsCategorized(Base):
    """One row per accepted reading. Derived from raw rows by a step, keyed by the raw row id.

    No foreign key to the raw table: the derivation keeps them consistent, and a per-row
    trigger would cost a third of the copy step (measured: bench/aggregate.py)."""

    __tablename__ = "vitals_categorized"
    raw_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    user_id: Mapped[int]
    metric: Mapped[str]
    loinc_code: Mapped[str]
    start_time: Mapped[datetime]
    end_time: Mapped[datetime | None]
    value: Mapped[float]
    unit: Mapped[str]
    source: Mapped[str | None]
    original_value: Mapped[float]
    original_unit: Mapped[str]
    # Decimals `value` carries as reported, or as its one rounding left it (tasks.precision).
    decimals: Mapped[int | None] = mapped_column(SmallInteger)
    __table_args__ = (
        # A re-synced identical reading counts once, however often it arrives. User and time
        # lead, so the same index serves the hourly recompute's range scans.
        UniqueConstraint(
            "user_id",
            "start_time",
            "metric",
            "end_time",
            "original_value",
            "original_unit",
            "source",
            name="uq_vitals_categorized_reading",
            postgresql_nulls_not_distinct=True,
        ),
    )


class LabCategorized(Base):
    """One row per lab result, coded or left uncategorized for review; keyed by the raw row."""

    __tablename__ = "lab_report_categorized"
    raw_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    user_id: Mapped[int]
    # Same user + report + test name is the same result, however often it is uploaded.
    dedup_key: Mapped[str]
    status: Mapped[str]
    loinc_code: Mapped[str | None]
    loinc_name: Mapped[str | None]
    confidence: Mapped[float]
    method: Mapped[str]
    candidates: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    value: Mapped[float | None]
    unit: Mapped[str | None]
    value_text: Mapped[str | None]
    unit_flag: Mapped[str | None]
    # Decimals `value` carries as reported, or as its one rounding left it (tasks.precision).
    decimals: Mapped[int | None] = mapped_column(SmallInteger)
    observed_at: Mapped[datetime]
    local_date: Mapped[date]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    __table_args__ = (
        UniqueConstraint("user_id", "dedup_key", name="uq_lab_report_categorized_result"),
        CheckConstraint("status IN ('categorized', 'uncategorized')", name="known_status"),
        CheckConstraint(
            "(status = 'categorized') = (loinc_code IS NOT NULL)", name="code_iff_categorized"
        ),
        CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence_unit_interval"),
        Index("ix_lab_report_categorized_user_date", "user_id", "local_date"),
    )


class LabSiteAlias(Base):
    """A reviewer's mapping of a test name (and unit) to a LOINC code; wins over every matcher
    tier. Keyed as the matcher normalizes names; the audit columns say who, when, which file."""

    __tablename__ = "lab_site_alias"
    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    name_key: Mapped[str]
    unit_key: Mapped[str] = mapped_column(server_default="")
    loinc_code: Mapped[str]
    reviewed_by: Mapped[str]
    reviewed_at: Mapped[datetime] = mapped_column(server_default=func.now())
    source_file: Mapped[str]
    __table_args__ = (UniqueConstraint("name_key", "unit_key", name="uq_lab_site_alias_key"),)


class _MeasureAggregate:
    """Mergeable statistics: coarser buckets roll up from finer ones; avg = sum / count."""

    user_id: Mapped[int]
    loinc_code: Mapped[str]
    count: Mapped[int]
    sum: Mapped[float]
    min: Mapped[float]
    max: Mapped[float]
    last_value: Mapped[float]
    last_time: Mapped[datetime]
    unit: Mapped[str]
    # The most decimals any reading of the bucket carries: its mean shows one more.
    decimals: Mapped[int | None] = mapped_column(SmallInteger)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())

    @declared_attr.directive
    @classmethod
    def __table_args__(cls) -> tuple[Any, ...]:
        # Recomputes select one user's buckets by time range across all codes: time before code.
        return (PrimaryKeyConstraint("user_id", "bucket_start", "loinc_code"),)


class _HourBucket:
    # A real hour: the instant of its local start (a fall-back day has 25 of them).
    bucket_start: Mapped[datetime]


class _DateBucket:
    # A local calendar period, named by its first local day.
    bucket_start: Mapped[date]


class VitalsHourly(_MeasureAggregate, _HourBucket, Base):
    __tablename__ = "vitals_agg_hourly"


class VitalsDaily(_MeasureAggregate, _DateBucket, Base):
    __tablename__ = "vitals_agg_daily"


class VitalsWeekly(_MeasureAggregate, _DateBucket, Base):
    __tablename__ = "vitals_agg_weekly"


class VitalsMonthly(_MeasureAggregate, _DateBucket, Base):
    __tablename__ = "vitals_agg_monthly"


class LabsDaily(_MeasureAggregate, _DateBucket, Base):
    __tablename__ = "labs_agg_daily"


class LabsMonthly(_MeasureAggregate, _DateBucket, Base):
    __tablename__ = "labs_agg_monthly"


class LabsQuarterly(_MeasureAggregate, _DateBucket, Base):
    __tablename__ = "labs_agg_quarterly"


class LabsYearly(_MeasureAggregate, _DateBucket, Base):
    __tablename__ = "labs_agg_yearly"


class _NutritionAggregate:
    user_id: Mapped[int]
    # 'all' for the whole day/week/month, else one meal type.
    meal_type: Mapped[str]
    bucket_start: Mapped[date]
    entries: Mapped[int]
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())

    @declared_attr.directive
    @classmethod
    def __table_args__(cls) -> tuple[Any, ...]:
        return (PrimaryKeyConstraint("user_id", "bucket_start", "meal_type"),)


class NutritionDaily(_NutritionAggregate, Base):
    __tablename__ = "nutrition_agg_daily"


class NutritionWeekly(_NutritionAggregate, Base):
    __tablename__ = "nutrition_agg_weekly"


class NutritionMonthly(_NutritionAggregate, Base):
    __tablename__ = "nutrition_agg_monthly"


for _table in (NutritionDaily, NutritionWeekly, NutritionMonthly):
    for _key in nutrient_keys():
        cast(Table, _table.__table__).append_column(Column(_key, Double, nullable=True))
