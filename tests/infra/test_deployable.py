"""What makes the stack deploy in a real account: no reserved concurrency by default (new
accounts have 10 in all), a long backoff on throttled invokes, the addresses the CLI reads from
SSM, and no physical name that two environments in one account would both claim."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match

from tasks.aws import PARAMETER_NAMES
from tasks.statemachines import EXPRESS_ASL, LABS_ASL

from .conftest import SynthesizedApp, synthesize_full_app

STEPS_HANDLER = "tasks.runners.lambda_handler.handler"
THROTTLED = "Lambda.TooManyRequestsException"
#: "...Name" properties that do not claim a name in the account: a database inside its cluster,
#: an inline policy inside its role, a metric read by an alarm, an AWS-owned default group.
NOT_ACCOUNT_SCOPED = {"DatabaseName", "PolicyName", "MetricName", "DBClusterParameterGroupName"}
#: Resources whose name is scoped to another resource of the stack (an alias to its function).
NAMED_WITHIN_A_RESOURCE = {"AWS::Lambda::Alias"}


def _steps_function(app: SynthesizedApp) -> dict[str, Any]:
    [function] = [
        r for r in app.resources_of_type("AWS::Lambda::Function").values()
        if r["Properties"].get("Handler") == STEPS_HANDLER
    ]  # fmt: skip
    return function


def test_no_reserved_concurrency_by_default(full_app: SynthesizedApp) -> None:
    assert "ReservedConcurrentExecutions" not in _steps_function(full_app)["Properties"]


def test_a_reservation_is_an_opt_in_context_value(tmp_path: Path) -> None:
    app = synthesize_full_app(
        tmp_path, context={"healthflow:stepsFunctionReservedConcurrency": "20"}
    )
    assert _steps_function(app)["Properties"]["ReservedConcurrentExecutions"] == 20


@pytest.mark.parametrize("asl", [EXPRESS_ASL, LABS_ASL], ids=["express", "labs"])
def test_throttled_invokes_retry_with_a_longer_backoff(asl: Path) -> None:
    definition = json.loads(asl.read_text())
    lambda_states = {
        name: state
        for name, state in definition["States"].items()
        if state.get("Resource") == "arn:aws:states:::lambda:invoke"
    }
    assert lambda_states
    for name, state in lambda_states.items():
        retriers = state.get("Retry", [])
        first = next(r for r in retriers if THROTTLED in r["ErrorEquals"])
        others = [
            r for r in retriers if r is not first and "DatabaseUnavailable" in r["ErrorEquals"]
        ]
        assert first["ErrorEquals"] == [THROTTLED], name  # its own retrier, listed first
        assert retriers.index(first) == 0, name
        assert first["MaxAttempts"] >= 5 and first["IntervalSeconds"] >= 2, name
        assert first.get("JitterStrategy") == "FULL", name
        for other in others:
            assert first["MaxAttempts"] > other["MaxAttempts"], name


def test_the_cli_finds_every_address_in_ssm(full_app: SynthesizedApp) -> None:
    for setting in ("queue_url", "enabled", "state_machine_arn", "dead_letter_queue_url"):
        full_app.assertions.has_resource_properties(
            "AWS::SSM::Parameter",
            Match.object_like({"Name": f"/healthflow/dev/{PARAMETER_NAMES[setting]}"}),
        )
    full_app.assertions.has_resource_properties(
        "AWS::SSM::Parameter",
        Match.object_like({
            "Name": "/healthflow/dev/state-machine-arn",
            "Value": {"Ref": Match.string_like_regexp("StateMachine")},
        }),
    )  # fmt: skip


def _physical_names(template: dict[str, Any]) -> set[tuple[str, str, str]]:
    names = set()
    for resource in template["Resources"].values():
        for key, value in resource.get("Properties", {}).items():
            named = key.endswith("Name") or key in {"Name", "DBClusterIdentifier"}
            if resource["Type"] in NAMED_WITHIN_A_RESOURCE:
                continue
            if named and isinstance(value, str) and key not in NOT_ACCOUNT_SCOPED:
                names.add((resource["Type"], key, value))
    return names


@pytest.mark.slow
def test_two_environments_claim_no_common_name(full_app: SynthesizedApp, tmp_path: Path) -> None:
    prod = synthesize_full_app(tmp_path, context={"healthflow:env": "prod"})
    dev_names, prod_names = _physical_names(full_app.template), _physical_names(prod.template)
    assert dev_names, "the stack names some resources; the check must see them"
    assert dev_names & prod_names == set()


@pytest.mark.parametrize("asl", [EXPRESS_ASL, LABS_ASL], ids=["express", "labs"])
def test_every_step_learns_its_execution_and_state_for_its_log_lines(asl: Path) -> None:
    """The steps Lambda and the ml-worker put `execution` and `state` on every log line; the
    state machine is where both are known, so each Task hands them over."""
    definition = json.loads(asl.read_text())
    for name, state in definition["States"].items():
        resource = str(state.get("Resource", ""))
        if resource == "arn:aws:states:::lambda:invoke":
            payload = state["Parameters"]["Payload"]
            assert payload.get("execution.$") == "$$.Execution.Name", name
            assert payload.get("state.$") == "$$.State.Name", name
        elif resource.startswith("arn:aws:states:::ecs:runTask"):
            for override in state["Parameters"]["Overrides"]["ContainerOverrides"]:
                given = {e["Name"]: e.get("Value.$") for e in override["Environment"]}
                assert given.get("HEALTHFLOW_EXECUTION") == "$$.Execution.Name", name
                assert given.get("HEALTHFLOW_STATE") == "$$.State.Name", name


def _alarm_metrics(alarm: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(namespace, metric name, dimensions) of each metric an alarm reads."""
    properties = alarm["Properties"]
    stats = (
        [m["MetricStat"]["Metric"] for m in properties["Metrics"] if "MetricStat" in m]
        if "Metrics" in properties
        else [properties]
    )
    return [
        (m["Namespace"], m["MetricName"], json.dumps(m.get("Dimensions"), sort_keys=True))
        for m in stats
    ]


