"""The two state machines, built from the ASL files the local cloud runs too.

* The Express parent (`statemachines/healthflow.asl.json`), one execution per trigger message:
  billed per request and duration, not per transition. It logs to CloudWatch Logs at level ALL,
  which is what the console reads (with Logs Insights) to show Express executions; execution data
  is left out (payloads hold ids and counts only, but a log is not where state data belongs).
* The Standard labs child (`statemachines/labs.asl.json`): it waits on Fargate (`.sync`), which
  Express cannot do.

Each machine's IAM grants are DERIVED from the Task states of its ASL
(`tasks.statemachines.task_resources`): a Task whose integration has no grant rule here, or whose
target is not a resource of this stack, fails the synth instead of failing at run time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from healthflow_infra.nag import acknowledge
from tasks.statemachines import PLACEHOLDERS, TaskResource, load_definition, task_resources


@dataclass(frozen=True)
class EcsTarget:
    """What an `ecs:runTask.sync` Task acts on."""

    cluster: ecs.ICluster
    task_definition: ecs.TaskDefinition


@dataclass(frozen=True)
class QueueTarget:
    queue: sqs.IQueue
    key: kms.IKey | None  # a customer-managed key, when the queue uses one


class MissingGrant(ValueError):
    """A Task state calls something the stack grants nothing for."""


def _grant_lambda(role: iam.IRole, target: Any, scope: Construct) -> None:
    function: lambda_.IFunction = target
    # The stack passes the `live` alias: invoke on that alias only, never on $LATEST.
    function.grant_invoke(role)


def task_family_arn(task_definition: ecs.TaskDefinition) -> str:
    """`arn:...:task-definition/<family>:*`: every revision of the task definition's family."""
    return Stack.of(task_definition).format_arn(
        service="ecs", resource="task-definition", resource_name=f"{task_definition.family}:*"
    )


def vended_log_group_name(service: str, env_name: str, name: str) -> str:
    """A log group name under /aws/vendedlogs/: logs that AWS services deliver there need no
    entry in the account's CloudWatch Logs resource policy, whose 5,120 characters fill up
    after a few dozen log groups elsewhere."""
    return f"/aws/vendedlogs/{service}/healthflow-{env_name}-{name}"


def _grant_ecs_sync(role: iam.IRole, target: Any, scope: Construct) -> None:
    ecs_target: EcsTarget = target
    cluster, task_definition = ecs_target.cluster, ecs_target.task_definition
    stack = Stack.of(scope)
    # Every revision of the family: a labs execution that started before a deploy still names
    # the revision it was started with, and must not get AccessDenied when the deploy registers
    # the next one.
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["ecs:RunTask"],
            resources=[task_family_arn(task_definition)],
            conditions={"ArnEquals": {"ecs:cluster": cluster.cluster_arn}},
        )
    )
    # `.sync` describes the task until it stops, and stops it on timeout or abort; task ARNs
    # exist only at run time, so the resource is this cluster's task ARN prefix.
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["ecs:StopTask", "ecs:DescribeTasks"],
            resources=[
                stack.format_arn(
                    service="ecs", resource="task", resource_name=f"{cluster.cluster_name}/*"
                )
            ],
            conditions={"ArnEquals": {"ecs:cluster": cluster.cluster_arn}},
        )
    )
    # `.sync` learns that the task stopped from the EventBridge rule Step Functions manages.
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
            resources=[
                stack.format_arn(
                    service="events",
                    resource="rule",
                    resource_name="StepFunctionsGetEventsForECSTaskRule",
                )
            ],
        )
    )
    pass_roles = [task_definition.task_role.role_arn]
    if task_definition.execution_role is not None:
        pass_roles.append(task_definition.execution_role.role_arn)
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["iam:PassRole"],
            resources=pass_roles,
            conditions={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
        )
    )


def _grant_start_execution(role: iam.IRole, target: Any, scope: Construct) -> None:
    machine: sfn.IStateMachine = target
    # Request-response: StartExecution only (no Describe/Stop, which `.sync` would need).
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["states:StartExecution"], resources=[machine.state_machine_arn]
        )
    )


