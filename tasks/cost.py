"""What the deployed stack costs a month, priced from the template `cdk synth` produces.

Everything that decides a price and that the stack decides is READ from the synthesized
CloudFormation template (:func:`stack_shape`): the steps Lambda's architecture, memory and
tracing, the Express machine's log level, the ml-worker task size and public IP, interface
endpoints, NAT gateways, alarms, execution-event rules, dashboards, KMS keys, secrets, schedules,
and the Aurora cluster when the template creates one. How many states a message passes and how
many Lambda calls it makes is READ from the ASL files (:func:`usage_from_asl`: the happy path of
each branch, which tests/workflow checks against what the local cloud runs). What neither can
say (how long a step runs, how often a labs report needs the model, how big the database is) is
:data:`ESTIMATES`.

Prices: us-east-1 list prices, no free tier, 30-day month (730 hours for hourly items). The
headline is the bill with your database (the app's PostgreSQL already exists, as the seed's
$1.20 assumed); when the template creates an Aurora cluster its bill is shown beside it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
SEED_MONTHLY_USD = 1.20  # the always-on worker's replacement this project is measured against
HOURS_PER_MONTH = 730
DAYS_PER_MONTH = 30
STEPS_HANDLER = "tasks.runners.lambda_handler.handler"

#: us-east-1 list prices (USD).
PRICES: Mapping[str, float] = {
    "express_request": 1.00 / 1_000_000,
    "express_gb_second": 0.00001667,
    "standard_transition": 0.000025,
    "lambda_request": 0.20 / 1_000_000,
    "lambda_gb_second_arm64": 0.0000133334,
    "lambda_gb_second_x86_64": 0.0000166667,
    "fargate_vcpu_hour_x86_64": 0.04048,
    "fargate_gb_hour_x86_64": 0.004445,
    "fargate_vcpu_hour_arm64": 0.03238,
    "fargate_gb_hour_arm64": 0.00356,
    # Fargate Spot runs at up to 70% off; 70% is its usual discount in us-east-1.
    "fargate_spot_share": 0.30,
    "public_ipv4_hour": 0.005,
    "pipes_request": 0.40 / 1_000_000,
    "sqs_request": 0.40 / 1_000_000,
    "logs_ingest_gb": 0.50,
    "alarm_metric_month": 0.10,
    # A Standard machine's failed executions page through an EventBridge rule on the default
    # bus: events from AWS services are ingested free and delivered free within the account,
    # and a rule itself bills nothing (https://aws.amazon.com/eventbridge/pricing/: "AWS
    # management events are ingested by the event bus for free"). What a page then costs is an
    # SNS publish ($0.50 a million) and an e-mail ($2.00 per 100,000), about $0.00002 per
    # failed execution, as for an alarm's notification: not priced.
    "execution_event_rule_month": 0.0,
    "dashboard_month": 3.00,
    "kms_key_month": 1.00,
    "kms_request": 0.03 / 10_000,
    "interface_endpoint_az_hour": 0.01,
    "nat_gateway_hour": 0.045,
    "xray_trace": 5.00 / 1_000_000,
    "ecr_gb_month": 0.10,
    "secret_month": 0.40,
    "custom_metric_month": 0.30,
    "scheduler_invocation": 1.00 / 1_000_000,
    # Aurora Serverless v2 (Aurora Standard storage configuration).
    "aurora_acu_hour": 0.12,
    "aurora_storage_gb_month": 0.10,
    "aurora_io_request": 0.20 / 1_000_000,
}


@dataclass(frozen=True)
class BranchUsage:
    """One message of a branch: what it does, in billable units (see the module docstring)."""

    express_states: int  # states the Express execution enters
    express_task_states: int  # of which Task states (5 log events each at level ALL)
    lambda_invocations: int
    standard_transitions: float = 0  # the Standard labs child's states (expected, per message)
    ml_worker_share: float = 0.0  # share of these messages that start the ml-worker
    # Of the Lambda calls, those the Express execution makes (None: all but a labs child's).
    express_lambda_invocations: int | None = None


#: Where each branch's happy path ends: (Express goal, labs child goal or None).
BRANCH_GOALS: Mapping[str, tuple[str, str | None]] = {
    "vitals": ("VitalsDone", None),
    "nutrition": ("NutritionDone", None),
    "labs": ("LabsWorkflowStarted", "LabsDone"),
    "nothing": ("NothingToDo", None),
}
#: The labs child's state that runs the ml-worker (the model path passes it).
MODEL_STATE = "CategorizeLabs"
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"


def happy_path(definition: Mapping[str, Any], goal: str, through: str | None = None) -> list[str]:
    """The states an execution enters from StartAt to `goal` (via `through`, when given) along
    Next, Choice and Default transitions (no Catch, no retry): the shortest such path, which is
    what an execution that succeeds and has no backlog left passes."""
    states = definition["States"]

    def successors(name: str) -> list[str]:
        state = states[name]
        following = [state["Next"]] if "Next" in state else []
        following += [choice["Next"] for choice in state.get("Choices", [])]
        following += [state["Default"]] if "Default" in state else []
        return following

    def shortest(start: str, end: str) -> list[str]:
        paths = {start: [start]}
        frontier = [start]
        while frontier:
            following = []
            for name in frontier:
                if name == end:
                    return paths[name]
                for nxt in successors(name):
                    if nxt not in paths:
                        paths[nxt] = [*paths[name], nxt]
                        following.append(nxt)
            frontier = following
        raise ValueError(f"no path from {start} to {end} in the definition")

    start = str(definition["StartAt"])
    if through is None:
        return shortest(start, goal)
    return shortest(start, through)[:-1] + shortest(through, goal)


def _tasks(definition: Mapping[str, Any], path: list[str], resource: str | None = None) -> int:
    return sum(
        definition["States"][name]["Type"] == "Task"
        and (resource is None or definition["States"][name].get("Resource") == resource)
        for name in path
    )


def usage_from_asl(
    express_path: Path | None = None,
    labs_path: Path | None = None,
    ml_worker_share: float | None = None,
) -> dict[str, BranchUsage]:
    """:class:`BranchUsage` per branch, counted on the happy paths of the ASL files; a labs
    message passes the model's state with probability `ml_worker_share`."""
    from tasks.statemachines import EXPRESS_ASL, LABS_ASL

    express = json.loads((express_path or EXPRESS_ASL).read_text(encoding="utf-8"))
    labs = json.loads((labs_path or LABS_ASL).read_text(encoding="utf-8"))
    share = ESTIMATES["labs_needing_model"] if ml_worker_share is None else ml_worker_share
    usage: dict[str, BranchUsage] = {}
    for branch, (goal, child_goal) in BRANCH_GOALS.items():
        parent = happy_path(express, goal)
        invocations = in_parent = _tasks(express, parent, LAMBDA_INVOKE)
        transitions, model_share = 0.0, 0.0
        if child_goal is not None:
            known = happy_path(labs, child_goal)
            model = happy_path(labs, child_goal, through=MODEL_STATE)
            invocations += _tasks(labs, known, LAMBDA_INVOKE)
            if _tasks(labs, model, LAMBDA_INVOKE) != _tasks(labs, known, LAMBDA_INVOKE):
                raise ValueError("the model path and the known-names path differ in Lambda calls")
            transitions = len(known) + share * (len(model) - len(known))
            model_share = share
        usage[branch] = BranchUsage(
            express_states=len(parent),
            express_task_states=_tasks(express, parent),
            lambda_invocations=invocations,
            standard_transitions=transitions,
            ml_worker_share=model_share,
            express_lambda_invocations=in_parent,
        )
    return usage


