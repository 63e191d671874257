"""The workflow's shape and speed, in one run on the same data:

1. State transitions per message and branch (labs, vitals, nutrition, nothing pending): real
   executions of ``statemachines/healthflow.asl.json`` on the local cloud, with the real steps
   against a real PostgreSQL, counted as states entered (Standard workflows bill each one).
   Aim: <= 12 on the happy path, <= 5 when nothing is pending.
2. Executions per second through the local cloud (queue -> pipe -> state machine -> steps)
   against direct mode (``tasks.process.process_pending``) on a fresh copy of the same data; both
   must leave identical aggregate tables.
3. The cost model's monthly figure for 10,000 messages a day, with ``DEFAULT_PROFILES`` and with
   profiles built from what this run measured.

    .venv/bin/python bench/workflow.py [--users N] [--profile-users N] [--vitals-days N]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine, text

from bench._common import bench_engine, truncate
from tasks.aggregate import GRANULARITIES
from tasks.db.models import Base
from tasks.ingest import ingest_lines
from tasks.localcloud import moto_ext
from tasks.localcloud.cloud import (
    DEFAULT_DEFINITION,
    ExecutionResult,
    LocalCloud,
    container_runner_for,
    execution_name_for,
    lambda_dispatcher_for,
)
from tasks.process import process_pending
from tasks.sample import generate_users, iter_labs, iter_nutrition, iter_vitals
from tasks.workflow import DEFAULT_PROFILES, BranchProfile, CostEstimate, monthly_cost

DOMAINS = ("labs", "vitals", "nutrition")
BRANCHES = (*DOMAINS, "nothing_pending")
# The aims of DESIGN.md: Standard workflows bill per transition.
AIMS = {"labs": 12, "vitals": 12, "nutrition": 12, "nothing_pending": 5}
# The same mix and rate as `healthflow cost` defaults, so the figures are comparable.
MESSAGES_PER_DAY = 10_000
MIX = {"labs": 0.1, "vitals": 0.5, "nutrition": 0.3, "nothing_pending": 0.1}
START = date(2024, 3, 4)
REGION = "us-east-1"
HEARTBEAT_SECONDS = 5.0
AGGREGATE_TABLES = tuple(
    f"{domain}_agg_{level}" for domain, levels in GRANULARITIES.items() for level in levels
)


# ---------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Dataset:
    """JSON lines per domain ("users" first), generated once and ingested as often as needed."""

    lines: dict[str, list[str]]
    user_ids: list[int]

    @property
    def raw_rows(self) -> int:
        return sum(len(self.lines[domain]) for domain in DOMAINS)


def make_dataset(n_users: int, vitals_days: int, seed: int = 7) -> Dataset:
    users = generate_users(n_users, seed=seed)
    rows: dict[str, Iterable[Mapping[str, Any]]] = {
        "users": users,
        # Labs are a few visits a year, so a year of them gives each user a report or two.
        "labs": iter_labs(users, date(2024, 1, 1), 365, seed=seed),
        "vitals": iter_vitals(users, START, vitals_days, seed=seed, rate="light"),
        "nutrition": iter_nutrition(users, START, 7, seed=seed),
    }
    lines = {name: [json.dumps(row) for row in found] for name, found in rows.items()}
    return Dataset(lines, [int(user["user_id"]) for user in users])


def load_fresh(engine: Engine, dataset: Dataset) -> None:
    """Empty every table, then ingest the dataset: the same rows, ids and statuses each time."""
    truncate(engine, *(table.name for table in Base.metadata.sorted_tables))
    for name in ("users", *DOMAINS):
        ingest_lines(engine, name, dataset.lines[name])


def aggregate_snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every aggregate row without its write time: equal snapshots mean equal results."""
    tables = {}
    with engine.connect() as conn:
        for table in AGGREGATE_TABLES:
            every = conn.execute(text(f"SELECT * FROM {table} LIMIT 0")).keys()
            columns = ", ".join(c for c in every if c != "updated_at")
            rows = conn.execute(text(f"SELECT {columns} FROM {table}")).all()
            tables[table] = sorted(tuple(row) for row in rows)
    return tables


