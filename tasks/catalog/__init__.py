"""Catalogs shipped as data files in the package: vital types and nutrients.

The LOINC codes and names in these files are LOINC content; see NOTICE.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

LOINC_NOTICE = (
    "This material contains content from LOINC (https://loinc.org). LOINC is copyright "
    "Regenstrief Institute, Inc. and the LOINC Committee and is available at no cost under the "
    "license at https://loinc.org/license."
)


def normalize_unit(unit: str) -> str:
    """Unit spellings are compared case-insensitively and without surrounding blanks."""
    return unit.strip().lower()


@dataclass(frozen=True, slots=True)
class VitalType:
    key: str
    loinc_code: str
    name: str
    canonical_unit: str
    # normalized input unit -> (factor, offset): canonical = value * factor + offset
    units: dict[str, tuple[float, float]]
    low: float
    high: float
    aggregation: str
    # Digits after the point a device typically reports (documentation: readings keep their own).
    decimals: int | None = None

    def rejection(self, value: float, unit: str | None) -> str | None:
        """Why a reading of this vital cannot be accepted, or None when it can."""
        if not math.isfinite(value):
            return "non_finite_value"
        # A reading without a unit is in the canonical unit (docs/formats.md).
        conversion = self.units.get(normalize_unit(self.canonical_unit if unit is None else unit))
        if conversion is None:
            return "unconvertible_unit"
        factor, offset = conversion
        canonical = value * factor + offset
        if not self.low <= canonical <= self.high:
            return "out_of_range"
        return None


@dataclass(frozen=True, slots=True)
class Nutrient:
    key: str
    name: str
    unit: str
    low: float
    high: float


def _read(name: str) -> dict:
    return json.loads(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def vital_types() -> dict[str, VitalType]:
    """Vital types by catalog key and by LOINC code (devices send either)."""
    by_name: dict[str, VitalType] = {}
    for entry in _read("vitals.json")["vitals"]:
        vital = VitalType(
            key=entry["key"],
            loinc_code=entry["loinc_code"],
            name=entry["name"],
            canonical_unit=entry["canonical_unit"],
            units={normalize_unit(u): (float(f), float(o)) for u, (f, o) in entry["units"].items()},
            low=float(entry["range"][0]),
            high=float(entry["range"][1]),
            aggregation=entry["aggregation"],
            decimals=entry.get("decimals"),
        )
        by_name[vital.key] = vital
        by_name[vital.loinc_code] = vital
    return by_name


@lru_cache(maxsize=1)
def nutrients() -> tuple[Nutrient, ...]:
    return tuple(
        Nutrient(n["key"], n["name"], n["unit"], float(n["range"][0]), float(n["range"][1]))
        for n in _read("nutrients.json")["nutrients"]
    )


@lru_cache(maxsize=1)
def meal_types() -> tuple[str, ...]:
    return tuple(_read("nutrients.json")["meal_types"])


def nutrient_keys() -> tuple[str, ...]:
    return tuple(n.key for n in nutrients())