#: Stated estimates (the template cannot know them).
ESTIMATES: Mapping[str, float] = {
    "lambda_seconds_per_invocation": 0.15,  # billed ms per step invocation, 1 ms granularity
    "express_overhead_seconds_per_state": 0.03,
    "express_memory_gb": 0.064,  # the smallest Express memory tier (payloads are ids and counts)
    "ml_worker_seconds_per_task": 90.0,  # image pull, start, model load, categorize (60 s minimum)
    "log_bytes_per_event": 350.0,  # an Express log event without execution data
    "lambda_log_bytes_per_invocation": 1100.0,  # START/END/REPORT + two JSON lines
    "pipe_pollers": 5.0,  # concurrent long-polls of the source queue, 20 s each, while idle
    "ml_worker_image_gb": 0.4,  # compressed ml-worker image in ECR (torch CPU + model)
    "sqs_requests_per_message": 3.0,  # send, receive, delete
    "business_metric_series": 6.0,  # EMF metric x step pairs the steps write when metrics are on
    # The share of lab messages that start the ml-worker, on names the catalog was not tuned
    # on: a report of 10 names drawn from an outside set needs the model 49% (C-CDA results,
    # 7% of names left) to 100% (LHNCBC) of the time; 86% Synthea, 92% lab-unit table, 99% VA
    # EHR and VA short names (`bench/categorize.py` prints it per set; NHANES labels, 3% left, 25%).
    # The tuning set (eval_set.csv) would say 60%, which a site's own names will not reach until
    # reviewed aliases (`healthflow labs review`) settle them; price the high end of the outside
    # figures, so the bill is not under-quoted.
    "labs_needing_model": 0.99,
    # A new Aurora: the capacity an active instance idles at between a few short steps (the
    # smallest non-zero Serverless v2 capacity), how much the tables hold, and the I/O a message
    # causes. Aurora bills writes in 4 KB units of log; measured on PostgreSQL 15 through the
    # local cloud, a vitals message of 50 readings wrote 252 KB of WAL (about 61 units), a
    # nutrition message of 3 meals 37 KB (9), nothing pending none: about 40 for the default mix;
    # reads mostly hit the buffer cache. 50 a message, rounded up.
    "aurora_active_acu": 0.5,
    "aurora_storage_gb": 1.0,
    "aurora_io_per_message": 50.0,
    "sweep_lambda_seconds": 0.2,  # the sweep's one query over the unsettled rows
}

