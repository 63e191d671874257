"""The trigger queue a backend writes to, and the dead-letter queue behind it."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from healthflow_infra.nag import acknowledge


class TriggerQueue(Construct):
    """SQS trigger queue + DLQ, both encrypted with one customer-managed key, SSL only.

    Attributes: `key`, `queue`, `dead_letter_queue`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env_name: str,
        max_receive_count: int = 3,
        queue_retention_hours: int = 24,
        dead_letter_retention_days: int = 14,
        visibility_timeout_seconds: int = 300,
    ) -> None:
        super().__init__(scope, construct_id)
        # A customer-managed key (not SQS-managed SSE) so that key policy and CloudTrail show who
        # decrypts trigger messages; rotation costs nothing extra.
        self.key = kms.Key(
            self,
            "Key",
            description=f"healthflow {env_name}: trigger queue and dead-letter queue",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        # 14 days (the SQS maximum) gives an operator two weekends to look at failures.
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.key,
            enforce_ssl=True,
            retention_period=Duration.days(dead_letter_retention_days),
        )
        # A trigger older than a day is stale: the next upload sends a fresh one, and claims
        # pick up every pending row of the user anyway.
        self.queue = sqs.Queue(
            self,
            "Queue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.key,
            enforce_ssl=True,
            retention_period=Duration.hours(queue_retention_hours),
            # The pipe holds a message only until StartExecution returns (FIRE_AND_FORGET).
            visibility_timeout=Duration.seconds(visibility_timeout_seconds),
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=max_receive_count, queue=self.dead_letter_queue
            ),
        )
        acknowledge(
            self.dead_letter_queue,
            "AwsSolutions-SQS3",
            reason="This queue is itself the dead-letter queue of the trigger queue.",
        )
