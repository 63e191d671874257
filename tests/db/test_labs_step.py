"""The categorize step infers between two short transactions, never inside one."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import Engine, text

from tasks.ingest import ingest_lines
from tasks.labs.matcher import AliasMatcher, LabQuery, MatchResult
from tasks.lifecycle import claim_pending
from tasks.steps.labs import categorize_labs, get_matcher, set_matcher
from tasks.steps.models import ClaimRef


class _WatchingMatcher:
    """The model-free matcher, recording the sessions left open while it runs."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.inner = AliasMatcher()
        self.open_transactions: list[int] = []

    def match_many(self, queries: Sequence[LabQuery]) -> list[MatchResult]:
        with self.engine.connect() as conn:
            self.open_transactions.append(
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
                    )
                ).scalar_one()
            )
        return self.inner.match_many(queries)


def test_categorize_runs_inference_outside_any_transaction(engine: Engine) -> None:
    lines = [
        json.dumps(
            {
                "user_id": 5,
                "report_id": "R1",
                "test_name": name,
                "value": value,
                "unit": unit,
                "collected_at": "2024-03-01",
            }
        )
        for name, value, unit in (
            ("S. Creatinine", 1.1, "mg/dL"),
            ("Cortisone", 1.2, "ug/dL"),
            ("Glucose", 5.5, "mmol/L"),
        )
    ]
    ingest_lines(engine, "labs", lines)
    with engine.begin() as conn:
        claim_pending(conn, domain="labs", user_id=5, claim_id="exec-1")
    watcher = _WatchingMatcher(engine)
    previous = get_matcher()
    set_matcher(watcher)
    try:
        out = categorize_labs(ClaimRef(claim_id="exec-1", user_id=5))
    finally:
        set_matcher(previous)
    assert watcher.open_transactions == [0]
    assert (out.categorized, out.uncategorized) == (2, 1)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT loinc_code, value, unit FROM lab_report_categorized ORDER BY raw_id")
        ).all()
    # 5.5 mmol/L glucose is 99.088 mg/dL, rounded once to the two digits the report gave: 99.
    assert [tuple(r) for r in rows] == [
        ("2160-0", 1.1, "mg/dL"),
        (None, 1.2, "ug/dL"),
        ("2345-7", 99.0, "mg/dL"),
    ]


def test_the_ml_worker_codes_what_the_lambda_leaves_when_the_checks_agree(
    engine: Engine, embedding_cache_dir
) -> None:
    """ResolveKnownNames (the Lambda, no model) leaves names the alias tier cannot place; the
    ml-worker's model proposes codes for them, and a proposal becomes a code only when the name
    names the code's analyte: Dilantin (Phenytoin) is phenytoin, while for Vitamin B6 the model's
    first proposal (folate, vitamin B9) is refused and the row stays uncategorized."""
    from tasks.labs import get_default_matcher
    from tasks.steps.labs import resolve_known_claim

    reported = (
        ("S. Creatinine", 1.1, "mg/dL"),
        ("Dilantin (Phenytoin)", 12.0, "ug/mL"),
        ("Vitamin B6", 20.0, "ng/mL"),
    )
    lines = [
        json.dumps(
            {
                "user_id": 6,
                "report_id": "R2",
                "test_name": name,
                "value": value,
                "unit": unit,
                "collected_at": "2024-03-01",
            }
        )
        for name, value, unit in reported
    ]
    ingest_lines(engine, "labs", lines)
    with engine.begin() as conn:
        claim_pending(conn, domain="labs", user_id=6, claim_id="exec-2")
        lambda_out = resolve_known_claim(conn, claim_id="exec-2", user_id=6)
    assert (lambda_out.resolved, lambda_out.needs_model) == (1, 2)
    previous = get_matcher()
    set_matcher(get_default_matcher(cache_dir=embedding_cache_dir, use_model=True))
    try:
        out = categorize_labs(ClaimRef(claim_id="exec-2", user_id=6))
    finally:
        set_matcher(previous)
    assert (out.categorized, out.uncategorized) == (1, 1)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT r.test_name, c.loinc_code, c.method, c.candidates FROM "
                "lab_report_categorized c JOIN lab_report_raw r ON r.id = c.raw_id "
                "WHERE r.user_id = 6 ORDER BY r.id"
            )
        ).all()
    coded = {name: (code, method) for name, code, method, _ in rows}
    assert coded == {
        "S. Creatinine": ("2160-0", "exact"),
        "Dilantin (Phenytoin)": ("3968-5", "embedding"),
        "Vitamin B6": (None, "none"),
    }
    assert rows[2].candidates, "a refused proposal leaves ranked candidates for review"
