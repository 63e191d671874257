"""Alarms, an execution-event rule and a dashboard: the signals an operator acts on, and nothing
that pages for noise."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jsii
from aws_cdk import Annotations, Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from healthflow_infra.nag import acknowledge

#: What an Express machine's executions alarm on: every way one ends other than success (an
#: Express execution cannot be aborted). Standard machines page through the status-change rule.
EXPRESS_FAILURE_METRICS = ("ExecutionsFailed", "ExecutionsTimedOut")

#: The statuses of a Standard execution's status-change event that page (every end but success).
FAILED_EXECUTION_STATUSES = ("FAILED", "TIMED_OUT", "ABORTED")
EXECUTION_STATUS_CHANGE = "Step Functions Execution Status Change"


class Monitoring(Construct):
    """Alarms (each metric in an alarm bills $0.10 a month, idle or not), an EventBridge rule on
    the Standard machines' execution events (bills nothing), an SNS topic both notify (bills
    nothing while idle), an optional dashboard ($3 a month, off by default).

    The dead-letter queue alarm pages for every failure that wrote a dead letter; every state
    machine pages for every execution that ended failed, timed out or aborted, including those
    that wrote none: an Express execution cut at its time limit (the Catch never runs),
    `States.Runtime` and `States.DataLimitExceeded` (which `States.ALL` does not catch), a
    failing SendToDeadLetterQueue. A failure that did write a dead letter shows in both, once in
    each. The queue-age alarm pages for a pipe that moves nothing.

    How a machine pages depends on its type. Standard executions emit an "Execution Status
    Change" event to the default event bus; Express executions emit none ("Only standard
    workflows emit events to EventBridge",
    https://docs.aws.amazon.com/step-functions/latest/dg/eventbridge-integration.html). Events
    from AWS services are ingested free and delivered free within the account, and a rule bills
    nothing ("AWS management events are ingested by the event bus for free",
    https://aws.amazon.com/eventbridge/pricing/), so the Standard machines page through one rule
    (`execution_rule`) at $0 instead of three alarm metrics each ($0.30 a month); an Express
    machine keeps its metric-math alarm. Step Functions delivers these events on a best-effort
    basis (https://docs.aws.amazon.com/eventbridge/latest/ref/event-delivery-level.html: "in
    some rare cases an event might not be delivered"); EventBridge then retries the topic for
    24 hours. Rows such an execution left claimed are re-driven by the claim sweep all the same.

    Attributes: `alarms` (name -> alarm), `execution_rule` (or None without a Standard
    machine), `dashboard` (or None), `topic`, `topic_key` (or None).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env_name: str,
        queue: sqs.IQueue,
        dead_letter_queue: sqs.IQueue,
        machines: Mapping[str, tuple[sfn.StateMachine, sfn.StateMachineType]],
        steps_function: lambda_.IFunction,
        oldest_message_age_threshold: Duration,
        topic_key: bool = False,
        alarm_email: str | None = None,
        dashboard: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic_key: kms.Key | None = None
        self.topic = self._create_topic(env_name=env_name, with_key=topic_key)
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        else:
            Annotations.of(self).add_warning_v2(
                "healthflow:alarmsNotifyNobody",
                "The alarms notify an SNS topic nobody subscribes to: set "
                "-c healthflow:alarmEmail=you@example.com, or subscribe to the AlarmTopic "
                "output's topic yourself.",
            )
        five_minutes = Duration.minutes(5)
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        self._alarm(
            "DeadLetterQueueNotEmpty",
            metric=dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=five_minutes, statistic="Maximum"
            ),
            threshold=0,
            description="Messages in the healthflow DLQ: `healthflow dlq list`, fix, "
            "`healthflow dlq redrive`.",
        )
        self._alarm(
            "OldestTriggerTooOld",
            metric=queue.metric_approximate_age_of_oldest_message(
                period=five_minutes, statistic="Maximum"
            ),
            threshold=oldest_message_age_threshold.to_seconds(),
            description="Triggers wait in the queue: is the pipe stopped or failing?",
        )
        standard = [m for m, t in machines.values() if t == sfn.StateMachineType.STANDARD]
        for name, (machine, machine_type) in machines.items():
            if machine_type == sfn.StateMachineType.STANDARD:
                continue
            self._alarm(
                f"{name}ExecutionsFailed",
                metric=execution_failures(machine, five_minutes),
                threshold=0,
                description=f"A {name} execution failed or timed out. {WHAT_TO_DO}",
            )
        self._let_alarms_publish()
        self.execution_rule: events.Rule | None = None
        if standard:
            self.execution_rule = self._execution_rule(env_name=env_name, machines=standard)
        self.dashboard: cloudwatch.Dashboard | None = None
        if dashboard:
            self.dashboard = self._dashboard(
                env_name=env_name,
                queue=queue,
                dead_letter_queue=dead_letter_queue,
                machines=tuple(machine for machine, _ in machines.values()),
                steps_function=steps_function,
            )

    def _let_alarms_publish(self) -> None:
        """The topic policy (TLS enforcement) replaces SNS's default policy, which let the
        account's principals publish; without an Allow, CloudWatch's alarm actions fail with
        "not authorized to perform: SNS:Publish"
        (https://repost.aws/knowledge-center/cloudwatch-receive-sns-for-alarm-trigger).
        Scoped to these alarms by aws:SourceArn, as that article shows."""
        self._let_publish(
            "AlarmsPublish",
            "cloudwatch.amazonaws.com",
            [alarm.alarm_arn for alarm in self.alarms.values()],
        )

    def _let_publish(self, sid: str, service: str, source_arns: str | list[str]) -> None:
        """Allow `service` to publish to the topic for `source_arns` only."""
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid=sid,
                principals=[iam.ServicePrincipal(service)],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={"ArnEquals": {"aws:SourceArn": source_arns}},
            )
        )

    def _execution_rule(
        self, *, env_name: str, machines: Sequence[sfn.StateMachine]
    ) -> events.Rule:
        """The default bus's rule for the Standard machines' failed, timed-out and aborted
        executions, notifying the topic with what an operator needs and nothing more: the
        event's detail also carries the execution's input and output (ids and counts, but not
        needed to act), so an input transformer picks the machine, the execution and its
        status."""
        rule = events.Rule(
            self,
            "StandardExecutionsFailed",
            description=f"healthflow {env_name}: a Standard execution failed, timed out or was "
            "aborted",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=[EXECUTION_STATUS_CHANGE],
                detail={
                    "status": list(FAILED_EXECUTION_STATUSES),
                    "stateMachineArn": [m.state_machine_arn for m in machines],
                },
            ),
        )
        detail = events.EventField.from_path
        rule.add_target(
            _TopicTarget(
                self.topic,
                events.RuleTargetInput.from_object({
                    "stateMachineArn": detail("$.detail.stateMachineArn"),
                    "executionName": detail("$.detail.name"),
                    "executionArn": detail("$.detail.executionArn"),
                    "status": detail("$.detail.status"),
                    "whatToDo": WHAT_TO_DO,
                }),
            )
        )  # fmt: skip
        # The rule's target is this topic alone (no role): the topic policy lets EventBridge
        # publish for this rule only (aws:SourceArn is the rule that sends the event,
        # https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-conditions.html).
        self._let_publish("ExecutionRulePublishes", "events.amazonaws.com", rule.rule_arn)
        self._let_publish_with_key("events.amazonaws.com")
        return rule

    def _let_publish_with_key(self, service: str) -> None:
        """A service that publishes to the encrypted topic must be allowed to use its key:
        kms:GenerateDataKey and kms:Decrypt for `service`, as
        https://repost.aws/knowledge-center/sns-not-getting-eventbridge-notification shows for
        EventBridge (and the SNS guide for CloudWatch alarms). "*" in a key policy means this
        key itself, which encrypts this topic alone."""
        if self.topic_key is not None:
            self.topic_key.add_to_resource_policy(
                iam.PolicyStatement(
                    principals=[iam.ServicePrincipal(service)],
                    actions=["kms:Decrypt", "kms:GenerateDataKey"],
                    resources=["*"],
                )
            )

    def _create_topic(self, *, env_name: str, with_key: bool) -> sns.Topic:
        # An alarm notification carries the alarm's name and state, never health data, so a
        # customer-managed key ($1 a month) is a switch (healthflow:alarmTopicKey), not the
        # default; TLS is enforced by the topic policy either way.
        if with_key:
            self.topic_key = kms.Key(
                self,
                "AlarmTopicKey",
                description=f"healthflow {env_name}: alarm topic",
                enable_key_rotation=True,
            )
            # CloudWatch publishes alarm notifications to the encrypted topic with this key.
            self._let_publish_with_key("cloudwatch.amazonaws.com")
        topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name=f"healthflow {env_name} alarms",
            master_key=self.topic_key,
            enforce_ssl=True,
        )
        if not with_key:
            acknowledge(
                topic,
                "AwsSolutions-SNS2",
                reason="Alarm notifications hold alarm names and states only, no health data; "
                "the topic policy denies every request without TLS. A customer-managed key "
                "is one switch away (healthflow:alarmTopicKey=true, $1 a month).",
            )
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
        alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.topic))
        alarm.add_ok_action(cloudwatch_actions.SnsAction(self.topic))
        self.alarms[name] = alarm

    def _dashboard(
        self,
        *,
        env_name: str,
        queue: sqs.IQueue,
        dead_letter_queue: sqs.IQueue,
        machines: tuple[sfn.StateMachine, ...],
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


#: What an operator does about a failed execution (the alarm's description, the rule's message).
WHAT_TO_DO = (
    "With a dead letter: `healthflow dlq list`, then `healthflow dlq redrive`. Without one "
    "(time limit, States.Runtime, DataLimitExceeded): the execution's history or log names the "
    "error; its claim is re-driven by the claim sweep once its lease ends."
)


@jsii.implements(events.IRuleTarget)
class _TopicTarget:
    """An SNS topic as a rule's target, without the grant `aws_events_targets.SnsTopic` adds
    (events.amazonaws.com may publish for any rule); the caller scopes the topic policy."""

    def __init__(self, topic: sns.ITopic, message: events.RuleTargetInput) -> None:
        self._topic = topic
        self._message = message

    def bind(self, _rule: events.IRule, _id: str | None = None) -> events.RuleTargetConfig:
        return events.RuleTargetConfig(arn=self._topic.topic_arn, input=self._message)


def execution_failures(machine: sfn.StateMachine, period: Duration) -> cloudwatch.MathExpression:
    """Executions of the Express `machine` that failed or timed out in `period` (missing data
    is zero: the metrics exist only once something happened)."""
    metrics = {
        f"m{index}": machine.metric(name, period=period, statistic="Sum")
        for index, name in enumerate(EXPRESS_FAILURE_METRICS)
    }
    return cloudwatch.MathExpression(
        expression=" + ".join(f"FILL({key}, 0)" for key in metrics),
        using_metrics=metrics,
        period=period,
        label="failed + timed out executions",
    )
