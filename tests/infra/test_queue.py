"""TriggerQueue: SQS-managed encryption (a customer key as a switch), SSL only, bounded
redrive, retention."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match, Template
from healthflow_infra.constructs.queue import TriggerQueue

DAY = 24 * 3600


@pytest.fixture(scope="module")
def template() -> Template:
    from aws_cdk import App, Stack

    stack = Stack(App(), "Bare")
    TriggerQueue(stack, "TriggerQueue", env_name="test")
    return Template.from_stack(stack)


def test_both_queues_use_sqs_managed_encryption_by_default(template: Template) -> None:
    template.resource_count_is("AWS::KMS::Key", 0)
    queues = template.find_resources(
        "AWS::SQS::Queue", {"Properties": {"SqsManagedSseEnabled": True}}
    )
    assert len(queues) == 2


def test_customer_key_switch_encrypts_both_queues_with_a_rotated_key() -> None:
    from aws_cdk import App, Stack

    stack = Stack(App(), "Bare")
    TriggerQueue(stack, "TriggerQueue", env_name="test", customer_managed_key=True)
    template = Template.from_stack(stack)
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    key_arn = {"Fn::GetAtt": [Match.any_value(), "Arn"]}
    queues = template.find_resources("AWS::SQS::Queue", {"Properties": {"KmsMasterKeyId": key_arn}})
    assert len(queues) == 2


def test_queue_keeps_triggers_a_day_and_redrives_after_bounded_receives(template: Template) -> None:
    template.has_resource_properties(
        "AWS::SQS::Queue",
        {
            "MessageRetentionPeriod": DAY,
            "RedrivePolicy": {
                "deadLetterTargetArn": {"Fn::GetAtt": [Match.any_value(), "Arn"]},
                "maxReceiveCount": 3,
            },
        },
    )


def test_dead_letter_queue_keeps_messages_fourteen_days(template: Template) -> None:
    template.has_resource_properties(
        "AWS::SQS::Queue",
        {"MessageRetentionPeriod": 14 * DAY, "RedrivePolicy": Match.absent()},
    )


def test_both_queues_deny_requests_without_tls(template: Template) -> None:
    policies = template.find_resources(
        "AWS::SQS::QueuePolicy",
        {
            "Properties": {
                "PolicyDocument": {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {
                                    "Effect": "Deny",
                                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                                }
                            )
                        ]
                    )
                }
            }
        },
    )
    assert len(policies) == 2
