"""Lab categorization benchmark on the evaluation set: accuracy, throughput, load time, memory.

Usage: ``python bench/categorize.py [--eval tests/data/labs/eval_set.csv] [--cache-dir DIR]
[--errors]``. Prints figures only; test names are printed only with ``--errors`` (the eval set is
synthetic, never user data).
"""

from __future__ import annotations

import argparse
import csv
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.labs.matcher import (
    CombinedMatcher,
    EmbeddingMatcher,
    FuzzyMatcher,
    LabQuery,
    Matcher,
    MatchResult,
    load_model,
)

DEFAULT_EVAL = Path(__file__).resolve().parents[1] / "tests" / "data" / "labs" / "eval_set.csv"


@dataclass(frozen=True)
class EvalRow:
    query: LabQuery
    expected: str | None


@dataclass(frozen=True)
class Score:
    top1: float
    top5: float
    false_codes: int  # should-stay-uncategorized names that got a code
    names_per_second: float


def read_eval(path: Path) -> list[EvalRow]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            EvalRow(LabQuery(row["test_name"], row["unit"]), row["expected_loinc"] or None)
            for row in csv.DictReader(handle)
        ]


def is_top1_correct(row: EvalRow, result: MatchResult) -> bool:
    return result.loinc_code == row.expected


def is_top5_correct(row: EvalRow, result: MatchResult) -> bool:
    if row.expected is None:
        return result.loinc_code is None
    return row.expected in [code for code, _ in result.candidates[:5]]


def score(matcher: Matcher, rows: Sequence[EvalRow], repeats: int = 1) -> tuple[Score, list]:
    queries = [row.query for row in rows]
    matcher.match_many(queries[:8])  # warm-up: lazy model load and catalog embeddings
    started = time.perf_counter()
    for _ in range(repeats):
        results = matcher.match_many(queries)
    elapsed = time.perf_counter() - started
    top1 = sum(is_top1_correct(r, m) for r, m in zip(rows, results, strict=True)) / len(rows)
    top5 = sum(is_top5_correct(r, m) for r, m in zip(rows, results, strict=True)) / len(rows)
    false_codes = sum(
        1 for r, m in zip(rows, results, strict=True) if not r.expected and m.loinc_code
    )
    errors = [(r, m) for r, m in zip(rows, results, strict=True) if not is_top1_correct(r, m)]
    return Score(top1, top5, false_codes, repeats * len(rows) / elapsed), errors


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--eval", type=Path, default=DEFAULT_EVAL)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--errors", action="store_true", help="list the full matcher's misses")
    args = parser.parse_args()
    cache_dir = args.cache_dir or Path(tempfile.mkdtemp(prefix="healthflow-bench-"))
    rows = read_eval(args.eval)
    print(
        f"eval set: {len(rows)} names ({sum(1 for r in rows if not r.expected)} must stay "
        f"uncategorized)"
    )

    started = time.perf_counter()
    from tasks.labs.matcher import default_model_path

    load_model(default_model_path())
    print(f"model load (incl. torch import): {time.perf_counter() - started:.2f} s")

    contenders: list[tuple[str, Matcher, int]] = [
        ("rapidfuzz alone", FuzzyMatcher(), 3),
        ("embedding alone", EmbeddingMatcher(cache_dir=cache_dir), 1),
        ("full matcher", CombinedMatcher(cache_dir=cache_dir), 3),
    ]
    full_errors: list = []
    print(f"{'matcher':<18}{'top-1':>8}{'top-5':>8}{'false codes':>13}{'names/s':>10}")
    for name, matcher, repeats in contenders:
        result, errors = score(matcher, rows, repeats)
        print(
            f"{name:<18}{result.top1:>8.1%}{result.top5:>8.1%}{result.false_codes:>13}"
            f"{result.names_per_second:>10.0f}"
        )
        if name == "full matcher":
            full_errors = errors
    print(f"peak RSS: {peak_rss_mb():.0f} MB")
    if args.errors:
        for row, match in full_errors:
            print(
                f"  MISS {row.query.test_name!r} [{row.query.unit}] expected={row.expected} "
                f"got={match.loinc_code} {match.method} {match.confidence:.3f} "
                f"{list(match.candidates[:3])}"
            )


if __name__ == "__main__":
    main()