#: Per branch, from the ASL's happy paths (tests/workflow checks them on the local cloud).
USAGE: Mapping[str, BranchUsage] = usage_from_asl()

DEFAULT_MIX: Mapping[str, float] = {"labs": 2, "vitals": 60, "nutrition": 30, "nothing": 8}
LABS_HEAVY_MIX: Mapping[str, float] = {"labs": 10, "vitals": 50, "nutrition": 30, "nothing": 10}


@dataclass(frozen=True)
class StackShape:
    """What the template says about everything that bills."""

    lambda_architecture: str
    lambda_memory_mb: int
    lambda_tracing: bool
    express_log_level: str
    express_execution_data: bool
    machine_tracing: bool
    task_cpu_units: int
    task_memory_mib: int
    task_architecture: str
    task_public_ip: bool
    interface_endpoint_azs: int  # sum over interface endpoints of their subnets (AZs)
    nat_gateways: int
    alarm_metrics: int
    dashboards: int
    kms_keys: int
    secrets: int
    business_metrics: bool = False
    # Executions a month the template's schedules start (the claim sweep).
    scheduled_runs_per_month: float = 0.0
    aurora: AuroraShape | None = None  # when the template creates the database
    # EventBridge rules on Step Functions execution status changes (the Standard machines' page).
    execution_event_rules: int = 0


@dataclass(frozen=True)
class AuroraShape:
    """A Serverless v2 cluster's scaling, as the template sets it."""

    min_acu: float
    max_acu: float
    seconds_until_auto_pause: float | None  # None: it never pauses (min capacity above 0)


def _resources(template: Mapping[str, Any], kind: str) -> list[Mapping[str, Any]]:
    return [r for r in template["Resources"].values() if r["Type"] == kind]


