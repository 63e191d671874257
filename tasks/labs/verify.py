"""Checks that decide whether a model's proposal becomes a code: none of them comes from the model.

The embedding model ranks catalog codes by resemblance, and resemblance cannot tell prolactin
from procalcitonin. A proposal is accepted only when the name itself names the code's analyte:

- one phrase of the name (the text outside brackets, a bracketed part, or a "/" alternative) is,
  once filler words are dropped, exactly one of the code's names: its LOINC component, a synonym
  or an abbreviation from the catalog;
- no phrase is exactly the name of another analyte's code ("Free Thyroxine (T4)" is not total T4);
- no word of the name that names analytes elsewhere in the catalog ("free", "ionized", "IgM",
  "B12"), or reads as an analyte's identifier (CD11b, IL6), is missing from the code's own names.

Words are compared in one spelling (``stem``: plurals, "prostatic"/"prostate", antibody/Ab),
compound words of the catalog also count as their two parts ("amino transferase"), and a name
may leave out "virus" or "total" ("Hepatitis A Ab" is LOINC's "Hepatitis A virus Ab").

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
# A word that reads as an analyte's identifier (CD11b, IL6, B6, A1c) names an analyte even when
# the catalog has no code for it: the code must carry it.
_MARKER = re.compile(r"[a-z]{1,4}[0-9]+[a-z]?")
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


# Words a report spells out where LOINC abbreviates, or the other way round.
_SAME_WORD = {"antibody": "ab", "antibodies": "ab", "antigen": "ag", "antigens": "ag"}
# Words a name may leave out without naming another analyte: "Hepatitis A Ab" is LOINC's
# "Hepatitis A virus Ab", "Bilirubin" its "Bilirubin.total".
UNSTATED = frozenset({"virus", "total"})


def stem(word: str) -> str:
    """One spelling for a word's inflections: plural "s", final "e", adjective "-ic" of a long
    word ("prostatic" and "prostate" both give "prostat"). Distinct analytes keep distinct
    stems: creatine/creatinine, phosphate/phosphatase, folate/folic."""
    word = _SAME_WORD.get(word, word)
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if len(word) >= 8 and word.endswith("ic"):
        return word[:-2]
    if len(word) > 5 and word.endswith("e"):
        return word[:-1]
    return word


def content(text: str) -> frozenset[str]:
    return frozenset(stem(word) for word in tokens(text) if word not in FILLER)


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
    parts: dict[str, frozenset[str]]  # compound word -> the two catalog words it joins

    @classmethod
    def build(cls, catalog: Catalog) -> AnalyteCheck:
        synonyms: dict[str, frozenset[frozenset[str]]] = {}
        vocabulary: dict[str, frozenset[str]] = {}
        components: dict[str, str] = {}
        named: dict[frozenset[str], set[str]] = {}
        analyte_words: set[str] = set()
        every_name: dict[str, list[str]] = {}
        for test in catalog.tests:
            names = [test.component, _BRACKETS.sub(" ", test.component), *test.aliases]
            names += [*test.labels, *(a or b for a, b in _BRACKETS.findall(test.component))]
            every_name[test.loinc_code] = names
        parts = _compounds(
            {stem(word) for names in every_name.values() for name in names for word in tokens(name)}
        )
        for test in catalog.tests:
            names = every_name[test.loinc_code]
            sets = frozenset(_split(words, parts) for name in names if (words := content(name)))
            synonyms[test.loinc_code] = sets
            vocabulary[test.loinc_code] = _split(
                frozenset(stem(word) for name in (test.long_name, *names) for word in tokens(name)),
                parts,
            )
            key = _component_key(test.component)
            components[test.loinc_code] = key
            for words in sets:
                named.setdefault(words, set()).add(key)
            for name in (test.component, *test.aliases):
                analyte_words.update(_split(content(name), parts))
        return cls(
            synonyms,
            vocabulary,
            components,
            {words: frozenset(keys) for words, keys in named.items()},
            frozenset(analyte_words),
            parts,
        )

    def _names(self, reading: frozenset[str], own: frozenset[frozenset[str]]) -> bool:
        """Whether a phrase of the name is one of the code's names, up to unstated words."""
        if reading in own:
            return True
        stated = reading - UNSTATED
        return bool(stated) and any(stated == words - UNSTATED for words in own)

    def agrees(self, name: str, code: str) -> bool:
        """Whether the name names the code's analyte (see the module docstring)."""
        own = self.synonyms.get(code)
        if not own:
            return False
        readings = [_split(reading, self.parts) for reading in phrases(name)]
        if not any(self._names(reading, own) for reading in readings):
            return False
        component = self.components[code]
        for reading in readings:
            if not self._names(reading, own) and self.named.get(reading, frozenset()) - {component}:
                return False  # another phrase names another analyte
        vocabulary = self.vocabulary[code]
        words = {word for reading in readings for word in reading}
        return not any(
            (word in self.analyte_words or _MARKER.fullmatch(word)) and word not in vocabulary
            for word in words
        )


# Chemical prefixes a report writes as a word of their own ("Alanine amino transferase").
_PREFIXES = frozenset({"amino", "hydroxy", "glyco", "deoxy", "dehydro"})


def _compounds(words: set[str]) -> dict[str, frozenset[str]]:
    """Catalog words that join two catalog words (or a chemical prefix and a catalog word) of
    five letters or more ("aminotransferase" = "amino" + "transferase"), so a report that
    writes them apart agrees."""
    found: dict[str, frozenset[str]] = {}
    for word in words:
        for cut in range(5, len(word) - 4):
            head, tail = word[:cut], word[cut:]
            if (head in words or head in _PREFIXES) and tail in words:
                found[word] = frozenset({head, tail})
                break
    return found


def _split(words: frozenset[str], parts: dict[str, frozenset[str]]) -> frozenset[str]:
    return frozenset(part for word in words for part in parts.get(word, (word,)))


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
