from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks.labs import get_default_matcher
from tasks.labs.errors import CategorizationFailed
from tasks.labs.matcher import (
    AliasMatcher,
    CombinedMatcher,
    EmbeddingMatcher,
    FuzzyMatcher,
    LabQuery,
    MatchResult,
)
from tasks.labs.parse import coexpressed_markers, parse_name


def codes(matcher: AliasMatcher | FuzzyMatcher, *queries: tuple[str, str]) -> list[str | None]:
    return [r.loinc_code for r in matcher.match_many([LabQuery(n, u) for n, u in queries])]


def test_alias_matcher_reads_report_style_names() -> None:
    matcher = AliasMatcher()
    assert codes(
        matcher,
        ("S. Creatinine", "mg/dl"),
        ("SGPT (ALT)", "U/L"),
        ("Glycosylated Haemoglobin (HbA1c)", "%"),
        ("T.S.H. (Ultrasensitive)", "µIU/mL"),
        ("Fasting Blood Sugar", "mg/dL"),
        ("Total Leucocyte Count", "cells/cumm"),
    ) == ["2160-0", "1742-6", "4548-4", "3016-3", "1558-6", "6690-2"]


def test_alias_matcher_labels_exact_and_alias_methods() -> None:
    matcher = AliasMatcher()
    exact = matcher.match_one(LabQuery("Creatinine", "mg/dL"))
    alias = matcher.match_one(LabQuery("SGOT", "U/L"))
    assert (exact.method, exact.confidence) == ("exact", 1.0)
    assert (alias.method, alias.loinc_code) == ("alias", "1920-8")


def test_unit_is_evidence() -> None:
    matcher = AliasMatcher()
    assert codes(matcher, ("HbA1c", "%"), ("HbA1c", "mmol/mol")) == ["4548-4", "59261-8"]
    assert codes(matcher, ("CK-MB", "ng/mL"), ("CK-MB", "U/L")) == ["13969-1", "32673-6"]
    assert codes(matcher, ("Troponin I", "ng/mL"), ("Troponin I", "ng/L")) == [
        "10839-9",
        "89579-7",
    ]
    # Dipstick (no unit) vs quantitative urine glucose.
    assert codes(matcher, ("Urine Glucose", ""), ("Urine Glucose", "mg/dL")) == [
        "25428-4",
        "5792-7",
    ]


def test_specimen_words_are_evidence() -> None:
    matcher = AliasMatcher()
    assert codes(matcher, ("Creatinine (Urine)", "mg/dL"), ("Serum Creatinine", "mg/dL")) == [
        "2161-8",
        "2160-0",
    ]
    # Urine calcium is its own code; the serum one is never taken for it.
    assert codes(matcher, ("Calcium (Urine)", "mg/dL"), ("Calcium Ur", "mg/dL")) == [
        "17862-4",
        "17862-4",
    ]


def test_a_co_expression_population_needs_every_marker_named() -> None:
    # LOINC's "CD4 cells" and "CD3+CD4+ (T4 helper) cells" are two components; a hospital label
    # ("Absolute CD4 Count") on the second must not hand it to a name of the first.
    matcher = AliasMatcher()
    assert codes(
        matcher,
        ("CD4 Cells # Bld", "/uL"),
        ("CD4 Cells %", "%"),
        ("CD8 Count", "cells/uL"),
        ("CD3+CD4+ (T4 helper) cells [#/volume] in Blood", "/uL"),
        ("CD3 Cells %", "%"),
    ) == [None, None, None, "24467-3", "8124-0"]
    assert coexpressed_markers("CD3+CD4+ (T4 helper) cells/100 cells") == {"cd3", "cd4"}
    assert coexpressed_markers("HIV 1+2 Ab") == frozenset()  # two analytes, not two markers


