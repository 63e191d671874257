"""Shared fixtures for lab categorization tests: one model load per test session."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tasks.labs.matcher import CombinedMatcher, EmbeddingMatcher, LabQuery

EVAL_SET = Path(__file__).resolve().parents[2] / "data" / "labs" / "eval_set.csv"


@pytest.fixture(scope="session")
def combined_matcher(embedding_cache_dir: Path) -> CombinedMatcher:
    return CombinedMatcher(cache_dir=embedding_cache_dir, use_model=True)


@pytest.fixture(scope="session")
def embedding_matcher(embedding_cache_dir: Path) -> EmbeddingMatcher:
    return EmbeddingMatcher(cache_dir=embedding_cache_dir)


@pytest.fixture(scope="session")
def eval_rows() -> list[tuple[LabQuery, frozenset[str]]]:
    """(query, the right codes): several when siblings are equally right, none when the name
    must stay uncategorized."""
    with EVAL_SET.open(newline="", encoding="utf-8") as handle:
        return [
            (
                LabQuery(row["test_name"], row["unit"]),
                frozenset(code for code in row["expected_loinc"].split("|") if code),
            )
            for row in csv.DictReader(handle)
        ]