def stack_shape(template: Mapping[str, Any]) -> StackShape:
    """Read a synthesized healthflow template (fails loudly on a template of another shape)."""
    (steps,) = [
        r["Properties"]
        for r in _resources(template, "AWS::Lambda::Function")
        if r["Properties"].get("Handler") == STEPS_HANDLER
    ]
    machines = [r["Properties"] for r in _resources(template, "AWS::StepFunctions::StateMachine")]
    # The parent is the Express machine that starts the labs child (the sweep is Express too).
    expresses = [m for m in machines if m["StateMachineType"] == "EXPRESS"]
    if len(expresses) > 1:
        expresses = [
            m for m in expresses if "LabsStateMachineArn" in m.get("DefinitionSubstitutions", {})
        ]
    (express,) = expresses
    (labs,) = [m for m in machines if m["StateMachineType"] == "STANDARD"]
    logging = express.get("LoggingConfiguration", {})
    (task,) = [r["Properties"] for r in _resources(template, "AWS::ECS::TaskDefinition")]
    labs_substitutions = labs.get("DefinitionSubstitutions", {})
    endpoints = [
        r["Properties"]
        for r in _resources(template, "AWS::EC2::VPCEndpoint")
        if r["Properties"].get("VpcEndpointType") == "Interface"
    ]
    alarm_metrics = 0
    for alarm in _resources(template, "AWS::CloudWatch::Alarm"):
        metrics = alarm["Properties"].get("Metrics")
        alarm_metrics += sum(1 for m in metrics if "MetricStat" in m) if metrics else 1
    return StackShape(
        lambda_architecture=(steps.get("Architectures") or ["x86_64"])[0],
        lambda_memory_mb=int(steps.get("MemorySize", 128)),
        lambda_tracing=steps.get("TracingConfig", {}).get("Mode") == "Active",
        express_log_level=str(logging.get("Level", "OFF")),
        express_execution_data=bool(logging.get("IncludeExecutionData", False)),
        machine_tracing=any(m.get("TracingConfiguration", {}).get("Enabled") for m in machines),
        task_cpu_units=int(task["Cpu"]),
        task_memory_mib=int(task["Memory"]),
        task_architecture=str(
            task.get("RuntimePlatform", {}).get("CpuArchitecture", "X86_64")
        ).lower(),
        task_public_ip=labs_substitutions.get("MlWorkerAssignPublicIp") == "ENABLED",
        interface_endpoint_azs=sum(len(e.get("SubnetIds", [])) or 1 for e in endpoints),
        nat_gateways=len(_resources(template, "AWS::EC2::NatGateway")),
        alarm_metrics=alarm_metrics,
        dashboards=len(_resources(template, "AWS::CloudWatch::Dashboard")),
        kms_keys=len(_resources(template, "AWS::KMS::Key")),
        secrets=len(_resources(template, "AWS::SecretsManager::Secret")),
        # Unset, the code's default (on) applies.
        business_metrics=str(
            steps.get("Environment", {}).get("Variables", {}).get("HEALTHFLOW_METRICS", "true")
        ).lower()
        == "true",
        scheduled_runs_per_month=sum(
            _runs_per_month(str(r["Properties"]["ScheduleExpression"]))
            for r in _resources(template, "AWS::Scheduler::Schedule")
            if r["Properties"].get("State", "ENABLED") == "ENABLED"
        ),
        aurora=_aurora_shape(template),
        execution_event_rules=sum(
            r["Properties"].get("EventPattern", {}).get("source") == ["aws.states"]
            for r in _resources(template, "AWS::Events::Rule")
        ),
    )


_RATE_UNITS = {
    "minute": 60,
    "minutes": 60,
    "hour": 3600,
    "hours": 3600,
    "day": 86400,
    "days": 86400,
}


def _runs_per_month(expression: str) -> float:
    """`rate(1 hour)` -> 730; any other expression (cron, at) fails loudly rather than guess."""
    if not (expression.startswith("rate(") and expression.endswith(")")):
        raise ValueError(f"cannot price the schedule expression {expression!r}")
    value, unit = expression[len("rate(") : -1].split()
    return HOURS_PER_MONTH * 3600 / (float(value) * _RATE_UNITS[unit])


def _aurora_shape(template: Mapping[str, Any]) -> AuroraShape | None:
    clusters = [
        r["Properties"]
        for r in _resources(template, "AWS::RDS::DBCluster")
        if "ServerlessV2ScalingConfiguration" in r["Properties"]
    ]
    if not clusters:
        return None
    (scaling,) = [c["ServerlessV2ScalingConfiguration"] for c in clusters]
    min_acu = float(scaling["MinCapacity"])
    pause = scaling.get("SecondsUntilAutoPause", 300) if min_acu == 0 else None
    return AuroraShape(
        min_acu=min_acu,
        max_acu=float(scaling["MaxCapacity"]),
        seconds_until_auto_pause=None if pause is None else float(pause),
    )


def aurora_active_share(
    aurora: AuroraShape, messages_per_day: float, scheduled_runs_per_month: float
) -> float:
    """The share of the month the instance is not paused.

    It pauses after `seconds_until_auto_pause` without a connection. Messages arrive at random
    (Poisson): no message in a window of P seconds has probability exp(-rate * P). The schedule
    connects every T seconds: a random moment lies more than P after the last run with
    probability 1 - P / T. Resume and step durations (seconds) are left out."""
    pause = aurora.seconds_until_auto_pause
    if pause is None:
        return 1.0
    no_message = math.exp(-messages_per_day / 86_400 * pause)
    no_run = 1.0
    if scheduled_runs_per_month:
        period = HOURS_PER_MONTH * 3600 / scheduled_runs_per_month
        no_run = max(0.0, 1 - pause / period)
    return 1 - no_message * no_run


