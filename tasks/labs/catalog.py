"""The shipped lab catalog (``catalog.csv``) as typed, indexed objects.

The catalog is a table a clinician can review and extend: one row per LOINC code with its long
common name, component, property, specimen, method, canonical unit, decimals, accepted units
with their conversion to the canonical one, and the aliases reports use. Lines starting with "#"
carry the LOINC notice.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from tasks.labs.parse import (
    BLOOD_FAMILY,
    ParsedName,
    analyze_name,
    coexpressed_markers,
    normalize_text,
    parse_name,
)

CATALOG_PATH = Path(__file__).with_name("catalog.csv")
SPECIMENS = frozenset(
    {
        *BLOOD_FAMILY,
        "urine",
        "urine_24h",
        "csf",
        "pleural",
        "peritoneal",
        "synovial",
        "body_fluid",
        "stool",
        "bone_marrow",
        "other",
        "control",
        "any",
    }
)
# Aliases that parse to nothing but a qualifier would match any name carrying it.
_TOO_GENERIC = frozenset({"total", "free", "direct", "random", "ratio"})


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
    labels: tuple[str, ...] = ()
    property_class: str = ""
    method: str = ""
    decimals: int = 2  # as reports print the canonical unit (documentation; never rounds)
    decimals_source: str = ""
    # The code this test's results are stored under, when another code is the analyte's one
    # series (HbA1c by IFCC protocol -> 4548-4 in %): empty for the test itself.
    series: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        """Every spelling the catalog knows for this test, long name first."""
        return (self.long_name, self.component, *self.aliases, *self.labels)


@dataclass(frozen=True)
class NameEntry:
    """One name of a test as the parser reads it."""

    words: frozenset[str]
    curated: bool  # an alias (a whole name as reports write it) rather than the LOINC name
    parsed: ParsedName
    needs_specimen: bool = False  # a terse hospital label of a code outside the blood family
    label: bool = False  # a hospital label (MIMIC-IV), not a LOINC name or a curated alias


@dataclass
class Catalog:
    tests: list[LabTest]
    notice: str
    content_hash: str
    by_code: dict[str, LabTest] = field(init=False)
    # Parsed analyte words: per test its names, per word the tests whose names carry it.
    name_entries: dict[str, tuple[NameEntry, ...]] = field(init=False)
    vocabulary: dict[str, frozenset[str]] = field(init=False)
    word_index: dict[str, frozenset[str]] = field(init=False)
    denominators: dict[str, str | None] = field(init=False)
    # Markers a name must state to take a co-expression population's code ("CD3+CD4+ cells").
    markers: dict[str, frozenset[str]] = field(init=False)
    # normalize_text(name) -> codes: a name written exactly as the catalog writes it.
    text_index: dict[str, set[str]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_code = {test.loinc_code: test for test in self.tests}
        self.text_index = defaultdict(set)
        self.name_entries = {}
        self.vocabulary = {}
        self.denominators = {}
        self.markers = {}
        word_index: dict[str, set[str]] = defaultdict(set)
        for test in self.tests:
            entries = self._entries(test)
            self.name_entries[test.loinc_code] = entries
            self.vocabulary[test.loinc_code] = frozenset().union(*(e.words for e in entries))
            self.denominators[test.loinc_code] = parse_name(test.long_name).denominator
            self.markers[test.loinc_code] = coexpressed_markers(test.component)
            for word in self.vocabulary[test.loinc_code]:
                word_index[word].add(test.loinc_code)
            for name in (test.long_name, test.component, *test.aliases):
                self.text_index[normalize_text(name)].add(test.loinc_code)
        self.word_index = {word: frozenset(codes) for word, codes in word_index.items()}

    @staticmethod
    def _entries(test: LabTest) -> tuple[NameEntry, ...]:
        entries = []
        terse = test.specimen not in BLOOD_FAMILY
        for name, curated, is_label in (
            (test.long_name, False, False),
            (test.component, False, False),
            *((alias, True, False) for alias in test.aliases),
            *((label, True, True) for label in test.labels),
        ):
            parsed = parse_name(name)
            if not parsed.words or (curated and parsed.words <= _TOO_GENERIC):
                continue
            entries.append(
                NameEntry(parsed.words, curated, parsed, is_label and terse, label=is_label)
            )
        return tuple(entries)

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


def parse_units(text: str) -> dict[str, tuple[float, float]]:
    """``mg/dL=1; mmol/L=18.016; %=10.929,-23.49735`` -> {unit: (factor, offset)}."""
    units: dict[str, tuple[float, float]] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        unit, _, numbers = part.strip().rpartition("=")
        factor, _, offset = numbers.partition(",")
        units[unit.strip()] = (float(factor), float(offset or 0.0))
    return units


def _parse_row(row: dict[str, str]) -> LabTest:
    return LabTest(
        loinc_code=row["loinc_code"].strip(),
        long_name=row["long_name"].strip(),
        component=row["component"].strip(),
        specimen=row["specimen"].strip(),
        canonical_unit=row["canonical_unit"].strip(),
        units=parse_units(row["units"]),
        aliases=tuple(a.strip() for a in row["aliases"].split("|") if a.strip()),
        rank=int(row["rank"]),
        value_kind=row["value_kind"].strip(),
        labels=tuple(a.strip() for a in row.get("labels", "").split("|") if a.strip()),
        property_class=row["property"].strip(),
        method=row["method"].strip(),
        decimals=int(row["decimals"] or 2),
        decimals_source=row.get("decimals_source", "").strip(),
        series=row.get("series", "").strip(),
    )


def read_catalog(path: Path) -> Catalog:
    payload = path.read_bytes()
    text = payload.decode("utf-8")
    notice_lines = [line[1:].strip() for line in text.splitlines() if line.startswith("#")]
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    tests = [_parse_row(row) for row in csv.DictReader(io.StringIO(body))]
    return Catalog(
        tests=tests,
        notice=" ".join(notice_lines),
        content_hash=hashlib.sha256(payload).hexdigest()[:16],
    )


@lru_cache(maxsize=4)
def load_catalog(path: Path | None = None) -> Catalog:
    """The catalog shipped with the package (parsed and indexed once per process)."""
    return read_catalog(path or CATALOG_PATH)
