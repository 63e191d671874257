"""`run`'s drain total counts what it says: every execution, continuations included."""

from __future__ import annotations

import io

from tasks.cli_workflow import _continues
from tasks.ingest import ingest_lines
from tasks.localcloud.cloud import LocalCloud
from tasks.localcloud.moto_ext import silence_parser_logs
from tasks.progress import Progress
from tests.support.reference import generate


def test_the_drain_total_grows_by_each_continuation(engine, monkeypatch) -> None:
    from tasks.settings import get_settings

    silence_parser_logs()
    lines = [r.line() for r in generate(seed=3, per_user=60) if r.user_id == 101]
    ingest_lines(engine, "vitals", lines)
    monkeypatch.setenv("HEALTHFLOW_CLAIM_MAX_ROWS", str(len(lines) // 3 + 1))
    get_settings.cache_clear()
    progress = Progress(1, unit="executions", description="drain", stream=io.StringIO())
    try:
        with LocalCloud(heartbeat_seconds=0.5) as cloud:
            cloud.send_message({"job_type": "process_pending_vitals", "user_id": 101})

            def finished(result) -> None:  # type: ignore[no-untyped-def]
                progress.update(1)
                if _continues(result):
                    progress.grow(1)

            results = cloud.drain(on_finished=finished)
    finally:
        monkeypatch.delenv("HEALTHFLOW_CLAIM_MAX_ROWS")
        get_settings.cache_clear()
    assert len(results) >= 3 and all(r.succeeded for r in results)
    assert progress.done == progress.total == len(results)
