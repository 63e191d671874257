"""Structured logs and business metrics of the steps Lambda and the ml-worker (data-free).

Logs: one JSON object per line (Powertools for AWS Lambda's Logger), every line of the ``tasks``
package carrying the execution name, the state and the step it runs for, so a Logs Insights query
`filter execution = "msg-..."` gives one execution's story across the Lambda and the container.
The keys are per thread: the local cloud runs executions in threads.

Metrics: CloudWatch embedded metric format (EMF) lines, which CloudWatch Logs turns into metrics
in namespace ``healthflow`` without an API call: rows claimed, buckets recomputed, names left
uncategorized, rows rejected, taken from the counts in a step's output. Only counts: a metric
never carries an id or a value. (EMF lines from Lambda become metrics as they are; from ECS,
CloudWatch keeps them as queryable log lines.) ``HEALTHFLOW_METRICS=false`` turns them off: each
custom metric costs $0.30 a month for the hours it is written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from typing import IO, Any

SERVICE = "healthflow"
NAMESPACE = "healthflow"
PACKAGE_LOGGER = "tasks"
CONTEXT_KEYS = ("execution", "state", "step")

#: Output count field -> metric name. Counts only: nothing else of an output becomes a metric.
BUSINESS_METRICS: dict[str, str] = {
    "claimed": "RowsClaimed",
    "buckets": "BucketsRecomputed",
    "uncategorized": "NamesUncategorized",
    "rejected": "RowsRejected",
    # Recovery: rows taken over from a claim whose execution is gone, failed rows retried, and
    # rows set aside after their last attempt (the alarm's metric).
    "taken_over": "RowsTakenOver",
    "retried": "RowsRetried",
    "set_aside": "RowsSetAside",
}

_logger: Any = None


def configure_json_logging(stream: IO[str] | None = None, level: str = "INFO") -> Any:
    """Route the ``tasks`` package's log records through one Powertools JSON handler."""
    global _logger
    from aws_lambda_powertools import Logger

    # One Logger per process: a second one for the same service would share the first one's
    # state half-initialized. Reconfiguring points its handler at the new stream.
    if _logger is None:
        _logger = Logger(service=SERVICE, logger_handler=logging.StreamHandler(), level=level)
    # Not setStream(): it flushes the old stream, which a test may have closed.
    _logger.registered_handler.stream = stream or sys.stdout
    package = logging.getLogger(PACKAGE_LOGGER)
    package.handlers = [_logger.registered_handler]
    package.setLevel(level)
    package.propagate = False  # the runtime's root handler would print each line twice
    return _logger


@contextlib.contextmanager
def step_context(execution: str | None, state: str | None, step: str) -> Iterator[None]:
    """Every log line inside carries these three keys (null when the caller did not say)."""
    if _logger is None:
        yield
        return
    _logger.thread_safe_append_keys(execution=execution, state=state, step=step)
    try:
        yield
    finally:
        _logger.thread_safe_remove_keys(CONTEXT_KEYS)


def business_counts(output: Any) -> dict[str, int]:
    """The counts of a step's output that are business metrics (ints only, never bools)."""
    if not isinstance(output, Mapping):
        return {}
    return {
        BUSINESS_METRICS[key]: value
        for key, value in output.items()
        if key in BUSINESS_METRICS and isinstance(value, int) and not isinstance(value, bool)
    }


def emf_record(counts: Mapping[str, int], step: str) -> dict[str, Any] | None:
    """One EMF document for these counts (dimensions: service and step), or None if empty."""
    if not counts:
        return None
    from aws_lambda_powertools.metrics import MetricUnit
    from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
        AmazonCloudWatchEMFProvider,
    )

    provider = AmazonCloudWatchEMFProvider(
        namespace=NAMESPACE,
        service=SERVICE,
        metric_set={},
        dimension_set={},
        metadata_set={},
        default_dimensions={},
    )
    provider.add_dimension(name="step", value=step)
    for name, value in counts.items():
        provider.add_metric(name=name, unit=MetricUnit.Count, value=value)
    return dict(provider.serialize_metric_set())


def emit_metrics(output: Any, step: str, stream: IO[str] | None = None) -> None:
    record = emf_record(business_counts(output), step)
    if record is not None:
        print(json.dumps(record, separators=(",", ":")), file=stream or sys.stdout, flush=True)