@dataclass
class MonthlyCost:
    messages_per_day: float
    mix: Mapping[str, float]
    idle: dict[str, float] = field(default_factory=dict)
    usage: dict[str, float] = field(default_factory=dict)
    # What the database the template creates adds (empty with your database).
    database: dict[str, float] = field(default_factory=dict)
    database_active_share: float | None = None  # share of the month Aurora is not paused

    @property
    def idle_total(self) -> float:
        return sum(self.idle.values())

    @property
    def total(self) -> float:
        """The bill with your database (the headline): everything but :attr:`database`."""
        return self.idle_total + sum(self.usage.values())

    @property
    def total_with_database(self) -> float:
        return self.total + sum(self.database.values())


def _shares(mix: Mapping[str, float]) -> dict[str, float]:
    unknown = set(mix) - set(USAGE)
    if unknown:
        raise ValueError(f"unknown branches in the mix: {sorted(unknown)} (known: {list(USAGE)})")
    total = sum(mix.values())
    if total <= 0:
        raise ValueError("the mix needs a positive share")
    return {branch: share / total for branch, share in mix.items()}


def monthly_cost(
    shape: StackShape,
    messages_per_day: float,
    mix: Mapping[str, float] = DEFAULT_MIX,
    usage_by_branch: Mapping[str, BranchUsage] = USAGE,
) -> MonthlyCost:
    """The month's bill for `messages_per_day` split by `mix` (shares of the four branches);
    `usage_by_branch` replaces :data:`USAGE` (bench/workflow.py passes what it measured)."""
    p, e = PRICES, ESTIMATES
    cost = MonthlyCost(messages_per_day, dict(mix))
    # ---- idle: what bills with no message at all
    cost.idle["CloudWatch alarms"] = shape.alarm_metrics * p["alarm_metric_month"]
    if shape.execution_event_rules:
        cost.idle["EventBridge rule (Standard executions that fail)"] = (
            shape.execution_event_rules * p["execution_event_rule_month"]
        )
    if shape.dashboards:
        cost.idle["CloudWatch dashboard"] = shape.dashboards * p["dashboard_month"]
    if shape.kms_keys:
        cost.idle["KMS customer-managed keys"] = shape.kms_keys * p["kms_key_month"]
    if shape.interface_endpoint_azs:
        cost.idle["VPC interface endpoints"] = (
            shape.interface_endpoint_azs * p["interface_endpoint_az_hour"] * HOURS_PER_MONTH
        )
    if shape.nat_gateways:
        cost.idle["NAT gateways"] = shape.nat_gateways * p["nat_gateway_hour"] * HOURS_PER_MONTH
    polls = e["pipe_pollers"] * 3 * 60 * 24 * DAYS_PER_MONTH  # a 20 s long poll, 3 a minute
    cost.idle["SQS empty receives (pipe polling)"] = polls * p["sqs_request"]
    cost.idle["ECR ml-worker image storage"] = e["ml_worker_image_gb"] * p["ecr_gb_month"]
    if shape.scheduled_runs_per_month:
        # The claim sweep: a schedule invocation, an Express execution (100 ms minimum, ALL
        # logging: about 6 events) and one Lambda call, each run.
        runs = shape.scheduled_runs_per_month
        sweep_lambda_gb_s = (e["sweep_lambda_seconds"] * shape.lambda_memory_mb / 1024) * p[
            f"lambda_gb_second_{shape.lambda_architecture}"
        ]
        cost.idle["Claim sweep (scheduled)"] = runs * (
            p["scheduler_invocation"]
            + p["express_request"]
            + 0.1 * e["express_memory_gb"] * p["express_gb_second"]
            + p["lambda_request"]
            + sweep_lambda_gb_s
            + (6 * e["log_bytes_per_event"] + e["lambda_log_bytes_per_invocation"])
            / 1e9
            * p["logs_ingest_gb"]
        )
    if shape.aurora is not None:
        active = aurora_active_share(shape.aurora, messages_per_day, shape.scheduled_runs_per_month)
        acu = max(shape.aurora.min_acu, e["aurora_active_acu"])
        cost.database["Aurora Serverless v2 capacity (ACU-hours)"] = (
            active * HOURS_PER_MONTH * acu * p["aurora_acu_hour"]
        )
        cost.database["Aurora storage"] = e["aurora_storage_gb"] * p["aurora_storage_gb_month"]
        cost.database["Aurora I/O"] = (
            messages_per_day * DAYS_PER_MONTH * e["aurora_io_per_message"] * p["aurora_io_request"]
        )
        cost.database_active_share = active
    if shape.secrets:
        cost.database["Secrets Manager (the new Aurora's admin secret)"] = (
            shape.secrets * p["secret_month"]
        )
    # ---- per message
    month = messages_per_day * DAYS_PER_MONTH
    shares = _shares(mix)
    lambda_gb = shape.lambda_memory_mb / 1024
    lambda_rate = p[f"lambda_gb_second_{shape.lambda_architecture}"]
    invocations = express_gb_s = transitions = tasks = log_bytes = 0.0
    for branch, share in shares.items():
        n = month * share
        usage = usage_by_branch[branch]
        invocations += n * usage.lambda_invocations
        # Express runs its own Lambda steps and, for labs, only validation and the start.
        express_lambdas = usage.express_lambda_invocations
        if express_lambdas is None:
            express_lambdas = usage.lambda_invocations if branch != "labs" else 1
        seconds = (
            express_lambdas * e["lambda_seconds_per_invocation"]
            + usage.express_states * e["express_overhead_seconds_per_state"]
        )
        billed = max(0.1, round(seconds + 0.049, 1))  # 100 ms increments
        express_gb_s += n * billed * e["express_memory_gb"]
        transitions += n * usage.standard_transitions
        tasks += n * usage.ml_worker_share
        if shape.express_log_level == "ALL":
            events = 2 + 5 * usage.express_task_states
            events += 2 * (usage.express_states - usage.express_task_states)
            log_bytes += n * events * e["log_bytes_per_event"]
        log_bytes += n * usage.lambda_invocations * e["lambda_log_bytes_per_invocation"]
    cost.usage["Step Functions Express requests"] = month * p["express_request"]
    cost.usage["Step Functions Express duration"] = express_gb_s * p["express_gb_second"]
    cost.usage["Step Functions Standard transitions (labs)"] = (
        transitions * p["standard_transition"]
    )
    cost.usage["Lambda requests"] = invocations * p["lambda_request"]
    cost.usage["Lambda duration"] = (
        invocations * e["lambda_seconds_per_invocation"] * lambda_gb * lambda_rate
    )
    task_hours = tasks * e["ml_worker_seconds_per_task"] / 3600
    arch = "arm64" if shape.task_architecture == "arm64" else "x86_64"
    task_hourly = (
        shape.task_cpu_units / 1024 * p[f"fargate_vcpu_hour_{arch}"]
        + shape.task_memory_mib / 1024 * p[f"fargate_gb_hour_{arch}"]
    ) * p["fargate_spot_share"]
    cost.usage["Fargate Spot (ml-worker)"] = task_hours * task_hourly
    if shape.task_public_ip:
        cost.usage["Public IPv4 of running tasks"] = task_hours * p["public_ipv4_hour"]
    cost.usage["EventBridge Pipes"] = month * p["pipes_request"]
    cost.usage["SQS requests"] = month * e["sqs_requests_per_message"] * p["sqs_request"]
    cost.usage["CloudWatch Logs ingestion"] = log_bytes / 1e9 * p["logs_ingest_gb"]
    if shape.lambda_tracing or shape.machine_tracing:
        traces = invocations if shape.lambda_tracing else month
        cost.usage["X-Ray traces"] = traces * p["xray_trace"]
    if shape.kms_keys:
        cost.usage["KMS requests"] = month * 2 * p["kms_request"]
    if shape.business_metrics and messages_per_day:
        # A custom metric bills for the hours it gets a data point; messages arrive all day.
        hours_with_data = 1 - math.exp(-messages_per_day / 24)
        cost.usage["CloudWatch custom metrics (EMF)"] = (
            e["business_metric_series"] * p["custom_metric_month"] * hours_with_data
        )
    return cost


