"""The lab steps: a claim's lab rows -> LOINC-coded, unit-normalized results, in two tiers.

`resolve_known_labs` (a Lambda step, no model) categorizes the rows whose names the catalog
knows by exact or alias match and records them; `categorize_labs` runs in the ml-worker container
(the model needs memory and start-up time that a Lambda should not pay) on the rows left over,
and only when the first step says some name needs the model. Both run in the local cloud and in
direct mode too. The matchers load once per process.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from typing import Any

from psycopg2.extras import execute_values
from sqlalchemy import Connection, text

from tasks.aggregation import USER_ZONE_SQL
from tasks.aggregation.labs import LOCAL_DATE_SQL
from tasks.steps.models import CategorizeOutput, ClaimRef, ResolveOutput
from tasks.steps.registry import step

_matcher_lock = threading.Lock()
_matcher: Any = None


def get_matcher() -> Any:
    """The process's lab matcher, built from settings on first use."""
    global _matcher
    with _matcher_lock:
        if _matcher is None:
            from tasks.labs import get_default_matcher
            from tasks.settings import get_settings

            settings = get_settings()
            _matcher = get_default_matcher(
                model_path=str(settings.model_path) if settings.model_path else None,
                cache_dir=settings.embedding_cache_dir or settings.data_dir / "embeddings",
                threshold=settings.match_threshold,
                use_model=settings.lab_model_enabled,
            )
        return _matcher


def set_matcher(matcher: Any) -> None:
    """Install a matcher (the CLI and tests share one across calls)."""
    global _matcher
    with _matcher_lock:
        _matcher = matcher


def _name_key(test_name: str) -> str:
    """The name as results are told apart: normalized, or for a name no test has (too long to
    match, see LabQuery) its hash, which bounds the key and is never scanned by a pattern."""
    from tasks.labs import normalize_text
    from tasks.labs.matcher import MAX_NAME_CHARS

    if len(test_name) > MAX_NAME_CHARS:
        return "sha256:" + hashlib.sha256(test_name.encode("utf-8", "surrogatepass")).hexdigest()
    return normalize_text(test_name)


def _dedup_key(row: Any, normalized_name: str) -> str:
    # The same user, report and test name is the same result. Without a report id, the same
    # test at the same instant is.
    if row.report_id:
        return f"report:{row.report_id}|{normalized_name}"
    return f"at:{row.observed_at.isoformat()}|{normalized_name}"


_UNRECORDED = "AND NOT EXISTS (SELECT 1 FROM lab_report_categorized c WHERE c.raw_id = r.id)"


def read_claim_rows(
    conn: Connection, *, claim_id: str, user_id: int, unrecorded_only: bool = False
) -> list[Any]:
    """The claim's rows that carry a value, as plain tuples (no lock is held afterwards).

    `unrecorded_only`: only rows without a categorized row yet (what ResolveKnownNames left).
    """
    params = {"claim_id": claim_id, "user_id": user_id}
    return list(
        conn.execute(
            text(
                f"""
                SELECT r.id, r.report_id, r.test_name, r.value, r.value_text, r.unit,
                       COALESCE(r.collected_at, r.collected_local AT TIME ZONE tz.name)
                           AS observed_at,
                       {LOCAL_DATE_SQL} AS local_date
                FROM lab_report_raw r, {USER_ZONE_SQL}
                WHERE r.claim_id = :claim_id AND r.user_id = :user_id
                  AND r.status = 'processing'
                  AND r.value_text IS NOT NULL AND btrim(r.value_text) <> ''
                  {_UNRECORDED if unrecorded_only else ""}
                ORDER BY r.id
                """
            ),
            params,
        ).all()
    )


def match_rows(rows: list[Any], matcher: Any) -> dict[tuple[str, str], Any]:
    """Match each distinct (name, unit) once: reports repeat the same names. No database."""
    from tasks.labs import LabQuery

    distinct = sorted({(r.test_name, r.unit or "") for r in rows})
    return dict(
        zip(
            distinct,
            matcher.match_many([LabQuery(name, unit) for name, unit in distinct]),
            strict=True,
        )
    )


# Results that can be below zero: a base excess, a gap or a difference of two measurements.
_SIGNED = ("excess", "gap", "difference")


def implausible_result(code: str, value: float | None, unit: str | None) -> str | None:
    """Why a coded numeric result cannot be a real one (ingest knows no code yet, so this is
    where the catalog's ranges apply): not finite once converted, outside the range the vital
    catalog gives the same code, or below zero for a quantity that cannot be."""
    if value is None:
        return None
    if not math.isfinite(value):
        return "non_finite_value"
    from tasks.catalog import vital_types
    from tasks.labs.catalog import load_catalog

    vital = vital_types().get(code)
    if vital is not None and unit == vital.canonical_unit:
        return None if vital.low <= value <= vital.high else "out_of_range"
    if value < 0:
        test = load_catalog().by_code.get(code)
        name = test.long_name.lower() if test else ""
        if not any(word in name for word in _SIGNED):
            return "out_of_range"
    return None


