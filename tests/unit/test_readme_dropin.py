"""The README's "Moving from an SQS worker" steps, run as written: the shell blocks through bash,
the Python block against moto's SQS, so that the instructions cannot drift from the code."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from tasks.producer import TriggerClient
from tasks.settings import MissingSetting, get_settings

ROOT = Path(__file__).resolve().parents[2]
MARKED_BLOCK = re.compile(
    r"<!-- drop-in: (?P<name>[\w-]+) -->\s*\n\s*```\w*\n(?P<code>.*?)```", re.S
)
WORKER_NAMES = ("HEALTHFLOW_", "ML_WORKER_", "AWS_")


def readme_blocks() -> dict[str, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Moving from an SQS worker") :]
    section = section[: section.index("\n## ", 1)]
    return {m["name"]: textwrap.dedent(m["code"]) for m in MARKED_BLOCK.finditer(section)}


def shell_environment(*blocks: str) -> dict[str, str]:
    """The variables the shell blocks export, as bash sees them (not parsed by hand)."""
    script = "set -e\n" + "\n".join(blocks) + "\nenv -0\n"
    out = subprocess.run(
        ["bash", "-c", script], env={"PATH": os.environ["PATH"]}, capture_output=True, check=True
    ).stdout.decode()
    pairs = (item.split("=", 1) for item in out.split("\0") if "=" in item)
    return {k: v for k, v in pairs if k.startswith(WORKER_NAMES)}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    for name in list(os.environ):
        if name.startswith(WORKER_NAMES):
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_the_readme_marks_the_three_steps() -> None:
    assert set(readme_blocks()) == {"environment", "send", "switch-off"}


def test_the_readme_steps_send_a_trigger_to_the_queue(clean_env: pytest.MonkeyPatch) -> None:
    blocks = readme_blocks()
    environment = shell_environment(blocks["environment"])
    assert set(environment) == {"ML_WORKER_ENABLED", "ML_WORKER_SQS_QUEUE_URL", "AWS_REGION"}
    for name, value in environment.items():
        clean_env.setenv(name, value)
    clean_env.setenv("AWS_ACCESS_KEY_ID", "testing")
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    queue_url = environment["ML_WORKER_SQS_QUEUE_URL"]
    with mock_aws():
        sqs = boto3.client("sqs", region_name=environment["AWS_REGION"])
        created = sqs.create_queue(QueueName=queue_url.rsplit("/", 1)[-1])["QueueUrl"]
        assert created == queue_url  # the README's URL is a real queue's shape
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(blocks["send"], "README.md (drop-in: send)", "exec"), {})
        received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"]) for m in received] == [
        {"job_type": "process_pending_labs", "user_id": 42, "priority": "normal"}
    ]
    assert printed.getvalue().strip() == received[0]["MessageId"]


def test_switched_off_the_same_code_sends_nothing_needs_nothing_and_stays_light() -> None:
    """A fresh interpreter with only the switch set (no queue, no region, no credentials):
    `None`, and neither boto3 nor a database driver was imported."""
    blocks = readme_blocks()
    environment = shell_environment(blocks["environment"], blocks["switch-off"])
    assert environment["ML_WORKER_ENABLED"] == "false"
    heavy = ("boto3", "botocore", "sqlalchemy", "psycopg2", "torch", "transformers", "moto")
    probe = blocks["send"] + textwrap.dedent(
        f"""
        import sys
        print(sorted(m for m in {heavy!r} if m in sys.modules))
        """
    )
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "ML_WORKER_ENABLED": "false",
           "HEALTHFLOW_DATA_DIR": os.environ["HEALTHFLOW_DATA_DIR"]}  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["None", "[]"]


def test_switched_on_without_a_queue_names_the_variables(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ML_WORKER_ENABLED", "true")
    with pytest.raises(MissingSetting) as raised:
        TriggerClient()
    message = str(raised.value)
    for name in ("ML_WORKER_SQS_QUEUE_URL", "HEALTHFLOW_QUEUE_URL", "HEALTHFLOW_ENV"):
        assert name in message
    assert "--" not in message  # speaks of the environment, not of command-line flags
