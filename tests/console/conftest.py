"""Executions made by the real ASL on the local cloud against the real database, kept in a local
store the way `healthflow run` keeps them, and a console serving that store on a free port."""

from __future__ import annotations

import http.client
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from tasks.console.server import make_server
from tasks.console.state import Console
from tasks.errors import HealthflowError
from tasks.ingest import ingest_lines
from tasks.localcloud.cloud import ExecutionResult, LocalCloud
from tasks.localcloud.moto_ext import silence_parser_logs
from tasks.statemachines import EXPRESS_ASL
from tasks.steps.registry import run_step
from tasks.workflow import LocalStore

USER = 301
LAB_USER = 302
FOODS = ["Masala Dosa", "Quinoa Salad"]
# Names the catalog resolves without the model, so the labs child runs no ECS task.
KNOWN_LABS = [("S. Creatinine", "1.13", "mg/dL"), ("SGPT (ALT)", "41", "U/L")]


class InjectedFailure(HealthflowError):
    """A step failure the workflow's Catch routes to the dead-letter queue."""


def failing_vitals_weekly(name: str, payload: dict[str, Any]) -> Any:
    if name == "aggregate" and (payload.get("domain"), payload.get("granularity")) == (
        "vitals",
        "weekly",
    ):
        raise InjectedFailure("injected for the test")
    return run_step(name, payload)


def seed(engine: Engine) -> None:
    ingest_lines(engine, "users", [f'{{"user_id": {USER}, "timezone": "Europe/Berlin"}}'])
    vitals = [
        json.dumps({"user_id": USER, "metric": "heart_rate", "value": 60 + day, "unit": "bpm",
                    "start_time": f"2024-03-{day:02d}T08:00:00+01:00", "entry_id": f"v{day}"})
        for day in range(1, 15)
    ]  # fmt: skip
    ingest_lines(engine, "vitals", vitals)
    meals = [
        json.dumps({"user_id": USER, "meal_date": f"2024-03-{day:02d}", "meal_type": "lunch",
                    "food_name": FOODS[day % 2], "calories": 500 + day, "protein_g": 20.5})
        for day in range(1, 10)
    ]  # fmt: skip
    ingest_lines(engine, "nutrition", meals)
    labs = [
        json.dumps({"user_id": LAB_USER, "report_id": "R1", "test_name": name, "value": value,
                    "unit": unit, "collected_at": "2024-03-15"})
        for name, value, unit in KNOWN_LABS
    ]  # fmt: skip
    ingest_lines(engine, "labs", labs)


def keep(store: LocalStore, cloud: LocalCloud, result: ExecutionResult) -> None:
    child = None
    if result.child is not None:
        child_events = cloud.history(result.child.execution_arn)
        child = (result.child.name, result.child.status, child_events)
    store.save_execution(
        result.name, result.status, cloud.history(result.execution_arn), child=child
    )


@dataclass
class Made:
    """The executions the console tests look at, by what they show."""

    store: LocalStore
    succeeded: str
    caught: str
    invalid: str
    labs: str
    histories: dict[str, list[dict[str, Any]]]


def vitals(user_id: int) -> dict[str, Any]:
    return {"job_type": "process_pending_vitals", "user_id": user_id, "priority": "normal"}


@pytest.fixture
def made(engine: Engine, tmp_path: Path) -> Made:
    """A succeeded nutrition execution, a vitals one whose weekly aggregation fails (caught,
    then the dead-letter queue), an invalid message, and a labs parent with its child."""
    silence_parser_logs()
    logging.getLogger("tasks").setLevel(logging.ERROR)
    seed(engine)
    store = LocalStore(tmp_path / "localcloud")
    histories: dict[str, list[dict[str, Any]]] = {}
    names: dict[str, str] = {}
    with LocalCloud(run_step=failing_vitals_weekly, heartbeat_seconds=0.5) as cloud:
        starts = {
            "succeeded": {"job_type": "process_pending_nutrition", "user_id": USER},
            "caught": vitals(USER),
            # An invalid trigger with text in it: the store must keep none of that text.
            "invalid": {"job_type": "process_pending_vitals", "user_id": -1, "note": FOODS[0]},
            "labs": {"job_type": "process_pending_labs", "user_id": LAB_USER},
        }
        for label, body in starts.items():
            result = cloud.wait(cloud.start_execution(body, f"console-{label}"))
            keep(store, cloud, result)
            names[label] = result.name
            histories[label] = cloud.history(result.execution_arn)
            if result.child is not None:
                histories["labs-child"] = cloud.history(result.child.execution_arn)
        store.add_dead_letters(d.body for d in cloud.dlq_messages())
    return Made(store, names["succeeded"], names["caught"], names["invalid"], names["labs"],
                histories)  # fmt: skip


@pytest.fixture
def serve(engine: Engine) -> Iterator[Callable[[Console], str]]:
    """Serve a console on a free loopback port; returns its base URL."""
    servers = []

    def start(console: Console) -> str:
        server = make_server(console, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def console(made: Made, engine: Engine) -> Console:
    return Console(made.store, lambda: engine, EXPRESS_ASL)


def request(
    base: str, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    kind = response.getheader("Content-Type", "")
    return response.status, json.loads(body) if kind.startswith("application/json") else body
