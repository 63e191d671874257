"""What a deploy and an outage look like from the template: no window in which new code meets the
old schema, every failed execution pages someone who can be subscribed, expired claims are swept
hourly, and the small things an AWS review asks for (task family grant, vended log names)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk.assertions import Match

from .conftest import SynthesizedApp, synthesize_full_app


def _one(app: SynthesizedApp, resource_type: str, properties: Any = None) -> tuple[str, Any]:
    found = app.assertions.find_resources(
        resource_type, {"Properties": Match.object_like(properties or {})}
    )
    assert len(found) == 1, (resource_type, list(found))
    return next(iter(found.items()))


def _depends_on(resource: dict[str, Any]) -> list[str]:
    depends = resource.get("DependsOn", [])
    return [depends] if isinstance(depends, str) else list(depends)


# ---------------------------------------------------------------------------- no deploy window


def test_the_machines_call_an_alias_that_moves_only_after_the_migrations(
    full_app: SynthesizedApp,
) -> None:
    alias_id, alias = _one(full_app, "AWS::Lambda::Alias", {"Name": "live"})
    migrations_id, migrations = _one(full_app, "Custom::HealthflowMigrations")
    # CloudFormation updates the alias only once the migrations resource succeeded; when it
    # fails, the rollback never touched the alias, so the old version keeps serving.
    assert migrations_id in _depends_on(alias)
    # The alias and the migrations name the same published version: the one with the new code.
    version = alias["Properties"]["FunctionVersion"]
    assert version == migrations["Properties"]["codeVersion"]
    assert version["Fn::GetAtt"][1] == "Version"
    version_resource = full_app.template["Resources"][version["Fn::GetAtt"][0]]
    assert version_resource["Type"] == "AWS::Lambda::Version"
    # Every machine's Lambda tasks are filled with the alias, never the bare function.
    machines = full_app.resources_of_type("AWS::StepFunctions::StateMachine")
    assert len(machines) == 3
    for machine in machines.values():
        substitutions = machine["Properties"]["DefinitionSubstitutions"]
        assert substitutions["StepsFunctionArn"] == {"Ref": alias_id}


def test_the_machines_may_invoke_the_alias_only(full_app: SynthesizedApp) -> None:
    alias_id, _ = _one(full_app, "AWS::Lambda::Alias", {"Name": "live"})
    roles = {
        m["Properties"]["RoleArn"]["Fn::GetAtt"][0]
        for m in full_app.resources_of_type("AWS::StepFunctions::StateMachine").values()
    }
    invoked = []
    for policy in full_app.resources_of_type("AWS::IAM::Policy").values():
        if not {r["Ref"] for r in policy["Properties"]["Roles"]} & roles:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if "lambda:InvokeFunction" in json.dumps(statement["Action"]):
                invoked.append(statement["Resource"])
    assert invoked and all(resource == {"Ref": alias_id} for resource in invoked)


def test_without_deploy_time_migrations_the_alias_follows_the_code(tmp_path: Path) -> None:
    app = synthesize_full_app(tmp_path, context={"healthflow:runMigrationsOnDeploy": "false"})
    assert app.synth_error is None, app.synth_error
    _, alias = _one(app, "AWS::Lambda::Alias", {"Name": "live"})
    app.assertions.resource_count_is("Custom::HealthflowMigrations", 0)
    assert all(
        app.template["Resources"][d]["Type"] != "Custom::HealthflowMigrations"
        for d in _depends_on(alias)
    )


# ---------------------------------------------------------------------------- every failure seen


def test_the_alarms_act_on_a_tls_only_topic_and_synth_warns_while_nobody_listens(
    full_app: SynthesizedApp,
) -> None:
    topic_id, _ = _one(full_app, "AWS::SNS::Topic")
    full_app.assertions.resource_count_is("AWS::SNS::Subscription", 0)
    full_app.assertions.resource_count_is("AWS::KMS::Key", 0)  # a switch, not the default
    full_app.assertions.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "Topics": [{"Ref": topic_id}],
            "PolicyDocument": Match.object_like({
                "Statement": Match.array_with([
                    Match.object_like({
                        "Effect": "Deny",
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    })
                ])
            }),
        },
    )  # fmt: skip
    alarms = full_app.resources_of_type("AWS::CloudWatch::Alarm").values()
    for alarm in alarms:
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
    assert any("nobody subscribes" in warning for warning in full_app.warnings)


def test_with_an_email_synth_does_not_warn(tmp_path: Path) -> None:
    app = synthesize_full_app(tmp_path, context={"healthflow:alarmEmail": "ops@example.com"})
    assert not any("nobody subscribes" in warning for warning in app.warnings)


def test_a_schedule_starts_the_claim_sweep(full_app: SynthesizedApp) -> None:
    _, schedule = _one(full_app, "AWS::Scheduler::Schedule")
    properties = schedule["Properties"]
    # Every 6 hours with the new Aurora: each sweep holds its auto-pause off for a while.
    assert properties["ScheduleExpression"] == "rate(6 hours)"
    assert properties["State"] == "ENABLED"
    machine_id = properties["Target"]["Arn"]["Ref"]
    machine = full_app.template["Resources"][machine_id]["Properties"]
    assert machine["StateMachineType"] == "EXPRESS"
    definition = json.loads(machine["DefinitionString"])
    assert definition["StartAt"] == "FindExpiredClaims"
    # It sends its triggers to the queue the pipe reads, like a backend.
    [pipe] = full_app.resources_of_type("AWS::Pipes::Pipe").values()
    source_queue = pipe["Properties"]["Source"]["Fn::GetAtt"][0]
    assert machine["DefinitionSubstitutions"]["TriggerQueueUrl"] == {"Ref": source_queue}


# ---------------------------------------------------------------------------- the small ones


def test_service_delivered_logs_live_under_vendedlogs(full_app: SynthesizedApp) -> None:
    groups = full_app.resources_of_type("AWS::Logs::LogGroup")
    delivered_to = [
        m["Properties"]["LoggingConfiguration"]["Destinations"][0]["CloudWatchLogsLogGroup"]
        for m in full_app.resources_of_type("AWS::StepFunctions::StateMachine").values()
    ]
    [pipe] = full_app.resources_of_type("AWS::Pipes::Pipe").values()
    delivered_to.append(pipe["Properties"]["LogConfiguration"]["CloudwatchLogsLogDestination"])
    names = [
        groups[d["LogGroupArn"]["Fn::GetAtt"][0]]["Properties"]["LogGroupName"]
        for d in delivered_to
    ]
    assert len(names) == 4
    assert all(name.startswith("/aws/vendedlogs/") for name in names), names
    assert all(name.startswith("/aws/vendedlogs/") and "healthflow-dev-" in name for name in names)
