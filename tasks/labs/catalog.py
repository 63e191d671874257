"""The shipped lab catalog (``catalog.json``) as typed, indexed objects."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from tasks.labs.normalize import NameForms, analyze_name

CATALOG_PATH = Path(__file__).with_name("catalog.json")
BLOOD_FAMILY = frozenset({"blood", "serum", "plasma"})


@dataclass(frozen=True)
class LabTest:
    loinc_code: str
    long_name: str
    component: str
    specimen: str
    canonical_unit: str
    units: dict[str, tuple[float, float]]
    aliases: tuple[str, ...]
    rank: int
    value_kind: str

    @property
    def names(self) -> tuple[str, ...]:
        """Every spelling the catalog knows for this test, long name first."""
        return (self.long_name, self.component, *self.aliases)


@dataclass
class Catalog:
    tests: list[LabTest]
    notice: str
    content_hash: str
    by_code: dict[str, LabTest] = field(init=False)
    # Lookup keys -> codes. "exact" keys come from long names and components, "alias" from aliases.
    exact_index: dict[str, set[str]] = field(init=False)
    alias_index: dict[str, set[str]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_code = {test.loinc_code: test for test in self.tests}
        self.exact_index = defaultdict(set)
        self.alias_index = defaultdict(set)
        for test in self.tests:
            for name in (test.long_name, test.component, test.loinc_code):
                for key in lookup_keys(analyze_name(name)):
                    self.exact_index[key].add(test.loinc_code)
            for alias in test.aliases:
                for key in lookup_keys(analyze_name(alias)):
                    self.alias_index[key].add(test.loinc_code)

    def choice_names(self) -> tuple[list[str], list[str]]:
        """Parallel lists (normalized name, code) over all names: the fuzzy/embedding corpus."""
        names: list[str] = []
        codes: list[str] = []
        for test in self.tests:
            seen: set[str] = set()
            for name in test.names:
                core = analyze_name(name).core
                if core and core not in seen:
                    seen.add(core)
                    names.append(core)
                    codes.append(test.loinc_code)
        return names, codes


def lookup_keys(forms: NameForms) -> list[str]:
    """Keys under which a name is indexed, most specific first."""
    # "#" key: word order ignored ("GFR Estimated" = "Estimated GFR"); "~" key: spaces ignored
    # ("CK-MB" = "CKMB", "Hb A1c" = "HbA1c").
    keys = [forms.full, forms.core, "#" + " ".join(sorted(forms.core.split())), "~" + forms.compact]
    return [key for key in dict.fromkeys(keys) if key and key not in ("~", "#")]


def _parse_test(raw: dict[str, object]) -> LabTest:
    units_raw = raw["units"]
    assert isinstance(units_raw, dict)
    return LabTest(
        loinc_code=str(raw["loinc_code"]),
        long_name=str(raw["long_name"]),
        component=str(raw["component"]),
        specimen=str(raw["specimen"]),
        canonical_unit=str(raw["canonical_unit"]),
        units={unit: (float(f), float(o)) for unit, (f, o) in units_raw.items()},
        aliases=tuple(str(alias) for alias in raw["aliases"]),  # type: ignore[attr-defined]
        rank=int(raw["rank"]),  # type: ignore[call-overload]
        value_kind=str(raw["value_kind"]),
    )


def read_catalog(path: Path) -> Catalog:
    payload = path.read_bytes()
    document = json.loads(payload)
    return Catalog(
        tests=[_parse_test(raw) for raw in document["tests"]],
        notice=document["notice"],
        content_hash=hashlib.sha256(payload).hexdigest()[:16],
    )


@lru_cache(maxsize=4)
def load_catalog(path: Path | None = None) -> Catalog:
    """The catalog shipped with the package (parsed and indexed once per process)."""
    return read_catalog(path or CATALOG_PATH)
