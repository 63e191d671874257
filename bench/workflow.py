"""The workflow's shape and speed, in one run on the same data:

1. Per message and branch (labs, vitals, nutrition, nothing pending): Express requests and the
   states the Express parent enters, and the Standard transitions of the labs child (the only
   part billed per transition), from real executions of ``statemachines/healthflow.asl.json``
   and ``statemachines/labs.asl.json`` on the local cloud, with the real steps against a real
   PostgreSQL. Aim: labs child <= 12 transitions; Express parent <= 12 states, <= 5 when nothing
   is pending.
2. Executions per second through the local cloud (queue -> pipe -> state machines -> steps)
   against direct mode (``tasks.process.process_pending``) on a fresh copy of the same data; both
   must leave identical aggregate tables.
3. The cost model's monthly figures (``tasks.cost``, priced from the synthesized template) at
   1,000 and 10,000 messages a day, with its stated usage and with the usage this run measured.

    .venv/bin/python bench/workflow.py [--users N] [--profile-users N] [--vitals-days N]
                                       [--template cdk.out/Healthflow-dev.template.json]

With ``--burst N`` it runs only a burst instead: N messages queued at once over ``--burst-users``
users (every user's three triggers, the rest duplicates of them, in a seeded random order), drained
through the local cloud as ``healthflow run`` drains them. It prints executions/s, the most
executions running and database connections open at once, failed executions, dead letters and
unsettled rows, then runs direct mode on a fresh copy of the same data and compares every export
(each domain and granularity, as ``healthflow export`` writes it). It exits 1 if anything failed
or differs.

    .venv/bin/python bench/workflow.py --burst 1000 --burst-users 200
"""

from __future__ import annotations

import argparse
import json
import logging
import random
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

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from bench._common import bench_engine, truncate
from tasks import cost
from tasks.aggregation import DOMAINS as DOMAIN_AGGREGATIONS
from tasks.aggregation import GRANULARITIES, aggregate_table
from tasks.db.models import Base
from tasks.export import export_rows
from tasks.ingest import ingest_lines
from tasks.localcloud import moto_ext
from tasks.localcloud.cloud import (
    DEFAULT_DEFINITION,
    DEFAULT_LABS_DEFINITION,
    ExecutionResult,
    LocalCloud,
    container_runner_for,
    execution_name_for,
    lambda_dispatcher_for,
)
from tasks.process import process_pending
from tasks.sample import generate_users, iter_labs, iter_nutrition, iter_vitals