@pytest.mark.slow
def test_the_model_cannot_give_a_co_expression_code_either(
    combined_matcher: CombinedMatcher,
) -> None:
    result = combined_matcher.match_many([LabQuery("CD4 Cells # Bld", "/uL")])[0]
    assert (result.loinc_code, result.method) == (None, "none")
    assert "24467-3" in {code for code, _ in result.candidates}  # still offered for review


def test_storage_and_count_words_are_read() -> None:
    # How the specimen was kept says nothing about the analyte; "number" states a count.
    matcher = AliasMatcher()
    assert codes(
        matcher,
        ("Glucose, refrigerated serum", "mg/dL"),
        ("Triglycerides, refrig serum", "mmol/L"),
        ("Iron, frozen serum", "ug/dL"),
        ("Lymphocyte number", "1000 cells/uL"),
        ("Eosinophils number", "10^9 cells/L"),
        ("Lymphocytes", "%"),
        ("Phone number", ""),
    ) == ["2345-7", "2571-8", "2498-4", "731-0", "711-2", "736-9", None]


def test_a_bracketed_abbreviation_that_restates_the_name_is_read_as_such() -> None:
    matcher = AliasMatcher()
    assert codes(
        matcher,
        ("Alanine transaminase (ALT/ALAT)", "U/L"),  # ALAT: an acronym nobody's name carries
        ("Alpha 1-antitrypsin (AAT)", "mg/dL"),
        ("Copper (Cu)", "ug/dL"),
        ("Adrenocorticotropic hormone (ACTH)", "pg/mL"),
        ("Ionized calcium (Ca)", "mmol/L"),  # the symbol of the element the name names
        ("Free triiodothyronine (FT3)", "ng/dL"),
        ("Phosphorus (P)", "mg/dL"),  # the parser reads phosphorus as LOINC's phosphate
    ) == ["1742-6", "1825-9", "5631-7", "2141-0", "1994-3", "3051-0", "2777-1"]
    # A bracket that qualifies the name, or names another analyte, leaves it unresolved.
    assert codes(
        matcher,
        ("Testosterone (Bio)", "ng/dL"),
        ("Ferritin (Spl)", "ng/mL"),
        ("Ferritin (IgG)", "ng/mL"),
        ("Copper (Zn)", "ug/dL"),
        ("Copper (Xq)", "ug/dL"),
    ) == [None, None, None, None, None]


def test_report_spellings_of_cells_drugs_and_stereo_locants() -> None:
    matcher = AliasMatcher()
    assert codes(
        matcher,
        ("Eosinophil granulocytes", "10^9/L"),
        ("Paracetamol", "mg/L"),
        ("Ciclosporin", "ng/mL"),
        ("Ferritin – Males and postmenopausal females", "ng/mL"),  # a reference population
        ("Thrombocyte/Platelet count", "10^9/L"),  # two spellings of one word, no ratio
        ("Chloride", "mg/dL"),
    ) == ["711-2", "3298-7", "3520-4", "2276-4", "777-3", "2075-0"]
    # "Full blood" is whole blood: a fasting glucose in it is no serum fasting glucose.
    assert codes(matcher, ("Full blood glucose (fasting)", "mmol/L")) == [None]
    # The stereo descriptor after a locant goes; a Greek letter before a digit stays a name.
    assert parse_name("17α-Hydroxyprogesterone") == parse_name("17-Hydroxyprogesterone")
    assert "beta" in parse_name("β2-Microglobulin").words


def test_loinc_short_name_abbreviations_are_read() -> None:
    matcher = AliasMatcher()
    assert codes(
        matcher,
        ("Bilirubin Dir Ser", "mg/dL"),
        ("Bilirubin Indir SerPl", "mg/dL"),
        ("non-HDL Choles Calc", "mg/dL"),
        ("Sodium R-Ur Qn", "mmol/L"),  # a random urine
        ("Polys %", "%"),
        ("Phosphorus Ur Qn", "mg/dL"),  # LOINC's component is phosphate
        ("B-Natriuretic Peptide Pl Qn", "pg/mL"),
        ("Glucose mg/dL", "mg/dL"),  # a unit written into the name
    ) == ["1968-7", "1971-1", "43396-1", "2955-3", "770-8", "2778-9", "30934-4", "2345-7"]
    # A misspelling of the spelled-out word still reads.
    assert codes(matcher, ("Serum Phosphorous", "mg/dL")) == ["2777-1"]


