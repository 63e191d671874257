"""The state machine, built from the ASL file that the local cloud runs too."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from healthflow_infra.nag import acknowledge

# Exactly the placeholders of tasks/steps/CONTRACT.md; the local cloud fills the same names.
ASL_PLACEHOLDERS: tuple[str, ...] = (
    "StepsFunctionArn",
    "ClusterArn",
    "MlWorkerTaskDefinitionArn",
    "MlWorkerContainerName",
    "PrivateSubnet1",
    "PrivateSubnet2",
    "MlWorkerSecurityGroupId",
    "DeadLetterQueueUrl",
)
_PLACEHOLDER_PATTERN = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def placeholders_in(definition: str) -> set[str]:
    """The `${Name}` placeholders a definition uses."""
    return set(_PLACEHOLDER_PATTERN.findall(definition))


class Workflow(Construct):
    """Standard state machine: ERROR-level logs without execution data, X-Ray, tight grants.

    Attributes: `state_machine`, `log_group`, `definition_substitutions`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env_name: str,
        asl_path: Path,
        steps_function: lambda_.IFunction,
        cluster: ecs.ICluster,
        task_definition: ecs.TaskDefinition,
        container_name: str,
        task_subnets: list[ec2.ISubnet],
        task_security_group: ec2.ISecurityGroup,
        dead_letter_queue: sqs.IQueue,
        queue_key: kms.IKey,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        if len(task_subnets) < 2:
            raise ValueError("The ASL places ECS tasks in two subnets (${PrivateSubnet1}/2)")
        definition = asl_path.read_text(encoding="utf-8")
        self.definition_substitutions: Mapping[str, str] = {
            "StepsFunctionArn": steps_function.function_arn,
            "ClusterArn": cluster.cluster_arn,
            "MlWorkerTaskDefinitionArn": task_definition.task_definition_arn,
            "MlWorkerContainerName": container_name,
            "PrivateSubnet1": task_subnets[0].subnet_id,
            "PrivateSubnet2": task_subnets[1].subnet_id,
            "MlWorkerSecurityGroupId": task_security_group.security_group_id,
            "DeadLetterQueueUrl": dead_letter_queue.queue_url,
        }
        unknown = placeholders_in(definition) - set(self.definition_substitutions)
        if unknown:
            # An unfilled placeholder would deploy and fail at run time; fail the synth instead.
            raise ValueError(f"{asl_path} uses placeholders CDK does not fill: {sorted(unknown)}")

        # Step Functions vends logs under /aws/vendedlogs/ without a resource policy size issue.
        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            log_group_name=f"/aws/vendedlogs/states/healthflow-{env_name}",
            retention=log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            # A fixed name per environment so operators (and `healthflow --target aws`) find it.
            state_machine_name=f"healthflow-{env_name}",
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_string(definition),
            definition_substitutions=dict(self.definition_substitutions),
            # ERROR only and no execution data: inputs/outputs carry ids and counts only, but
            # the logs must not become a second copy of execution history.
            logs=sfn.LogOptions(
                destination=self.log_group,
                level=sfn.LogLevel.ERROR,
                include_execution_data=False,
            ),
            tracing_enabled=True,
        )
        acknowledge(
            self.state_machine,
            "AwsSolutions-SF1",
            reason="Logging ALL events would copy every state transition into CloudWatch; ERROR "
            "without execution data keeps failures visible and execution history the only "
            "record of state input/output.",
        )
        acknowledge(
            self.state_machine,
            "CloudFormation-Validate::E1029",
            reason="The ${...} in DefinitionString are DefinitionSubstitutions keys, which "
            "CloudFormation fills at deploy time; Fn::Sub is not what fills them.",
        )
        self._grant_task_permissions(
            steps_function=steps_function,
            cluster=cluster,
            task_definition=task_definition,
            dead_letter_queue=dead_letter_queue,
            queue_key=queue_key,
        )

    def _grant_task_permissions(
        self,
        *,
        steps_function: lambda_.IFunction,
        cluster: ecs.ICluster,
        task_definition: ecs.TaskDefinition,
        dead_letter_queue: sqs.IQueue,
        queue_key: kms.IKey,
    ) -> None:
        # A definition from a string is opaque to CDK, so each grant is explicit here.
        role = self.state_machine.role
        # lambda:invoke Task states (with or without a version qualifier).
        steps_function.grant_invoke(role)
        # ecs:runTask.waitForTaskToken: RunTask on this task definition only, in this cluster.
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["ecs:RunTask"],
                resources=[task_definition.task_definition_arn],
                conditions={"ArnEquals": {"ecs:cluster": cluster.cluster_arn}},
            )
        )
        # Stop/describe the tasks it started (timeouts stop the task); ECS task ARNs are only
        # known at run time, so the resource is this cluster's task ARN prefix.
        stack = Stack.of(self)
        cluster_tasks_arn = stack.format_arn(
            service="ecs", resource="task", resource_name=f"{cluster.cluster_name}/*"
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["ecs:StopTask", "ecs:DescribeTasks"],
                resources=[cluster_tasks_arn],
                conditions={"ArnEquals": {"ecs:cluster": cluster.cluster_arn}},
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
        # No events:PutRule/PutTargets: those are for `.sync`; `.waitForTaskToken` needs none.
        # SendToDeadLetterQueue (sqs:sendMessage) on a KMS-encrypted queue. Written out instead
        # of grant_send_messages(), which adds the wildcard actions kms:GenerateDataKey*/ReEncrypt*.
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["sqs:SendMessage"], resources=[dead_letter_queue.queue_arn]
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[queue_key.key_arn]
            )
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:"
            f"<AWS::AccountId>:task/<{self._cluster_ref_name(cluster)}>/*]",
            reason="ECS task ids exist only at run time; the statement is limited to this "
            "cluster's tasks (ARN prefix and ecs:cluster condition).",
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::<{self._function_logical_id(steps_function)}.Arn>:*]",
            reason="Invoke on the steps function's versions and aliases (ARN:*) of this function.",
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            reason="Log delivery (logs:*LogDelivery, DescribeResourcePolicies) and X-Ray "
            "(PutTraceSegments, PutTelemetryRecords, GetSampling*) have no resource-level "
            "permissions; CDK adds exactly those for logging and tracing.",
        )

    @staticmethod
    def _cluster_ref_name(cluster: ecs.ICluster) -> str:
        return Stack.of(cluster).get_logical_id(cluster.node.default_child)  # type: ignore[arg-type]

    @staticmethod
    def _function_logical_id(function: lambda_.IFunction) -> str:
        return Stack.of(function).get_logical_id(function.node.default_child)  # type: ignore[arg-type]
