"""The claim sweep: an EventBridge Scheduler schedule starts a small Express machine
(`statemachines/sweep.asl.json`) that sends a trigger for every user whose claim outlived its
lease, so rows an execution left claimed are taken over without waiting for the user's next
upload.

Idle cost: at most 730 schedule invocations, Express requests and Lambda calls a month, together
well under a cent at list prices (`healthflow cost` prices them): nothing that bills by the
hour. Each run connects to the database, which holds off a new Aurora's auto-pause; so the
stack sweeps hourly with your database and every 6 hours with a new Aurora
(HealthflowConfig.sweep_interval_hours). A Lambda in the VPC cannot call SQS without a route
out, so the Step Functions service sends the triggers (sqs:sendMessage in the Map), as the
backlog continuation does.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as scheduler_targets
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from healthflow_infra.constructs.workflow import (
    QueueTarget,
    StateMachineFromAsl,
    vended_log_group_name,
)


class ClaimSweep(Construct):
    """Attributes: `state_machine`, `log_group`, `schedule`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env_name: str,
        asl_path: Path,
        steps_function: lambda_.IFunction,
        trigger_queue: sqs.IQueue,
        queue_key: kms.IKey | None,
        interval: Duration,
        log_retention: logs.RetentionDays,
        tracing: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        machine = StateMachineFromAsl(
            self,
            "Machine",
            asl_path=asl_path,
            machine_type=sfn.StateMachineType.EXPRESS,
            substitutions={
                "StepsFunctionArn": steps_function.function_arn,
                "TriggerQueueUrl": trigger_queue.queue_url,
            },
            targets={
                "StepsFunctionArn": steps_function,
                "TriggerQueueUrl": QueueTarget(trigger_queue, queue_key),
            },
            # ALL: an Express execution is visible only through its log; one an hour.
            log_level=sfn.LogLevel.ALL,
            log_retention=log_retention,
            log_group_name=vended_log_group_name("states", env_name, "sweep"),
            tracing=tracing,
        )
        self.state_machine = machine.state_machine
        self.log_group = machine.log_group
        self.schedule = scheduler.Schedule(
            self,
            "Schedule",
            description=f"healthflow {env_name}: re-drive claims whose lease is over",
            schedule=scheduler.ScheduleExpression.rate(interval),
            target=scheduler_targets.StepFunctionsStartExecution(
                self.state_machine,
                input=scheduler.ScheduleTargetInput.from_object({}),
                # A missed hour is made up by the next one: no retries, no dead letters.
                retry_attempts=0,
            ),
        )