def test_drug_levels_in_moles_take_the_mass_code_with_its_factor() -> None:
    from tasks.labs.catalog import load_catalog

    matcher = AliasMatcher()
    assert codes(matcher, ("Digoxin", "nmol/L"), ("Phenytoin", "umol/L")) == ["10535-3", "3968-5"]
    units = load_catalog().by_code["10535-3"].units
    assert units["nmol/L"][0] == pytest.approx(780.94 / 1000, rel=1e-3)


def test_urinalysis_suffix_older_enzyme_names_and_written_properties() -> None:
    matcher = AliasMatcher()
    assert codes(
        matcher,
        ("Sp Grav UA", ""),  # a trailing UA is the urinalysis: urine
        ("Hyaline Casts UA", "#/LPF"),
        ("Transitional Epi Cells UA", "#/HPF"),
        ("ALT/GPT", "U/L"),  # two spellings of one enzyme, no ratio
        ("AST/GOT", "U/L"),
        ("HCO3 Bld Qn Calc", "mmol/L"),
        ("Oxygen partial pressure (pO2)", "kPa"),  # the property in words, an SI unit
        ("5HIAA 24H Ur Qn", "mg/24h"),
        ("TCT", "sec"),  # thrombin clotting time
        ("Neutrophilic band forms", "%"),
        ("25-hydroxycholecalciferol", "nmol/L"),  # cholecalciferol is vitamin D3
        ("Ferritin", "pmol/L"),
    ) == [
        "5811-5",
        "5796-8",
        "30089-7",
        "1742-6",
        "1920-8",
        "1959-6",
        "11556-8",
        "1695-6",
        "3243-3",
        "26508-2",
        "1989-3",
        "2276-4",
    ]
    # Alone or after a specimen word, UA stays the uric acid abbreviation.
    assert codes(matcher, ("UA", "mg/dL"), ("Serum UA", "mg/dL")) == ["3084-1", "3084-1"]
    assert codes(
        matcher,
        ("Casts UA/LPF", ""),  # the field in the name is the count's unit, not a ratio
        ("Factor IX Actvty %", "%"),  # LOINC: "... activity actual/normal"
        ("LDLc SerPl Direct Assay-mCnc", "mg/dL"),
        ("Malb/Cr", "mg/g"),
        ("Urine Alb/Cr ratio", "mg/g"),
        ("FOBT", ""),  # names its specimen
        ("Hemocult Stl Ql", ""),
        ("proBNP SerPl-mCnc", "pg/mL"),  # written as one word, read as "Pro BNP"
    ) == ["9842-6", "3187-2", "18262-6", "9318-7", "9318-7", "2335-8", "2335-8", "33762-6"]
    # Cr is creatinine on reports: a bracket that says so of chromium restates nothing.
    assert codes(matcher, ("Chromium (Cr)", "ug/L")) == [None]
    # Squamous cells are their own LOINC component, not all epithelial cells.
    assert codes(matcher, ("Squamous Epithelial Cells", "/hpf"), ("Epithelial Cells", "/hpf")) == [
        "11277-1",
        "5787-7",
    ]


def test_the_similarity_tiers_score_units_as_the_alias_tier_does() -> None:
    # The similarity tiers score every code at once; a rule added to one copy and not the
    # other (the log-scale veto was) ranks review candidates by another rule than decides.
    from tasks.labs.matcher import unit_score
    from tasks.labs.normalize import normalize_unit

    matcher = FuzzyMatcher()
    for spelling in ("mg/dL", "", "log copies/mL", "{copies}/mL", "%", "U/L", "nonsense", "/uL"):
        unit = normalize_unit(spelling)
        vector = matcher._unit_vector(unit)
        assert [unit_score(test, unit) for test in matcher.tests] == pytest.approx(list(vector))