def series_match(match: Any, unit: str | None) -> Any:
    """The match under the code its analyte is stored as: one analyte, one series for the app.

    HbA1c reported in mmol/mol (IFCC, 59261-8) is stored as 4548-4 in % (NGSP), converted
    once, so a user's trend does not split in two when a lab changes the unit it reports
    (docs/formats.md). A unit the series code cannot take keeps the reported code."""
    from dataclasses import replace

    from tasks.labs.catalog import load_catalog
    from tasks.labs.normalize import normalize_unit

    catalog = load_catalog()
    test = catalog.by_code.get(match.loinc_code) if match.loinc_code else None
    series = catalog.by_code.get(test.series) if test and test.series else None
    if series is None or series.units.get(normalize_unit(unit).canonical) is None:
        return match
    return replace(match, loinc_code=series.loinc_code, loinc_name=series.long_name)


def write_results(
    conn: Connection,
    *,
    claim_id: str,
    user_id: int,
    rows: list[Any],
    results: dict[tuple[str, str], Any],
    replace_earlier: bool = True,
) -> CategorizeOutput:
    """Reject value-less rows and write the categorized rows, in one short transaction.

    `replace_earlier`: a rerun replaces what an earlier try of this claim wrote; False adds to
    it (the model step after ResolveKnownNames recorded the known names).
    """
    from tasks.labs.normalize import FLAG_OK, convert_reading
    from tasks.precision import reported_precision

    params = {"claim_id": claim_id, "user_id": user_id}
    rejected = conn.execute(
        text(
            "UPDATE lab_report_raw SET status = 'rejected', error = 'missing_value', "
            "processed_at = now(), updated_at = now() "
            "WHERE claim_id = :claim_id AND user_id = :user_id AND status = 'processing' "
            "AND (value_text IS NULL OR btrim(value_text) = '')"
        ),
        params,
    ).rowcount
    # Rows read before inference are written only if the claim still holds them.
    still_held = set(
        conn.execute(
            text(
                "SELECT id FROM lab_report_raw WHERE claim_id = :claim_id "
                "AND user_id = :user_id AND status = 'processing' FOR UPDATE"
            ),
            params,
        ).scalars()
    )
    records = []
    implausible: dict[str, list[int]] = {}
    categorized = uncategorized = 0
    # Once per distinct (name, unit), not per row: the series depends on nothing else (a
    # missing unit and an empty one normalize alike).
    series = {key: series_match(match, key[1] or None) for key, match in results.items()}
    for row in rows:
        if row.id not in still_held:
            continue
        match = series[(row.test_name, row.unit or "")]
        value, unit, flag, decimals = row.value, row.unit, None, None
        finite = row.value is not None and math.isfinite(row.value)
        if finite and match.loinc_code is None:
            decimals = reported_precision(row.value_text, row.value).decimals
        if match.loinc_code is not None:
            if finite:
                # The conversion reads the reported precision itself (tasks.precision).
                reading = convert_reading(match.loinc_code, row.value, row.unit, row.value_text)
                value, unit, decimals = reading.value, reading.unit, reading.decimals
                # Only problems are flagged; a flagged value is kept but never aggregated.
                flag = None if reading.flag == FLAG_OK else reading.flag
            reason = implausible_result(match.loinc_code, value, unit)
            if reason is not None:
                implausible.setdefault(reason, []).append(row.id)
                continue
            categorized += 1
        else:
            uncategorized += 1
        records.append(
            (
                row.id,
                user_id,
                _dedup_key(row, _name_key(row.test_name)),
                "categorized" if match.loinc_code else "uncategorized",
                match.loinc_code,
                match.loinc_name,
                float(min(max(match.confidence, 0.0), 1.0)),
                match.method,
                json.dumps([[code, round(float(score), 4)] for code, score in match.candidates]),
                value,
                unit,
                row.value_text,
                flag,
                decimals,
                row.observed_at,
                row.local_date,
            )
        )
    for reason, ids in implausible.items():
        rejected += conn.execute(
            text(
                "UPDATE lab_report_raw SET status = 'rejected', error = :reason, "
                "processed_at = now(), updated_at = now() WHERE id = ANY(:ids)"
            ),
            {"reason": reason, "ids": ids},
        ).rowcount
    earlier = 0
    if replace_earlier:
        # A rerun of this claim replaces what an earlier try wrote.
        conn.execute(
            text(
                "DELETE FROM lab_report_categorized WHERE raw_id = ANY(ARRAY("
                "SELECT id FROM lab_report_raw WHERE claim_id = :claim_id "
                "AND user_id = :user_id AND status = 'processing'))"
            ),
            params,
        )
    else:
        earlier = _count_inserted(conn, params)
    inserted = 0
    if records:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            execute_values(
                cursor,
                """
                INSERT INTO lab_report_categorized (raw_id, user_id, dedup_key, status, loinc_code,
                    loinc_name, confidence, method, candidates, value, unit, value_text,
                    unit_flag, decimals, observed_at, local_date)
                VALUES %s
                ON CONFLICT ON CONSTRAINT uq_lab_report_categorized_result DO NOTHING
                """,
                records,
                page_size=1000,
            )
        finally:
            cursor.close()
        inserted = _count_inserted(conn, params) - earlier
    duplicates = len(records) - inserted
    return CategorizeOutput(
        categorized=categorized,
        uncategorized=uncategorized,
        rejected=rejected,
        duplicates=duplicates,
    )


