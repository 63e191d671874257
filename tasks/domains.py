"""The names of healthflow's domains and aggregate levels, as types.

Dependency-free on purpose: the step models and the producer (which the backend imports)
use them without loading the aggregation engine.
"""

from __future__ import annotations

from typing import Literal

Domain = Literal["labs", "vitals", "nutrition"]
Granularity = Literal["hourly", "daily", "weekly", "monthly", "quarterly", "yearly"]
# The calendar period of a rolled-up level.
CalendarUnit = Literal["week", "month", "quarter", "year"]

# The order `healthflow process` and `run` take the domains in.
DOMAINS_IN_ORDER: tuple[Domain, ...] = ("labs", "vitals", "nutrition")
