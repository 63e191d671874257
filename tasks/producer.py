"""The producer client backends use to trigger processing after an upload.

It keeps the old API's three calls and its enabled switch, and sends only messages that follow
the message contract (validated before sending, so a backend bug fails in the backend).

``TriggerClient()`` with no arguments configures itself from the environment, under the seed
system's names or healthflow's own (README, "Moving from an SQS worker"):

- ``ML_WORKER_ENABLED`` / ``HEALTHFLOW_ENABLED``: the switch. Off, the client sends nothing,
  makes no AWS call and needs no other setting.
- ``ML_WORKER_SQS_QUEUE_URL`` / ``HEALTHFLOW_QUEUE_URL``: the queue; else ``HEALTHFLOW_ENV``
  names a deployed stack whose SSM parameters hold it.
- ``AWS_REGION``: the region (else boto3's default chain).

For a deployed stack the SSM parameter ``/healthflow/<env>/enabled`` is a second switch that an
operator flips without redeploying the backend; its value is cached for
``HEALTHFLOW_ENABLED_CACHE_SECONDS`` (one read a minute, not one per upload).

This module is imported by the app's backend: it imports nothing heavy (boto3 only once a
client that is switched on is built, no database driver).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import date
from typing import Any, Literal, Protocol

from tasks.settings import MissingSetting, Settings
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


class SsmSwitch:
    """An enabled flag read from an SSM parameter, cached for ``ttl_seconds``.

    When SSM cannot be read the last value read stays in force (at first, ``default``): a trigger
    sent while processing is off only waits in the queue, and a trigger not sent leaves the rows
    pending for the next one, so neither choice loses data; keeping the last known state is what
    the operator last asked for.
    """

    def __init__(
        self,
        ssm_client: Any,
        parameter: str,
        *,
        ttl_seconds: float = 60.0,
        default: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ssm = ssm_client
        self.parameter = parameter
        self._ttl = ttl_seconds
        self._clock = clock
        self._value = default
        self._read_at: float | None = None
        self._lock = threading.Lock()

    def __call__(self) -> bool:
        from tasks.aws import read_flag

        with self._lock:
            now = self._clock()
            if self._read_at is not None and now - self._read_at < self._ttl:
                return self._value
            try:
                value = self._ssm.get_parameter(Name=self.parameter)["Parameter"]["Value"]
            except Exception as exc:  # throttling, a missing parameter, no network
                LOG.warning(
                    "cannot read %s (%s); keeping enabled=%s",
                    self.parameter,
                    type(exc).__name__,
                    self._value,
                )
            else:
                self._value = read_flag(value)
            self._read_at = now
            return self._value


#: What the producer's errors tell a backend to set (the seed's names first: that is what a
#: backend moving over already has).
QUEUE_SETTINGS = (
    "ML_WORKER_SQS_QUEUE_URL (or HEALTHFLOW_QUEUE_URL), or HEALTHFLOW_ENV to read the queue URL "
    "from the deployed stack's SSM parameters; ML_WORKER_ENABLED=false sends nothing"
)


class TriggerClient:
    """Sends trigger messages.

    ``TriggerClient()`` reads the environment (see the module's docstring). Tests and the CLI
    pass a ``sink`` instead; ``enabled`` is then a flag or a callable asked before each send.
    """

    def __init__(
        self,
        sink: MessageSink | None = None,
        *,
        enabled: bool | Callable[[], bool] | None = None,
        settings: Settings | None = None,
    ) -> None:
        if sink is None:
            sink, enabled = _configured(settings, enabled)
        self._sink: MessageSink | None = sink
        self._enabled: bool | Callable[[], bool] = True if enabled is None else enabled

    @property
    def enabled(self) -> bool:
        return self._enabled() if callable(self._enabled) else self._enabled

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
        if self._sink is None or not self.enabled:
            LOG.info("triggers disabled; not sending %s for user %s", job_type, user_id)
            return None
        return self._sink.send(message.to_json_body())

    def send_lab_processing_trigger(self, user_id: int, **kwargs: Any) -> str | None:
        return self.send("process_pending_labs", user_id, **kwargs)

    def send_vitals_processing_trigger(self, user_id: int, **kwargs: Any) -> str | None:
        return self.send("process_pending_vitals", user_id, **kwargs)

    def send_nutrition_processing_trigger(self, user_id: int, **kwargs: Any) -> str | None:
        return self.send("process_pending_nutrition", user_id, **kwargs)


def _configured(
    settings: Settings | None, enabled: bool | Callable[[], bool] | None
) -> tuple[MessageSink | None, bool | Callable[[], bool] | None]:
    """The sink and switch the environment describes; no sink (no AWS call) when it is off."""
    from tasks.settings import get_settings

    if enabled is False:
        return None, False
    settings = settings or get_settings()
    if enabled is None and not settings.enabled:
        return None, False
    client = aws_trigger_client(settings)
    return client._sink, enabled if enabled is not None else client._enabled


def aws_trigger_client(settings: Any = None, *, sqs: Any = None, ssm: Any = None) -> TriggerClient:
    """A client for the deployed queue, configured from settings (fails loudly if unset).

    The queue URL is ``HEALTHFLOW_QUEUE_URL`` (or the seed's ``ML_WORKER_SQS_QUEUE_URL``), else
    the SSM parameter of ``HEALTHFLOW_ENV``; the region is ``AWS_REGION`` or boto3's default.
    With the switch off nothing is read and nothing is required.
    """
    from tasks.settings import get_settings

    settings = settings or get_settings()
    if not settings.enabled:
        return TriggerClient(None, enabled=False)
    if not (settings.queue_url or settings.env):
        raise MissingSetting(f"the producer needs a queue: set {QUEUE_SETTINGS}")

    from tasks.aws import client, parameter_name, stack_addresses

    if settings.env and ssm is None:
        ssm = client("ssm", settings)
    addresses = stack_addresses(settings, ssm=ssm)
    queue_url = addresses.require("queue_url")
    enabled: bool | Callable[[], bool] = settings.enabled
    flag_parameter = settings.enabled_parameter or (
        parameter_name(settings.env, "enabled") if settings.env else None
    )
    if flag_parameter:
        enabled = SsmSwitch(
            ssm or client("ssm", settings),
            flag_parameter,
            ttl_seconds=settings.enabled_cache_seconds,
        )
    return TriggerClient(SqsSink(queue_url, sqs or client("sqs", settings)), enabled=enabled)
