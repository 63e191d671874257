"""The full app as `cdk synth` builds it: wiring, definition, IAM, alarms, cdk-nag."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_sqs as sqs
from aws_cdk.assertions import Match

from tasks.statemachines import PLACEHOLDERS, placeholders_in

from .conftest import SynthesizedApp, synthesize_full_app

# Actions that have no resource-level permissions, so an Allow with Resource "*" is the only
# form AWS accepts. Each entry says who adds it; anything else with "*" fails the test.
ACTIONS_THAT_REQUIRE_A_WILDCARD_RESOURCE = {
    # X-Ray tracing (Lambda Tracing.ACTIVE): added by CDK.
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    # State machine logging to CloudWatch Logs (vended log delivery): added by CDK.
    "logs:CreateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:DescribeLogGroups",
    "logs:DescribeResourcePolicies",
    "logs:GetLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:UpdateLogDelivery",
    # ECS task execution role: the registry login token: added by CDK.
    "ecr:GetAuthorizationToken",
}
# Parameters of Task states that name an AWS resource.
RESOURCE_PARAMETERS = (
    "FunctionName",
    "Cluster",
    "TaskDefinition",
    "QueueUrl",
    "StateMachineArn",
)
BRING_YOUR_OWN = {
    "healthflow:vpcId": "vpc-0123456789abcdef0",
    "healthflow:availabilityZones": "eu-west-1a,eu-west-1b",
    "healthflow:lambdaSubnetIds": "subnet-0aaaaaaaaaaaaaaa1,subnet-0aaaaaaaaaaaaaaa2",
    "healthflow:mlWorkerSubnetIds": "subnet-0bbbbbbbbbbbbbbb1,subnet-0bbbbbbbbbbbbbbb2",
    "healthflow:dbHost": "app-db.cluster-abc.eu-west-1.rds.amazonaws.com",
    "healthflow:dbResourceId": "cluster-ABCDEFGHIJKLMNOPQRSTUVWXY",
    "healthflow:dbSecurityGroupId": "sg-0123456789abcdef0",
}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _identity_policy_statements(app: SynthesizedApp) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, resource in app.template["Resources"].items():
        properties = resource.get("Properties", {})
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents = [properties["PolicyDocument"]]
        elif resource["Type"] == "AWS::IAM::Role":
            documents = [p["PolicyDocument"] for p in properties.get("Policies", [])]
        else:
            continue
        for document in documents:
            for statement in document["Statement"]:
                yield logical_id, statement


def _task_states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in states.items():
        if state["Type"] == "Task":
            yield name, state
        for branch in state.get("Branches", []):
            yield from _task_states(branch["States"])
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                yield from _task_states(state[key]["States"])


def _strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings_in(item)


def _machines(app: SynthesizedApp) -> dict[str, dict[str, Any]]:
    """Properties of the state machines: EXPRESS (the parent, which starts the labs child),
    STANDARD (the labs child), SWEEP (the other Express machine, the claim sweep)."""
    machines = [
        m["Properties"] for m in app.resources_of_type("AWS::StepFunctions::StateMachine").values()
    ]
    by_role: dict[str, dict[str, Any]] = {}
    for machine in machines:
        if machine["StateMachineType"] == "STANDARD":
            by_role["STANDARD"] = machine
        elif "LabsStateMachineArn" in machine["DefinitionSubstitutions"]:
            by_role["EXPRESS"] = machine
        else:
            by_role["SWEEP"] = machine
    assert len(by_role) == len(machines) == 3
    return by_role


def _role_of(app: SynthesizedApp, resource_type: str, role_property: str) -> str:
    (resource,) = app.resources_of_type(resource_type).values()
    return str(resource["Properties"][role_property]["Fn::GetAtt"][0])


def _statements_of_role(app: SynthesizedApp, role_id: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in app.resources_of_type("AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _runtime_roles(app: SynthesizedApp) -> dict[str, str]:
    """The roles code runs under: the steps Lambda's and the ml-worker task's."""
    functions = app.resources_of_type("AWS::Lambda::Function")
    steps = next(
        f
        for f in functions.values()
        if f["Properties"].get("Handler") == "tasks.runners.lambda_handler.handler"
    )
    return {
        "steps": steps["Properties"]["Role"]["Fn::GetAtt"][0],
        "ml-worker": _role_of(app, "AWS::ECS::TaskDefinition", "TaskRoleArn"),
    }


def _actions_of(statements: list[dict[str, Any]]) -> set[str]:
    return {action for s in statements for action in _as_list(s["Action"])}


def _referenced_logical_id(value: Any) -> str | None:
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    return None


def _nag_errors(app: SynthesizedApp) -> list[str]:
    report = app.validation_report or {"pluginReports": []}
    return sorted(
        f"{violation['ruleName']} at {construct['constructPath']}"
        for plugin in report["pluginReports"]
        if plugin["pluginName"] == "AwsSolutions"
        for violation in plugin["violations"]
        if violation["severity"] == "error"
        for construct in violation["violatingConstructs"]
    )


def test_cdk_nag_reports_zero_unsuppressed_errors(full_app: SynthesizedApp) -> None:
    # A clean run lists no plugin at all; the canary test below proves the checks do run.
    assert _nag_errors(full_app) == []
    assert full_app.synth_error is None, full_app.synth_error


def test_cdk_nag_runs_on_the_app(tmp_path: Path) -> None:
    """Canary: one non-compliant queue added to the real app is the only thing nag reports."""

    def add_canary(stack: Stack) -> None:
        sqs.Queue(stack, "NagCanary")

    app = synthesize_full_app(tmp_path, before_synth=add_canary)
    assert app.synth_error is not None and "ValidationFailed" in app.synth_error
    errors = _nag_errors(app)
    assert errors
    assert all("/NagCanary/" in error for error in errors), errors


def test_definitions_have_no_unfilled_placeholder(full_app: SynthesizedApp) -> None:
    for properties in _machines(full_app).values():
        definition = properties["DefinitionString"]
        assert isinstance(definition, str)
        substitutions = properties["DefinitionSubstitutions"]
        assert placeholders_in(definition) == set(substitutions)
        assert set(substitutions) <= set(PLACEHOLDERS)
        # Nothing account-specific is written into the definition.
        assert not re.search(r"\b\d{12}\b", definition)


def test_every_task_resource_points_at_a_resource_of_the_stack(full_app: SynthesizedApp) -> None:
    resources = full_app.template["Resources"]
    for properties in _machines(full_app).values():
        substitutions = properties["DefinitionSubstitutions"]
        definition = json.loads(properties["DefinitionString"])
        tasks = list(_task_states(definition["States"]))
        assert tasks
        for name, state in tasks:
            # Service integrations only: no hard-coded function or activity ARN.
            assert state["Resource"].startswith("arn:aws:states:::"), name
            assert "TimeoutSeconds" in state or "TimeoutSecondsPath" in state, name
            parameters = state.get("Parameters", {})
            named = [parameters[key] for key in RESOURCE_PARAMETERS if key in parameters]
            assert named, f"{name} names no resource"
            for value in named:
                match = re.fullmatch(r"\$\{(\w+)\}", value)
                assert match, f"{name}: {value!r} is not a placeholder"
                logical_id = _referenced_logical_id(substitutions[match.group(1)])
                assert logical_id in resources, f"{name}: {value} -> {logical_id}"


def test_no_interface_endpoint_and_no_nat_gateway_by_default(full_app: SynthesizedApp) -> None:
    full_app.assertions.resource_count_is("AWS::EC2::VPCEndpoint", 0)
    full_app.assertions.resource_count_is("AWS::EC2::NatGateway", 0)
    # The ml-worker runs in public subnets with a public IP and a group that admits nothing.
    labs = json.loads(_machines(full_app)["STANDARD"]["DefinitionString"])
    network = labs["States"]["CategorizeLabs"]["Parameters"]["NetworkConfiguration"]
    assert network["AwsvpcConfiguration"]["AssignPublicIp"] == "${MlWorkerAssignPublicIp}"
    assert (
        _machines(full_app)["STANDARD"]["DefinitionSubstitutions"]["MlWorkerAssignPublicIp"]
        == "ENABLED"
    )
    for subnet_ref in ("MlWorkerSubnet1", "MlWorkerSubnet2"):
        subnet_id = _referenced_logical_id(
            _machines(full_app)["STANDARD"]["DefinitionSubstitutions"][subnet_ref]
        )
        subnet = full_app.template["Resources"][subnet_id]
        assert subnet["Properties"]["MapPublicIpOnLaunch"] is True
    task_sg = _role_of(full_app, "AWS::ECS::TaskDefinition", "TaskRoleArn")
    assert task_sg  # the task exists
    ingress_to = [
        _referenced_logical_id(rule["Properties"]["GroupId"])
        for rule in full_app.resources_of_type("AWS::EC2::SecurityGroupIngress").values()
    ]
    groups = full_app.resources_of_type("AWS::EC2::SecurityGroup")
    worker_groups = [
        logical_id
        for logical_id, group in groups.items()
        if "ml-worker tasks" in group["Properties"]["GroupDescription"]
    ]
    assert len(worker_groups) == 1 and not set(worker_groups) & set(ingress_to)
    for logical_id in worker_groups:
        assert "SecurityGroupIngress" not in groups[logical_id]["Properties"]


def test_pipe_targets_the_express_machine_fire_and_forget(full_app: SynthesizedApp) -> None:
    (pipe,) = full_app.resources_of_type("AWS::Pipes::Pipe").values()
    source_id = _referenced_logical_id(pipe["Properties"]["Source"])
    target_id = _referenced_logical_id(pipe["Properties"]["Target"])
    assert full_app.template["Resources"][source_id]["Type"] == "AWS::SQS::Queue"
    assert "RedrivePolicy" in full_app.template["Resources"][source_id]["Properties"]
    target = full_app.template["Resources"][target_id]
    assert target["Type"] == "AWS::StepFunctions::StateMachine"
    assert target["Properties"]["StateMachineType"] == "EXPRESS"
    assert pipe["Properties"]["SourceParameters"]["SqsQueueParameters"]["BatchSize"] == 1
    parameters = pipe["Properties"]["TargetParameters"]["StepFunctionStateMachineParameters"]
    assert parameters["InvocationType"] == "FIRE_AND_FORGET"


def test_labs_child_is_standard_with_ecs_sync_on_spot_and_on_demand(
    full_app: SynthesizedApp,
) -> None:
    labs = json.loads(_machines(full_app)["STANDARD"]["DefinitionString"])
    providers = {
        name: state["Parameters"]["CapacityProviderStrategy"][0]["CapacityProvider"]
        for name, state in labs["States"].items()
        if state.get("Resource") == "arn:aws:states:::ecs:runTask.sync"
    }
    assert providers == {"CategorizeLabs": "FARGATE_SPOT", "CategorizeLabsOnDemand": "FARGATE"}
    express = json.loads(_machines(full_app)["EXPRESS"]["DefinitionString"])
    assert express["States"]["StartLabsWorkflow"]["Resource"].endswith("states:startExecution")


def test_database_access_is_rds_db_connect_without_secrets_at_run_time(
    full_app: SynthesizedApp,
) -> None:
    for who, role_id in _runtime_roles(full_app).items():
        statements = _statements_of_role(full_app, role_id)
        actions = _actions_of(statements)
        assert "rds-db:connect" in actions, who
        assert not any(a.startswith(("secretsmanager:", "kms:")) for a in actions), who
        connect = next(s for s in statements if "rds-db:connect" in _as_list(s["Action"]))
        assert "dbuser" in json.dumps(connect["Resource"]) and "healthflow_app" in json.dumps(
            connect["Resource"]
        )
    # Neither the Lambda nor the container gets a secret to read: their environment says
    # where the database is and as whom, never a password or a secret's ARN.
    for function in full_app.resources_of_type("AWS::Lambda::Function").values():
        variables = function["Properties"].get("Environment", {}).get("Variables", {})
        assert not any("SECRET" in name or "PASSWORD" in name for name in variables)
    full_app.assertions.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "tasks.runners.lambda_handler.handler",
            "Environment": {
                "Variables": Match.object_like(
                    {"HEALTHFLOW_DB_USER": "healthflow_app", "HEALTHFLOW_DB_NAME": "healthflow"}
                )
            },
        },
    )


def test_new_aurora_gets_the_iam_grant_at_deploy_time_through_the_data_api(
    full_app: SynthesizedApp,
) -> None:
    full_app.assertions.has_resource_properties(
        "AWS::RDS::DBCluster",
        {"EnableIAMDatabaseAuthentication": True, "EnableHttpEndpoint": True},
    )
    (grant,) = full_app.resources_of_type("Custom::AWS").values()
    create = json.dumps(grant["Properties"]["Create"])
    assert '\\"service\\":\\"rds-data\\"' in create
    assert "executeStatement" in create and "GRANT rds_iam TO healthflow_app" in create
    # It runs before the migrations, which connect as the app user.
    (migrations_id,) = full_app.resources_of_type("Custom::HealthflowMigrations")
    grant_id = next(iter(full_app.resources_of_type("Custom::AWS")))
    migrations = full_app.template["Resources"][migrations_id]
    assert grant_id in migrations.get("DependsOn", [])


def test_what_bills_while_idle_is_trimmed(full_app: SynthesizedApp) -> None:
    full_app.assertions.resource_count_is("AWS::KMS::Key", 0)
    for queue in full_app.resources_of_type("AWS::SQS::Queue").values():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True
    full_app.assertions.resource_count_is("AWS::CloudWatch::Dashboard", 0)
    # The queue's two, and one per Express machine (parent, sweep); the Standard labs child
    # pages through an EventBridge rule, which bills nothing.
    assert len(full_app.resources_of_type("AWS::CloudWatch::Alarm")) == 4
    full_app.assertions.has_resource_properties(
        "AWS::ECS::Cluster",
        {"ClusterSettings": [{"Name": "containerInsights", "Value": "disabled"}]},
    )
    full_app.assertions.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "tasks.runners.lambda_handler.handler",
            "Architectures": ["arm64"],
            "Runtime": Match.string_like_regexp(r"python3\.1[2-9]"),
        },
    )
    # Sized to the measured peak (672 MB RSS): 0.5 vCPU, 1 GB.
    full_app.assertions.has_resource_properties(
        "AWS::ECS::TaskDefinition", {"Cpu": "512", "Memory": "1024"}
    )
    full_app.assertions.resource_count_is("AWS::EC2::NatGateway", 0)


def test_cluster_capacity_providers(full_app: SynthesizedApp) -> None:
    full_app.assertions.has_resource_properties(
        "AWS::ECS::ClusterCapacityProviderAssociations",
        {"CapacityProviders": Match.array_with(["FARGATE", "FARGATE_SPOT"])},
    )


def test_no_identity_policy_grants_a_wildcard_action(full_app: SynthesizedApp) -> None:
    offenders = [
        (logical_id, action)
        for logical_id, statement in _identity_policy_statements(full_app)
        if statement["Effect"] == "Allow"
        for action in _as_list(statement["Action"])
        if "*" in action
    ]
    assert offenders == []


def test_wildcard_resources_only_for_actions_without_resource_permissions(
    full_app: SynthesizedApp,
) -> None:
    offenders = [
        (logical_id, action)
        for logical_id, statement in _identity_policy_statements(full_app)
        if statement["Effect"] == "Allow" and "*" in _as_list(statement["Resource"])
        for action in _as_list(statement["Action"])
        if action not in ACTIONS_THAT_REQUIRE_A_WILDCARD_RESOURCE
    ]
    assert offenders == []


def test_alarms_watch_the_dlq_the_queue_and_every_express_machine(
    full_app: SynthesizedApp,
) -> None:
    alarms = [
        a["Properties"] for a in full_app.resources_of_type("AWS::CloudWatch::Alarm").values()
    ]
    single = sorted((a["Namespace"], a["MetricName"]) for a in alarms if "MetricName" in a)
    assert single == [
        ("AWS/SQS", "ApproximateAgeOfOldestMessage"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    ]
    # Every Express machine: failed and timed-out executions (Express executions cannot be
    # stopped), summed by one metric-math alarm. Express executions emit no status-change
    # events, so a metric is their only signal; the Standard machines page through a rule
    # (tests/infra/test_operations.py).
    watched: dict[str, set[str]] = {}
    for alarm in (a for a in alarms if "Metrics" in a):
        assert alarm["Threshold"] == 0
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        [expression] = [m["Expression"] for m in alarm["Metrics"] if "Expression" in m]
        stats = [m["MetricStat"] for m in alarm["Metrics"] if "MetricStat" in m]
        assert expression.count("FILL(") == len(stats)
        [machine_id] = {
            _referenced_logical_id(s["Metric"]["Dimensions"][0]["Value"]) for s in stats
        }
        watched[machine_id] = {s["Metric"]["MetricName"] for s in stats}
    machines = full_app.resources_of_type("AWS::StepFunctions::StateMachine")
    express = {i for i, m in machines.items() if m["Properties"]["StateMachineType"] == "EXPRESS"}
    assert len(express) == 2 and set(watched) == express
    for machine_id, names in watched.items():
        assert names == {"ExecutionsFailed", "ExecutionsTimedOut"}, machine_id


def test_ssm_parameters_for_queue_url_and_enabled_flag(full_app: SynthesizedApp) -> None:
    full_app.assertions.has_resource_properties(
        "AWS::SSM::Parameter",
        {"Name": "/healthflow/dev/trigger-queue-url", "Value": {"Ref": Match.any_value()}},
    )
    full_app.assertions.has_resource_properties(
        "AWS::SSM::Parameter", {"Name": "/healthflow/dev/enabled", "Value": "true"}
    )


def test_migrations_run_through_the_steps_function(full_app: SynthesizedApp) -> None:
    full_app.assertions.has_resource_properties(
        "Custom::HealthflowMigrations", {"step": "migrate", "input": {}}
    )


def test_nothing_account_specific_is_hard_coded(full_app: SynthesizedApp) -> None:
    # Mappings hold CDK's per-partition tables (the AWS-owned rotation application's ARN).
    ours = {k: v for k, v in full_app.template.items() if k != "Mappings"}
    text = json.dumps(ours)
    assert not re.search(r"\b\d{12}\b", text)
    assert not re.search(r"\b(us|eu|ap|sa|ca|me|af)-[a-z]+-\d\b", text)


def test_isolated_network_switch_synthesizes_nag_clean_with_endpoints(tmp_path: Path) -> None:
    app = synthesize_full_app(
        tmp_path,
        context={
            "healthflow:network": "isolated",
            "healthflow:queueCmk": "true",
            "healthflow:dashboard": "true",
        },
    )
    assert app.synth_error is None, app.synth_error
    assert _nag_errors(app) == []
    endpoints = app.resources_of_type("AWS::EC2::VPCEndpoint").values()
    interface = [e for e in endpoints if e["Properties"].get("VpcEndpointType") == "Interface"]
    assert len(interface) == 3
    app.assertions.resource_count_is("AWS::EC2::NatGateway", 0)
    app.assertions.resource_count_is("AWS::EC2::InternetGateway", 0)
    labs = _machines(app)["STANDARD"]["DefinitionSubstitutions"]
    assert labs["MlWorkerAssignPublicIp"] == "DISABLED"
    # The switches: a customer-managed key on both queues, and the dashboard.
    app.assertions.resource_count_is("AWS::KMS::Key", 1)
    for queue in app.resources_of_type("AWS::SQS::Queue").values():
        assert "KmsMasterKeyId" in queue["Properties"]
    app.assertions.resource_count_is("AWS::CloudWatch::Dashboard", 1)


def test_your_vpc_and_database_by_ids_without_lookups(tmp_path: Path) -> None:
    app = synthesize_full_app(
        tmp_path,
        context={
            **BRING_YOUR_OWN,
            "healthflow:env": "prod",
            "healthflow:alarmEmail": "ops@example.com",
            "healthflow:alarmTopicKey": "true",
            "healthflow:enabled": "false",
        },
    )
    assert app.synth_error is None, app.synth_error
    assert _nag_errors(app) == []
    for absent in ("AWS::RDS::DBCluster", "AWS::EC2::VPC", "AWS::SecretsManager::Secret"):
        app.assertions.resource_count_is(absent, 0)
    app.assertions.resource_count_is("Custom::AWS", 0)
    for who, role_id in _runtime_roles(app).items():
        statements = _statements_of_role(app, role_id)
        connect = [s for s in statements if "rds-db:connect" in _as_list(s["Action"])]
        assert "cluster-ABCDEFGHIJKLMNOPQRSTUVWXY/healthflow_app" in json.dumps(connect), who
    app.assertions.has_resource_properties(
        "AWS::EC2::SecurityGroupIngress",
        {"GroupId": "sg-0123456789abcdef0", "FromPort": 5432, "ToPort": 5432},
    )
    labs = _machines(app)["STANDARD"]["DefinitionSubstitutions"]
    assert labs["MlWorkerSubnet1"] == "subnet-0bbbbbbbbbbbbbbb1"
    app.assertions.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "tasks.runners.lambda_handler.handler",
            "VpcConfig": Match.object_like(
                {"SubnetIds": ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"]}
            ),
        },
    )
    app.assertions.has_resource_properties(
        "AWS::SSM::Parameter", {"Name": "/healthflow/prod/enabled", "Value": "false"}
    )
    app.assertions.has_resource_properties("AWS::Pipes::Pipe", {"DesiredState": "STOPPED"})
    app.assertions.has_resource_properties(
        "AWS::SNS::Topic", {"KmsMasterKeyId": {"Fn::GetAtt": [Match.any_value(), "Arn"]}}
    )
    for alarm in app.resources_of_type("AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"]
    # Your database is always on: sweeping it hourly wakes nothing that bills.
    app.assertions.has_resource_properties(
        "AWS::Scheduler::Schedule", {"ScheduleExpression": "rate(1 hour)"}
    )