def test_a_failed_pipe_start_pages_once_through_the_dlq_alarm(full_app: SynthesizedApp) -> None:
    """The pipe's failures reach an alarm without one of their own (an alarm bills while idle):
    SQS moves a trigger the pipe could not start to the DLQ after maxReceiveCount receives, and
    the DLQ alarm goes off. The queue-age alarm waits longer than that, so it only pages for a
    pipe that moves nothing, and no metric is watched by two alarms."""
    alarms = full_app.resources_of_type("AWS::CloudWatch::Alarm")
    watched = [metric for alarm in alarms.values() for metric in _alarm_metrics(alarm)]
    assert len(watched) == len(set(watched))

    queues = full_app.resources_of_type("AWS::SQS::Queue")
    [(trigger_id, trigger)] = [
        (i, q) for i, q in queues.items() if "RedrivePolicy" in q["Properties"]
    ]
    redrive = trigger["Properties"]["RedrivePolicy"]
    dead_letter_id = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]

    def alarm_on(metric_name: str, queue_id: str) -> dict[str, Any]:
        [found] = [
            a["Properties"] for a in alarms.values()
            if a["Properties"].get("MetricName") == metric_name
            and a["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0] == queue_id
        ]  # fmt: skip
        return found

    dead_letters = alarm_on("ApproximateNumberOfMessagesVisible", dead_letter_id)
    assert dead_letters["Threshold"] == 0
    oldest = alarm_on("ApproximateAgeOfOldestMessage", trigger_id)
    until_dead_letter = redrive["maxReceiveCount"] * trigger["Properties"]["VisibilityTimeout"]
    assert oldest["Threshold"] > until_dead_letter


def test_an_age_alarm_that_would_page_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="page twice"):
        synthesize_full_app(tmp_path, context={"healthflow:oldestMessageAgeAlarmSeconds": "900"})


