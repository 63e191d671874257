"""Alarms and a dashboard: the signals an operator acts on, and nothing that pages for noise."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct


class Monitoring(Construct):
    """Three alarms (each bills $0.10 a month, idle or not), an optional dashboard ($3 a month,
    off by default) and optionally a KMS-encrypted SNS topic as the alarm action.

    Every failure inside either workflow ends in the dead-letter queue, so the DLQ alarm covers
    them all once (the labs child's Task timeouts are caught and sent there too); the other two
    watch what cannot reach the DLQ: a trigger the pipe does not move, and an Express execution
    cut at its 5-minute limit (an execution timeout skips the Catch).

    Attributes: `alarms` (name -> alarm), `dashboard` (or None), `topic` (or None).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env_name: str,
        queue: sqs.IQueue,
        dead_letter_queue: sqs.IQueue,
        state_machine: sfn.StateMachine,
        labs_state_machine: sfn.StateMachine,
        steps_function: lambda_.IFunction,
        oldest_message_age_threshold: Duration,
        create_topic: bool,
        alarm_email: str | None = None,
        dashboard: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic: sns.Topic | None = None
        if create_topic or alarm_email:
            self.topic = self._create_topic(env_name=env_name, alarm_email=alarm_email)
        five_minutes = Duration.minutes(5)
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        self._alarm(
            "DeadLetterQueueNotEmpty",
            metric=dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=five_minutes, statistic="Maximum"
            ),
            threshold=0,
            description="Messages in the healthflow DLQ: `healthflow dlq list`, fix, redrive.",
        )
        self._alarm(
            "OldestTriggerTooOld",
            metric=queue.metric_approximate_age_of_oldest_message(
                period=five_minutes, statistic="Maximum"
            ),
            threshold=oldest_message_age_threshold.to_seconds(),
            description="Triggers wait in the queue: is the pipe stopped or failing?",
        )
        self._alarm(
            "ExpressExecutionsTimedOut",
            metric=state_machine.metric_timed_out(period=five_minutes, statistic="Sum"),
            threshold=0,
            description="An Express execution hit its time limit: no DLQ record was written; "
            "the message's rows stay claimed until the next message for that user takes over.",
        )
        self.dashboard: cloudwatch.Dashboard | None = None
        if dashboard:
            self.dashboard = self._dashboard(
                env_name=env_name,
                queue=queue,
                dead_letter_queue=dead_letter_queue,
                machines=(state_machine, labs_state_machine),
                steps_function=steps_function,
            )

    def _create_topic(self, *, env_name: str, alarm_email: str | None) -> sns.Topic:
        key = kms.Key(
            self,
            "AlarmTopicKey",
            description=f"healthflow {env_name}: alarm topic",
            enable_key_rotation=True,
        )
        # CloudWatch publishes alarm notifications to the encrypted topic with this key.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],  # "*" in a key policy means this key itself
            )
        )
        topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name=f"healthflow {env_name} alarms",
            master_key=key,
            enforce_ssl=True,
        )
        if alarm_email:
            topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        return topic

    def _alarm(
        self, name: str, *, metric: cloudwatch.IMetric, threshold: float, description: str
    ) -> None:
        alarm = cloudwatch.Alarm(
            self,
            name,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        if self.topic is not None:
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.topic))
            alarm.add_ok_action(cloudwatch_actions.SnsAction(self.topic))
        self.alarms[name] = alarm

    def _dashboard(
        self,
        *,
        env_name: str,
        queue: sqs.IQueue,
        dead_letter_queue: sqs.IQueue,
        machines: tuple[sfn.StateMachine, sfn.StateMachine],
        steps_function: lambda_.IFunction,
    ) -> cloudwatch.Dashboard:
        dashboard = cloudwatch.Dashboard(self, "Dashboard")
        dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(
                title="Alarms", alarms=list(self.alarms.values()), width=24, height=3
            )
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Trigger queue",
                left=[
                    queue.metric_number_of_messages_sent(statistic="Sum"),
                    queue.metric_approximate_number_of_messages_visible(statistic="Maximum"),
                    dead_letter_queue.metric_approximate_number_of_messages_visible(
                        statistic="Maximum"
                    ),
                ],
                right=[queue.metric_approximate_age_of_oldest_message(statistic="Maximum")],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Executions (Express parent, Standard labs)",
                left=[
                    metric
                    for machine in machines
                    for metric in (
                        machine.metric_started(statistic="Sum"),
                        machine.metric_failed(statistic="Sum"),
                        machine.metric_timed_out(statistic="Sum"),
                    )
                ],
                width=12,
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Steps Lambda",
                left=[
                    steps_function.metric_invocations(statistic="Sum"),
                    steps_function.metric_errors(statistic="Sum"),
                    steps_function.metric_throttles(statistic="Sum"),
                ],
                right=[steps_function.metric_duration(statistic="p90")],
                width=24,
            ),
        )
        return dashboard