def _grant_send_message(role: iam.IRole, target: Any, scope: Construct) -> None:
    queue_target: QueueTarget = target
    # Written out instead of grant_send_messages(), which adds kms:GenerateDataKey*/ReEncrypt*.
    role.add_to_principal_policy(
        iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[queue_target.queue.queue_arn])
    )
    if queue_target.key is not None:
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[queue_target.key.key_arn],
            )
        )


#: How each integration an ASL may use is granted. A Task with any other resource fails synth.
GRANT_RULES: Mapping[str, Callable[[iam.IRole, Any, Construct], None]] = {
    "lambda:invoke": _grant_lambda,
    "ecs:runTask.sync": _grant_ecs_sync,
    "states:startExecution": _grant_start_execution,
    "sqs:sendMessage": _grant_send_message,
}


def grant_tasks(
    role: iam.IRole,
    tasks: list[TaskResource],
    targets: Mapping[str, Any],
    scope: Construct,
    source: str,
) -> list[tuple[str, str]]:
    """Grant `role` what every Task of a definition calls; returns (integration, target) pairs.

    Raises MissingGrant on an integration without a rule or a target the stack does not have.
    """
    granted: list[tuple[str, str]] = []
    for task in tasks:
        rule = GRANT_RULES.get(task.service_action)
        if rule is None:
            raise MissingGrant(
                f"{source}: state {task.state} uses {task.resource}, which the stack grants "
                "nothing for (add a rule to GRANT_RULES)"
            )
        if task.target is None or task.target not in targets:
            raise MissingGrant(
                f"{source}: state {task.state} acts on {task.target!r}, not a resource of the stack"
            )
        key = (task.service_action, task.target)
        if key not in granted:
            rule(role, targets[task.target], scope)
            granted.append(key)
    return granted