def test_alias_matcher_leaves_unknown_names_alone() -> None:
    result = AliasMatcher().match_one(LabQuery("Patient name", ""))
    assert result == MatchResult(None, None, 0.0, "none", ())


def test_fuzzy_matcher_tolerates_misspellings() -> None:
    matcher = FuzzyMatcher()
    assert codes(matcher, ("Serum Phosphorous", "mg/dL"), ("Trigliceride", "mg/dL")) == [
        "2777-1",
        "2571-8",
    ]


def test_fuzzy_matcher_does_not_confuse_numbered_analytes() -> None:
    result = FuzzyMatcher().match_many([LabQuery("Vitamin B6", "ng/mL")])[0]
    assert result.loinc_code is None
    assert result.method == "none"
    assert len(result.candidates) == 5


def test_results_carry_top_five_candidates_sorted() -> None:
    result = FuzzyMatcher().match_many([LabQuery("Haemoglobin", "g/dL")])[0]
    scores = [score for _, score in result.candidates]
    assert len(result.candidates) == 5
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= score <= 1.0 for score in scores)


def test_unloadable_model_raises_categorization_failed(tmp_path: Path) -> None:
    matcher = EmbeddingMatcher(model_path=str(tmp_path / "no-such-model"))
    with pytest.raises(CategorizationFailed):
        matcher.match_many([LabQuery("Procalcitonin", "ng/mL")])


def test_combined_matcher_never_needs_the_model_for_alias_hits(tmp_path: Path) -> None:
    matcher = CombinedMatcher(model_path=str(tmp_path / "no-such-model"))
    results = matcher.match_many([LabQuery("S. Creatinine", "mg/dL"), LabQuery("FBS", "mg/dL")])
    assert [r.loinc_code for r in results] == ["2160-0", "1558-6"]


@pytest.mark.slow
def test_embedding_matcher_finds_paraphrases(embedding_matcher: EmbeddingMatcher) -> None:
    results = embedding_matcher.match_many(
        [LabQuery("Thrombocytes", "/cumm"), LabQuery("Tissue Transglutaminase IgA", "U/mL")]
    )
    assert results[0].candidates[0][0] == "777-3"  # ranked first even where not accepted
    assert (results[1].loinc_code, results[1].method) == ("31017-7", "embedding")


@pytest.mark.slow
def test_embeddings_are_normalized_and_cached(
    embedding_matcher: EmbeddingMatcher, embedding_cache_dir: Path
) -> None:
    vectors = embedding_matcher.catalog_vectors()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    cached = list(embedding_cache_dir.glob("lab-catalog-embeddings-*.npy"))
    assert len(cached) == 1
    assert np.array_equal(np.load(cached[0]), vectors)


@pytest.mark.slow
def test_combined_matcher_uncategorizes_below_threshold(
    combined_matcher: CombinedMatcher, embedding_cache_dir: Path
) -> None:
    results = combined_matcher.match_many(
        [LabQuery("Doctor's signature", ""), LabQuery("Lipoprotein (a)", "mg/dL")]
    )
    for result in results:
        assert (result.loinc_code, result.loinc_name, result.method) == (None, None, "none")
        assert result.candidates  # kept for review
    strict = get_default_matcher(cache_dir=embedding_cache_dir, threshold=0.999)
    # A corrected misspelling carries less than full confidence: a strict threshold refuses it.
    assert strict.match_many([LabQuery("Trigliceride", "mg/dL")])[0].loinc_code is None
    assert strict.match_many([LabQuery("Triglyceride", "mg/dL")])[0].loinc_code == "2571-8"