DOMAINS = ("labs", "vitals", "nutrition")
BRANCHES = (*DOMAINS, "nothing")
# Aims: states the Express parent enters, and Standard transitions of the labs child.
EXPRESS_AIMS = {"labs": 12, "vitals": 12, "nutrition": 12, "nothing": 5}
STANDARD_AIM = 12
RATES = (1_000.0, 10_000.0)
START = date(2024, 3, 4)
REGION = "us-east-1"
HEARTBEAT_SECONDS = 5.0
AGGREGATE_TABLES = tuple(
    aggregate_table(domain, level) for domain, levels in GRANULARITIES.items() for level in levels
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
        def run(environment: Mapping[str, str]) -> int | None:
            started = time.perf_counter()
            try:
                return inner(environment)
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


def state_types(definition_path: Path) -> dict[str, tuple[str, str]]:
    """State name -> (Type, Resource) of a definition."""
    states = json.loads(definition_path.read_text())["States"]
    return {name: (state["Type"], state.get("Resource", "")) for name, state in states.items()}


# ---------------------------------------------------------------------------- executions


@dataclass(frozen=True)
class Observation:
    """One message (its Express execution and any labs child), as the bill sees it."""

    branch: str
    status: str
    express_states: int
    express_task_states: int
    standard_transitions: int
    lambda_invocations: int
    ml_worker_started: bool
    lambda_seconds: float
    container_seconds: float


class Bench:
    """A local cloud whose runners are timed, plus the bookkeeping of what each message was."""

    def __init__(self, cloud: LocalCloud, clock: StepClock) -> None:
        self.cloud = cloud
        self.clock = clock
        self._express = state_types(DEFAULT_DEFINITION)
        self._labs = state_types(DEFAULT_LABS_DEFINITION)
        self._domain_of: dict[str, str] = {}

    def send(self, domain: str, user_id: int) -> None:
        message_id = self.cloud.send_message(
            {"job_type": f"process_pending_{domain}", "user_id": user_id, "priority": "normal"}
        )
        self._domain_of[execution_name_for(message_id)] = domain

    def observe(self, results: Iterable[ExecutionResult]) -> list[Observation]:
        return [self._observation(result) for result in results]

    def _observation(self, result: ExecutionResult) -> Observation:
        parent = self.cloud.entered_states(result.execution_arn)
        child = self.cloud.entered_states(result.child.execution_arn) if result.child else []
        branch = "nothing" if "NothingToDo" in parent + child else self._domain_of[result.name]
        kinds = [self._express[s] for s in parent] + [self._labs[s] for s in child]
        return Observation(
            branch=branch,
            status="SUCCEEDED" if result.succeeded else "FAILED",
            express_states=len(parent),
            express_task_states=sum(self._express[s][0] == "Task" for s in parent),
            standard_transitions=len(child),
            lambda_invocations=sum(":lambda:invoke" in resource for _, resource in kinds),
            ml_worker_started="CategorizeLabs" in child,
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


def measured_usage(profiled: Iterable[Observation]) -> dict[str, cost.BranchUsage]:
    """Medians per branch, in the cost model's units (labs that found nothing count as nothing)."""
    usage = {}
    for branch, runs in by_branch(profiled).items():
        if not runs:
            raise RuntimeError(f"no execution took the {branch} branch")
        usage[branch] = cost.BranchUsage(
            express_states=round(statistics.median(r.express_states for r in runs)),
            express_task_states=round(statistics.median(r.express_task_states for r in runs)),
            lambda_invocations=round(statistics.median(r.lambda_invocations for r in runs)),
            standard_transitions=round(statistics.median(r.standard_transitions for r in runs)),
            ml_worker_share=sum(r.ml_worker_started for r in runs) / len(runs),
        )
    return usage


def print_per_message(observations: list[Observation]) -> None:
    print("per message and branch (every execution of this run; Express bills 1 request each)")
    print(
        f"  {'branch':<10}{'runs':>5}{'Express req':>12}{'Express states':>16}"
        f"{'Standard trans.':>17}{'Lambda calls':>14}{'ml-worker':>11}   aims"
    )
    for branch, runs in by_branch(observations).items():
        if not runs:
            print(f"  {branch:<10}{0:>5}   no executions  MISS")
            continue
        express = [r.express_states for r in runs]
        standard = [r.standard_transitions for r in runs]
        ok = max(express) <= EXPRESS_AIMS[branch] and max(standard) <= STANDARD_AIM
        print(
            f"  {branch:<10}{len(runs):>5}{1:>12}{statistics.median(express):>16.0f}"
            f"{statistics.median(standard):>17.0f}"
            f"{statistics.median(r.lambda_invocations for r in runs):>14.0f}"
            f"{sum(r.ml_worker_started for r in runs) / len(runs):>10.0%}"
            f"   <= {EXPRESS_AIMS[branch]} / {STANDARD_AIM} {'PASS' if ok else 'MISS'}"
        )


def print_costs(shape: cost.StackShape, measured: Mapping[str, cost.BranchUsage]) -> None:
    for label, mix in (("default", cost.DEFAULT_MIX), ("labs-heavy", cost.LABS_HEAVY_MIX)):
        for usage_label, usage in (("stated usage", cost.USAGE), ("measured usage", measured)):
            costs = [cost.monthly_cost(shape, rate, mix, usage) for rate in (0.0, *RATES)]
            title = (
                f"monthly cost, {label} mix, {usage_label} (tasks.cost on the synthesized stack)"
            )
            print("\n".join(cost.format_cost(costs, title)))


def rate_line(label: str, runs: int, rows: int, seconds: float, unit: str = "executions") -> str:
    return (
        f"  {label:<36}{runs:>5} {unit} in {seconds:7.2f} s  "
        f"{runs / seconds:7.1f} {unit}/s  {rows / seconds:9,.0f} rows/s"
    )


# ---------------------------------------------------------------------------- a burst


def burst_messages(user_ids: list[int], total: int, seed: int = 11) -> list[tuple[str, int]]:
    """Every (domain, user) trigger once, then duplicates of them up to `total`, shuffled: the
    backend sends one message per upload, so a busy user's triggers arrive more than once."""
    triggers = [(domain, user_id) for user_id in user_ids for domain in DOMAINS]
    if total < len(triggers):
        raise SystemExit(f"--burst {total} is fewer than the {len(triggers)} triggers it needs")
    rng = random.Random(seed)
    messages = triggers + [rng.choice(triggers) for _ in range(total - len(triggers))]
    rng.shuffle(messages)
    return messages


class ConnectionPeak:
    """The most client connections open to the database at once, sampled every 50 ms from a
    connection of its own (not counted) while the burst runs."""

    def __init__(self, engine: Engine) -> None:
        self._engine = create_engine(engine.url, poolclass=NullPool)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.peak = 0

    def _sample(self) -> None:
        with self._engine.connect() as conn:
            while not self._stop.wait(0.05):
                open_now = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND backend_type = 'client backend' "
                        "AND pid <> pg_backend_pid()"
                    )
                ).scalar_one()
                conn.rollback()
                self.peak = max(self.peak, int(open_now))

    def __enter__(self) -> ConnectionPeak:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._engine.dispose()


