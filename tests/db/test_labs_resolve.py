"""ResolveKnownNames (the Lambda tier, no model) records what the catalog knows; the ml-worker
step then takes only the rest, and the two together write what the full matcher writes alone."""

from __future__ import annotations

import json

from sqlalchemy import Engine, text

from tasks.ingest import ingest_lines
from tasks.lifecycle import claim_pending
from tasks.steps.labs import categorize_claim, categorize_labs, resolve_known_labs
from tasks.steps.models import ClaimRef

REPORT = [
    ("S. Creatinine", "1.1", "mg/dL"),
    ("Glucose", "5.5", "mmol/L"),
    ("SGPT (ALT)", "41", "U/L"),
    ("Patient's favourite colour", "blue", None),
]


def _seed_and_claim(engine: Engine, claim_id: str) -> None:
    lines = [
        json.dumps({"user_id": 9, "report_id": "R1", "test_name": name, "value": value,
                    "unit": unit, "collected_at": "2024-03-01"})
        for name, value, unit in REPORT
    ]  # fmt: skip
    ingest_lines(engine, "labs", lines)
    with engine.begin() as conn:
        claim_pending(conn, domain="labs", user_id=9, claim_id=claim_id)


def _categorized(engine: Engine) -> list[tuple]:
    with engine.connect() as conn:
        return sorted(
            tuple(row)
            for row in conn.execute(
                text(
                    "SELECT raw_id, status, loinc_code, method, value, unit "
                    "FROM lab_report_categorized"
                )
            )
        )


def test_known_names_first_then_the_rest(engine: Engine, make_schema_engine, lab_matcher) -> None:
    _seed_and_claim(engine, "exec-1")
    ref = ClaimRef(claim_id="exec-1", user_id=9)
    resolved = resolve_known_labs(ref)
    # Creatinine, glucose and ALT are known; the colour needs the model tier.
    assert (resolved.resolved, resolved.needs_model) == (3, 1)
    assert len(_categorized(engine)) == 3
    rest = categorize_labs(ref)
    assert (rest.categorized, rest.uncategorized, rest.rejected) == (0, 1, 0)
    # A retried model step finds nothing left to do and changes nothing.
    before = _categorized(engine)
    assert categorize_labs(ref).uncategorized == 0
    assert _categorized(engine) == before
    # A rerun of the whole claim (resolve again) starts afresh and ends the same.
    resolve_known_labs(ref)
    categorize_labs(ref)
    assert _categorized(engine) == before

    from tasks.db import engine as db_engine

    alone = make_schema_engine()
    db_engine.set_engine(alone)
    try:
        _seed_and_claim(alone, "exec-1")
        with alone.begin() as conn:
            categorize_claim(conn, claim_id="exec-1", user_id=9, matcher=lab_matcher)
    finally:
        db_engine.set_engine(engine)
    assert [row[1:] for row in _categorized(alone)] == [row[1:] for row in before]
