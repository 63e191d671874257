"""Alarms and a dashboard: the signals an operator acts on, and nothing that pages for noise."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

METRIC_NAMESPACE = "Healthflow"
ECS_TASK_FAILURES_METRIC = "EcsTaskFailures"


class Monitoring(Construct):
    """Alarms (DLQ depth, oldest message age, failed/timed-out executions, ECS step failures,
    Lambda errors), a dashboard, and optionally a KMS-encrypted SNS topic as the alarm action.

    Attributes: `alarms` (name -> alarm), `dashboard`, `topic` (None unless requested).
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
        state_machine_log_group: logs.ILogGroup,
        steps_function: lambda_.IFunction,
        oldest_message_age_threshold: Duration,
        create_topic: bool,
        alarm_email: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic: sns.Topic | None = None
        if create_topic or alarm_email:
            self.topic = self._create_topic(env_name=env_name, alarm_email=alarm_email)

        # ECS step failures: the state machine's ERROR-level log has one TaskFailed,
        # TaskTimedOut or TaskSubmitFailed event per failed Task state, with the integration's
        # resource type ("ecs"); no health data is in these events.
        ecs_failures_filter = logs.MetricFilter(
            self,
            "EcsTaskFailuresFilter",
            log_group=state_machine_log_group,
            metric_namespace=METRIC_NAMESPACE,
            metric_name=ECS_TASK_FAILURES_METRIC,
            dimensions=None,
            filter_pattern=logs.FilterPattern.all(
                logs.FilterPattern.any(
                    logs.FilterPattern.string_value("$.type", "=", "TaskFailed"),
                    logs.FilterPattern.string_value("$.type", "=", "TaskTimedOut"),
                    # RunTask refused, e.g. no Spot capacity (before the FARGATE fallback).
                    logs.FilterPattern.string_value("$.type", "=", "TaskSubmitFailed"),
                ),
                logs.FilterPattern.string_value("$.details.resourceType", "=", "ecs"),
            ),
            metric_value="1",
            default_value=0,
        )
        five_minutes = Duration.minutes(5)
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        self._alarm(
            "DeadLetterQueueNotEmpty",
            metric=dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=five_minutes, statistic="Maximum"
            ),
            threshold=0,
            description="Messages in the healthflow DLQ: inspect, fix, then redrive (README).",
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
            "ExecutionsFailed",
            metric=state_machine.metric_failed(period=five_minutes, statistic="Sum"),
            threshold=0,
            description="healthflow executions failed (each one also sent a DLQ message).",
        )
        self._alarm(
            "ExecutionsTimedOut",
            metric=state_machine.metric_timed_out(period=five_minutes, statistic="Sum"),
            threshold=0,
            description="healthflow executions timed out.",
        )
        self._alarm(
            "EcsStepFailures",
            metric=ecs_failures_filter.metric(period=five_minutes, statistic="Sum"),
            threshold=0,
            description="The ml-worker (ECS) step failed or timed out, Spot fallbacks included.",
        )
        self._alarm(
            "StepsFunctionErrors",
            metric=steps_function.metric_errors(period=five_minutes, statistic="Sum"),
            threshold=0,
            description="The steps Lambda raised (domain errors included: see the execution).",
        )
        self.dashboard = self._dashboard(
            env_name=env_name,
            queue=queue,
            dead_letter_queue=dead_letter_queue,
            state_machine=state_machine,
            steps_function=steps_function,
            ecs_failures=ecs_failures_filter.metric(period=five_minutes, statistic="Sum"),
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
        state_machine: sfn.StateMachine,
        steps_function: lambda_.IFunction,
        ecs_failures: cloudwatch.IMetric,
    ) -> cloudwatch.Dashboard:
        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"healthflow-{env_name}")
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
                title="Executions",
                left=[
                    state_machine.metric_started(statistic="Sum"),
                    state_machine.metric_succeeded(statistic="Sum"),
                    state_machine.metric_failed(statistic="Sum"),
                    state_machine.metric_timed_out(statistic="Sum"),
                ],
                right=[state_machine.metric_time(statistic="p90")],
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
                width=12,
            ),
            cloudwatch.GraphWidget(title="ml-worker step failures", left=[ecs_failures], width=12),
        )
        return dashboard