def all_exports(engine: Engine) -> dict[str, list[list[str]]]:
    """Every export `healthflow export` writes, by domain and granularity (nutrition also by
    meal type): the files a user of the data would compare."""
    exports = {}
    for domain, levels in GRANULARITIES.items():
        for level in levels:
            exports[f"{domain} {level}"] = list(export_rows(engine, domain, level))
            if domain == "nutrition":
                exports[f"{domain} {level} by meal type"] = list(
                    export_rows(engine, domain, level, by_meal_type=True)
                )
    return exports


def unsettled_rows(engine: Engine) -> dict[str, int]:
    """Raw rows left pending, processing or failed, over the three domains."""
    counts = dict.fromkeys(("pending", "processing", "failed"), 0)
    every_raw_row = " UNION ALL ".join(
        f"SELECT status FROM {a.raw_table}" for a in DOMAIN_AGGREGATIONS.values()
    )
    with engine.connect() as conn:
        found = conn.execute(
            text(
                f"SELECT status, count(*) FROM ({every_raw_row}) r "
                "WHERE status = ANY(:statuses) GROUP BY status"
            ),
            {"statuses": list(counts)},
        )
        counts.update({status: count for status, count in found})
    return counts


@dataclass(frozen=True)
class BurstResult:
    messages: int
    triggers: int
    executions: int
    failed: int
    dead_letters: int
    seconds: float
    peak_running: int
    peak_connections: int
    pool_holds: int
    unsettled: dict[str, int]
    direct_seconds: float
    direct_claims: int
    export_files: int
    export_rows: int
    different_exports: list[str]
    same_tables: bool

    @property
    def ok(self) -> bool:
        return (
            self.failed == 0
            and self.dead_letters == 0
            and not any(self.unsettled.values())
            and not self.different_exports
            and self.same_tables
        )


def run_burst(dataset: Dataset, total: int) -> BurstResult:
    messages = burst_messages(dataset.user_ids, total)
    finished = 0

    def progress(_result: ExecutionResult) -> None:
        nonlocal finished
        finished += 1
        if finished % 100 == 0:
            print(f"  {finished}/{len(messages)} executions finished", flush=True)

    with bench_engine() as engine:
        load_fresh(engine, dataset)
        pool = engine.pool
        pool_holds = int(pool.size()) + int(pool._max_overflow)  # type: ignore[attr-defined]
        cloud, clock = timed_cloud()
        with cloud:
            bench = Bench(cloud, clock)
            for domain, user_id in messages:
                bench.send(domain, user_id)
            with ConnectionPeak(engine) as connections:
                started = time.perf_counter()
                results = cloud.drain(on_finished=progress)
                seconds = time.perf_counter() - started
            dead_letters = len(cloud.dlq_messages())
        unsettled = unsettled_rows(engine)
        through_workflow = all_exports(engine)
        tables = aggregate_snapshot(engine)
        load_fresh(engine, dataset)
        direct_seconds, direct_claims = run_direct()
        direct = all_exports(engine)
        same_tables = aggregate_snapshot(engine) == tables
    return BurstResult(
        messages=len(messages),
        triggers=len(set(messages)),
        executions=len(results),
        failed=sum(not r.succeeded for r in results),
        dead_letters=dead_letters,
        seconds=seconds,
        peak_running=cloud.peak_running,
        peak_connections=connections.peak,
        pool_holds=pool_holds,
        unsettled=unsettled,
        direct_seconds=direct_seconds,
        direct_claims=direct_claims,
        export_files=len(direct),
        export_rows=sum(len(rows) - 1 for rows in direct.values()),
        different_exports=[name for name in direct if direct[name] != through_workflow.get(name)],
        same_tables=same_tables,
    )


