"""The review loop for names no tier could code: export them, apply a reviewer's mappings.

``export_review`` writes the distinct uncategorized (name, unit) pairs with their row counts
and ranked candidates. The reviewer fills ``accept_loinc`` on the lines they settle;
``apply_review`` stores those as site aliases (``lab_site_alias``: who, when, which file) and
returns the users and local dates of the rows they affect, for the caller to reprocess. Site
aliases win over every matcher tier: ``reviewed_matches`` is consulted before the matcher.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from sqlalchemy import Connection, text

from tasks.labs.catalog import load_catalog
from tasks.labs.errors import CategorizationFailed
from tasks.labs.matcher import MatchResult
from tasks.labs.normalize import normalize_unit
from tasks.labs.parse import normalize_text

REVIEW_COLUMNS = ("test_name", "unit", "rows", "candidates", "accept_loinc")
REVIEWED_METHOD = "reviewed"


class InvalidReviewFile(CategorizationFailed):
    """A review file that cannot be applied (missing columns, a code the catalog lacks)."""


def alias_key(name: str, unit: str | None) -> tuple[str, str]:
    """How a reviewed mapping is keyed: the matcher's normalized name, the canonical unit."""
    return normalize_text(name), normalize_unit(unit or "").canonical


def export_review(conn: Connection, path: Path) -> int:
    """Write the distinct uncategorized names; returns how many lines were written."""
    catalog = load_catalog()
    rows = conn.execute(
        text(
            """
            SELECT r.test_name, COALESCE(r.unit, '') AS unit, count(*) AS n,
                   (array_agg(c.candidates ORDER BY c.raw_id))[1] AS candidates
            FROM lab_report_categorized c JOIN lab_report_raw r ON r.id = c.raw_id
            WHERE c.status = 'uncategorized'
            GROUP BY r.test_name, COALESCE(r.unit, '')
            ORDER BY n DESC, r.test_name, unit
            """
        )
    ).all()
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(REVIEW_COLUMNS)
        for name, unit, count, candidates in rows:
            ranked = candidates if isinstance(candidates, list) else json.loads(candidates or "[]")
            shown = " | ".join(
                f"{code} {score:.2f} {catalog.by_code[code].long_name}"
                for code, score in ranked
                if code in catalog.by_code
            )
            writer.writerow((name, unit, count, shown, ""))
    return len(rows)


@dataclass(frozen=True)
class Mapping:
    name: str
    unit: str
    loinc_code: str


def read_review(path: Path) -> list[Mapping]:
    """The accepted lines of a review file; a code the catalog lacks is an error, not skipped."""
    catalog = load_catalog()
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"test_name", "unit", "accept_loinc"} - set(reader.fieldnames or ())
        if missing:
            raise InvalidReviewFile(f"review file lacks columns: {', '.join(sorted(missing))}")
        mappings = []
        for line, row in enumerate(reader, start=2):
            code = (row.get("accept_loinc") or "").strip()
            if not code:
                continue
            if code not in catalog.by_code:
                raise InvalidReviewFile(f"line {line}: {code} is not a catalog LOINC code")
            mappings.append(Mapping(row["test_name"], row.get("unit") or "", code))
    return mappings


def store_aliases(
    conn: Connection, mappings: Iterable[Mapping], *, reviewer: str, source_file: str
) -> int:
    """Insert or replace the site aliases; a later review of the same name wins."""
    stored = 0
    for mapping in mappings:
        name_key, unit_key = alias_key(mapping.name, mapping.unit)
        conn.execute(
            text(
                """
                INSERT INTO lab_site_alias (name_key, unit_key, loinc_code, reviewed_by,
                                            source_file)
                VALUES (:name_key, :unit_key, :code, :reviewer, :source_file)
                ON CONFLICT ON CONSTRAINT uq_lab_site_alias_key DO UPDATE
                SET loinc_code = EXCLUDED.loinc_code, reviewed_by = EXCLUDED.reviewed_by,
                    reviewed_at = now(), source_file = EXCLUDED.source_file
                """
            ),
            {
                "name_key": name_key,
                "unit_key": unit_key,
                "code": mapping.loinc_code,
                "reviewer": reviewer,
                "source_file": source_file,
            },
        )
        stored += 1
    return stored


def affected_ranges(conn: Connection, mappings: Iterable[Mapping]) -> dict[int, tuple[date, date]]:
    """Per user, the local dates of the categorized rows whose (name, unit) a mapping covers
    and whose code it changes."""
    wanted = {alias_key(m.name, m.unit): m.loinc_code for m in mappings}
    if not wanted:
        return {}
    ranges: dict[int, tuple[date, date]] = {}
    # Grouped in SQL: reports repeat the same few names, so the names are normalized once per
    # (user, code, name, unit), not once per row of the whole lab history.
    groups = conn.execute(
        text(
            "SELECT c.user_id, c.loinc_code, r.test_name, r.unit, "
            "min(c.local_date), max(c.local_date) "
            "FROM lab_report_categorized c JOIN lab_report_raw r ON r.id = c.raw_id "
            "WHERE r.status = 'aggregated' "
            "GROUP BY c.user_id, c.loinc_code, r.test_name, r.unit"
        )
    )
    for user_id, code, name, unit, first, last in groups:
        target = wanted.get(alias_key(name, unit))
        if target is None or target == code:
            continue
        low, high = ranges.get(user_id, (first, last))
        ranges[user_id] = (min(low, first), max(high, last))
    return ranges


def reviewed_matches(
    conn: Connection, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], MatchResult]:
    """The site aliases for these (name, unit) pairs, as matches that win over every tier."""
    catalog = load_catalog()
    wanted = {alias_key(name, unit): (name, unit) for name, unit in keys}
    if not wanted:
        return {}
    found = conn.execute(
        text(
            "SELECT name_key, unit_key, loinc_code FROM lab_site_alias WHERE name_key = ANY(:names)"
        ),
        {"names": sorted({name_key for name_key, _ in wanted})},
    ).all()
    matches = {}
    for name_key, unit_key, code in found:
        pair = wanted.get((name_key, unit_key))
        test = catalog.by_code.get(code)
        if pair is not None and test is not None:
            matches[pair] = MatchResult(code, test.long_name, 1.0, REVIEWED_METHOD)
    return matches


@dataclass(frozen=True)
class Applied:
    aliases: int
    users: int
    failed_users: int


def apply_review(path: Path, *, reviewer: str) -> Applied:
    """Store a review file's accepted mappings, then reprocess the rows they change.

    Reprocessing is the same path as ``healthflow start-execution --reprocess`` in direct mode
    (``tasks.process.process_claim``): the affected users' rows in the affected local dates are
    claimed again, re-categorized (the site aliases now win) and their buckets recomputed.
    """
    from tasks.db.engine import get_engine
    from tasks.process import process_claim

    mappings = read_review(path)
    with get_engine().begin() as conn:
        stored = store_aliases(conn, mappings, reviewer=reviewer, source_file=path.name)
        ranges = affected_ranges(conn, mappings)
    failed = 0
    for user_id, (low, high) in sorted(ranges.items()):
        run = process_claim(
            "labs", user_id, reprocess={"from": low.isoformat(), "to": high.isoformat()}
        )
        failed += run.error is not None
    return Applied(stored, len(ranges), failed)
