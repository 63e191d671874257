"""The producer client backends use to trigger processing after an upload.

It keeps the old API's three calls and its enabled switch, and sends only messages that follow
the message contract (validated before sending, so a backend bug fails in the backend).
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any, Literal, Protocol

from tasks.steps.models import DateRange, JobType, TriggerMessage

LOG = logging.getLogger(__name__)


class MessageSink(Protocol):
    def send(self, body: str) -> str:
        """Queue one message body; return its message id."""
        ...


class SqsSink:
    def __init__(self, queue_url: str, sqs_client: Any) -> None:
        self.queue_url = queue_url
        self._sqs = sqs_client

    def send(self, body: str) -> str:
        return str(self._sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)["MessageId"])


class TriggerClient:
    def __init__(self, sink: MessageSink, *, enabled: bool = True) -> None:
        self._sink = sink
        self.enabled = enabled

    def send(
        self,
        job_type: JobType,
        user_id: int,
        *,
        priority: Literal["normal", "high"] = "normal",
        reprocess: tuple[date, date] | None = None,
    ) -> str | None:
        """Send one trigger; None when the switch is off (nothing is sent)."""
        message = TriggerMessage(
            job_type=job_type,
            user_id=user_id,
            priority=priority,
            reprocess=DateRange(**{"from": reprocess[0], "to": reprocess[1]})
            if reprocess
            else None,
        )
        if not self.enabled:
            LOG.info("triggers disabled; not sending %s for user %s", job_type, user_id)
            return None
        return self._sink.send(message.to_json_body())

    def send_lab_processing_trigger(self, user_id: int, **kwargs: Any) -> str | None:
        return self.send("process_pending_labs", user_id, **kwargs)

    def send_vitals_processing_trigger(self, user_id: int, **kwargs: Any) -> str | None:
        return self.send("process_pending_vitals", user_id, **kwargs)

    def send_nutrition_processing_trigger(self, user_id: int, **kwargs: Any) -> str | None:
        return self.send("process_pending_nutrition", user_id, **kwargs)


def aws_trigger_client() -> TriggerClient:
    """A client for the deployed queue, configured from settings (fails loudly if unset)."""
    import boto3

    from tasks.settings import get_settings

    settings = get_settings()
    sqs = boto3.client("sqs", region_name=settings.aws_region)
    return TriggerClient(SqsSink(settings.require("queue_url"), sqs), enabled=settings.enabled)
