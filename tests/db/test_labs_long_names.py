"""A lab test name no report would carry (a megabyte) is stored whole, left uncategorized, and
never scanned by the name patterns: the step ends with the rest of the claim categorized."""

from __future__ import annotations

import json
import random
import re

from sqlalchemy import Engine, text

from tasks.ingest import ingest_lines
from tasks.labs.matcher import MAX_NAME_CHARS, LabQuery, _digit_signature
from tasks.process import process_pending

MEGABYTE = 1_000_000


def _lab(name: str, report: str) -> str:
    return json.dumps(
        {"user_id": 7, "report_id": report, "test_name": name, "value": 5.5,
         "unit": "mmol/L", "collected_at": "2024-03-01"}
    )  # fmt: skip


def test_a_name_beyond_any_test_name_is_matched_as_no_name() -> None:
    assert LabQuery("a" * MEGABYTE, "mmol/L") == LabQuery("", "")
    assert LabQuery("Glucose", "u" * MEGABYTE) == LabQuery("", "")
    name = "Glucose " + "x" * (MAX_NAME_CHARS - 8)
    assert LabQuery(name, "mmol/L").test_name == name  # the longest name still matched


def test_the_digit_signature_finds_what_the_old_pattern_found() -> None:
    old = re.compile(r"[a-z]*[0-9][a-z0-9]*")
    rng = random.Random(3)
    for _ in range(2000):
        text_ = "".join(rng.choice("ab19 -(.Z") for _ in range(rng.randint(0, 30)))
        assert _digit_signature(text_) == " ".join(sorted(set(old.findall(text_))))


def test_a_megabyte_lab_name_is_stored_whole_and_the_claim_finishes(engine: Engine) -> None:
    long_names = ["a" * MEGABYTE, "(" * MEGABYTE, "a." * (MEGABYTE // 2) + "x--y by z"]
    lines = [_lab("Glucose", "R0")] + [_lab(n, f"R{i}") for i, n in enumerate(long_names, 1)]
    assert ingest_lines(engine, "labs", lines).inserted == 4

    runs = process_pending(["labs"])

    assert [run.error for run in runs] == [None]
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT length(r.test_name) AS length, r.status, c.status AS category, "
                "c.loinc_code, c.candidates FROM lab_report_raw r "
                "JOIN lab_report_categorized c ON c.raw_id = r.id ORDER BY r.id"
            )
        ).all()
    assert [(r.length, r.status, r.category) for r in rows] == [
        (7, "aggregated", "categorized"),
        *[(len(n), "aggregated", "uncategorized") for n in long_names],
    ]
    assert all(r.loinc_code is None and r.candidates == [] for r in rows[1:])
