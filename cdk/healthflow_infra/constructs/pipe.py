"""EventBridge Pipe: one Step Functions execution per trigger message."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_pipes as pipes
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from healthflow_infra.constructs.workflow import vended_log_group_name

#: Why FIRE_AND_FORGET (asynchronous StartExecution of the Express machine) and not
#: REQUEST_RESPONSE (StartSyncExecution): every failure inside the workflow already ends in the
#: workflow's own Catch -> SendToDeadLetterQueue, with the error name as reason, and then in a Fail
#: state. Under REQUEST_RESPONSE the pipe would see that failed execution, return the message to
#: the queue, retry it up to maxReceiveCount times and finally let the queue's redrive policy move
#: the raw body to the same DLQ: the failure would arrive there twice or more (once per retry from
#: the Catch, once raw without a reason). Under FIRE_AND_FORGET the message is deleted once the
#: execution has started, so a workflow failure reaches the DLQ exactly once, from the Catch, with
#: its reason; only a message that cannot even start an execution is retried by the pipe and
#: redriven raw by the queue (the "pipe could not deliver" kind, which `healthflow dlq` also reads).
INVOCATION_TYPE = "FIRE_AND_FORGET"


class TriggerPipe(Construct):
    """SQS -> Express state machine, batch size 1, FIRE_AND_FORGET, least-privilege role.

    The stable L1 `CfnPipe` is used: the L2 pipes modules are still alpha pre-releases.
    See INVOCATION_TYPE for why failures reach the dead-letter queue exactly once.

    Attributes: `pipe`, `role`, `log_group`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env_name: str,
        queue: sqs.IQueue,
        queue_key: kms.IKey | None,
        state_machine: sfn.IStateMachine,
        enabled: bool,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            log_group_name=vended_log_group_name("pipes", env_name, "trigger"),
            retention=log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal(
                "pipes.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}},
            ),
            description="healthflow trigger pipe: read the trigger queue, start executions",
        )
        # Each grant names its one resource and the exact actions: no wildcard anywhere.
        statements = [
            iam.PolicyStatement(
                actions=["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                resources=[queue.queue_arn],
            ),
            iam.PolicyStatement(
                actions=["states:StartExecution"], resources=[state_machine.state_machine_arn]
            ),
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn],
            ),
        ]
        if queue_key is not None:
            statements.append(
                iam.PolicyStatement(actions=["kms:Decrypt"], resources=[queue_key.key_arn])
            )
        for statement in statements:
            self.role.add_to_principal_policy(statement)

        self.pipe = pipes.CfnPipe(
            self,
            "Pipe",
            description=f"healthflow {env_name}: trigger queue -> state machine",
            role_arn=self.role.role_arn,
            source=queue.queue_arn,
            source_parameters=pipes.CfnPipe.PipeSourceParametersProperty(
                sqs_queue_parameters=pipes.CfnPipe.PipeSourceSqsQueueParametersProperty(
                    batch_size=1
                )
            ),
            target=state_machine.state_machine_arn,
            target_parameters=pipes.CfnPipe.PipeTargetParametersProperty(
                step_function_state_machine_parameters=pipes.CfnPipe.PipeTargetStateMachineParametersProperty(
                    invocation_type=INVOCATION_TYPE
                )
            ),
            desired_state="RUNNING" if enabled else "STOPPED",
            # ERROR level without execution data: the payload is a trigger, but logs are not
            # where message bodies belong.
            log_configuration=pipes.CfnPipe.PipeLogConfigurationProperty(
                level="ERROR",
                cloudwatch_logs_log_destination=pipes.CfnPipe.CloudwatchLogsLogDestinationProperty(
                    log_group_arn=self.log_group.log_group_arn
                ),
            ),
        )
        # The role's policy must exist before the pipe validates its source and target.
        self.pipe.node.add_dependency(self.role)
