"""The trigger queue a backend writes to, and the dead-letter queue behind it."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from healthflow_infra.nag import acknowledge


class TriggerQueue(Construct):
    """SQS trigger queue + DLQ, encrypted at rest, SSL only.

    SQS-managed encryption (SSE-SQS) by default: it costs nothing, while a customer-managed key
    costs $1 a month plus requests. `customer_managed_key=True` (`-c healthflow:queueCmk=true`)
    uses one KMS key for both queues, for teams that want the key policy and CloudTrail to show
    who decrypts trigger messages.

    Attributes: `key` (None with SQS-managed encryption), `queue`, `dead_letter_queue`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env_name: str,
        customer_managed_key: bool = False,
        max_receive_count: int = 3,
        queue_retention_hours: int = 24,
        dead_letter_retention_days: int = 14,
        visibility_timeout_seconds: int = 300,
    ) -> None:
        super().__init__(scope, construct_id)
        # The longest a message the pipe cannot start stays in the queue before SQS moves it to
        # the dead-letter queue (each receive hides it for the visibility timeout).
        self.seconds_until_dead_letter = max_receive_count * visibility_timeout_seconds
        self.key: kms.Key | None = None
        encryption: dict[str, object] = {"encryption": sqs.QueueEncryption.SQS_MANAGED}
        if customer_managed_key:
            self.key = kms.Key(
                self,
                "Key",
                description=f"healthflow {env_name}: trigger queue and dead-letter queue",
                enable_key_rotation=True,
                removal_policy=RemovalPolicy.RETAIN,
            )
            encryption = {"encryption": sqs.QueueEncryption.KMS, "encryption_master_key": self.key}
        # 14 days (the SQS maximum) gives an operator two weekends to look at failures.
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            **encryption,  # type: ignore[arg-type]
            enforce_ssl=True,
            retention_period=Duration.days(dead_letter_retention_days),
        )
        # A trigger older than a day is stale: the next upload sends a fresh one, and claims
        # pick up every pending row of the user anyway.
        self.queue = sqs.Queue(
            self,
            "Queue",
            **encryption,  # type: ignore[arg-type]
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
