"""Units of lab results: spellings to their canonical UCUM form, and values to a code's unit.

Reports write one unit many ways ("mg %", "x10^3/µL", "cells/cumm"); ``normalize_unit`` maps
them onto the spelling the catalog's unit maps use, ``convert_reading`` converts a value once to
the code's canonical unit. Names are read by ``parse.py`` (the one name parser of every tier).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from tasks.labs.catalog import LabTest, load_catalog
from tasks.labs.parse import ascii_lower as _ascii_lower
from tasks.precision import reported_precision, round_once

FLAG_OK = "ok"
FLAG_UNKNOWN_UNIT = "unknown_unit"
FLAG_INVALID_VALUE = "invalid_value"
# A numeric test the catalog gives no unit: its values are kept but never aggregated, since
# nothing says what they measure in.
FLAG_NO_UNIT = "no_canonical_unit"


# ---------------------------------------------------------------------------------------- units

# Cleaned spelling -> canonical UCUM spelling used as keys in the catalog's "units" maps.
_UNIT_SPELLINGS: dict[str, str] = {}


def _register(canonical: str, *spellings: str) -> None:
    for spelling in (canonical, *spellings):
        _UNIT_SPELLINGS[_clean_unit(spelling)] = canonical


def _clean_unit(raw: str) -> str:
    text = _ascii_lower(raw).strip().rstrip(".")
    text = re.sub(r"\bper\s+", "/", text)  # "per hpf"; "percent" must survive
    text = text.replace(" ", "").replace("^", "").replace("*", "").replace("×", "x")
    text = text.replace("mcg", "ug").replace("micro", "u")
    text = text.replace("litre", "l").replace("liter", "l").replace("lt", "l")
    for cubic_mm in ("cu.mm", "cumm", "c.mm", "cmm", "mm3"):
        text = text.replace(cubic_mm, "ul")
    text = re.sub(r"^gms?/", "g/", text).replace("gm%", "g%").replace("gms%", "g%")
    # "1000 cells/uL", "10^9 cells/L": a multiplier's "cells" says what is counted, not the unit.
    return re.sub(r"(?<=[0-9])cells?/", "/", text)


_register("mg/dL", "mg/dl", "mg%", "mg/100ml", "mgs/dl", "mg / dl", "mg/dL.")
_register("g/dL", "g/dl", "gm/dl", "gms/dl", "g%", "gm%", "g/100ml", "gram/dl")
_register("g/L", "g/l", "gm/l")
_register("mg/L", "mg/l")
_register("ug/mL", "ug/ml", "mcg/ml", "µg/ml")
_register("ug/dL", "ug/dl", "mcg/dl", "µg/dl", "ug%")
_register("ug/L", "ug/l", "mcg/l")
_register("ng/mL", "ng/ml")
_register("ng/dL", "ng/dl")
_register("ng/L", "ng/l")
_register("pg/mL", "pg/ml")
_register("mmol/L", "mmol/l", "mmol/lt", "mmol")
_register("umol/L", "umol/l", "µmol/l", "micromol/l")
_register("nmol/L", "nmol/l")
_register("pmol/L", "pmol/l")
_register("meq/L", "meq/l", "mEq/L", "mequiv/l")
_register("U/L", "u/l", "iu/l", "units/l", "unit/l", "IU/L", "U/I")
_register("U/mL", "u/ml", "units/ml")
_register("[IU]/mL", "iu/ml")
_register("m[IU]/mL", "miu/ml", "mu/ml", "mIU/mL")
_register("m[IU]/L", "miu/l", "mu/l")
_register("u[IU]/mL", "uiu/ml", "uu/ml", "µiu/ml", "µu/ml", "microiu/ml", "uIU/mL")
_register(
    "10*3/uL",
    "10^3/ul",
    "x10^3/ul",
    "x 10^3/ul",
    "10e3/ul",
    "thou/ul",
    "k/ul",
    "10^9/l",
    "x10^9/l",
    "10e9/l",
    "thousand/ul",
    "x10³/ul",
    "10³/ul",
    "thousands/ul",
    "10^3/cumm",
    "x1000/ul",
    "1000/ul",
)
_register(
    "10*6/uL",
    "10^6/ul",
    "x10^6/ul",
    "10e6/ul",
    "m/ul",
    "mill/ul",
    "million/ul",
    "millions/ul",
    "mil/ul",
    "10^12/l",
    "x10^12/l",
    "10e12/l",
    "million/cumm",
    "millions/cumm",
    "mill/cumm",
    "x10⁶/ul",
    "10⁶/ul",
)
_register(
    "10*5/uL",
    "lakh/ul",
    "lakhs/ul",
    "lac/ul",
    "lacs/ul",
    "lakh/cumm",
    "lakhs/cumm",
    "10^5/ul",
    "x10^5/ul",
)
_register(
    "/uL",
    "/ul",
    "ul",
    "cumm",
    "cells/ul",
    "cell/ul",
    "#/ul",
    "/cumm",
    "cells/cumm",
    "cells/mm3",
    "/mm3",
    "no/cumm",
)
_register("%", "percent", "pct", "%.")
_register("fL", "fl", "femtoliter", "femtolitre", "um3", "cu micron", "cubic micron")
_register("pg", "picogram", "pg/cell")
_register("s", "sec", "secs", "second", "seconds")
_register(
    "mm/h",
    "mm/hr",
    "mm/1sthr",
    "mm/1st hr",
    "mm/1st hour",
    "mm in 1st hr",
    "mm/hour",
    "mm/1hr",
    "mm/1 hr",
    "mm at 1 hr",
    "mm/60min",
)
_register("/[HPF]", "/hpf", "cells/hpf", "#/hpf", "per hpf", "/h.p.f", "hpf", "/hpf.")
_register("/[LPF]", "/lpf", "#/lpf", "per lpf", "lpf")
_register("mg/g", "mg/g creatinine", "mg/gcreat", "mg/gm", "ug/mg", "mg/g creat")
_register("mg/mmol", "mg/mmol creatinine")
_register("mg/mg")
_register("mmol/mol", "mmol/mol hb")
_register("U/g{Hb}", "u/g/hb", "u/ghb", "u/gmhb", "iu/ghb", "iu/g/hb", "u/g{hb}")
_register(
    "mL/min/{1.73_m2}",
    "ml/min/1.73m2",
    "ml/min/1.73 m2",
    "ml/min/1.73m^2",
    "ml/min/1.73sqm",
    "ml/min/1.73 sq m",
    "ml/min/1.73m²",
    "ml/min/1.73",
)
_register("mL/min", "ml/min")
_register("mosm/kg", "mosmol/kg")
_register("{ratio}", "ratio", "{ratio}")
_register("[pH]", "ph")
_register("{INR}", "inr")
_register("mm[Hg]", "mmhg")
_register("kPa", "kpa")
_register("mg/(24.h)", "mg/24hr", "mg/24h", "mg/day", "mg/24 hrs", "mg/d", "mg/24 h")
_register("g/(24.h)", "g/24hr", "g/24h", "g/day", "g/d", "g/24 hrs", "g/24 h")
_register("mmol/(24.h)", "mmol/24hr", "mmol/24h", "mmol/day", "mmol/d", "mmol/24 h")
_register("umol/(24.h)", "umol/24hr", "umol/24h", "umol/day", "umol/d", "umol/24 h")
_register("ukat/L", "ukat/l", "µkat/l", "microkat/l")
_register("nkat/L", "nkat/l")
_register("k[IU]/L", "kiu/l", "ku/l", "kIU/L")
_register("{EU}/dL", "eu/dl", "ehrlich units/dl", "ehrlich unit/dl")
_register("L/L", "l/l")
_register(
    "ug/mL{FEU}", "ug/ml feu", "mcg/ml feu", "µg/ml feu", "ug/mlfeu", "ug feu/ml", "ug/ml(feu)"
)
_register("mg/L{FEU}", "mg/l feu", "mg/l(feu)", "mg feu/l")
_register("ng/mL{FEU}", "ng/ml feu", "ng/ml(feu)", "ng feu/ml")
_register("ng/mL{DDU}", "ng/ml ddu", "ng/ml(ddu)")
_register("ug/mL{DDU}", "ug/ml ddu", "mcg/ml ddu")
_register("", "-", "n/a", "na", "none", "nil unit")


@dataclass(frozen=True)
class NormalizedUnit:
    canonical: str  # canonical spelling when known, else the stripped input
    known: bool


# Units that are another unit times a fixed factor, whatever the analyte: a code that takes the
# base unit takes these too (1 ukat/L is 60 U/L; 1 kIU/L is 1 IU/mL, 1,000 mIU/mL; 1 g/24 h is
# 1,000 mg/24 h). Molar units need the analyte's molar mass: the catalog gives those per code.
_DERIVED_UNITS: dict[str, tuple[tuple[str, float], ...]] = {
    "ukat/L": (("U/L", 60.0),),
    "nkat/L": (("U/L", 0.06),),
    "k[IU]/L": (("[IU]/mL", 1.0), ("m[IU]/mL", 1000.0), ("U/L", 1000.0), ("U/mL", 1.0)),
    "g/(24.h)": (("mg/(24.h)", 1000.0),),
}
# Units only a timed urine collection is reported in: a bare "Creatinine" in g/24 h is the
# 24-hour urine test.
_TIMED_SUFFIX = "/(24.h)"


def unit_factor(test: LabTest, unit: NormalizedUnit) -> tuple[float, float] | None:
    """(factor, offset) from ``unit`` to the test's canonical unit; None when it cannot take it."""
    if not unit.known:
        return None
    direct = test.units.get(unit.canonical)
    if direct is not None:
        return direct
    for base, factor in _DERIVED_UNITS.get(unit.canonical, ()):
        if (via := test.units.get(base)) is not None and via[1] == 0.0:
            return factor * via[0], 0.0
    return None