def format_cost(costs: list[MonthlyCost], title: str) -> list[str]:
    """A table: one column per rate, idle lines, usage lines, the total with your database,
    the seed beside it, then what a new Aurora adds and the total with it."""

    def row(label: str, values: list[float]) -> str:
        return f"  {label:<48}" + "".join(f"{'$' + format(v, ',.2f'):>14}" for v in values)

    header = "".join(f"{_rate(c.messages_per_day):>14}" for c in costs)
    lines = [title, f"  {'':<48}{header}"]
    names = list(dict.fromkeys(name for c in costs for name in [*c.idle, *c.usage]))
    for name in names:
        lines.append(row(name, [c.idle.get(name, c.usage.get(name, 0.0)) for c in costs]))
    lines.append(row("total a month, with your database", [c.total for c in costs]))
    lines.append(row("the seed system (always, for comparison)", [SEED_MONTHLY_USD] * len(costs)))
    database = list(dict.fromkeys(name for c in costs for name in c.database))
    if database:
        lines.append("  the Aurora Serverless v2 cluster this template creates adds:")
        for name in database:
            lines.append(row("  " + name, [c.database.get(name, 0.0) for c in costs]))
        shares = "".join(f"{format(c.database_active_share or 0.0, '.0%'):>14}" for c in costs)
        lines.append(f"  {'  (share of the month not paused)':<48}{shares}")
        lines.append(
            row("total a month, with the new Aurora", [c.total_with_database for c in costs])
        )
    return lines


