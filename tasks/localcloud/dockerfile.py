"""Reads the ml-worker's Dockerfile, so the environment built here is the image's own.

Only the instructions the worker's Python environment and command depend on are read: ``FROM``
(the Python version), ``ENV``, ``WORKDIR``, ``COPY``, ``RUN`` lines that ``pip install``, and
``ENTRYPOINT``/``CMD``. The ``RUN`` lines are run as written, with one translation for this
machine (:func:`host_command`).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

from tasks.settings import REPO_ROOT

ML_WORKER_DOCKERFILE = REPO_ROOT / "containers" / "ml-worker" / "Dockerfile"

# The PyTorch CPU index the image installs torch from. It is not reachable from every machine;
# the same pin (torch==<version>) resolves to the CPU wheel through pip's own configuration
# (find-links), as `make venv` installs it. The version still comes from the Dockerfile.
_TORCH_INDEX = re.compile(r"\s--index-url\s+https://download\.pytorch\.org/whl/cpu\b")


# RUN lines that change the image's users and file owners (`USER 10001` runs the container
# unprivileged); on the host the environment belongs to whoever builds it.
_SYSTEM_COMMANDS = ("useradd", "chown")


class DockerfileError(ValueError):
    """The Dockerfile has an instruction this reader cannot follow."""


@dataclass(frozen=True)
class Run:
    line: int
    command: str

    @property
    def installs(self) -> bool:
        return "pip install" in self.command


@dataclass(frozen=True)
class DockerfileSpec:
    base_image: str = ""
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = ""
    # (source, destination) per COPY source, and the index of the instruction among all RUN
    # and COPY instructions (so "before the install lines" can be told from "after").
    copy_steps: tuple[tuple[int, str, str], ...] = ()
    runs: tuple[tuple[int, Run], ...] = ()
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()

    @property
    def python_version(self) -> str | None:
        """``3.11`` for ``FROM python:3.11-slim``; None for another base image."""
        match = re.match(r"python:(\d+\.\d+)", self.base_image)
        return match.group(1) if match else None

    def install_runs(self) -> list[Run]:
        return [run for _, run in self.runs if run.installs]

    def _last_install_step(self) -> int:
        steps = [step for step, run in self.runs if run.installs]
        return max(steps) if steps else -1

    def build_inputs_before_sources(self) -> list[str]:
        """Files the install lines can read: those copied before the last of them."""
        last = self._last_install_step()
        return [source for step, source, _ in self.copy_steps if step < last]

    def source_runs(self) -> list[Run]:
        """RUN lines after the sources are copied (the build-time work on them, such as the
        catalog embeddings), without those that manage the image's system users: the host's
        users are not the image's to change."""
        last = self._last_install_step()
        return [
            run
            for step, run in self.runs
            if step > last and not any(word in run.command for word in _SYSTEM_COMMANDS)
        ]

    @property
    def copies(self) -> list[tuple[str, str]]:
        """The COPY lines after the installs: the sources, the image's thin last layers."""
        last = self._last_install_step()
        return [(source, dest) for step, source, dest in self.copy_steps if step > last]


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, instruction) with continuations joined and comments dropped."""
    lines: list[tuple[int, str]] = []
    current: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not current:
            start = number
        if stripped.endswith("\\"):
            current.append(stripped[:-1].strip())
            continue
        current.append(stripped)
        lines.append((start, " ".join(part for part in current if part)))
        current = []
    if current:
        lines.append((start, " ".join(current)))
    return lines


def _env_pairs(arguments: str) -> dict[str, str]:
    words = shlex.split(arguments)
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}  # the legacy `ENV NAME value` form
    return dict(word.split("=", 1) for word in words)


def _exec_form(arguments: str) -> tuple[str, ...]:
    if arguments.startswith("["):
        return tuple(json.loads(arguments))
    return ("/bin/sh", "-c", arguments)


def parse(text: str) -> DockerfileSpec:
    base = workdir = ""
    env: dict[str, str] = {}
    copies: list[tuple[int, str, str]] = []
    runs: list[tuple[int, Run]] = []
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    for step, (number, line) in enumerate(logical_lines(text)):
        instruction, _, arguments = line.partition(" ")
        instruction = instruction.upper()
        arguments = arguments.strip()
        if instruction == "FROM":
            base = arguments.split()[0]
        elif instruction == "ENV":
            env.update(_env_pairs(arguments))
        elif instruction == "WORKDIR":
            workdir = arguments
        elif instruction == "COPY":
            words = [w for w in shlex.split(arguments) if not w.startswith("--")]
            if len(words) < 2:
                raise DockerfileError(f"line {number}: COPY needs a source and a destination")
            copies.extend((step, source, words[-1]) for source in words[:-1])
        elif instruction == "RUN":
            runs.append((step, Run(line=number, command=arguments)))
        elif instruction == "ENTRYPOINT":
            entrypoint = _exec_form(arguments)
        elif instruction == "CMD":
            cmd = _exec_form(arguments)
    return DockerfileSpec(
        base_image=base,
        env=env,
        workdir=workdir,
        copy_steps=tuple(copies),
        runs=tuple(runs),
        entrypoint=entrypoint,
        cmd=cmd,
    )


def host_command(command: str) -> str:
    """A RUN line as it runs on this machine: the PyTorch CPU index becomes pip's configured
    sources (see ``_TORCH_INDEX``); everything else is left as written."""
    return _TORCH_INDEX.sub("", command)
