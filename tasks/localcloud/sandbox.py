"""What ships, run as it runs in AWS: the steps asset in Lambda-like sandboxes, the ml-worker's
command in its image's environment. Both are separate processes.

* :class:`LambdaSandboxPool` keeps warm "execution environments": each is an isolated interpreter
  (``python -I -S -B``, :mod:`tasks.localcloud.lambda_bootstrap`) that sees only the built asset,
  the runtime's boto3 and the standard library, imports the handler once and then serves one
  invocation at a time. Concurrent invocations get one sandbox each, as Lambda scales out.
  An unhandled exception comes back as the runtime reports it (``errorType``), and the dispatcher
  raises :class:`tasks.localcloud.moto_ext.FunctionError` so Step Functions sees that error name.
* :class:`ContainerRunner` runs the ml-worker's ENTRYPOINT/CMD with the task definition's
  environment and the container overrides, and returns its exit code (``.sync``).
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tasks.localcloud import moto_ext
from tasks.localcloud.artifacts import LambdaAsset, WorkerEnvironment

LOG = logging.getLogger(__name__)

BOOTSTRAP = Path(__file__).with_name("lambda_bootstrap.py")
#: The longest a Lambda may run; the stack's function timeout is shorter.
DEFAULT_TIMEOUT_SECONDS = 900.0
#: How Lambda names an invocation that outlived its timeout, and a sandbox that died.
TIMED_OUT = "Sandbox.Timedout"
EXITED = "Runtime.ExitError"


class SandboxError(RuntimeError):
    """A sandbox stopped answering (it died, or broke the protocol)."""


class LambdaSandbox:
    """One warm execution environment: a process that answers one request per line."""

    def __init__(self, asset: LambdaAsset, environment: Mapping[str, str]) -> None:
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-S",
                "-B",
                str(BOOTSTRAP),
                str(asset.code_dir),
                str(asset.runtime_dir),
                asset.handler,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=dict(environment),
            cwd=asset.code_dir,
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._stdin: IO[bytes] = self._process.stdin
        self._stdout_fd = self._process.stdout.fileno()
        self._buffer = b""

    @property
    def pid(self) -> int:
        return self._process.pid

    def request(self, message: Mapping[str, Any], timeout: float | None) -> dict[str, Any]:
        """Send one request, wait for its answer line; SandboxError/TimeoutError otherwise."""
        try:
            self._stdin.write(json.dumps(message).encode() + b"\n")
            self._stdin.flush()
        except BrokenPipeError as exc:
            raise SandboxError(f"sandbox exited with {self._process.poll()}") from exc
        return json.loads(self._read_line(timeout))

    def _read_line(self, timeout: float | None) -> bytes:
        with selectors.DefaultSelector() as selector:
            selector.register(self._stdout_fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                if not selector.select(timeout):
                    raise TimeoutError("the invocation outlived its timeout")
                chunk = os.read(self._stdout_fd, 1 << 16)
                if not chunk:
                    raise SandboxError(f"sandbox exited with {self._process.wait()}")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def close(self) -> None:
        if self._process.poll() is None:
            self._stdin.close()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()


def default_max_sandboxes() -> int:
    """Sandboxes one pool runs at once. In AWS each cold start has a machine of its own; here
    they share this machine's cores, and a dozen interpreters importing at once on two cores
    took over 30 s each (ValidateMessage's timeout), where two took 2 s. Invocations beyond the
    cap wait for a warm sandbox, which answers in milliseconds."""
    return max(2, os.cpu_count() or 2)


class LambdaSandboxPool:
    """Warm sandboxes of one function: one per concurrent invocation up to `max_sandboxes`,
    reused when idle."""

    def __init__(
        self,
        asset: LambdaAsset,
        environment: Mapping[str, str],
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        max_sandboxes: int | None = None,
    ) -> None:
        self.asset = asset
        self._environment = dict(environment)
        self._timeout = timeout_seconds
        self._max = max_sandboxes or default_max_sandboxes()
        self._lock = threading.Condition()
        self._idle: list[LambdaSandbox] = []
        self._all: list[LambdaSandbox] = []
        self._starting = 0
        self._closed = False

    def _acquire(self) -> LambdaSandbox:
        with self._lock:
            while True:
                if self._closed:
                    raise SandboxError("the sandbox pool is closed")
                if self._idle:
                    return self._idle.pop()
                if len(self._all) + self._starting < self._max:
                    self._starting += 1
                    break
                self._lock.wait()
        try:
            sandbox = LambdaSandbox(self.asset, self._environment)
        finally:
            with self._lock:
                self._starting -= 1
                self._lock.notify()
        with self._lock:
            self._all.append(sandbox)
        return sandbox

    def _release(self, sandbox: LambdaSandbox, healthy: bool) -> None:
        with self._lock:
            self._lock.notify()
            if healthy and not self._closed:
                self._idle.append(sandbox)
                return
            if sandbox in self._all:
                self._all.remove(sandbox)
        sandbox.close()

    def request(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """One request to one sandbox (any idle one)."""
        sandbox = self._acquire()
        try:
            answer = sandbox.request(message, self._timeout)
        except (SandboxError, TimeoutError, ValueError):
            self._release(sandbox, healthy=False)
            raise
        self._release(sandbox, healthy=True)
        return answer

    def invoke(self, event: Any) -> Any:
        """The handler's result, or FunctionError named as the Lambda runtime names it."""
        try:
            answer = self.request({"invoke": event})
        except TimeoutError as exc:
            raise moto_ext.FunctionError(TIMED_OUT, str(exc)) from None
        except SandboxError as exc:
            raise moto_ext.FunctionError(EXITED, str(exc)) from None
        if "errorType" in answer:
            raise moto_ext.FunctionError(answer["errorType"], answer.get("errorMessage", ""))
        return answer["result"]

    def each_sandbox(self, message: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The same request to every idle sandbox (what each of them loaded, for instance)."""
        with self._lock:
            idle, self._idle = self._idle, []
        try:
            return [sandbox.request(message, self._timeout) for sandbox in idle]
        finally:
            with self._lock:
                self._idle.extend(idle)
                self._lock.notify_all()

    @property
    def started(self) -> int:
        """Sandboxes started so far and still alive."""
        with self._lock:
            return len(self._all)

    def dispatcher(self) -> moto_ext.LambdaDispatcher:
        def dispatch(function_arn: str, payload: dict[str, Any]) -> Any:
            return self.invoke(payload)

        return dispatch

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
            sandboxes, self._all, self._idle = self._all, [], []
        for sandbox in sandboxes:
            sandbox.close()

    def __enter__(self) -> LambdaSandboxPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def lambda_environment(
    function_environment: Mapping[str, str], region: str, function_name: str
) -> dict[str, str]:
    """What the Lambda service sets, then the function's own variables. Nothing of this
    process's environment leaks in (no HEALTHFLOW_* of the developer's shell)."""
    return {
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        **function_environment,
    }


#: What the ECS agent adds to every Fargate container's environment.
ECS_AGENT_ENVIRONMENT = {"ECS_CONTAINER_METADATA_URI_V4": "http://169.254.170.2/v4/local"}


@dataclass(frozen=True)
class ContainerRun:
    """One task's container: its process and how it exited."""

    pid: int
    exit_code: int


class ContainerRunner:
    """Runs the image's command as a separate process; the exit code is the task's."""

    def __init__(
        self, worker: WorkerEnvironment, task_environment: Mapping[str, str], region: str
    ) -> None:
        self._worker = worker
        self._task_environment = {
            **ECS_AGENT_ENVIRONMENT,
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            **task_environment,
        }
        self._lock = threading.Lock()
        self.runs: list[ContainerRun] = []

    def __call__(self, overrides: Mapping[str, str]) -> int:
        environment = self._worker.environment({**self._task_environment, **overrides})
        process = subprocess.Popen(
            self._worker.command(), env=environment, cwd=self._worker.app_dir
        )
        exit_code = process.wait()
        LOG.info("ml-worker container exited with %d", exit_code)
        with self._lock:
            self.runs.append(ContainerRun(pid=process.pid, exit_code=exit_code))
        return exit_code
