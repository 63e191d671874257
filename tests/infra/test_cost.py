"""`healthflow cost` prices the template `cdk synth` produces: read from it, so a change to the
stack changes the bill; the new Aurora is priced with the auto-pause its arrivals allow.
(The bill against the targets, with usage counted on the local cloud: tests/workflow/
test_cost_model.py.)"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest

from tasks import cost

from .conftest import SynthesizedApp, synthesize_full_app


def test_the_shape_is_read_from_the_template(full_app: SynthesizedApp) -> None:
    shape = cost.stack_shape(full_app.template)
    assert (shape.lambda_architecture, shape.lambda_memory_mb) == ("arm64", 512)
    assert (shape.task_cpu_units, shape.task_memory_mib) == (512, 1024)
    assert shape.task_public_ip and shape.express_log_level == "ALL"
    assert not shape.express_execution_data
    assert (shape.interface_endpoint_azs, shape.nat_gateways, shape.kms_keys) == (0, 0, 0)
    # DLQ, queue age, and failed + timed-out executions of the 2 Express machines; the
    # Standard labs child pages through a rule on its execution events, which bills nothing.
    assert shape.alarm_metrics == 2 + 2 + 2 and shape.dashboards == 0
    assert shape.execution_event_rules == 1
    idle = cost.monthly_cost(shape, 0).idle
    assert idle["CloudWatch alarms"] == pytest.approx(0.60)
    assert idle["EventBridge rule (Standard executions that fail)"] == 0.0
    assert not shape.lambda_tracing and not shape.machine_tracing
    assert not shape.business_metrics  # opt-in: they bill by the hour
    assert shape.scheduled_runs_per_month == pytest.approx(730 / 6)
    assert shape.aurora == cost.AuroraShape(
        min_acu=0.0, max_acu=2.0, seconds_until_auto_pause=600.0
    )


def _simulated_active_share(
    messages_per_day: float, pause_seconds: float, sweep_seconds: float, days: int = 60
) -> float:
    """The share of time an instance that pauses after `pause_seconds` without a connection is
    up, from simulated arrivals: random messages and a sweep every `sweep_seconds`."""
    rng = random.Random(19)
    horizon = days * 86_400.0
    events = [t * sweep_seconds for t in range(int(horizon // sweep_seconds) + 1)]
    t = 0.0
    while messages_per_day and t < horizon:
        t += rng.expovariate(messages_per_day / 86_400)
        events.append(t)
    events = sorted(e for e in events if e < horizon)
    up = sum(min(b - a, pause_seconds) for a, b in itertools.pairwise([*events, horizon]))
    return up / horizon


@pytest.mark.parametrize("messages_per_day", [0, 10, 100, 1_000])
def test_the_aurora_pause_model_matches_simulated_arrivals(
    full_app: SynthesizedApp, messages_per_day: int
) -> None:
    """The share of the month the new Aurora is up, as the bill computes it, against a
    simulation of the same arrivals: the bill's assumption about pausing can be wrong, and
    then this fails (at 1,000 a day, one message every 86 s, it never pauses)."""
    shape = cost.stack_shape(full_app.template)
    assert shape.aurora is not None and shape.aurora.seconds_until_auto_pause is not None
    modelled = cost.aurora_active_share(
        shape.aurora, messages_per_day, shape.scheduled_runs_per_month
    )
    sweep_seconds = cost.HOURS_PER_MONTH * 3600 / shape.scheduled_runs_per_month
    simulated = _simulated_active_share(
        messages_per_day, shape.aurora.seconds_until_auto_pause, sweep_seconds
    )
    assert modelled == pytest.approx(simulated, abs=0.02)
    if messages_per_day == 1_000:
        assert modelled > 0.99


def test_the_new_aurora_is_priced_beside_the_bill_with_your_database(
    full_app: SynthesizedApp,
) -> None:
    shape = cost.stack_shape(full_app.template)
    busy = cost.monthly_cost(shape, 1_000)
    # Never paused at 1,000 a day: 730 h at the smallest active capacity, 0.5 ACU.
    assert busy.database["Aurora Serverless v2 capacity (ACU-hours)"] == pytest.approx(
        730 * 0.5 * cost.PRICES["aurora_acu_hour"], rel=0.01
    )
    assert busy.database["Secrets Manager (the new Aurora's admin secret)"] == 0.40
    assert busy.total_with_database > busy.total + 40
    lines = cost.format_cost([busy], "bill")
    assert any("with your database" in line for line in lines)
    assert any("with the new Aurora" in line for line in lines)


def test_your_database_adds_nothing_to_the_bill(full_app: SynthesizedApp) -> None:
    template = json.loads(json.dumps(full_app.template))
    resources = template["Resources"]
    for logical_id in [i for i, r in resources.items() if r["Type"].startswith("AWS::RDS::")]:
        del resources[logical_id]
    for logical_id in [
        i for i, r in resources.items() if r["Type"] == "AWS::SecretsManager::Secret"
    ]:
        del resources[logical_id]
    bill = cost.monthly_cost(cost.stack_shape(template), 1_000)
    assert bill.database == {} and bill.total_with_database == bill.total
    assert not any("new Aurora" in line for line in cost.format_cost([bill], "bill"))


def test_what_the_template_adds_is_priced(full_app: SynthesizedApp) -> None:
    template = json.loads(json.dumps(full_app.template))
    base = cost.monthly_cost(cost.stack_shape(template), 1_000).total
    resources = template["Resources"]
    resources["ExtraKey"] = {"Type": "AWS::KMS::Key", "Properties": {}}
    resources["ExtraDashboard"] = {"Type": "AWS::CloudWatch::Dashboard", "Properties": {}}
    for function in resources.values():
        if function["Properties"].get("Handler") == cost.STEPS_HANDLER:
            function["Properties"]["Architectures"] = ["x86_64"]
            function["Properties"]["MemorySize"] = 1024
    bigger = cost.monthly_cost(cost.stack_shape(template), 1_000)
    assert bigger.idle["KMS customer-managed keys"] == 1.00
    assert bigger.idle["CloudWatch dashboard"] == 3.00
    assert bigger.total > base + 4.00  # key, dashboard, and twice the memory at x86 rates


@pytest.mark.slow
def test_the_isolated_layout_costs_its_endpoints(tmp_path: Path) -> None:
    app = synthesize_full_app(tmp_path, context={"healthflow:network": "isolated"})
    bill = cost.monthly_cost(cost.stack_shape(app.template), 0)
    # Three interface endpoints in two AZs: 6 x $0.01 x 730 h.
    assert bill.idle["VPC interface endpoints"] == pytest.approx(43.80)


def test_mix_parsing() -> None:
    assert cost.parse_mix("2,60,30,8") == {"labs": 2, "vitals": 60, "nutrition": 30, "nothing": 8}
    assert cost.parse_mix("labs=0.1,vitals=0.5,nutrition=0.3,nothing_pending=0.1")["nothing"] == 0.1
    with pytest.raises(ValueError):
        cost.parse_mix("1,2")
    with pytest.raises(ValueError):
        cost.parse_mix("sleep=1")