# ---------------------------------------------------------------------------- step clock


class StepClock:
    """Seconds spent in Lambda and in the ECS container, per execution name.

    It wraps the local cloud's real runners, so what is timed is the handler a Lambda or the
    ml-worker runs, not moto's bookkeeping around it. Every step input carries the claim id, which
    is the execution name; ValidateMessage runs before the claim and is found by its message id.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.lambda_seconds: dict[str, float] = defaultdict(float)
        self.container_seconds: dict[str, float] = defaultdict(float)

    def _add(self, into: dict[str, float], execution: str, seconds: float) -> None:
        with self._lock:
            into[execution] += seconds

    def lambda_dispatcher(self, inner: moto_ext.LambdaDispatcher) -> moto_ext.LambdaDispatcher:
        def dispatch(function_arn: str, payload: dict[str, Any]) -> Any:
            started = time.perf_counter()
            try:
                return inner(function_arn, payload)
            finally:
                elapsed = time.perf_counter() - started
                self._add(self.lambda_seconds, _execution_of_lambda(payload), elapsed)

        return dispatch

    def container_runner(self, inner: moto_ext.ContainerRunner) -> moto_ext.ContainerRunner:
        def run(environment: Mapping[str, str]) -> None:
            started = time.perf_counter()
            try:
                inner(environment)
            finally:
                elapsed = time.perf_counter() - started
                step_input = json.loads(environment.get("HEALTHFLOW_STEP_INPUT", "{}"))
                execution = str(step_input.get("claim_id", "unknown"))
                self._add(self.container_seconds, execution, elapsed)

        return run


def _execution_of_lambda(payload: Mapping[str, Any]) -> str:
    step_input = payload.get("input") or {}
    if "claim_id" in step_input:
        return str(step_input["claim_id"])
    records = step_input.get("records")
    if isinstance(records, list) and records and "messageId" in records[0]:
        return execution_name_for(str(records[0]["messageId"]))
    return "unknown"


def lambda_states(definition_path: Path = DEFAULT_DEFINITION) -> frozenset[str]:
    """Names of the Task states that invoke a Lambda function (one invocation per entry)."""
    states = json.loads(definition_path.read_text())["States"]
    return frozenset(
        name for name, state in states.items() if ":lambda:invoke" in state.get("Resource", "")
    )


# ---------------------------------------------------------------------------- executions


@dataclass(frozen=True)
class Observation:
    """One finished execution, as the bill sees it."""

    branch: str
    status: str
    transitions: int
    lambda_invocations: int
    lambda_seconds: float
    container_seconds: float


class Bench:
    """A local cloud whose runners are timed, plus the bookkeeping of what each message was."""

    def __init__(self, cloud: LocalCloud, clock: StepClock) -> None:
        self.cloud = cloud
        self.clock = clock
        self._lambda_states = lambda_states()
        self._domain_of: dict[str, str] = {}

    def send(self, domain: str, user_id: int) -> None:
        message_id = self.cloud.send_message(
            {"job_type": f"process_pending_{domain}", "user_id": user_id, "priority": "normal"}
        )
        self._domain_of[execution_name_for(message_id)] = domain

    def observe(self, results: Iterable[ExecutionResult]) -> list[Observation]:
        return [self._observation(result) for result in results]

    def _observation(self, result: ExecutionResult) -> Observation:
        states = self.cloud.entered_states(result.execution_arn)
        branch = "nothing_pending" if "NothingToDo" in states else self._domain_of[result.name]
        return Observation(
            branch=branch,
            status=result.status,
            transitions=len(states),
            lambda_invocations=sum(state in self._lambda_states for state in states),
            lambda_seconds=self.clock.lambda_seconds.get(result.name, 0.0),
            container_seconds=self.clock.container_seconds.get(result.name, 0.0),
        )


def timed_cloud() -> tuple[LocalCloud, StepClock]:
    clock = StepClock()
    cloud = LocalCloud(
        lambda_dispatcher=clock.lambda_dispatcher(lambda_dispatcher_for(None)),
        container_runner=clock.container_runner(
            container_runner_for(None, REGION, HEARTBEAT_SECONDS)
        ),
        region=REGION,
        heartbeat_seconds=HEARTBEAT_SECONDS,
    )
    return cloud, clock


def profile_one_at_a_time(bench: Bench, user_ids: list[int]) -> list[Observation]:
    """One execution in flight at a time, so step durations are not inflated by contention
    (each Lambda and each task has its own CPU in AWS). Each branch is run for every user, then
    run again: the second message finds nothing pending."""
    observations = []
    for _round in range(2):
        for user_id in user_ids:
            for domain in DOMAINS:
                bench.send(domain, user_id)
                observations += bench.observe(bench.cloud.drain(max_messages=1))
    return observations


def run_through_workflow(bench: Bench, user_ids: list[int]) -> tuple[float, list[Observation]]:
    """Every user and domain triggered at once and drained, as a burst from the backend."""
    started = time.perf_counter()
    for user_id in user_ids:
        for domain in DOMAINS:
            bench.send(domain, user_id)
    results = bench.cloud.drain()
    elapsed = time.perf_counter() - started
    return elapsed, bench.observe(results)


def run_direct() -> tuple[float, int]:
    started = time.perf_counter()
    runs = process_pending()
    elapsed = time.perf_counter() - started
    failed = [run for run in runs if run.error]
    if failed:
        raise RuntimeError(f"direct mode failed: {[(r.domain, r.error) for r in failed]}")
    return elapsed, len(runs)


# ---------------------------------------------------------------------------- reporting


def by_branch(observations: Iterable[Observation]) -> dict[str, list[Observation]]:
    grouped: dict[str, list[Observation]] = {branch: [] for branch in BRANCHES}
    for observation in observations:
        grouped[observation.branch].append(observation)
    return grouped


def measured_profiles(
    profiled: Iterable[Observation], matcher_load_seconds: float
) -> dict[str, BranchProfile]:
    """Medians per branch. A real ml-worker task is a fresh container that loads the matcher
    before it works, so that load is part of the Fargate time of every labs message."""
    profiles = {}
    for branch, runs in by_branch(profiled).items():
        if not runs:
            raise RuntimeError(f"no execution took the {branch} branch")
        container = statistics.median(r.container_seconds for r in runs)
        profiles[branch] = BranchProfile(
            transitions=round(statistics.median(r.transitions for r in runs)),
            lambda_invocations=round(statistics.median(r.lambda_invocations for r in runs)),
            lambda_seconds=statistics.median(r.lambda_seconds for r in runs),
            fargate_seconds=container + matcher_load_seconds if container else 0.0,
        )
    return profiles


def print_transitions(observations: list[Observation]) -> None:
    print("state transitions per message (states entered; every execution of this run)")
    print(f"  {'branch':<16}{'runs':>5}{'min':>6}{'median':>8}{'max':>6}   aim")
    for branch, runs in by_branch(observations).items():
        counts = [r.transitions for r in runs]
        if not counts:
            print(f"  {branch:<16}{0:>5}   no executions  MISS")
            continue
        verdict = "PASS" if max(counts) <= AIMS[branch] else "MISS"
        print(
            f"  {branch:<16}{len(counts):>5}{min(counts):>6}{statistics.median(counts):>8.0f}"
            f"{max(counts):>6}   <= {AIMS[branch]:<3} {verdict}"
        )


def print_profiles(profiles: Mapping[str, BranchProfile]) -> None:
    print("measured profiles (medians, one execution in flight at a time)")
    print(
        f"  {'branch':<16}{'transitions':>12}{'lambda calls':>14}{'lambda s':>10}{'fargate s':>11}"
    )
    for branch, profile in profiles.items():
        print(
            f"  {branch:<16}{profile.transitions:>12}{profile.lambda_invocations:>14}"
            f"{profile.lambda_seconds:>10.3f}{profile.fargate_seconds:>11.2f}"
        )


def print_costs(default: CostEstimate, measured: CostEstimate) -> None:
    mix = ", ".join(f"{branch} {share:.0%}" for branch, share in MIX.items())
    print(f"monthly cost, {MESSAGES_PER_DAY:,} messages/day ({mix})")
    print(f"  {'line':<28}{'default profiles':>18}{'measured profiles':>19}")
    rows = [(line, dollars, measured.lines[line]) for line, dollars in default.lines.items()]
    rows.append(("total", default.monthly_total, measured.monthly_total))
    for line, by_default, by_measure in rows:
        print(f"  {line:<28}{f'${by_default:,.2f}':>18}{f'${by_measure:,.2f}':>19}")


def rate_line(label: str, executions: int, rows: int, seconds: float) -> str:
    return (
        f"  {label:<34}{executions:>4} executions in {seconds:6.2f} s  "
        f"{executions / seconds:7.1f} executions/s  {rows / seconds:9,.0f} rows/s"
    )


# ---------------------------------------------------------------------------- main


def load_matcher(cache_dir: str) -> float:
    """Install one lab matcher for the whole run; returns its load time (model + catalog)."""
    from tasks.labs import get_default_matcher
    from tasks.steps.labs import set_matcher

    started = time.perf_counter()
    matcher = get_default_matcher(cache_dir=cache_dir)
    matcher.embedding.catalog_vectors()  # the model is lazy: load it now, not inside a step
    set_matcher(matcher)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--profile-users", type=int, default=3)
    parser.add_argument("--vitals-days", type=int, default=3)
    args = parser.parse_args()
    moto_ext.silence_parser_logs()
    logging.getLogger("tasks").setLevel(logging.ERROR)
    dataset = make_dataset(args.users, args.vitals_days)
    with tempfile.TemporaryDirectory(prefix="hf-bench-embeddings-") as cache_dir:
        matcher_load = load_matcher(cache_dir)
        with bench_engine() as engine:
            cloud, clock = timed_cloud()
            with cloud:
                bench = Bench(cloud, clock)
                load_fresh(engine, dataset)
                profiled = profile_one_at_a_time(bench, dataset.user_ids[: args.profile_users])
                load_fresh(engine, dataset)
                workflow_s, burst = run_through_workflow(bench, dataset.user_ids)
            through_workflow = aggregate_snapshot(engine)
            load_fresh(engine, dataset)
            direct_s, direct_runs = run_direct()
            same = aggregate_snapshot(engine) == through_workflow
    report(dataset, matcher_load, profiled, burst, workflow_s, direct_s, direct_runs, same)


def report(
    dataset: Dataset,
    matcher_load: float,
    profiled: list[Observation],
    burst: list[Observation],
    workflow_s: float,
    direct_s: float,
    direct_runs: int,
    same: bool,
) -> None:
    failed = [o for o in profiled + burst if o.status != "SUCCEEDED"]
    print(
        f"workflow benchmark: {len(dataset.user_ids)} users, {dataset.raw_rows:,} raw rows "
        f"(labs {len(dataset.lines['labs']):,}, vitals {len(dataset.lines['vitals']):,}, "
        f"nutrition {len(dataset.lines['nutrition']):,}); {len(failed)} executions failed"
    )
    print(f"lab matcher load (model + catalog embeddings, once): {matcher_load:.2f} s, not rated")
    print()
    print_transitions(profiled + burst)
    print()
    print("throughput on the same data (a burst: every user and domain triggered at once)")
    print(
        rate_line("local cloud (SQS, pipe, ASL, steps)", len(burst), dataset.raw_rows, workflow_s)
    )
    print(rate_line("direct mode (process_pending)", direct_runs, dataset.raw_rows, direct_s))
    print(
        f"  direct mode is {workflow_s / direct_s:.1f}x faster; "
        f"identical aggregate tables: {'yes' if same else 'NO'}"
    )
    print()
    profiles = measured_profiles(profiled, matcher_load)
    print_profiles(profiles)
    print("  (in process against a local database: no Lambda cold start, no network latency;")
    print(
        "   fargate s = categorize task + matcher load; the cost model adds 60 s of task start-up)"
    )
    print()
    print_costs(
        monthly_cost(MESSAGES_PER_DAY, MIX, DEFAULT_PROFILES),
        monthly_cost(MESSAGES_PER_DAY, MIX, profiles),
    )


if __name__ == "__main__":
    main()
