"""A run of the local cloud inside the console, so its executions can be watched while they run.

moto keeps its state in the process that runs it, so executions that `healthflow run` drives in
another process appear in the console once that process has stored them. The console's own run
("Process pending" on the page) does what `healthflow run` does (a trigger for every user and
domain with pending rows, plus the queued and redriven ones) in a background thread, stores each
execution as it ends, and meanwhile lists the ones still in moto with their live history.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from tasks.console.executions import ExecutionSummary, Machine, summarize
from tasks.steps.models import JOB_OF_DOMAIN
from tasks.workflow import LocalStore

CloudFactory = Callable[[], AbstractContextManager[Any]]


class RunAlreadyActive(RuntimeError):
    """The console runs one drain at a time."""


@dataclass
class RunReport:
    triggers: int = 0
    executions: int = 0
    dead_letters: int = 0
    error: str | None = None
    done: bool = False


def _default_cloud() -> AbstractContextManager[Any]:
    from tasks.localcloud.cloud import LocalCloud

    return LocalCloud()


class LiveRun:
    """At most one background drain; what it has in flight, readable from other threads."""

    def __init__(self, store: LocalStore, cloud_factory: CloudFactory = _default_cloud) -> None:
        self._store = store
        self._cloud_factory = cloud_factory
        self._lock = threading.Lock()
        self._cloud: Any = None
        self._thread: threading.Thread | None = None
        self.report = RunReport(done=True)

    @property
    def active(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        with self._lock:
            if self.active:
                raise RunAlreadyActive("a run is already in progress")
            self.report = RunReport()
            self._thread = threading.Thread(target=self._run, name="console-run", daemon=True)
            self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        from tasks.db.engine import get_engine
        from tasks.db.migrate import ensure_current
        from tasks.domains import DOMAINS_IN_ORDER
        from tasks.process import pending_work

        report = self.report
        try:
            ensure_current(get_engine())  # as `healthflow run`: never on an old schema
            with self._cloud_factory() as cloud:
                for domain, user_id in pending_work(list(DOMAINS_IN_ORDER), None):
                    cloud.send_message({"job_type": JOB_OF_DOMAIN[domain], "user_id": user_id})
                    report.triggers += 1
                queued = self._store.queued()
                for body in queued:
                    cloud.send_message(body)
                    report.triggers += 1
                with self._lock:
                    self._cloud = cloud
                try:
                    cloud.drain(on_finished=lambda result: self._keep(cloud, result))
                    dead = cloud.dlq_messages()
                    self._store.add_dead_letters(d.body for d in dead)
                    for letter in dead:
                        cloud.delete_dead_letter(letter)
                    report.dead_letters = len(dead)
                    self._store.ack_queued(queued)
                finally:
                    with self._lock:
                        self._cloud = None
        except Exception as error:  # shown on the page by name; the thread must not die silently
            report.error = type(error).__name__
        finally:
            report.done = True

    def _keep(self, cloud: Any, result: Any) -> None:
        child = None
        if result.child is not None:
            child = (
                result.child.name,
                result.child.status,
                cloud.history(result.child.execution_arn),
            )
        self._store.save_execution(
            result.name, result.status, cloud.history(result.execution_arn), child=child
        )
        self.report.executions += 1

    # ------------------------------------------------------------------ reading

    def _arns(self, cloud: Any) -> dict[Machine, str]:
        return {"express": cloud.state_machine_arn, "labs": cloud.labs_state_machine_arn}

    def executions(self, stored: set[tuple[Machine, str]]) -> list[ExecutionSummary]:
        """The run's executions not stored yet (running, or ended with the drain not done)."""
        with self._lock:
            cloud = self._cloud
        if cloud is None:
            return []
        import boto3

        sfn = boto3.client("stepfunctions", region_name=cloud.region)
        found = []
        for machine, arn in self._arns(cloud).items():
            listed = sfn.list_executions(stateMachineArn=arn)["executions"]
            for execution in listed:
                if (machine, execution["name"]) in stored:
                    continue
                events = cloud.history(execution["executionArn"])
                found.append(summarize(machine, execution["name"], execution["status"], events))
        return found

    def history(self, machine: Machine, name: str) -> tuple[str, list[Any]] | None:
        """Status and events of one of the run's executions, or None when it has none by that
        name."""
        with self._lock:
            cloud = self._cloud
        if cloud is None:
            return None
        import boto3

        sfn = boto3.client("stepfunctions", region_name=cloud.region)
        prefix = self._arns(cloud)[machine].replace(":stateMachine:", ":execution:")
        try:
            described = sfn.describe_execution(executionArn=f"{prefix}:{name}")
        except sfn.exceptions.ExecutionDoesNotExist:
            return None
        return str(described["status"]), cloud.history(described["executionArn"])