def _rate(messages_per_day: float) -> str:
    return "idle" if messages_per_day == 0 else f"{messages_per_day:,.0f}/day"


def parse_mix(text: str) -> dict[str, float]:
    """`2,60,30,8` (labs, vitals, nutrition, nothing) or `labs=2,vitals=60,...`."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if all("=" in part for part in parts):
        pairs = (part.split("=", 1) for part in parts)
        mix = {name.strip(): float(value) for name, value in pairs}
        mix = {("nothing" if name == "nothing_pending" else name): v for name, v in mix.items()}
    else:
        if len(parts) != len(USAGE):
            raise ValueError("a mix is four numbers: labs,vitals,nutrition,nothing")
        mix = dict(zip(("labs", "vitals", "nutrition", "nothing"), map(float, parts), strict=True))
    _shares(mix)
    return mix


def _cdk_sources_digest() -> str:
    digest = hashlib.sha256()
    roots = [REPO_ROOT / "cdk" / "healthflow_infra", REPO_ROOT / "statemachines"]
    files = sorted(p for root in roots for p in root.rglob("*") if p.suffix in {".py", ".json"})
    for path in [*files, REPO_ROOT / "cdk" / "cdk.json"]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def synthesized_template(cache_dir: Path | None = None) -> dict[str, Any]:
    """The default stack as `cdk synth` builds it with no context (offline, no bundling).

    Synthesizing takes a minute (jsii starts Node.js), so the template is cached under
    `cache_dir` by a digest of the CDK app and the ASL files.
    """
    cache_dir = cache_dir or Path(tempfile.gettempdir()) / "healthflow-cost"
    cached = cache_dir / f"template-{_cdk_sources_digest()}.json"
    if cached.exists():
        return dict(json.loads(cached.read_text(encoding="utf-8")))
    for warning in ("DEPRECATED_NODE_VERSION", "END_OF_LIFE_NODE_VERSION", "UNTESTED_NODE_VERSION"):
        # jsii prints a banner per start otherwise; this only silences the banner.
        os.environ.setdefault(f"JSII_SILENCE_WARNING_{warning}", "1")
    cdk_dir = str(REPO_ROOT / "cdk")
    if cdk_dir not in sys.path:
        sys.path.insert(0, cdk_dir)
    from healthflow_infra.app_factory import build_app  # the CDK app (dev dependency)

    out = Path(tempfile.mkdtemp(prefix="healthflow-synth-"))
    app, stack = build_app(context={"healthflow:skipBundling": True}, outdir=out, with_nag=False)
    app.synth()
    template = json.loads((out / f"{stack.stack_name}.template.json").read_text())
    cache_dir.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(template), encoding="utf-8")
    return dict(template)


__all__ = [
    "BRANCH_GOALS",
    "DEFAULT_MIX",
    "LABS_HEAVY_MIX",
    "PRICES",
    "SEED_MONTHLY_USD",
    "USAGE",
    "AuroraShape",
    "BranchUsage",
    "MonthlyCost",
    "StackShape",
    "aurora_active_share",
    "format_cost",
    "happy_path",
    "monthly_cost",
    "parse_mix",
    "stack_shape",
    "synthesized_template",
    "usage_from_asl",
]
