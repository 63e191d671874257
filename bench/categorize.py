"""Lab categorization benchmark per evaluation set: accuracy, wrong codes, throughput, load time.

Usage::

    python bench/categorize.py [--eval FILE ...] [--cache-dir DIR] [--errors]
    python bench/categorize.py --score OUT.csv --eval FILE   # score another run's CSV output

By default every CSV under ``tests/data/labs/`` (and ``external/``) is an evaluation set. Columns:
``test_name,unit,expected_loinc`` (several right codes separated by "|", empty when the name must
stay uncategorized) and optionally ``expected_name`` (the LOINC long name of the expected code,
for codes outside the catalog, "|"-separated like the codes; a LOINC short name does too).

Per set it prints:
- top-1 with siblings: the code given is the expected one or a sibling of it (same analyte, another
  specimen, method or property), or the name stays uncategorized as expected;
- strict top-1: exactly the expected code (or rightly uncategorized);
- wrong-code rate: a code whose analyte differs from the expected one, or any code for a name
  that must stay uncategorized; this is the figure that must be 0. The analyte is read from the
  catalog's LOINC component column (the set's LOINC name for codes outside the catalog), never
  through the matcher's own parser, so the judge and the matcher cannot fail together;
- uncategorized rate, and the share the model-free tier (``tasks.labs.resolve_known``) settles.

The outside sets added last (``SPLIT_SETS``) are cut in two by a hash of the name and their
halves printed apart: ``--errors`` lists misses of the development half only, and the held-out
half's figures are the ones to quote as names nobody tuned for.

``--score`` reads the output of ``healthflow labs categorize`` from any checkout, so an older
version's figures (the "before" of the README) come from the same scorer. Test names are printed
only with ``--errors`` (the evaluation sets are public or synthetic names, never user data).
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import re
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.labs.catalog import load_catalog
from tasks.labs.matcher import (
    AliasMatcher,
    CombinedMatcher,
    FuzzyMatcher,
    LabQuery,
    MatchResult,
    load_model,
)

REPORT_NAMES = 10  # names per lab message, for the ml-worker share
DATA_DIR = Path(__file__).resolve().parents[1] / "tests" / "data" / "labs"
# Outside sets added after the rules were written. Each is cut in two by a hash of the name: the
# development half may be read (``--errors`` lists its misses), the held-out half never is, so
# the held-out figures keep measuring names no rule was written from.
SPLIT_SETS = frozenset(
    {
        "lhncbc_lab_names.csv",
        "ccda_lab_results.csv",
        "synthea_lab_observations.csv",
        "lab_unit_table.csv",
    }
)


@dataclass(frozen=True)
class EvalRow:
    query: LabQuery
    expected: frozenset[str]
    expected_name: str  # "|"-separated, one per expected code: LOINC long or short names
    expected_raw: str = ""


@dataclass(frozen=True)
class Score:
    names: int
    top1_siblings: float
    strict: float
    wrong: float
    uncategorized: float


def read_eval(path: Path) -> list[EvalRow]:
    with path.open(newline="", encoding="utf-8") as handle:
        lines = [line for line in handle if not line.startswith("#")]
    return [
        EvalRow(
            LabQuery(row["test_name"], row.get("unit") or ""),
            frozenset(code for code in (row.get("expected_loinc") or "").split("|") if code),
            row.get("expected_name") or "",
            row.get("expected_loinc") or "",
        )
        for row in csv.DictReader(lines)
    ]


def held_out(row: EvalRow) -> bool:
    """Whether a row of a split set is in its held-out half (same name, same half)."""
    return hashlib.sha1(row.query.test_name.strip().lower().encode()).digest()[0] % 2 == 1


def eval_sets(paths: Sequence[Path]) -> list[Path]:
    if paths:
        return list(paths)
    found = sorted(DATA_DIR.glob("*.csv")) + sorted((DATA_DIR / "external").glob("*.csv"))
    return [path for path in found if "expected_loinc" in path.read_text(encoding="utf-8")[:4000]]


# LOINC names one analyte two ways: "Microalbumin" components are urine albumin. FEU and DDU
# name the reporting convention of one analyte, fibrin D-dimer, not two analytes.
_SAME_ANALYTE = {"microalbumin": "albumin"}
_CONVENTION_WORDS = frozenset({"feu", "ddu"})
# Where a LOINC component or long name stops naming the analyte: the property bracket, the
# specimen ("in Urine", "of Serum"), the denominator of a differential ("/100 leukocytes").
_COMPONENT_END = re.compile(r"\s\[|\s+in\s+|\s+of\s+|/100\b|\s+by\s+", re.IGNORECASE)


@functools.cache
def _component_words(text: str) -> frozenset[str]:
    text = _COMPONENT_END.split(text, maxsplit=1)[0] if text else ""
    text = re.sub(r"\([^()]*\)", " ", text)  # "(viral load)", "(T4)": annotations of a name
    words = re.findall(r"[a-z0-9]+", text.lower())
    return frozenset(_SAME_ANALYTE.get(w, w) for w in words if w not in _CONVENTION_WORDS)


def _analyte_keys(code: str | None, name: str, *, given: bool) -> set[tuple[str, frozenset[str]]]:
    """How to tell a code's analyte: the catalog's LOINC component column for a catalog code (a
    table the matcher's parser has no part in), the component part of the set's LOINC long name
    for a code outside the catalog. Only a LOINC short name ("Lithium SerPl-mCnc") names no
    component: it is parsed, and compared with the parse of the code given (``given``)."""
    name = re.sub(r"^Deprecated\s+", "", name)  # LOINC's mark on a retired code, not a word
    catalog = load_catalog()
    test = catalog.by_code.get(code or "")
    if test is not None:
        keys = {("component", _component_words(test.component))}
        if given:
            keys.add(("short", _parsed_words(test.long_name)))
        return keys
    if "[" in name or " in " in name.lower():
        return {("component", _component_words(name))}
    # A bare component ("Fibrin D-dimer") or a LOINC short name ("Lithium SerPl-mCnc").
    if not name:
        return set()
    return {("component", _component_words(name)), ("short", _parsed_words(name))}


@functools.cache
def _parsed_words(name: str) -> frozenset[str]:
    from tasks.labs.parse import parse_name

    return frozenset(_SAME_ANALYTE.get(word, word) for word in parse_name(name).words)


def judge(row: EvalRow, code: str | None, name: str | None) -> tuple[bool, bool, bool]:
    """(strict right, right up to a sibling, wrong analyte) for one result."""
    if not row.expected:
        return code is None, code is None, code is not None
    if code is None:
        return False, False, False
    if code in row.expected:
        return True, True, False
    names = row.expected_name.split("|")
    ordered = (row.expected_raw or "").split("|")
    expected: set[tuple[str, frozenset[str]]] = set()
    for c in row.expected:
        known = c in ordered and len(names) == len(ordered)
        expected |= _analyte_keys(c, names[ordered.index(c)] if known else "", given=False)
    got = _analyte_keys(code, name or "", given=True)
    sibling = any(words for _, words in got & expected)
    return False, sibling, not sibling


def covered(row: EvalRow) -> bool:
    """Whether the catalog holds the expected code or a sibling of it: what any tier can reach."""
    if not row.expected:
        return True
    return any(judge(row, test.loinc_code, test.long_name)[1] for test in load_catalog().tests)


def score(rows: Sequence[EvalRow], results: Sequence[tuple[str | None, str | None]]) -> Score:
    strict = siblings = wrong = uncategorized = 0
    for row, (code, name) in zip(rows, results, strict=True):
        is_strict, is_sibling, is_wrong = judge(row, code, name)
        strict += is_strict
        siblings += is_sibling
        wrong += is_wrong
        uncategorized += code is None
    n = len(rows)
    return Score(n, siblings / n, strict / n, wrong / n, uncategorized / n)


def _codes(results: Sequence[MatchResult]) -> list[tuple[str | None, str | None]]:
    return [(r.loinc_code, r.loinc_name) for r in results]


class StringDistanceOnly:
    """The baseline: the best rapidfuzz candidate above 0.88, with no analyte parse."""

    def __init__(self) -> None:
        self.fuzzy = FuzzyMatcher()

    def match_many(self, queries: Sequence[LabQuery]) -> list[tuple[str | None, str | None]]:
        from tasks.labs.matcher import _contexts

        contexts = _contexts(queries)
        out: list[tuple[str | None, str | None]] = []
        for row in self.fuzzy.scores(contexts):
            code, value = self.fuzzy.top_candidates(row)[0]
            test = self.fuzzy.catalog.by_code[code]
            out.append((code, test.long_name) if value >= 0.88 else (None, None))
        return out


def _print_score(label: str, result: Score, extra: str = "") -> None:
    print(
        f"  {label:<26}{result.top1_siblings:>9.1%}{result.strict:>9.1%}{result.wrong:>9.1%}"
        f"{result.uncategorized:>9.1%}{extra}"
    )


def _print_halves(
    rows: Sequence[EvalRow],
    results: Sequence[tuple[str | None, str | None]],
    model_results: Sequence[tuple[str | None, str | None]] | None,
) -> None:
    """The split set's held-out half, with and without the model (development half: the rest)."""
    for half, keep in (("held-out", True), ("development", False)):
        picked = [i for i, row in enumerate(rows) if held_out(row) is keep]
        part = [rows[i] for i in picked]
        _print_score(f"{half} {len(part)}, no model", score(part, [results[i] for i in picked]))
        if model_results is not None:
            with_model = [model_results[i] for i in picked]
            _print_score(f"{half}, ml-worker", score(part, with_model))


def score_output(output: Path, eval_path: Path) -> None:
    rows = read_eval(eval_path)
    with output.open(newline="", encoding="utf-8") as handle:
        produced = [
            (row["loinc_code"] or None, row["loinc_name"] or None) for row in csv.DictReader(handle)
        ]
    print(f"{eval_path.name}: {len(rows)} names, scored from {output}")
    print(f"  {'':<26}{'top1+sib':>9}{'strict':>9}{'wrong':>9}{'uncat':>9}")
    _print_score("given output", score(rows, produced))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--eval", type=Path, action="append", default=[])
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--score", type=Path, default=None, help="score a categorize CSV output")
    parser.add_argument("--no-model", action="store_true", help="skip the model (no candidates)")
    parser.add_argument("--errors", action="store_true", help="list the full matcher's misses")
    args = parser.parse_args()
    if args.score:
        score_output(args.score, args.eval[0])
        return
    cache_dir = args.cache_dir or Path(tempfile.mkdtemp(prefix="healthflow-bench-"))

    started = time.perf_counter()
    load_catalog()
    print(
        f"catalog load: {time.perf_counter() - started:.2f} s ({len(load_catalog().tests)} codes)"
    )
    if not args.no_model:
        from tasks.labs.matcher import default_model_path

        started = time.perf_counter()
        load_model(default_model_path())
        print(f"model load (incl. torch import): {time.perf_counter() - started:.2f} s")

    full = CombinedMatcher(cache_dir=cache_dir)
    with_model = None if args.no_model else CombinedMatcher(cache_dir=cache_dir, use_model=True)
    tier = AliasMatcher()
    baseline = StringDistanceOnly()
    for warm in (full, with_model):  # warm-up: catalog embeddings, lazy indexes
        if warm is not None:
            warm.match_many([LabQuery("Glucose", "mg/dL"), LabQuery("Doctor's note", "")])
    header = f"  {'':<26}{'top1+sib':>9}{'strict':>9}{'wrong':>9}{'uncat':>9}"
    for path in eval_sets(args.eval):
        rows = read_eval(path)
        queries = [row.query for row in rows]
        negatives = sum(1 for r in rows if not r.expected)
        print(f"\n{path.name}: {len(rows)} names ({negatives} must stay uncategorized)")
        print(header)
        _print_score("string distance alone", score(rows, baseline.match_many(queries)))
        started = time.perf_counter()
        tier_results = tier.match_many(queries)
        tier_rate = len(rows) / (time.perf_counter() - started)
        _print_score(
            "model-free tier", score(rows, _codes(tier_results)), f"{tier_rate:>10.0f} names/s"
        )
        started = time.perf_counter()
        results = full.match_many(queries)
        rate = len(rows) / (time.perf_counter() - started)
        _print_score("full, no model", score(rows, _codes(results)), f"{rate:>10.0f} names/s")
        if with_model is not None:
            started = time.perf_counter()
            model_results = with_model.match_many(queries)
            model_rate = len(rows) / (time.perf_counter() - started)
            _print_score(
                "ml-worker: model proposes",
                score(rows, _codes(model_results)),
                f"{model_rate:>10.0f} names/s",
            )
        if path.name in SPLIT_SETS:
            _print_halves(rows, _codes(results), _codes(model_results) if with_model else None)
        reachable = [i for i, row in enumerate(rows) if covered(row)]
        if len(reachable) < len(rows):
            best = model_results if with_model is not None else results
            within = score([rows[i] for i in reachable], _codes([best[i] for i in reachable]))
            print(
                f"  the catalog holds the analyte of {len(reachable)}/{len(rows)} names; "
                f"right among those: {within.top1_siblings:.1%}"
            )
        resolved = sum(1 for r in tier_results if r.loinc_code)
        coded = sum(1 for r in results if r.loinc_code)
        print(f"  model-free tier settles {resolved}/{coded} of the full matcher's codes")
        left = 1.0 - resolved / len(rows)
        print(
            f"  names left for the ml-worker: {left:.1%}; a 10-name report drawn from the set "
            f"starts it {1.0 - (1.0 - left) ** REPORT_NAMES:.0%} of the time"
        )
        if args.errors:
            readable = [path.name not in SPLIT_SETS or not held_out(row) for row in rows]
            for row, result, shown in zip(rows, results, readable, strict=True):
                if not shown:
                    continue
                is_strict, _, is_wrong = judge(row, result.loinc_code, result.loinc_name)
                if not is_strict:
                    tag = "WRONG" if is_wrong else "miss "
                    print(
                        f"    {tag} {row.query.test_name!r} [{row.query.unit}] "
                        f"expected={'|'.join(sorted(row.expected)) or None} "
                        f"got={result.loinc_code} {result.method} {(result.loinc_name or '')[:60]}"
                    )
            if with_model is not None:
                for row, result, shown in zip(rows, model_results, readable, strict=True):
                    is_strict, _, is_wrong = judge(row, result.loinc_code, result.loinc_name)
                    if shown and (result.method == "embedding" or is_wrong):
                        tag = "WRONG" if is_wrong else ("model" if is_strict else "msib ")
                        print(
                            f"    {tag} {row.query.test_name!r} [{row.query.unit}] "
                            f"got={result.loinc_code} {(result.loinc_name or '')[:60]}"
                        )
    print(f"\npeak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0:.0f} MB")


if __name__ == "__main__":
    main()
