"""The Dockerfile reader the ml-worker environment is built from (tasks.localcloud.dockerfile)."""

from __future__ import annotations

from tasks.localcloud import dockerfile

TEXT = """\
# syntax=docker/dockerfile:1
FROM python:3.12-slim
ENV A=1 \\
    B="two words"
ENV LEGACY value here
WORKDIR /app
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml requirements.lock ./
RUN echo before \\
    # a comment inside the instruction
 && pip install --requirement req.txt
COPY src/ src/
RUN python -m src.warm
RUN useradd --system app && chown -R app /app
CMD ["python", "-m", "src"]
"""


def test_reads_what_the_environment_needs() -> None:
    spec = dockerfile.parse(TEXT)
    assert spec.python_version == "3.12"
    assert spec.env == {"A": "1", "B": "two words", "LEGACY": "value here"}
    assert spec.workdir == "/app"
    assert [run.line for run in spec.install_runs()] == [7, 9]
    assert spec.install_runs()[1].command == "echo before && pip install --requirement req.txt"
    assert spec.build_inputs_before_sources() == ["pyproject.toml", "requirements.lock"]
    assert spec.copies == [("src/", "src/")]
    # Build-time work on the sources runs; managing the image's users does not.
    assert [run.command for run in spec.source_runs()] == ["python -m src.warm"]
    assert spec.entrypoint == () and spec.cmd == ("python", "-m", "src")


def test_the_torch_index_is_the_only_translation() -> None:
    line = "pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0"
    assert dockerfile.host_command(line) == "pip install torch==2.13.0"
    other = "pip install --index-url https://example.org/simple x==1"
    assert dockerfile.host_command(other) == other


def test_the_shell_form_runs_under_sh() -> None:
    spec = dockerfile.parse("FROM debian\nENTRYPOINT exec worker --flag\n")
    assert spec.python_version is None
    assert spec.entrypoint == ("/bin/sh", "-c", "exec worker --flag")
