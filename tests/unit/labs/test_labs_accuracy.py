"""Accuracy of the full matcher on the hand-written evaluation set."""

from __future__ import annotations

import pytest

from tasks.labs.matcher import CombinedMatcher, LabQuery

MIN_TOP1_ACCURACY = 0.97  # measured 99.4% strict (bench/categorize.py)


@pytest.mark.slow
def test_full_matcher_accuracy_on_eval_set(
    combined_matcher: CombinedMatcher, eval_rows: list[tuple[LabQuery, frozenset[str]]]
) -> None:
    assert len(eval_rows) >= 450
    results = combined_matcher.match_many([query for query, _ in eval_rows])
    correct = sum(
        result.loinc_code in expected if expected else result.loinc_code is None
        for (_, expected), result in zip(eval_rows, results, strict=True)
    )
    # Report counts only: test names stay out of logs even in a synthetic set.
    assert correct / len(eval_rows) >= MIN_TOP1_ACCURACY, f"{correct}/{len(eval_rows)} correct"


@pytest.mark.slow
def test_no_should_stay_uncategorized_name_gets_a_code(
    combined_matcher: CombinedMatcher, eval_rows: list[tuple[LabQuery, frozenset[str]]]
) -> None:
    negatives = [query for query, expected in eval_rows if not expected]
    assert len(negatives) >= 50
    results = combined_matcher.match_many(negatives)
    wrongly_coded = sum(1 for result in results if result.loinc_code is not None)
    assert wrongly_coded == 0, f"{wrongly_coded} of {len(negatives)} non-tests got a code"


# Per set, measured with `bench/categorize.py` (the ml-worker's matcher, model on): top-1 with
# siblings, and the most wrong analytes allowed. Floors sit a few points under the measured
# figures; the external sets were not used to write aliases or rules.
SET_FLOORS = {
    "eval_set.csv": (0.97, 0.0),  # measured 99.7%, 0 wrong
    "adversarial_set.csv": (0.96, 0.0),  # 99.1%, 0 wrong
    "external/nhanes_lab_variable_labels.csv": (0.94, 0.0),  # 97.1%, 0 wrong
    "external/vista_ehr_test_names.csv": (0.76, 0.0),  # 80.8%, 0 wrong
    "external/vista_loinc_short_names.csv": (0.56, 0.0),  # 59.7%, 0 wrong
    # Added after the rules; a hash splits each into a readable half and a held-out half
    # (bench/categorize.py prints both). Whole-set figures here.
    "external/ccda_lab_results.csv": (0.92, 0.0),  # 95.1%, 0 wrong
    "external/synthea_lab_observations.csv": (0.81, 0.0),  # 84.6%, 0 wrong
    "external/lab_unit_table.csv": (0.77, 0.0),  # 80.6%, 0 wrong
    "external/lhncbc_lab_names.csv": (0.45, 0.0),  # 48.7%, 0 wrong
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SET_FLOORS))
def test_accuracy_per_set_with_the_model(combined_matcher: CombinedMatcher, name: str) -> None:
    from bench.categorize import DATA_DIR, read_eval, score

    rows = read_eval(DATA_DIR / name)
    results = combined_matcher.match_many([row.query for row in rows])
    measured = score(rows, [(r.loinc_code, r.loinc_name) for r in results])
    floor, most_wrong = SET_FLOORS[name]
    assert measured.top1_siblings >= floor, f"{measured.top1_siblings:.3f} right"
    assert measured.wrong <= most_wrong, f"{measured.wrong:.3f} wrong"
