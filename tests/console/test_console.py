"""The console's server and reads without a browser: loopback only, nothing fetched from
elsewhere, the graph layout, the export's numbers, the redrive action."""

from __future__ import annotations

import io
import itertools
import json
import re
from contextlib import redirect_stdout
from importlib import resources
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tasks.cli import main
from tasks.console.graph import NODE_HEIGHT, START, edges_of, layout
from tasks.console.server import NotLoopback, check_loopback, make_server
from tasks.statemachines import EXPRESS_ASL, LABS_ASL
from tests.console.conftest import FOODS, LAB_USER, USER, request

# The one URL the page's files may name: the SVG namespace, an identifier that is never fetched.
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "example.org", ""])
def test_the_console_refuses_to_bind_beyond_loopback(host: str) -> None:
    with pytest.raises(NotLoopback):
        check_loopback(host)


def test_the_console_command_refuses_a_public_address_or_a_taken_port(capsys, console) -> None:
    with pytest.raises(SystemExit) as exit_code:
        main(["console", "--host", "0.0.0.0", "--port", "0"])
    assert exit_code.value.code == 2
    assert "loopback address only" in capsys.readouterr().err
    taken = make_server(console, "127.0.0.1", 0)
    try:
        port = str(taken.server_address[1])
        assert main(["console", "--port", port]) == 1
        assert f"port {port}" in capsys.readouterr().err
    finally:
        taken.server_close()
    assert check_loopback("127.0.0.1") == "127.0.0.1"
    assert check_loopback("::1") == "::1"


def test_the_page_loads_nothing_from_elsewhere() -> None:
    static = resources.files("tasks.console") / "static"
    names = [p.name for p in static.iterdir() if p.name.endswith((".html", ".js", ".css"))]
    assert {"index.html", "app.js", "chart.js", "console.css"} <= set(names)
    for name in names:
        content = (static / name).read_text(encoding="utf-8")
        urls = set(re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s\"'`)]*", content))
        assert urls <= {SVG_NAMESPACE}, (name, urls)
    html = (static / "index.html").read_text(encoding="utf-8")
    assert re.findall(r'(?:src|href)="([^"#]+)"', html) == [
        "/static/console.css", "/static/chart.js", "/static/app.js",
    ]  # fmt: skip
    assert "nothing is" in html and "sent anywhere" in html


@pytest.mark.parametrize("path", [EXPRESS_ASL, LABS_ASL])
def test_the_layout_places_every_state_once_without_overlap(path: Path) -> None:
    definition = json.loads(path.read_text(encoding="utf-8"))
    shape = layout(definition)
    assert set(shape.positions) == {START, *definition["States"]}
    by_row: dict[float, list[tuple[float, float]]] = {}
    for name, (x, y) in shape.positions.items():
        half = shape.widths[name] / 2
        assert x - half >= 0 and x + half <= shape.width
        assert NODE_HEIGHT / 2 <= y <= shape.height
        by_row.setdefault(y, []).append((x - half, x + half))
    for spans in by_row.values():
        spans.sort()
        assert all(a[1] < b[0] for a, b in itertools.pairwise(spans))
    # Every transition of the definition is drawn, and (there are no loops) points downwards.
    drawn = {(e.source, e.target) for e in shape.edges}
    assert drawn == {(e.source, e.target) for e in edges_of(definition)}
    for source, target in drawn:
        assert shape.positions[source][1] < shape.positions[target][1], (source, target)


def test_requests_must_come_to_loopback_and_actions_need_the_header(made, serve, console) -> None:
    base = serve(console)
    status, _ = request(base, "/api/executions", headers={"Host": "console.example.org"})
    assert status == 403
    status, body = request(base, "/api/dead-letters/redrive", "POST")
    assert status == 403 and "header" in body["error"]
    assert made.store.list_dead_letters(), "a refused action changed nothing"
    status, body = request(base, "/api/executions?status=BOGUS")
    assert status == 400 and body["error"].startswith("status")
    status, body = request(base, "/api/executions/express/no-such-execution")
    assert status == 404
    status, body = request(base, "/static/../state.py")
    assert status == 404