def report_burst(dataset: Dataset, burst: BurstResult) -> None:
    print(
        f"burst: {burst.messages:,} messages at once over {len(dataset.user_ids)} users "
        f"({burst.triggers} triggers, {burst.messages - burst.triggers} duplicates); "
        f"{dataset.raw_rows:,} raw rows (labs {len(dataset.lines['labs']):,}, "
        f"vitals {len(dataset.lines['vitals']):,}, nutrition {len(dataset.lines['nutrition']):,})"
    )
    print(
        rate_line("local cloud (SQS, pipe, ASL, steps)", burst.executions, dataset.raw_rows,
                  burst.seconds)
    )  # fmt: skip
    print(
        rate_line("direct mode (process_pending)", burst.direct_claims, dataset.raw_rows,
                  burst.direct_seconds, "claims")
    )  # fmt: skip
    print(
        f"  at most {burst.peak_running} executions running and {burst.peak_connections} "
        f"database connections open at once (the pool holds {burst.pool_holds})"
    )
    print(
        f"  failed executions {burst.failed}, dead letters {burst.dead_letters}, raw rows "
        + ", ".join(f"{status} {count}" for status, count in burst.unsettled.items())
    )
    verdict = "yes" if not burst.different_exports else "NO: " + ", ".join(burst.different_exports)
    print(
        f"  exports equal to direct mode: {verdict} ({burst.export_files} exports, "
        f"{burst.export_rows:,} rows); aggregate tables equal: "
        f"{'yes' if burst.same_tables else 'NO'}"
    )
    print(f"  {'PASS' if burst.ok else 'FAIL'}")


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
    parser.add_argument("--template", help="a synthesized template (default: synthesize one)")
    parser.add_argument(
        "--burst", type=int, metavar="N", help="run only a burst of N messages (see above)"
    )
    parser.add_argument("--burst-users", type=int, default=200)
    parser.add_argument("--burst-vitals-days", type=int, default=4)
    args = parser.parse_args()
    if args.burst:
        moto_ext.silence_parser_logs()
        logging.getLogger("tasks").setLevel(logging.ERROR)
        dataset = make_dataset(args.burst_users, args.burst_vitals_days)
        with tempfile.TemporaryDirectory(prefix="hf-bench-embeddings-") as cache_dir:
            load_matcher(cache_dir)
            burst = run_burst(dataset, args.burst)
        report_burst(dataset, burst)
        sys.exit(0 if burst.ok else 1)
    template = (
        json.loads(Path(args.template).read_text())
        if args.template
        else cost.synthesized_template()
    )
    shape = cost.stack_shape(template)
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
    report(dataset, matcher_load, profiled, burst, workflow_s, direct_s, direct_runs, same, shape)


def report(
    dataset: Dataset,
    matcher_load: float,
    profiled: list[Observation],
    burst: list[Observation],
    workflow_s: float,
    direct_s: float,
    direct_runs: int,
    same: bool,
    shape: cost.StackShape,
) -> None:
    failed = [o for o in profiled + burst if o.status != "SUCCEEDED"]
    print(
        f"workflow benchmark: {len(dataset.user_ids)} users, {dataset.raw_rows:,} raw rows "
        f"(labs {len(dataset.lines['labs']):,}, vitals {len(dataset.lines['vitals']):,}, "
        f"nutrition {len(dataset.lines['nutrition']):,}); {len(failed)} executions failed"
    )
    print(f"lab matcher load (model + catalog embeddings, once): {matcher_load:.2f} s, not rated")
    print()
    print_per_message(profiled + burst)
    print()
    print("throughput on the same data (a burst: every user and domain triggered at once)")
    print(
        rate_line("local cloud (SQS, pipe, ASL, steps)", len(burst), dataset.raw_rows, workflow_s)
    )
    print(
        rate_line("direct mode (process_pending)", direct_runs, dataset.raw_rows, direct_s,
                  "claims")
    )  # fmt: skip
    print(
        f"  direct mode is {workflow_s / direct_s:.1f}x faster; "
        f"identical aggregate tables: {'yes' if same else 'NO'}"
    )
    print()
    measured = measured_usage(profiled)
    runs = by_branch(profiled)
    print("measured step time (medians, one execution in flight at a time; in process, no cold")
    print("start or network, so the cost model keeps its stated per-invocation estimate)")
    for branch, observations in runs.items():
        print(
            f"  {branch:<10} Lambda {statistics.median(o.lambda_seconds for o in observations):.3f}"
            f" s over {measured[branch].lambda_invocations} calls, ml-worker "
            f"{statistics.median(o.container_seconds for o in observations):.2f} s"
        )
    print()
    print_costs(shape, measured)


if __name__ == "__main__":
    main()
