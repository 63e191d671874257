"""SSM parameters a backend and the CLI read: where to send triggers, whether to send them,
and (for `healthflow ... --target aws --env NAME`) the state machines and the dead-letter queue.
The names are the ones `tasks.aws.PARAMETER_NAMES` reads (a synth test keeps them equal)."""

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
        addresses: dict[str, tuple[str, str]] | None = None,
    ) -> None:
        """`addresses`: more parameters, name under the prefix -> (value, description)."""
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
        self.addresses: list[ssm.StringParameter] = [
            ssm.StringParameter(
                self,
                "".join(part.capitalize() for part in name.split("-")),
                parameter_name=f"{parameter_prefix}/{name}",
                string_value=value,
                description=f"healthflow: {description}",
            )
            for name, (value, description) in (addresses or {}).items()
        ]

    def grant_read(self, grantee: iam.IGrantable) -> None:
        self.queue_url.grant_read(grantee)
        self.enabled.grant_read(grantee)
        for parameter in self.addresses:
            parameter.grant_read(grantee)