def categorize_claim(
    conn: Connection, *, claim_id: str, user_id: int, matcher: Any
) -> CategorizeOutput:
    """Read, match and write on one connection (callers that already hold a transaction)."""
    rows = read_claim_rows(conn, claim_id=claim_id, user_id=user_id)
    results = {**match_rows(rows, matcher), **reviewed_for(conn, rows)}
    return write_results(conn, claim_id=claim_id, user_id=user_id, rows=rows, results=results)


def reviewed_for(conn: Connection, rows: list[Any]) -> dict[tuple[str, str], Any]:
    """The reviewers' mappings (site aliases) for these rows' names: they win over every tier."""
    from tasks.labs.review import reviewed_matches

    return reviewed_matches(conn, {(r.test_name, r.unit or "") for r in rows})


def _count_inserted(conn: Connection, params: dict[str, Any]) -> int:
    return conn.execute(
        text(
            # By an array of ids, not a join: no stale statistic can plan a nested loop.
            "SELECT count(*) FROM lab_report_categorized WHERE raw_id = ANY(ARRAY("
            "SELECT id FROM lab_report_raw WHERE claim_id = :claim_id AND user_id = :user_id "
            "AND status = 'processing'))"
        ),
        params,
    ).scalar_one()


@step("categorize_labs", ClaimRef)
def categorize_labs(payload: ClaimRef) -> CategorizeOutput:
    """The rows ResolveKnownNames left (all of them when it did not run), with the model."""
    from tasks.steps.definitions import transaction

    matcher = get_matcher()  # outside the transaction: a model load holds no locks
    # Inference runs between two short transactions, never inside one: a transaction left open
    # for the model's seconds would hold a connection and the rows' locks all that time.
    with transaction() as conn:
        rows = read_claim_rows(
            conn, claim_id=payload.claim_id, user_id=payload.user_id, unrecorded_only=True
        )
        reviewed = reviewed_for(conn, rows)
    results = {**match_rows(rows, matcher), **reviewed}
    with transaction() as conn:
        return write_results(
            conn,
            claim_id=payload.claim_id,
            user_id=payload.user_id,
            rows=rows,
            results=results,
            replace_earlier=False,
        )


def resolve_known_claim(conn: Connection, *, claim_id: str, user_id: int) -> ResolveOutput:
    """Categorize the claim's rows whose names the catalog (or a reviewer) knows without a model.

    ``tasks.labs.resolve_known`` gives exactly the codes the full matcher gives, without loading
    a model. The rows it resolves get their ``lab_report_categorized`` row, which is how the
    model step knows to skip them. Earlier results of the claim are replaced (a rerun starts
    afresh).
    """
    from tasks.labs import LabQuery, resolve_known

    rows = read_claim_rows(conn, claim_id=claim_id, user_id=user_id)
    distinct = sorted({(r.test_name, r.unit or "") for r in rows})
    found = resolve_known([LabQuery(name, unit) for name, unit in distinct])
    results = {key: match for key, match in zip(distinct, found, strict=True) if match}
    results.update(reviewed_for(conn, rows))
    known = [row for row in rows if (row.test_name, row.unit or "") in results]
    written = write_results(conn, claim_id=claim_id, user_id=user_id, rows=known, results=results)
    return ResolveOutput(
        resolved=written.categorized,
        needs_model=len(distinct) - len(results),
        rejected=written.rejected,
        duplicates=written.duplicates,
    )


@step("resolve_known_labs", ClaimRef)
def resolve_known_labs(payload: ClaimRef) -> ResolveOutput:
    """ResolveKnownNames: alias and exact matches in the Lambda; counts only, never names."""
    from tasks.steps.definitions import transaction

    with transaction() as conn:
        return resolve_known_claim(conn, claim_id=payload.claim_id, user_id=payload.user_id)
