"""The checks that accept or refuse a model's proposal come from the catalog, not the model."""

from __future__ import annotations

import pytest

from tasks.labs.catalog import load_catalog
from tasks.labs.verify import AnalyteCheck, fold, phrases, tokens
from tasks.settings import Settings


@pytest.fixture(scope="module")
def check() -> AnalyteCheck:
    return AnalyteCheck.build(load_catalog())


@pytest.mark.parametrize(
    ("name", "code", "agrees"),
    [
        ("Total Thyroxine (T-4)", "3026-2", True),
        ("Free Thyroxine (T4)", "3026-2", False),  # a phrase and a word name free T4
        ("Dilantin (Phenytoin)", "3968-5", True),
        ("Vitamin B6", "2284-8", False),  # the model's neighbour, folate (B9)
        ("Procalcitonin", "2842-3", False),  # prolactin resembles it, and is not it
        ("Alpha-1-antitrypsin", "1825-9", True),
        ("β2-microglobulin", "1952-1", True),
        ("Haemoglobin", "718-7", True),
    ],
)
def test_a_proposal_is_accepted_only_when_the_name_names_the_component(
    check: AnalyteCheck, name: str, code: str, agrees: bool
) -> None:
    assert check.agrees(name, code) is agrees


def test_greek_letters_and_british_spellings_fold() -> None:
    assert fold("β2-Microglobulin") == "beta 2-microglobulin"
    assert tokens("Haemoglobin γ-GT") == ("hemoglobin", "gamma", "gt")
    assert tokens("T-4") == ("t4",)
    assert phrases("Folic Acid/Folate") == [
        frozenset({"folic", "acid", "folate"}),
        frozenset({"folic", "acid"}),
        frozenset({"folate"}),
    ]


def test_the_model_is_on_except_in_a_lambda() -> None:
    assert Settings(lab_model=None).lab_model_enabled
    assert not Settings(lab_model=None, lambda_function_name="labs-step").lab_model_enabled
    assert not Settings(lab_model=False).lab_model_enabled