class StateMachineFromAsl(Construct):
    """One state machine from an ASL file, its log group and its derived grants.

    Attributes: `state_machine`, `log_group`, `granted` ((integration, target) pairs).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        asl_path: Path,
        machine_type: sfn.StateMachineType,
        substitutions: Mapping[str, str],
        targets: Mapping[str, Any],
        log_level: sfn.LogLevel,
        log_retention: logs.RetentionDays,
        log_group_name: str,
        tracing: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        definition = load_definition(asl_path)
        used = {name for name in PLACEHOLDERS if f"${{{name}}}" in definition}
        missing = used - set(substitutions)
        if missing:
            raise ValueError(
                f"{asl_path.name} uses placeholders the stack does not fill: {missing}"
            )
        # Under /aws/vendedlogs/ (see vended_log_group_name), named per environment.
        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            log_group_name=log_group_name,
            retention=log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_type=machine_type,
            definition_body=sfn.DefinitionBody.from_string(definition),
            definition_substitutions={name: substitutions[name] for name in sorted(used)},
            logs=sfn.LogOptions(
                destination=self.log_group, level=log_level, include_execution_data=False
            ),
            tracing_enabled=tracing,
        )
        self.granted = grant_tasks(
            self.state_machine.role,
            task_resources(json.loads(definition)),
            targets,
            self,
            asl_path.name,
        )
        acknowledge(
            self.state_machine,
            "CloudFormation-Validate::E1029",
            reason="The ${...} in DefinitionString are DefinitionSubstitutions keys, which "
            "CloudFormation fills at deploy time; Fn::Sub is not what fills them.",
        )
        if not tracing:
            acknowledge(
                self.state_machine,
                "AwsSolutions-SF2",
                reason="X-Ray is off by default: one trace per message is billed beyond the free "
                "tier, and the execution history or Express log already shows each step "
                "(healthflow:tracing=true turns it on).",
            )
        acknowledge(
            self.state_machine.role,
            "AwsSolutions-IAM5[Resource::*]",
            reason="Log delivery (logs:*LogDelivery, DescribeResourcePolicies) and X-Ray have "
            "no resource-level permissions; CDK adds exactly those for logging and tracing.",
        )


class Workflow(Construct):
    """The Standard labs child, then the Express parent that starts it.

    Attributes: `state_machine` (the Express parent, the pipe's target), `labs_state_machine`,
    `log_group` (the parent's), `labs_log_group`, `definition_substitutions`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env_name: str,
        asl_path: Path,
        labs_asl_path: Path,
        steps_function: lambda_.IFunction,
        cluster: ecs.ICluster,
        task_definition: ecs.TaskDefinition,
        container_name: str,
        task_subnet_ids: list[str],
        task_security_group_id: str,
        task_public_ip: bool,
        dead_letter_queue: sqs.IQueue,
        queue_key: kms.IKey | None,
        log_retention: logs.RetentionDays,
        trigger_queue: sqs.IQueue,
        tracing: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        if len(task_subnet_ids) < 2:
            raise ValueError("The labs ASL places ECS tasks in two subnets (${MlWorkerSubnet1}/2)")
        substitutions: dict[str, str] = {
            "StepsFunctionArn": steps_function.function_arn,
            "ClusterArn": cluster.cluster_arn,
            "MlWorkerTaskDefinitionArn": task_definition.task_definition_arn,
            "MlWorkerContainerName": container_name,
            "MlWorkerSubnet1": task_subnet_ids[0],
            "MlWorkerSubnet2": task_subnet_ids[1],
            "MlWorkerSecurityGroupId": task_security_group_id,
            "MlWorkerAssignPublicIp": "ENABLED" if task_public_ip else "DISABLED",
            "DeadLetterQueueUrl": dead_letter_queue.queue_url,
        }
        substitutions["TriggerQueueUrl"] = trigger_queue.queue_url
        # What each placeholder that names a Task's target grants on.
        targets: dict[str, Any] = {
            "StepsFunctionArn": steps_function,
            "MlWorkerTaskDefinitionArn": EcsTarget(cluster, task_definition),
            "DeadLetterQueueUrl": QueueTarget(dead_letter_queue, queue_key),
        }
        targets["TriggerQueueUrl"] = QueueTarget(trigger_queue, queue_key)
        labs = StateMachineFromAsl(
            self,
            "Labs",
            asl_path=labs_asl_path,
            machine_type=sfn.StateMachineType.STANDARD,
            substitutions=substitutions,
            targets=targets,
            # Standard keeps a full execution history; the log holds errors only.
            log_level=sfn.LogLevel.ERROR,
            log_retention=log_retention,
            log_group_name=vended_log_group_name("states", env_name, "labs"),
            tracing=tracing,
        )
        self.labs_state_machine = labs.state_machine
        self.labs_log_group = labs.log_group
        acknowledge(
            labs.state_machine,
            "AwsSolutions-SF1",
            reason="A Standard machine keeps its full history in Step Functions; its log holds "
            "ERROR events without execution data, which is what alarms need.",
        )
        substitutions["LabsStateMachineArn"] = labs.state_machine.state_machine_arn
        targets["LabsStateMachineArn"] = labs.state_machine
        parent = StateMachineFromAsl(
            self,
            "Express",
            asl_path=asl_path,
            machine_type=sfn.StateMachineType.EXPRESS,
            substitutions=substitutions,
            targets=targets,
            # ALL: the console shows Express executions from these logs (Logs Insights).
            log_level=sfn.LogLevel.ALL,
            log_retention=log_retention,
            log_group_name=vended_log_group_name("states", env_name, "express"),
            tracing=tracing,
        )
        self.state_machine = parent.state_machine
        self.log_group = parent.log_group
        self.granted = {"express": parent.granted, "labs": labs.granted}
        self.definition_substitutions: Mapping[str, str] = substitutions
        for machine in (parent, labs):
            self._acknowledge_wildcards(machine, cluster, task_definition)

    @staticmethod
    def _acknowledge_wildcards(
        machine: StateMachineFromAsl,
        cluster: ecs.ICluster,
        task_definition: ecs.TaskDefinition,
    ) -> None:
        stack = Stack.of(machine)
        cluster_id = stack.get_logical_id(cluster.node.default_child)  # type: ignore[arg-type]
        acknowledge(
            machine.state_machine.role,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:"
            f"<AWS::AccountId>:task/<{cluster_id}>/*]",
            reason="ECS task ids exist only at run time; the statement is limited to this "
            "cluster's tasks (ARN prefix and ecs:cluster condition).",
        )
        acknowledge(
            machine.state_machine.role,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:"
            f"<AWS::AccountId>:task-definition/{task_definition.family}:*]",
            reason="Every revision of the ml-worker's one task family: an execution started "
            "before a deploy runs the revision it was started with (ecs:cluster condition).",
        )