def test_with_an_email_every_alarm_notifies_one_topic(tmp_path: Path) -> None:
    app = synthesize_full_app(tmp_path, context={"healthflow:alarmEmail": "ops@example.com"})
    [topic_id] = app.resources_of_type("AWS::SNS::Topic")
    app.assertions.has_resource_properties(
        "AWS::SNS::Subscription",
        Match.object_like({"Protocol": "email", "Endpoint": "ops@example.com",
                           "TopicArn": {"Ref": topic_id}}),
    )  # fmt: skip
    alarms = app.resources_of_type("AWS::CloudWatch::Alarm").values()
    assert alarms
    for alarm in alarms:
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}]


def _references(value: Any) -> set[str]:
    """Logical ids a property value refers to (Ref, Fn::GetAtt)."""
    found: set[str] = set()
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            found.add(value["Ref"])
        if "Fn::GetAtt" in value:
            found.add(value["Fn::GetAtt"][0])
        for item in value.values():
            found |= _references(item)
    elif isinstance(value, list):
        for item in value:
            found |= _references(item)
    return found


def _created_before(template: dict[str, Any], logical_id: str) -> set[str]:
    """Everything CloudFormation must create before `logical_id` (DependsOn and references)."""
    resources = template["Resources"]
    seen: set[str] = set()
    todo = [logical_id]
    while todo:
        resource = resources[todo.pop()]
        depends = resource.get("DependsOn", [])
        direct = (set(depends) if isinstance(depends, list) else {depends}) | _references(
            resource.get("Properties", {})
        )
        for dependency in direct & set(resources) - seen:
            seen.add(dependency)
            todo.append(dependency)
    return seen


@pytest.fixture(scope="module")
def your_vpc_and_database(tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    from .test_stack import BRING_YOUR_OWN

    return synthesize_full_app(tmp_path_factory.mktemp("byo"), context=BRING_YOUR_OWN)


def test_bring_your_own_migrations_wait_for_the_network_path_and_the_grant(
    your_vpc_and_database: SynthesizedApp,
) -> None:
    """Migrations connect from the steps Lambda: the ingress rule on the database's security
    group and the function's rds-db:connect permission must exist before they run."""
    app = your_vpc_and_database
    assert app.synth_error is None, app.synth_error
    [migrate_id] = app.resources_of_type("Custom::HealthflowMigrations")
    before = _created_before(app.template, migrate_id)
    ingress = [
        i for i, r in app.resources_of_type("AWS::EC2::SecurityGroupIngress").items()
        if r["Properties"].get("GroupId") == "sg-0123456789abcdef0"
    ]  # fmt: skip
    assert ingress and set(ingress) <= before
    connect = [
        i for i, r in app.resources_of_type("AWS::IAM::Policy").items()
        if "rds-db:connect" in json.dumps(r["Properties"]["PolicyDocument"])
    ]  # fmt: skip
    assert connect and set(connect) & before


def test_bring_your_own_is_cfn_lint_clean(your_vpc_and_database: SynthesizedApp) -> None:
    from .test_cfn_lint import cfn_lint

    assert cfn_lint(your_vpc_and_database.template) == []


def test_no_ml_worker_task_outlives_its_state(full_app: SynthesizedApp) -> None:
    """Step Functions stops a `.sync` task on timeout or abort (its role may call ecs:StopTask),
    and the container ends itself at its deadline, no later than the state's timeout."""
    from tasks.runners.ecs import DEADLINE_VARIABLE, DEFAULT_DEADLINE_SECONDS

    definition = json.loads(LABS_ASL.read_text())
    ecs_states = {
        name: state
        for name, state in definition["States"].items()
        if str(state.get("Resource", "")).startswith("arn:aws:states:::ecs:runTask")
    }
    assert ecs_states
    [task] = full_app.resources_of_type("AWS::ECS::TaskDefinition").values()
    [container] = task["Properties"]["ContainerDefinitions"]
    environment = {e["Name"]: e["Value"] for e in container.get("Environment", [])}
    deadline = float(environment.get(DEADLINE_VARIABLE, DEFAULT_DEADLINE_SECONDS))
    for name, state in ecs_states.items():
        assert state["Resource"].endswith(".sync"), name
        assert 0 < deadline <= state["TimeoutSeconds"], name
    policies = json.dumps(
        [p["Properties"] for p in full_app.resources_of_type("AWS::IAM::Policy").values()]
    )
    assert "ecs:StopTask" in policies
