"""Apps moving from the SQS-worker system read lab aggregates by that system's table names."""

from __future__ import annotations

import json

from sqlalchemy import text

from tasks.ingest import ingest_lines
from tasks.process import process_pending


def test_lab_report_views_show_the_lab_aggregates(engine, lab_matcher) -> None:
    lines = [
        json.dumps({"user_id": 5, "report_id": f"R{n}", "test_name": "HbA1c", "value": value,
                    "unit": "%", "collected_at": day})
        for n, (value, day) in enumerate([(5.5, "2024-01-10"), (6.1, "2024-01-20"),
                                          (5.9, "2024-04-02")])
    ]  # fmt: skip
    ingest_lines(engine, "labs", lines)
    assert all(run.error is None for run in process_pending(["labs"]))
    with engine.connect() as conn:
        for level, buckets in (("daily", 3), ("monthly", 2), ("quarterly", 2), ("yearly", 1)):
            seed = conn.execute(
                text(f"SELECT user_id, loinc_code, bucket_start, count, sum, avg, unit "
                     f"FROM lab_report_{level} ORDER BY bucket_start")
            ).all()  # fmt: skip
            own = conn.execute(
                text(f"SELECT user_id, loinc_code, bucket_start, count, sum, "
                     f"round((sum / count)::numeric, decimals + 1)::float8, unit "
                     f"FROM labs_agg_{level} ORDER BY bucket_start")
            ).all()  # fmt: skip
            assert len(seed) == buckets and [tuple(r) for r in seed] == [tuple(r) for r in own]
        [yearly] = conn.execute(text("SELECT count, avg FROM lab_report_yearly")).all()
    # The mean of readings with one decimal carries two (docs/formats.md, "Precision").
    assert yearly.count == 3 and yearly.avg == 5.83
