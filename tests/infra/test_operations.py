"""What a deploy and an outage look like from the template: no window in which new code meets the
old schema, every failed execution pages someone who can be subscribed, expired claims are swept
hourly, and the small things an AWS review asks for (task family grant, vended log names)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_cdk.assertions import Match
from moto import mock_aws

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


# What Step Functions sends for a failed Standard execution (the documented example,
# https://docs.aws.amazon.com/step-functions/latest/dg/eventbridge-integration.html), with an
# input and output an operator's page must not carry.
LABS_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:healthflow-dev-labs"
NOT_IN_THE_PAGE = "input-and-output-stay-in-the-execution"


def _status_change(status: str, machine_arn: str = LABS_ARN) -> dict[str, Any]:
    execution_arn = machine_arn.replace(":stateMachine:", ":execution:") + ":labs-parent-1"
    return {
        "version": "0",
        "id": "315c1398-40ff-a850-213b-158f73e60175",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": "123456789012",
        "time": "2019-02-26T19:42:21Z",
        "region": "us-east-1",
        "resources": [execution_arn],
        "detail": {
            "executionArn": execution_arn,
            "stateMachineArn": machine_arn,
            "name": "labs-parent-1",
            "status": status,
            "startDate": 1551225146847,
            "stopDate": 1551225151881,
            "input": json.dumps({"user_id": 7, "note": NOT_IN_THE_PAGE}),
            "inputDetails": {"included": True},
            "output": json.dumps({"note": NOT_IN_THE_PAGE}),
            "outputDetails": {"included": True},
        },
    }


def _execution_rule(app: SynthesizedApp) -> tuple[str, dict[str, Any]]:
    return _one(
        app,
        "AWS::Events::Rule",
        {"EventPattern": Match.object_like({
            "source": ["aws.states"],
            "detail-type": ["Step Functions Execution Status Change"],
        })},
    )  # fmt: skip


def _machine_ids(app: SynthesizedApp, machine_type: str) -> set[str]:
    machines = app.resources_of_type("AWS::StepFunctions::StateMachine")
    return {i for i, m in machines.items() if m["Properties"]["StateMachineType"] == machine_type}


def test_standard_executions_that_fail_page_through_a_rule_on_the_default_bus(
    full_app: SynthesizedApp,
) -> None:
    """Standard executions emit status-change events to the default bus, which bill nothing;
    one rule sends the failed, timed-out and aborted ones of every Standard machine to the
    alarm topic. Express executions emit none: they keep their alarms (test_stack)."""
    topic_id, _ = _one(full_app, "AWS::SNS::Topic")
    standard = _machine_ids(full_app, "STANDARD")
    assert standard  # the labs child
    _, rule = _execution_rule(full_app)
    properties = rule["Properties"]
    assert "EventBusName" not in properties  # the default bus, where AWS services send
    full_app.assertions.has_resource_properties(
        "AWS::Events::Rule",
        {"EventPattern": Match.object_like({
            "detail": {
                "status": Match.array_equals(["FAILED", "TIMED_OUT", "ABORTED"]),
                "stateMachineArn": Match.array_equals([{"Ref": i} for i in sorted(standard)]),
            },
        }), "State": "ENABLED"},
    )  # fmt: skip
    [target] = properties["Targets"]
    assert target["Arn"] == {"Ref": topic_id}
    assert "RoleArn" not in target  # the topic policy allows this rule (next test)


def _rendered(transformer: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """What EventBridge sends for `event` through a JSON InputTemplate: each <name> replaced by
    the value at its path, a string value quoted
    (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-transform-target-input.html)."""
    rendered = transformer["InputTemplate"]
    for name, path in transformer["InputPathsMap"].items():
        assert path.startswith("$."), path
        value: Any = event
        for key in path[2:].split("."):
            value = value[key]
        rendered = rendered.replace(f"<{name}>", json.dumps(value))
    return dict(json.loads(rendered))


def test_the_page_names_the_machine_the_execution_and_its_status_only(
    full_app: SynthesizedApp,
) -> None:
    _, rule = _execution_rule(full_app)
    [target] = rule["Properties"]["Targets"]
    transformer = target["InputTransformer"]
    assert sorted(transformer["InputPathsMap"].values()) == [
        "$.detail.executionArn",
        "$.detail.name",
        "$.detail.stateMachineArn",
        "$.detail.status",
    ]
    page = _rendered(transformer, _status_change("TIMED_OUT"))
    assert page["stateMachineArn"] == LABS_ARN
    assert page["executionName"] == "labs-parent-1"
    assert page["executionArn"].endswith(":execution:healthflow-dev-labs:labs-parent-1")
    assert page["status"] == "TIMED_OUT"
    assert "healthflow dlq list" in page["whatToDo"]
    assert set(page) == {"stateMachineArn", "executionName", "executionArn", "status", "whatToDo"}
    assert NOT_IN_THE_PAGE not in json.dumps(page)


def test_the_rule_matches_failed_timed_out_and_aborted_labs_executions_only(
    full_app: SynthesizedApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The synthesized pattern, with the labs machine's ARN, run by moto's EventBridge on
    status-change events: every end but success of the labs machine passes, nothing else."""
    _, rule = _execution_rule(full_app)
    pattern = json.loads(
        json.dumps(rule["Properties"]["EventPattern"]).replace(
            json.dumps({"Ref": next(iter(_machine_ids(full_app, "STANDARD")))}),
            json.dumps(LABS_ARN),
        )
    )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        events = boto3.client("events", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        queue_url = sqs.create_queue(QueueName="pages")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        events.put_rule(Name="executions", EventPattern=json.dumps(pattern))
        events.put_targets(
            Rule="executions",
            Targets=[{"Id": "pages", "Arn": queue_arn["Attributes"]["QueueArn"]}],
        )
        other = LABS_ARN.replace("healthflow-dev-labs", "someone-elses")
        sent = [
            _status_change(status, machine)
            for machine in (LABS_ARN, other)
            for status in ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
        ]
        for event in sent:
            events.put_events(Entries=[{
                "Source": event["source"],
                "DetailType": event["detail-type"],
                "Detail": json.dumps(event["detail"]),
                "Resources": event["resources"],
            }])  # fmt: skip
        received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    passed = sorted(
        (
            json.loads(m["Body"])["detail"]["stateMachineArn"],
            json.loads(m["Body"])["detail"]["status"],
        )
        for m in received
    )
    assert passed == [(LABS_ARN, "ABORTED"), (LABS_ARN, "FAILED"), (LABS_ARN, "TIMED_OUT")]


def _topic_statements(app: SynthesizedApp) -> list[dict[str, Any]]:
    [policy] = app.resources_of_type("AWS::SNS::TopicPolicy").values()
    return list(policy["Properties"]["PolicyDocument"]["Statement"])


def test_only_this_rule_and_these_alarms_may_publish_to_the_topic(
    full_app: SynthesizedApp,
) -> None:
    """The topic policy replaces SNS's default one, so each publisher needs its Allow, scoped
    by aws:SourceArn: EventBridge for this rule, CloudWatch for these alarms. TLS stays
    enforced."""
    rule_id, _ = _execution_rule(full_app)
    alarm_ids = set(full_app.resources_of_type("AWS::CloudWatch::Alarm"))
    statements = _topic_statements(full_app)
    allows = [s for s in statements if s["Effect"] == "Allow"]
    by_service = {s["Principal"]["Service"]: s for s in allows}
    assert set(by_service) == {"events.amazonaws.com", "cloudwatch.amazonaws.com"}
    assert len(allows) == 2
    events_allow = by_service["events.amazonaws.com"]
    assert events_allow["Action"] == "sns:Publish"
    assert events_allow["Condition"] == {
        "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [rule_id, "Arn"]}}
    }
    alarms_allow = by_service["cloudwatch.amazonaws.com"]
    assert alarms_allow["Action"] == "sns:Publish"
    sources = alarms_allow["Condition"]["ArnEquals"]["aws:SourceArn"]
    assert {s["Fn::GetAtt"][0] for s in sources} == alarm_ids
    assert all(s["Fn::GetAtt"][1] == "Arn" for s in sources)
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in statements
    )


def test_with_the_topic_key_eventbridge_and_cloudwatch_may_use_it(tmp_path: Path) -> None:
    app = synthesize_full_app(tmp_path, context={"healthflow:alarmTopicKey": "true"})
    assert app.synth_error is None, app.synth_error
    key_id, key = _one(app, "AWS::KMS::Key")
    _one(app, "AWS::SNS::Topic", {"KmsMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]}})
    may_use: set[str] = set()
    for statement in key["Properties"]["KeyPolicy"]["Statement"]:
        actions = statement["Action"]
        if statement["Effect"] == "Allow" and {"kms:GenerateDataKey", "kms:Decrypt"} <= set(
            actions if isinstance(actions, list) else [actions]
        ):
            services = statement["Principal"].get("Service", [])
            may_use |= {services} if isinstance(services, str) else set(services)
    assert {"events.amazonaws.com", "cloudwatch.amazonaws.com"} <= may_use
    # The rule still pages through the encrypted topic, and the topic policy still scopes it.
    _execution_rule(app)
    assert any(
        s["Effect"] == "Allow" and s["Principal"] == {"Service": "events.amazonaws.com"}
        for s in _topic_statements(app)
    )


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
