"""Checks that decide whether a model's proposal becomes a code: none of them comes from the model.

The embedding model ranks catalog codes by resemblance, and resemblance cannot tell prolactin
from procalcitonin. A proposal is accepted only when the name itself names the code's analyte:

- one phrase of the name (the text outside brackets, a bracketed part, or a "/" alternative) is,
  once filler words are dropped, exactly one of the code's names: its LOINC component, a synonym
  or an abbreviation from the catalog;
- no phrase is exactly the name of another analyte's code ("Free Thyroxine (T4)" is not total T4);
- no word of the name that names analytes elsewhere in the catalog ("free", "ionized", "IgM",
  "B12") is missing from the code's own names.

The specimen, property, method and unit checks are the alias tier's vetoes, applied by the caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tasks.labs.catalog import Catalog

# Greek letters as reports write them, and spellings that differ only by region.
_GREEK = {
    "α": "alpha",
    "β": "beta",
    "γ": "gamma",
    "δ": "delta",
    "κ": "kappa",
    "λ": "lambda",
    "µ": "u",
    "μ": "u",
}
_SPELLING = {
    "haemoglobin": "hemoglobin",
    "haematocrit": "hematocrit",
    "oestradiol": "estradiol",
    "sulphate": "sulfate",
    "aluminium": "aluminum",
    "caesium": "cesium",
    "ionised": "ionized",
    "anaemia": "anemia",
    "faecal": "fecal",
    "oesinophils": "eosinophils",
    "leucocytes": "leukocytes",
    "leucocyte": "leukocyte",
    "glycosylated": "glycated",
}
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
    """Lowercase, Greek letters spelled out, British spellings made American."""
    lowered = text.lower()
    for letter, word in _GREEK.items():
        lowered = lowered.replace(letter, f" {word} ")
    return " ".join(_SPELLING.get(word, word) for word in lowered.split())


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
