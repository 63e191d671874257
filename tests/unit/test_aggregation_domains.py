"""Each domain describes its aggregation once, and every name in it is checked."""

from __future__ import annotations

from typing import get_args

import pytest
from pydantic import ValidationError

from tasks.aggregation import (
    DOMAINS,
    GRANULARITIES,
    ZONED_DOMAINS,
    UnknownDomain,
    UnknownGranularity,
    aggregate_table,
    aggregation_of,
)
from tasks.aggregation.base import MEASURES, DomainAggregation, Rollup
from tasks.db.models import Base
from tasks.domains import DOMAINS_IN_ORDER, Domain, Granularity
from tasks.steps.models import AggregateInput


def test_every_domain_is_described_and_taken_in_order() -> None:
    assert set(DOMAINS) == set(get_args(Domain)) == set(DOMAINS_IN_ORDER)


@pytest.mark.parametrize("domain", get_args(Domain))
def test_every_table_a_domain_names_exists_in_the_schema(domain: Domain) -> None:
    aggregation = DOMAINS[domain]
    tables = set(Base.metadata.tables)
    assert aggregation.raw_table in tables
    assert aggregation.derived_table is None or aggregation.derived_table in tables
    for granularity in aggregation.granularities:
        assert aggregate_table(domain, granularity) in tables


@pytest.mark.parametrize("domain", get_args(Domain))
def test_levels_roll_up_only_from_finer_levels_of_the_same_domain(domain: Domain) -> None:
    order = GRANULARITIES[domain]
    for granularity, rollup in DOMAINS[domain].rollups.items():
        assert order.index(rollup.source) < order.index(granularity)


def test_buckets_follow_the_zone_except_for_nutrition_which_carries_its_date() -> None:
    assert set(ZONED_DOMAINS) == {"vitals", "labs"}


def test_published_granularities_are_the_export_contract() -> None:
    assert GRANULARITIES == {
        "labs": ("daily", "monthly", "quarterly", "yearly"),
        "vitals": ("hourly", "daily", "weekly", "monthly"),
        "nutrition": ("daily", "weekly", "monthly"),
    }
    assert {g for levels in GRANULARITIES.values() for g in levels} == set(get_args(Granularity))


def test_unknown_names_raise_named_errors() -> None:
    with pytest.raises(UnknownDomain, match="choose from: labs, vitals, nutrition"):
        aggregation_of("sleep")
    with pytest.raises(UnknownGranularity, match="labs has no 'hourly'"):
        aggregate_table("labs", "hourly")


def test_a_step_input_with_an_unknown_granularity_is_refused() -> None:
    with pytest.raises(ValidationError):
        AggregateInput(claim_id="c", user_id=1, domain="vitals", granularity="fortnightly")  # type: ignore[arg-type]


def _described(**changes: object) -> DomainAggregation:
    fields: dict[str, object] = {
        "domain": "nutrition",
        "raw_table": "nutrition_raw_data",
        "derived_table": None,
        "local_date_sql": "r.meal_date",
        "date_columns": "r.meal_date",
        "zoned": False,
        "lock_key": 9,
        "shape": MEASURES,
        "granularities": ("daily", "weekly"),
        "from_rows": {"daily": lambda conn, params: 0},
        "rollups": {"weekly": Rollup("daily", "week")},
    }
    return DomainAggregation(**{**fields, **changes})  # type: ignore[arg-type]


def test_a_description_with_a_level_left_undefined_or_defined_twice_is_refused() -> None:
    assert _described().table("weekly") == "nutrition_agg_weekly"
    with pytest.raises(ValueError, match="exactly one definition"):
        _described(rollups={})
    with pytest.raises(ValueError, match="exactly one definition"):
        _described(from_rows={"daily": lambda c, p: 0, "weekly": lambda c, p: 0})
    with pytest.raises(ValueError, match="unknown 'monthly'"):
        _described(rollups={"weekly": Rollup("monthly", "week")})
