"""`healthflow cost` prices the template `cdk synth` produces: read from it, so a change to the
stack changes the bill, and the default stack meets the issue's targets."""

from __future__ import annotations

import json
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
    assert shape.alarm_metrics == 3 and shape.dashboards == 0
    assert not shape.lambda_tracing and not shape.machine_tracing
    assert not shape.business_metrics  # opt-in: they bill by the hour


@pytest.mark.parametrize(
    ("messages_per_day", "target"), [(0, 0.60), (1_000, 2.00), (10_000, 12.00)]
)
def test_the_default_stack_meets_the_targets(
    full_app: SynthesizedApp, messages_per_day: int, target: float
) -> None:
    shape = cost.stack_shape(full_app.template)
    bill = cost.monthly_cost(shape, messages_per_day, cost.DEFAULT_MIX)
    assert bill.total <= target, (messages_per_day, round(bill.total, 2))
    # The database is priced apart, like the seed's figure.
    assert "Secrets Manager (new Aurora's admin secret)" not in bill.idle


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