def unit_specimen(unit: NormalizedUnit) -> str | None:
    """The specimen a unit implies on its own: a quantity per 24 hours is a 24-hour urine."""
    return "urine_24h" if unit.known and unit.canonical.endswith(_TIMED_SUFFIX) else None


def normalize_unit(raw: str | None) -> NormalizedUnit:
    """Map a unit spelling ("mg %", "x10^3/µL", "cells/cumm") to its canonical UCUM spelling."""
    if raw is None:
        return NormalizedUnit("", True)
    canonical = _UNIT_SPELLINGS.get(_clean_unit(raw))
    if canonical is None:
        return NormalizedUnit(raw.strip(), False)
    return NormalizedUnit(canonical, True)


@dataclass(frozen=True)
class ConvertedReading:
    value: float
    unit: str
    flag: str
    # Decimals the stored value carries: the report's own, or those its once-rounded conversion
    # keeps (negative when it was rounded left of the point); None when nothing was converted.
    decimals: int | None


def convert_reading(
    test: LabTest | str, value: float, unit: str | None, reported: str | None = None
) -> ConvertedReading:
    """Convert ``value`` in ``unit`` (as printed: ``reported``) to the test's canonical unit.

    A value in the canonical unit (or one with factor 1, mmol/L for meq/L) is kept exactly as
    reported. Any other is computed once and rounded once, to the significant digits the
    report gave (57 umol/L creatinine: two digits, 0.64 mg/dL). An unknown or inconvertible
    unit is never guessed: the value and unit come back as given with flag ``unknown_unit``.
    """
    if isinstance(test, str):
        test = load_catalog().by_code[test]
    given_unit = (unit or "").strip()
    if not math.isfinite(value):
        return ConvertedReading(value, given_unit, FLAG_INVALID_VALUE, None)
    precision = reported_precision(reported, value)
    if not test.canonical_unit and test.value_kind == "numeric":
        return ConvertedReading(value, given_unit, FLAG_NO_UNIT, precision.decimals)
    factor_offset = unit_factor(test, normalize_unit(unit))
    if factor_offset is None:
        return ConvertedReading(value, given_unit, FLAG_UNKNOWN_UNIT, precision.decimals)
    factor, offset = factor_offset
    if factor == 1.0 and offset == 0.0:  # the report's own value and precision stand
        return ConvertedReading(value, test.canonical_unit, FLAG_OK, precision.decimals)
    converted, decimals = round_once(value * factor + offset, precision.decimals, factor)
    return ConvertedReading(converted, test.canonical_unit, FLAG_OK, decimals)


def convert(test: LabTest | str, value: float, unit: str | None) -> tuple[float, str, str]:
    """``(value_canonical, canonical_unit, flag)`` of ``convert_reading`` for a value whose
    printed form is its shortest one."""
    reading = convert_reading(test, value, unit)
    return reading.value, reading.unit, reading.flag
