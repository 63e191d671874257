"""The console in a real browser: headless Chromium (Debian's package) loads the page from the
console's server, runs its JavaScript, and the DOM it renders is checked against the history of
each execution: the coloured path of the graph is what the history says happened.

Screenshots go to ``$HEALTHFLOW_CONSOLE_SCREENSHOTS`` (default: the test's temporary folder)."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tasks.console import executions as ex
from tasks.console.live import LiveRun
from tasks.console.state import Console
from tasks.localcloud.cloud import LocalCloud
from tasks.localcloud.moto_ext import silence_parser_logs
from tasks.statemachines import EXPRESS_ASL
from tasks.steps.registry import run_step
from tasks.workflow import LocalStore
from tests.console.conftest import request, seed

CHROMIUM = next(
    (p for p in (shutil.which("chromium"), shutil.which("chromium-browser")) if p), None
)
if CHROMIUM is None:
    pytest.skip(
        "no Chromium installed (apt-get install chromium): the console's browser tests skip",
        allow_module_level=True,
    )
ASL_STATES = {
    "express": "statemachines/healthflow.asl.json",
    "labs": "statemachines/labs.asl.json",
}


def chromium(*arguments: str) -> str:
    """Run headless Chromium once with a fresh profile; returns what it printed."""
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory(prefix="healthflow-chromium-") as profile:
        completed = subprocess.run(
            [
                CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                "--hide-scrollbars", f"--user-data-dir={profile}",
                # Virtual time runs the page's timers; network loads pause it, so the page's
                # fetches to the console complete before the DOM is read.
                "--virtual-time-budget=4000", *arguments,
            ],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout


def rendered(url: str) -> str:
    return chromium("--dump-dom", url)


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("HEALTHFLOW_CONSOLE_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot(url: str, path: Path, size: str = "1500,1050") -> Path:
    chromium(f"--screenshot={path}", f"--window-size={size}", url)
    assert path.stat().st_size > 10_000, "an empty screenshot"
    return path


class Graph(HTMLParser):
    """The states and edges of the rendered SVG graph, with their classes."""

    def __init__(self) -> None:
        super().__init__()
        self.states: dict[str, str] = {}
        self.taken: set[tuple[str, str]] = set()
        self.links: dict[str, str] = {}
        self.rows: dict[str, dict[str, str]] = {}
        self._table: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        classes = found.get("class", "").split()
        if tag == "g" and "state" in classes:
            self.states[found["data-state"]] = found["data-status"]
            if "data-link" in found:
                self.links[found["data-state"]] = found["data-link"]
        if tag == "path" and "edge" in classes and "taken" in classes:
            self.taken.add((found["data-source"], found["data-target"]))
        if tag == "table":
            self._table = found.get("id")
        if tag == "tr" and "data-state" in found and self._table:
            self.rows.setdefault(self._table, {})[found["data-state"]] = found.get(
                "data-status", ""
            )


def parsed(html: str) -> Graph:
    graph = Graph()
    graph.feed(html)
    return graph


def expected_from_history(events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What the graph must show, read from the raw history (not from the console's code):
    entered states in order, the states an error was raised in and left again (caught), the
    Fail state or the state the execution died in (failed), the edges between entered states."""
    entered: list[str] = []
    caught: set[str] = set()
    failed: set[str] = set()
    current: str | None = None
    error_in_current = False
    for event in events:
        kind = event["type"]
        if "stateEnteredEventDetails" in event:
            current = event["stateEnteredEventDetails"]["name"]
            entered.append(current)
            error_in_current = False
            if kind == "FailStateEntered":
                failed.add(current)
        elif kind.endswith("Failed") and kind != "ExecutionFailed":
            error_in_current = True
        elif "stateExitedEventDetails" in event:
            if error_in_current:
                caught.add(current or "")
            error_in_current = False
    if error_in_current and current:
        failed.add(current)
    edges = set(itertools.pairwise(entered)) | {("(start)", entered[0])}
    return {"entered": entered, "caught": caught, "failed": failed, "edges": edges}


def check_graph(graph: Graph, events: Sequence[Mapping[str, Any]], machine: str) -> dict:
    import json

    definition = json.loads(Path(ASL_STATES[machine]).read_text(encoding="utf-8"))
    expected = expected_from_history(events)
    assert set(graph.states) == set(definition["States"]), "every ASL state is drawn"
    for state, status in graph.states.items():
        if state in expected["caught"]:
            assert status == "caught", state
        elif state in expected["failed"]:
            assert status == "failed", state
        elif state in expected["entered"]:
            assert status == "succeeded", state
        else:
            assert status == "not-reached", state
    assert graph.taken == expected["edges"]
    assert graph.rows["states"] == {s: graph.states[s] for s in expected["entered"]}
    return expected


@pytest.fixture
def url(serve, console: Console) -> str:
    return str(serve(console))


def test_a_succeeded_execution_shows_its_path_in_green(made, url, screenshots) -> None:
    page = f"{url}/#/execution/express/{made.succeeded}"
    graph = parsed(rendered(page))
    expected = check_graph(graph, made.histories["succeeded"], "express")
    assert not expected["caught"] and not expected["failed"]
    assert "AggregateNutritionWeekly" in expected["entered"]
    assert graph.states["ClaimPendingVitals"] == "not-reached"
    screenshot(page, screenshots / "console-succeeded.png")


