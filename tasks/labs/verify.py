"""Checks that decide whether a model's proposal becomes a code: none of them comes from the model.

The embedding model ranks catalog codes by resemblance, and resemblance cannot tell prolactin
from procalcitonin. A proposal is accepted only when the name itself names the code's analyte:

- one phrase of the name (the text outside brackets, a bracketed part, or a "/" alternative) is,
  once filler words are dropped, exactly one of the code's names: its LOINC component, a synonym
  or an abbreviation from the catalog;
- no phrase is exactly the name of another analyte's code ("Free Thyroxine (T4)" is not total T4);
- no word of the name that names analytes elsewhere in the catalog ("free", "ionized", "IgM",
  "B12") is missing from the code's own names.

The reported unit's dimension must fit the code's LOINC property (``unit_fits_property``: ng/mL
is a concentration, never the rate of a 24-hour collection). The specimen, property, method and
unit checks of the alias tier veto proposals as well; the caller applies them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tasks.labs.catalog import Catalog, LabTest
from tasks.labs.normalize import NormalizedUnit
from tasks.labs.parse import americanize, ascii_lower

# Words that say nothing about the analyte: the specimen (checked separately), and report noise.
FILLER = frozenset(
    [
        "serum",
        "plasma",
        "blood",
        "whole",
        "urine",
        "ser",
        "plas",
        "bld",
        "level",
        "levels",
        "test",
        "random",
        "point",
        "poc",
        "assay",
        "screen",
        "value",
        "result",
        "measurement",
        "conc",
        "concentration",
        "the",
        "of",
        "in",
        "and",
        "or",
        "by",
        "for",
        "s",
        "p",
        "a",
        "an",
        "on",
    ]
)
_TOKEN = re.compile(r"[a-z0-9]+")
_BRACKETS = re.compile(r"\(([^()]*)\)|\[([^\[\]]*)\]")


def fold(text: str) -> str:
    """Lowercase ASCII, Greek letters spelled out, British spellings made American (the same
    folding every tier applies)."""
    return " ".join(americanize(ascii_lower(text)).split())


def tokens(text: str) -> tuple[str, ...]:
    """Folded alphanumeric words; a lone letter joins a following number ("T-4" -> "t4")."""
    words = _TOKEN.findall(fold(text))
    joined: list[str] = []
    for word in words:
        if joined and word.isdigit() and len(joined[-1]) <= 2 and joined[-1].isalpha():
            joined[-1] += word
        else:
            joined.append(word)
    return tuple(joined)


def content(text: str) -> frozenset[str]:
    return frozenset(word for word in tokens(text) if word not in FILLER)


def phrases(name: str) -> list[frozenset[str]]:
    """The name's readings: outside brackets, each bracketed part, each "/" alternative."""
    inside = [a or b for a, b in _BRACKETS.findall(name)]
    outside = _BRACKETS.sub(" ", name)
    parts = [outside, *inside]
    for part in (outside, *inside):
        if "/" in part:
            parts.extend(part.split("/"))
    found = [content(part) for part in parts]
    return [words for words in dict.fromkeys(found) if words]


def _component_key(component: str) -> str:
    return " ".join(tokens(_BRACKETS.sub(" ", component)))


@dataclass(frozen=True)
class AnalyteCheck:
    """The analyte check for one catalog, indexes built once."""

    synonyms: dict[str, frozenset[frozenset[str]]]  # code -> its names' content word sets
    vocabulary: dict[str, frozenset[str]]  # code -> every word of its names
    components: dict[str, str]  # code -> component key (siblings share it)
    named: dict[frozenset[str], frozenset[str]]  # content word set -> component keys it names
    analyte_words: frozenset[str]  # words some code's component or synonym carries

    @classmethod
    def build(cls, catalog: Catalog) -> AnalyteCheck:
        synonyms: dict[str, frozenset[frozenset[str]]] = {}
        vocabulary: dict[str, frozenset[str]] = {}
        components: dict[str, str] = {}
        named: dict[frozenset[str], set[str]] = {}
        analyte_words: set[str] = set()
        for test in catalog.tests:
            names = [test.component, _BRACKETS.sub(" ", test.component), *test.aliases]
            names += [*test.labels, *(a or b for a, b in _BRACKETS.findall(test.component))]
            sets = frozenset(words for name in names if (words := content(name)))
            synonyms[test.loinc_code] = sets
            vocabulary[test.loinc_code] = frozenset(
                word for name in (test.long_name, *names) for word in tokens(name)
            )
            key = _component_key(test.component)
            components[test.loinc_code] = key
            for words in sets:
                named.setdefault(words, set()).add(key)
            for name in (test.component, *test.aliases):
                analyte_words.update(content(name))
        return cls(
            synonyms,
            vocabulary,
            components,
            {words: frozenset(keys) for words, keys in named.items()},
            frozenset(analyte_words),
        )

    def agrees(self, name: str, code: str) -> bool:
        """Whether the name names the code's analyte (see the module docstring)."""
        own = self.synonyms.get(code)
        if not own:
            return False
        readings = phrases(name)
        if not any(reading in own for reading in readings):
            return False
        component = self.components[code]
        for reading in readings:
            if reading not in own and self.named.get(reading, frozenset()) - {component}:
                return False  # another phrase names another analyte
        vocabulary = self.vocabulary[code]
        words = {word for reading in readings for word in reading}
        return not any(word in self.analyte_words and word not in vocabulary for word in words)


# What a unit measures, as LOINC's property classes in the catalog name it.
_COUNT_UNITS = frozenset({"/uL", "10*3/uL", "10*5/uL", "10*6/uL", "/[HPF]", "/[LPF]"})
_CONCENTRATION = re.compile(
    r"(?:[kmunp]?(?:g|mol|eq|osm|kat|U)|[kmu]?\[IU\])/(?:dL|L|mL|kg)(?:\{[A-Z]+\})?"
)
_UNIT_PROPERTIES = {
    "%": frozenset({"fraction", "ratio"}),
    "fL": frozenset({"volume"}),
    "pg": frozenset({"entitic_mass"}),
    "mm[Hg]": frozenset({"pressure"}),
    "s": frozenset({"time"}),
    "mg/g": frozenset({"ratio"}),
}


def unit_properties(unit: NormalizedUnit) -> frozenset[str] | None:
    """The property classes a reported unit can measure; None when the unit does not say."""
    if not unit.known or not unit.canonical:
        return None
    canonical = unit.canonical
    if canonical in _UNIT_PROPERTIES:
        return _UNIT_PROPERTIES[canonical]
    if canonical in _COUNT_UNITS:
        return frozenset({"count"})
    if canonical.endswith("/(24.h)"):
        return frozenset({"rate"})
    if _CONCENTRATION.fullmatch(canonical):
        return frozenset({"concentration"})
    return None


def unit_fits_property(unit: NormalizedUnit, test: LabTest) -> bool:
    """Whether the reported unit's dimension fits the code's LOINC property."""
    properties = unit_properties(unit)
    return properties is None or not test.property_class or test.property_class in properties
