"""SSM parameters a backend reads: where to send triggers and whether to send them at all."""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_ssm as ssm
from constructs import Construct


class RuntimeParameters(Construct):
    """`/healthflow/<env>/trigger-queue-url` and `/healthflow/<env>/enabled` ("true"/"false").

    A backend checks `enabled` before sending (the pipe's desired state follows the same context
    value, so an operator flips both with one deploy). Attributes: `queue_url`, `enabled`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        parameter_prefix: str,
        queue_url: str,
        enabled: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self.queue_url = ssm.StringParameter(
            self,
            "TriggerQueueUrl",
            parameter_name=f"{parameter_prefix}/trigger-queue-url",
            string_value=queue_url,
            description="healthflow: URL of the SQS queue that backends send triggers to",
        )
        self.enabled = ssm.StringParameter(
            self,
            "Enabled",
            parameter_name=f"{parameter_prefix}/enabled",
            string_value="true" if enabled else "false",
            description="healthflow: whether backends should send triggers (true/false)",
        )

    def grant_read(self, grantee: iam.IGrantable) -> None:
        self.queue_url.grant_read(grantee)
        self.enabled.grant_read(grantee)
