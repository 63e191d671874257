"""Fixtures of the local cloud tests: quiet moto, fake steps, a running LocalCloud."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tasks.localcloud.cloud import LocalCloud
from tasks.localcloud.moto_ext import silence_parser_logs

from .localcloud_fakes import FakeSteps


@pytest.fixture(autouse=True)
def _quiet_moto() -> None:
    silence_parser_logs()
    logging.getLogger("tasks").setLevel(logging.ERROR)


@pytest.fixture
def fake_steps() -> FakeSteps:
    return FakeSteps()


@pytest.fixture
def cloud(fake_steps: FakeSteps) -> Iterator[LocalCloud]:
    with LocalCloud(run_step=fake_steps, heartbeat_seconds=0.5) as local_cloud:
        yield local_cloud