def test_executions_are_listed_newest_first_and_filtered(made, serve, console) -> None:
    base = serve(console)
    status, body = request(base, f"/api/executions?user_id={USER}&status=FAILED")
    assert status == 200
    assert [(e["machine"], e["name"]) for e in body["executions"]] == [("express", made.caught)]
    [caught] = body["executions"]
    assert caught["caught"] == "InjectedFailure in AggregateVitalsWeekly"
    assert caught["domain"] == "vitals"
    status, body = request(base, "/api/executions?domain=labs")
    assert {(e["machine"], e["name"]) for e in body["executions"]} == {
        ("express", made.labs), ("labs", made.labs),
    }  # fmt: skip
    _, every = request(base, "/api/executions")
    started = [e["started_at"] for e in every["executions"]]
    assert started == sorted(started, reverse=True)


def test_state_input_and_output_are_the_ids_and_counts_of_the_history(made, console) -> None:
    shown = console.execution("express", made.caught)
    states = {s["name"]: s for s in shown["states"]}
    assert states["ClaimPendingVitals"]["output"]["claim"]["claimed"] == 14
    assert states["AggregateVitalsWeekly"]["error"] == "InjectedFailure"
    assert states["AggregateVitalsWeekly"]["output"]["error"]["Error"] == "InjectedFailure"
    assert all(s["duration"] is not None for s in shown["states"][:-1])


def test_aggregates_are_the_exports_numbers(made, serve, console, engine: Engine) -> None:
    base = serve(console)
    for domain, granularity in (("vitals", "daily"), ("nutrition", "weekly"), ("labs", "daily")):
        user = LAB_USER if domain == "labs" else USER
        status, body = request(
            base, f"/api/aggregates?domain={domain}&granularity={granularity}&user_id={user}"
        )
        assert status == 200
        out = io.StringIO()
        with redirect_stdout(out):
            assert main(["export", domain, "--granularity", granularity,
                         "--user-id", str(user)]) == 0  # fmt: skip
        exported = [line.split(",") for line in out.getvalue().splitlines()]
        assert [body["columns"], *body["rows"]] == exported
        assert len(exported) > 1
    status, body = request(base, "/api/users")
    assert body["users"] == [USER, LAB_USER]


def test_uncategorized_lab_names_are_listed_for_their_user(made, console, engine) -> None:
    with engine.begin() as conn:
        raw_id = conn.execute(
            text(
                "INSERT INTO lab_report_raw (user_id, test_name, value_text, status, "
                "collected_local) VALUES (:user, 'Patient''s favourite colour', 'blue', "
                "'aggregated', '2024-03-15') RETURNING id"
            ),
            {"user": LAB_USER},
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO lab_report_categorized (raw_id, user_id, dedup_key, status, "
                "confidence, method, observed_at, local_date) VALUES (:raw_id, :user, 'k', "
                "'uncategorized', 0, 'none', now(), current_date)"
            ),
            {"raw_id": raw_id, "user": LAB_USER},
        )
    shown = console.aggregates("labs", "daily", LAB_USER)
    assert shown["uncategorized"] == [
        {"test_name": "Patient's favourite colour", "unit": None, "results": 1}
    ]
    assert console.aggregates("labs", "daily", USER)["uncategorized"] == []


def test_redrive_requeues_valid_triggers_and_keeps_the_rest(made, serve, console) -> None:
    base = serve(console)
    _, before = request(base, "/api/dead-letters")
    errors = sorted(d["error"] for d in before["dead_letters"])
    assert errors == ["InjectedFailure", "InvalidMessage"]
    status, body = request(
        base, "/api/dead-letters/redrive", "POST", headers={"X-Healthflow-Console": "1"}
    )
    assert status == 200
    assert body["redriven"] == 1
    assert [k["error"] for k in body["kept"]] == ["InvalidMessage"]
    assert made.store.queued() == [
        {"job_type": "process_pending_vitals", "user_id": USER, "priority": "normal"}
    ]
    _, after = request(base, "/api/dead-letters")
    assert [d["error"] for d in after["dead_letters"]] == ["InvalidMessage"]
    assert after["queued"] == 1


def test_the_store_keeps_the_validated_trigger_never_an_invalid_messages_text(made, console):
    stored = [p.read_text(encoding="utf-8") for p in made.store.executions.glob("*.json")]
    assert len(stored) == 4
    assert not any(FOODS[0] in text for text in stored)
    assert FOODS[0] in json.dumps(made.histories["invalid"], default=str)  # moto's has it
    invalid = console.execution("express", made.invalid)
    assert invalid["states"][0]["input"] == {"trigger": None}
    assert invalid["summary"]["domain"] is None
    caught = console.execution("express", made.caught)["summary"]
    assert (caught["domain"], caught["user_id"]) == ("vitals", USER)