def test_a_caught_failure_shows_the_catch_path_to_the_dead_letter_queue(
    made, url, screenshots
) -> None:
    page = f"{url}/#/execution/express/{made.caught}"
    html = rendered(page)
    graph = parsed(html)
    expected = check_graph(graph, made.histories["caught"], "express")
    assert expected["caught"] == {"AggregateVitalsWeekly"}
    assert expected["failed"] == {"ProcessingFailed"}
    assert ("AggregateVitalsWeekly", "MarkClaimFailed") in graph.taken
    assert "InjectedFailure" in html  # the error name, in the states table and the timeline
    screenshot(page, screenshots / "console-caught.png")


def test_an_invalid_message_shows_the_dead_letter_path(made, url, screenshots) -> None:
    page = f"{url}/#/execution/express/{made.invalid}"
    graph = parsed(rendered(page))
    expected = check_graph(graph, made.histories["invalid"], "express")
    assert expected["caught"] == {"ValidateMessage"}
    assert graph.states["SendInvalidMessageToDeadLetterQueue"] == "succeeded"
    assert graph.states["ProcessingFailed"] == "failed"
    assert graph.states["RouteByJobType"] == "not-reached"
    screenshot(page, screenshots / "console-invalid.png")


def test_the_labs_child_is_reachable_from_its_parent(made, url) -> None:
    parent = parsed(rendered(f"{url}/#/execution/express/{made.labs}"))
    check_graph(parent, made.histories["labs"], "express")
    assert parent.links == {"StartLabsWorkflow": f"labs/{made.labs}"}
    child = parsed(rendered(f"{url}/#/execution/{parent.links['StartLabsWorkflow']}"))
    check_graph(child, made.histories["labs-child"], "labs")
    assert child.states["MarkLabsAggregated"] == "succeeded"


def test_the_list_dead_letters_and_aggregates_render(made, url, screenshots) -> None:
    listing = rendered(f"{url}/#/executions")
    for name in (made.succeeded, made.caught, made.invalid, made.labs):
        assert f'data-name="{name}"' in listing
    assert listing.count('data-machine="labs"') == 1  # the labs child, listed under its machine
    filtered = rendered(f"{url}/#/executions?status=FAILED")
    assert f'data-name="{made.caught}"' in filtered
    assert f'data-name="{made.succeeded}"' not in filtered
    screenshot(f"{url}/#/executions", screenshots / "console-executions.png")

    letters = rendered(f"{url}/#/dead-letters")
    assert "InjectedFailure" in letters and "InvalidMessage" in letters
    screenshot(f"{url}/#/dead-letters", screenshots / "console-dead-letters.png")

    chart = rendered(f"{url}/#/aggregates?domain=vitals&granularity=daily&user_id=301")
    assert 'class="aggregate-chart"' in chart
    screenshot(
        f"{url}/#/aggregates?domain=nutrition&granularity=daily&user_id=301",
        screenshots / "console-aggregates.png",
    )


class PacedConsole(Console):
    """The console, with the page's polls paced by the test: the first look at the execution
    releases the step it waits in; the next waits until the run has ended. So one page load
    sees the execution running and then, without a reload, finished."""

    def __init__(self, *args: Any, release: threading.Event, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.release = release
        self.seen: list[str] = []
        self.first_states: dict[str, str] = {}

    def execution(self, machine: ex.Machine, name: str) -> dict[str, Any]:
        if self.seen:
            self.live.join(timeout=120)
        shown = super().execution(machine, name)
        if not self.seen:
            self.first_states = {s["name"]: s["status"] for s in shown["states"]}
        self.seen.append(shown["summary"]["status"])
        self.release.set()
        return shown


def test_a_running_execution_updates_without_a_reload(engine, tmp_path, serve) -> None:
    silence_parser_logs()
    seed(engine)
    entered, release = threading.Event(), threading.Event()

    def slow_vitals_weekly(name: str, payload: dict[str, Any]) -> Any:
        if (name, payload.get("domain"), payload.get("granularity")) == (
            "aggregate", "vitals", "weekly",
        ):  # fmt: skip
            entered.set()
            if not release.wait(120):
                raise TimeoutError("the test never released the step")
        return run_step(name, payload)

    store = LocalStore(tmp_path / "localcloud")
    live = LiveRun(store, lambda: LocalCloud(run_step=slow_vitals_weekly, heartbeat_seconds=0.5))
    console = PacedConsole(store, lambda: engine, EXPRESS_ASL, live=live, release=release)
    base = serve(console)
    try:
        status, _ = request(base, "/api/run", "POST", headers={"X-Healthflow-Console": "1"})
        assert status == 200
        assert entered.wait(120)
        _, listed = request(base, "/api/executions?status=RUNNING&domain=vitals")
        [running] = listed["executions"]
        assert listed["run"]["active"] is True
        html = rendered(f"{base}/#/execution/express/{running['name']}")
    finally:
        release.set()
        live.join(timeout=120)
    assert console.seen[0] == "RUNNING" and console.seen[-1] == "SUCCEEDED"
    assert console.first_states["AggregateVitalsWeekly"] == "running"
    assert "VitalsDone" not in console.first_states
    graph = parsed(html)
    assert graph.states["AggregateVitalsWeekly"] == "succeeded"
    assert graph.states["VitalsDone"] == "succeeded"
    assert 'id="execution-status"><span class="badge SUCCEEDED"' in html
    # The run stored every execution, as `healthflow run` does: vitals, nutrition, labs + child.
    assert live.report.error is None and live.report.done
    _, stored = request(base, "/api/executions")
    assert sorted((e["machine"], e["domain"], e["status"]) for e in stored["executions"]) == [
        ("express", "labs", "SUCCEEDED"), ("express", "nutrition", "SUCCEEDED"),
        ("express", "vitals", "SUCCEEDED"), ("labs", "labs", "SUCCEEDED"),
    ]  # fmt: skip
