"""What the console shows, read from the same places the CLI reads: the local store that
`healthflow run` writes (executions, dead letters, queued triggers), the ASL files, and the
database through the export's own query."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from tasks import deadletters
from tasks.console import executions as ex
from tasks.console.graph import svg
from tasks.console.live import LiveRun
from tasks.errors import ExecutionNotFound
from tasks.localcloud.cloud import LABS_STATE_MACHINE_NAME
from tasks.statemachines import LABS_ASL
from tasks.workflow import LocalStore


@cache
def _definition(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


def _duration_title(run: ex.StateRun) -> str:
    took = "--" if run.duration is None else f"{run.duration * 1000:.0f} ms"
    error = f", {run.error}" if run.error else ""
    return f"{run.name}: {run.status.replace('-', ' ')}, {took}{error}"


def _machine_of(dead_letter: Any) -> ex.Machine:
    """Which machine's execution sent a workflow dead letter (its ARN names the machine)."""
    arn = dead_letter.get("execution_arn") if isinstance(dead_letter, dict) else None
    return "labs" if f":{LABS_STATE_MACHINE_NAME}:" in str(arn or "") else "express"


class Console:
    """The console's reads and its two actions (redrive, process pending)."""

    def __init__(
        self,
        store: LocalStore,
        engine: Callable[[], Engine],
        express_definition: Path,
        labs_definition: Path = LABS_ASL,
        live: LiveRun | None = None,
    ) -> None:
        self.store = store
        self._engine = engine
        self._definitions: dict[ex.Machine, Path] = {
            "express": express_definition,
            "labs": labs_definition,
        }
        self.live = live or LiveRun(store)
        self._parsed: dict[Path, tuple[tuple[int, int], dict[ex.Machine, Any]]] = {}

    # ------------------------------------------------------------------ executions

    def _stored(self) -> dict[tuple[ex.Machine, str], tuple[ex.ExecutionSummary, list[Any]]]:
        """Every stored execution, by machine and name. A record is read again only when its
        file changed: the page polls, and a burst leaves a thousand records."""
        found: dict[tuple[ex.Machine, str], tuple[ex.ExecutionSummary, list[Any]]] = {}
        if not self.store.executions.exists():
            return found
        for path in self.store.executions.glob("*.json"):
            try:
                stat = path.stat()
                version = (stat.st_mtime_ns, stat.st_size)
                cached = self._parsed.get(path)
                if cached is None or cached[0] != version:
                    record = json.loads(path.read_text(encoding="utf-8"))
                    cached = (version, ex.from_record(record))
                    self._parsed[path] = cached
            except (OSError, json.JSONDecodeError, KeyError):
                continue  # being written right now: the next poll reads it
            for machine, entry in cached[1].items():
                found[(machine, entry[0].name)] = entry
        return found

    def executions(self, filters: ex.Filters) -> list[ex.ExecutionSummary]:
        stored = self._stored()
        summaries = [summary for summary, _ in stored.values()]
        summaries += self.live.executions(set(stored))
        return ex.newest_first(s for s in summaries if filters.keep(s))

    def execution(self, machine: ex.Machine, name: str) -> dict[str, Any]:
        """One execution with its graph (SVG, the path it took coloured)."""
        stored = self._stored().get((machine, name))
        if stored is not None:
            summary, events = stored
        else:
            live = self.live.history(machine, name)
            if live is None:
                raise ExecutionNotFound(f"no {machine} execution named {name}")
            status, events = live
            summary = ex.summarize(machine, name, status, events)
            if machine == "express" and self.live.history("labs", name) is not None:
                summary = ex.summarize(machine, name, status, events, child=name)
        shown = ex.view(summary, events)
        links = {}
        if summary.child:
            links["StartLabsWorkflow"] = f"labs/{summary.child}"
        titles = {run.name: _duration_title(run) for run in shown.states}
        graph = svg(
            _definition(self._definitions[machine]),
            shown.state_status(),
            set(shown.transitions),
            machine=machine,
            links=links,
            titles=titles,
        )
        return {**shown.as_json(), "graph": graph}

    # ------------------------------------------------------------------ dead letters

    def dead_letters(self) -> list[dict[str, Any]]:
        bodies = self.store.list_dead_letters()
        letters = [deadletters.classify(body) for body in bodies]
        return [
            {
                "machine": _machine_of(body),
                "kind": letter.kind,
                "error": letter.error,
                "reason": letter.reason,
                "job_type": letter.message.job_type if letter.message else None,
                "user_id": letter.message.user_id if letter.message else None,
                "execution": letter.execution,
                "failed_at": letter.failed_at,
                "redrivable": letter.message is not None,
            }
            for body, letter in zip(bodies, letters, strict=True)
        ]

    def redrive(self) -> dict[str, Any]:
        """`healthflow dlq redrive` on the local cloud: the triggers go back to the queue."""
        result = deadletters.redrive_local(self.store)
        return {
            "redriven": result.redriven,
            "kept": [{"error": letter.error, "why": why} for letter, why in result.kept],
        }

    def queued(self) -> int:
        return len(self.store.queued())

    # ------------------------------------------------------------------ aggregates

    def users(self) -> list[int]:
        with self._engine().connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT user_id FROM lab_report_raw UNION SELECT user_id FROM vitals_raw_data "
                    "UNION SELECT user_id FROM nutrition_raw_data ORDER BY 1 LIMIT 1000"
                )
            )
            return [int(row[0]) for row in rows]

    def aggregates(self, domain: str, granularity: str, user_id: int) -> dict[str, Any]:
        """The rows `healthflow export` writes for this user (the same query), and the lab names
        left uncategorized for them. Names are the user's own data, shown on this local page
        only: never logged."""
        from tasks.export import export_rows

        columns, *body = export_rows(self._engine(), domain, granularity, user_id=user_id)
        return {
            "columns": columns,
            "rows": body,
            "uncategorized": self.uncategorized(user_id) if domain == "labs" else [],
        }

    def uncategorized(self, user_id: int) -> list[dict[str, Any]]:
        with self._engine().connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT r.test_name, r.unit, count(*) AS results "
                    "FROM lab_report_categorized c JOIN lab_report_raw r ON r.id = c.raw_id "
                    "WHERE c.user_id = :user_id AND c.status = 'uncategorized' "
                    "GROUP BY r.test_name, r.unit ORDER BY count(*) DESC, r.test_name LIMIT 500"
                ),
                {"user_id": user_id},
            )
            return [{"test_name": r.test_name, "unit": r.unit, "results": r.results} for r in rows]
