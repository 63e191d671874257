"""What the deployed stack costs a month, priced from the template `cdk synth` produces.

Everything that decides a price and that the stack decides is READ from the synthesized
CloudFormation template (:func:`stack_shape`): the steps Lambda's architecture, memory and
tracing, the Express machine's log level, the ml-worker task size and public IP, interface
endpoints, NAT gateways, alarms, dashboards, KMS keys, secrets. What the template cannot say (how
many states a message passes, how long a step runs) is :data:`USAGE`: the state and invocation
counts are those of the ASL's happy path per branch (bench/workflow.py measures them on the local
cloud and prints them beside these), the durations are stated estimates.

Prices: us-east-1 list prices, no free tier, 30-day month (730 hours for hourly items). The
database is priced apart (as the seed's $1.20 is): a new Aurora's secret is shown, not totalled.
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
    "dashboard_month": 3.00,
    "kms_key_month": 1.00,
    "kms_request": 0.03 / 10_000,
    "interface_endpoint_az_hour": 0.01,
    "nat_gateway_hour": 0.045,
    "xray_trace": 5.00 / 1_000_000,
    "ecr_gb_month": 0.10,
    "secret_month": 0.40,
    "custom_metric_month": 0.30,
}


@dataclass(frozen=True)
class BranchUsage:
    """One message of a branch: what it does, in billable units (see the module docstring)."""

    express_states: int  # states the Express execution enters
    express_task_states: int  # of which Task states (5 log events each at level ALL)
    lambda_invocations: int
    standard_transitions: int = 0  # the Standard labs child's states
    ml_worker_share: float = 0.0  # share of these messages that start the ml-worker


#: Per branch, from the ASL's happy path (tests/workflow asserts these sequences).
USAGE: Mapping[str, BranchUsage] = {
    # Validate, Route, ClaimPendingVitals, Has?, Copy, 4 aggregates, Mark, More?, Done:
    # 8 invocations.
    "vitals": BranchUsage(express_states=12, express_task_states=8, lambda_invocations=8),
    # Validate, Route, Claim, Has?, 3 aggregates, Mark, More?, Done: 6 invocations.
    "nutrition": BranchUsage(express_states=10, express_task_states=6, lambda_invocations=6),
    # Parent: Validate, Route, StartLabsWorkflow, Started (1 invocation). Child: Claim, Has?,
    # ResolveKnownNames, NeedsModel?, CategorizeLabs (when needed), 4 aggregates, Mark, More?,
    # Done.
    "labs": BranchUsage(
        express_states=4,
        express_task_states=2,
        lambda_invocations=1 + 7,
        standard_transitions=12,
        # On tests/data/labs/eval_set.csv the model-free tier (tasks.labs.resolve_known) settles
        # 578 of 635 names (91.0%); a report of 10 names drawn from it leaves one for the
        # ml-worker 61% of the time (5 names: 37%, 25 names: 91%).
        ml_worker_share=0.61,
    ),
    # Validate, Route, Claim, Has?, NothingToDo.
    "nothing": BranchUsage(express_states=5, express_task_states=2, lambda_invocations=2),
}

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
}

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


def _resources(template: Mapping[str, Any], kind: str) -> list[Mapping[str, Any]]:
    return [r for r in template["Resources"].values() if r["Type"] == kind]


def stack_shape(template: Mapping[str, Any]) -> StackShape:
    """Read a synthesized healthflow template (fails loudly on a template of another shape)."""
    (steps,) = [
        r["Properties"]
        for r in _resources(template, "AWS::Lambda::Function")
        if r["Properties"].get("Handler") == STEPS_HANDLER
    ]
    machines = {
        r["Properties"]["StateMachineType"]: r["Properties"]
        for r in _resources(template, "AWS::StepFunctions::StateMachine")
    }
    express = machines["EXPRESS"]
    logging = express.get("LoggingConfiguration", {})
    (task,) = [r["Properties"] for r in _resources(template, "AWS::ECS::TaskDefinition")]
    labs_substitutions = machines["STANDARD"].get("DefinitionSubstitutions", {})
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
        machine_tracing=any(
            m.get("TracingConfiguration", {}).get("Enabled") for m in machines.values()
        ),
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
    )


@dataclass
class MonthlyCost:
    messages_per_day: float
    mix: Mapping[str, float]
    idle: dict[str, float] = field(default_factory=dict)
    usage: dict[str, float] = field(default_factory=dict)
    database: dict[str, float] = field(default_factory=dict)  # shown, not totalled

    @property
    def idle_total(self) -> float:
        return sum(self.idle.values())

    @property
    def total(self) -> float:
        return self.idle_total + sum(self.usage.values())


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
    if shape.secrets:
        cost.database["Secrets Manager (new Aurora's admin secret)"] = (
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
    """A table: one column per rate, idle lines, usage lines, total, the seed beside it."""
    header = "".join(f"{_rate(c.messages_per_day):>14}" for c in costs)
    lines = [title, f"  {'':<44}{header}"]
    names = list(dict.fromkeys(name for c in costs for name in [*c.idle, *c.usage]))
    for name in names:
        cells = "".join(f"{'$' + format(c.idle.get(name, c.usage.get(name, 0.0)), ',.2f'):>14}"
                        for c in costs)  # fmt: skip
        lines.append(f"  {name:<44}{cells}")
    totals = "".join(f"{'$' + format(c.total, ',.2f'):>14}" for c in costs)
    seed = "".join(f"{'$' + format(SEED_MONTHLY_USD, ',.2f'):>14}" for _ in costs)
    lines.append(f"  {'total a month':<44}{totals}")
    lines.append(f"  {'the seed system (always, for comparison)':<44}{seed}")
    for name, dollars in costs[0].database.items() if costs else []:
        lines.append(f"  (database, priced apart: {name} ${dollars:,.2f} a month)")
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
    "DEFAULT_MIX",
    "LABS_HEAVY_MIX",
    "PRICES",
    "SEED_MONTHLY_USD",
    "USAGE",
    "MonthlyCost",
    "StackShape",
    "format_cost",
    "monthly_cost",
    "parse_mix",
    "stack_shape",
    "synthesized_template",
]
