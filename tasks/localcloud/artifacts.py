"""What a deploy ships, built on this machine so that the local cloud can run it as shipped.

* The steps Lambda asset: built by the CDK app's own bundler (``cdk/healthflow_infra/
  bundling.py``: the same package list and lock file as ``cdk deploy``) for this machine's
  platform and Python, so that an isolated interpreter here can import it. The slow half (pip
  wheels) is cached under a key of its inputs; the sources are copied in on every build, so the
  asset always holds the checkout's code.
* The Lambda runtime's own packages (boto3 and what it needs: what AWS puts in ``/var/runtime``),
  as a directory of links into this interpreter's site-packages.
* The ml-worker's Python environment: a venv built by running the ``pip install`` lines of
  ``containers/ml-worker/Dockerfile`` themselves (see :mod:`tasks.localcloud.dockerfile`), so the
  image and what runs here cannot drift.

Nothing here is imported by a step; only the local cloud, its tests and ``python -m
tasks.localcloud.artifacts`` (which prints the built paths) use it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from tasks.localcloud import dockerfile
from tasks.settings import REPO_ROOT, get_settings
from tasks.statemachines import STATEMACHINES_DIR

#: The distributions the Lambda Python runtime provides next to the function's code.
LAMBDA_RUNTIME_DISTRIBUTIONS = ("boto3",)
#: Builds unused for this long are removed when another build is made. Not "all but the
#: newest": two checkouts on one machine (or a test run and a `healthflow run`) share the cache
#: and may be using different builds at the same time.
_UNUSED_SECONDS = 24 * 3600
_IGNORED = ("__pycache__", "*.pyc", "*.pyo", ".mypy_cache", ".pytest_cache")


class ArtifactBuildError(RuntimeError):
    """An artifact could not be built (pip failed, the Dockerfile has no install line...)."""


@dataclass(frozen=True)
class LambdaAsset:
    """A built steps asset (``/var/task``) and the runtime packages beside it (``/var/runtime``)."""

    code_dir: Path
    runtime_dir: Path
    handler: str = "tasks.runners.lambda_handler.handler"

    @property
    def search_path(self) -> list[Path]:
        """Where the function's imports resolve, in the Lambda runtime's order."""
        return [self.code_dir, self.runtime_dir]


@dataclass(frozen=True)
class BuildReport:
    """How long a build took and whether it came from the cache."""

    seconds: float
    cached: bool
    path: Path

    def size_bytes(self) -> int:
        """What the build holds on disk (walks it: seconds for the ml-worker's venv)."""
        return tree_size(self.path)


def cache_root() -> Path:
    return get_settings().artifact_cache_dir


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def tree_digest(root: Path) -> str:
    """A digest of the files under `root` (paths and contents; byte code and caches left out)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part in ("__pycache__", ".mypy_cache", ".pytest_cache") for part in relative.parts):
            continue
        if path.is_file() and path.suffix not in (".pyc", ".pyo"):
            digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One builder at a time per cache directory (two test sessions may start together)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_once(target: Path, build: Any) -> bool:
    """Run `build(tmp)` and move the result to `target` unless it exists; True if it existed."""
    if target.is_dir():
        return True
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(staging)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return False


# --------------------------------------------------------------------------- Lambda asset


def host_bundler(packages: tuple[str, ...] | None = None) -> Any:
    """The CDK app's bundler, aimed at this machine's architecture and Python."""
    cdk_dir = str(REPO_ROOT / "cdk")
    if cdk_dir not in sys.path:
        sys.path.append(cdk_dir)
    from aws_cdk import aws_lambda as lambda_
    from healthflow_infra import bundling

    architecture = (
        lambda_.Architecture.ARM_64
        if platform.machine() in ("aarch64", "arm64")
        else lambda_.Architecture.X86_64
    )
    return bundling.LocalPipBundling(
        architecture=architecture,
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
        packages=bundling.LAMBDA_RUNTIME_PACKAGES if packages is None else packages,
    )


def build_lambda_asset(
    cache_dir: Path | None = None, *, packages: tuple[str, ...] | None = None
) -> tuple[LambdaAsset, BuildReport]:
    """The steps asset for this machine, from the cache when its inputs did not change."""
    started = time.perf_counter()
    root = (cache_dir or cache_root()) / "lambda-asset"
    bundler = host_bundler(packages)
    dependencies_key = _digest(bundler.dependency_inputs())
    asset_key = _digest(
        [dependencies_key, tree_digest(REPO_ROOT / "tasks"), tree_digest(STATEMACHINES_DIR)]
    )
    with _locked(root):
        dependencies = root / f"deps-{dependencies_key}"
        deps_cached = _build_once(dependencies, bundler.install_dependencies)
        code_dir = root / f"asset-{asset_key}"

        def _assemble(staging: Path) -> None:
            # Hard links: the wheels are read-only at run time (as in Lambda) and an asset
            # costs no second copy of them.
            shutil.copytree(dependencies, staging, copy_function=os.link, dirs_exist_ok=True)
            bundler.copy_sources(staging)

        asset_cached = _build_once(code_dir, _assemble)
        _prune(root, "asset-", keep=code_dir)
        runtime_dir = _runtime_dir(root)
    asset = LambdaAsset(code_dir=code_dir, runtime_dir=runtime_dir)
    report = BuildReport(
        seconds=time.perf_counter() - started,
        cached=deps_cached and asset_cached,
        path=code_dir,
    )
    return asset, report


def _prune(root: Path, prefix: str, keep: Path) -> None:
    os.utime(keep)  # marks it used
    cutoff = time.time() - _UNUSED_SECONDS
    for old in root.glob(f"{prefix}*"):
        if old != keep and old.stat().st_mtime < cutoff:
            shutil.rmtree(old, ignore_errors=True)


def runtime_distributions() -> list[metadata.Distribution]:
    """boto3 and every distribution it requires, as installed in this interpreter."""
    seen: dict[str, metadata.Distribution] = {}
    pending = list(LAMBDA_RUNTIME_DISTRIBUTIONS)
    while pending:
        name = pending.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        distribution = metadata.distribution(name)
        seen[key] = distribution
        for requirement in distribution.requires or []:
            if ";" in requirement and "extra ==" in requirement:
                continue  # optional extras (crt) are not in the runtime either
            pending.append(_requirement_name(requirement))
    return list(seen.values())


def _requirement_name(requirement: str) -> str:
    name = requirement.split(";")[0].strip()
    for separator in "<>=!~[ (":
        name = name.split(separator)[0]
    return name.strip()


def _top_level_entries(distribution: metadata.Distribution) -> set[str]:
    """The top-level modules and packages a distribution installs."""
    entries = set()
    for file in distribution.files or []:
        first = file.parts[0]
        if first.endswith((".dist-info", ".egg-info")) or first in ("..", "__pycache__"):
            continue
        if len(file.parts) == 1 and not first.endswith((".py", ".so", ".pth")):
            continue
        if first.endswith(".pth"):
            continue
        entries.add(first)
    return entries


def _runtime_dir(root: Path) -> Path:
    """A ``/var/runtime`` stand-in: links to boto3 and its requirements, nothing else."""
    distributions = runtime_distributions()
    key = _digest(sorted(f"{d.metadata['Name']}=={d.version}" for d in distributions))
    target = root / f"runtime-{key}"

    def _link(staging: Path) -> None:
        for distribution in distributions:
            site = Path(str(distribution.locate_file("")))
            for entry in _top_level_entries(distribution):
                (staging / entry).symlink_to(site / entry)

    _build_once(target, _link)
    return target


# --------------------------------------------------------------------------- ml-worker


@dataclass(frozen=True)
class WorkerEnvironment:
    """The ml-worker image's Python environment on this machine and how to start its command."""

    venv: Path
    app_dir: Path  # the image's WORKDIR: the sources its COPY lines put there
    image: dockerfile.DockerfileSpec

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def command(self) -> list[str]:
        """ENTRYPOINT + CMD, with the image's ``python`` being the environment's."""
        argv = [*self.image.entrypoint, *self.image.cmd]
        if not argv:
            raise ArtifactBuildError("the Dockerfile has no ENTRYPOINT or CMD")
        if argv[0] in ("python", "python3"):
            argv[0] = str(self.python)
        return argv

    def environment(self, task_environment: dict[str, str]) -> dict[str, str]:
        """The container's environment: the image's ENV (its WORKDIR mapped to `app_dir`), then
        the task definition's and the overrides' (later wins, as in ECS). Nothing of this
        process's environment leaks in."""
        workdir = self.image.workdir
        image_env = {
            name: value.replace(workdir, str(self.app_dir)) if workdir else value
            for name, value in self.image.env.items()
        }
        path = f"{self.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin"
        return {"PATH": path, "HOME": str(self.app_dir), **image_env, **task_environment}

    def embedding_files(self) -> list[Path]:
        """What the image's build left in its embeddings cache."""
        cache = self.environment({}).get("HEALTHFLOW_EMBEDDING_CACHE_DIR")
        return sorted(Path(cache).rglob("*")) if cache else []


def build_ml_worker_environment(
    cache_dir: Path | None = None, dockerfile_path: Path | None = None
) -> tuple[WorkerEnvironment, BuildReport]:
    """The venv the image's install lines make, cached by those lines and the files they read,
    and the image's source layers (COPY, then the RUN lines after it), cached by the sources."""
    started = time.perf_counter()
    path = dockerfile_path or dockerfile.ML_WORKER_DOCKERFILE
    spec = dockerfile.parse(path.read_text())
    installs = spec.install_runs()
    if not installs:
        raise ArtifactBuildError(f"{path} has no pip install line")
    inputs = spec.build_inputs_before_sources()
    key = _digest(
        {
            "runs": [run.command for run in installs],
            "env": spec.env,
            "inputs": {name: (REPO_ROOT / name).read_text() for name in inputs},
            "python": sys.version,
        }
    )
    root = (cache_dir or cache_root()) / "ml-worker"
    with _locked(root):
        venv = root / f"venv-{key}"
        cached = _build_once(venv, lambda staging: _build_venv(staging, spec, inputs))
        _prune(root, "venv-", keep=venv)
        sources_key = _digest(
            [key, spec.copies, [run.command for run in spec.source_runs()]]
            + [tree_digest(REPO_ROOT / source) for source, _ in spec.copies]
        )
        app_dir = root / f"app-{sources_key}"
        partial = WorkerEnvironment(venv=venv, app_dir=app_dir, image=spec)
        sources_cached = _build_once(app_dir, lambda staging: _build_sources(staging, partial))
        _prune(root, "app-", keep=app_dir)
    report = BuildReport(
        seconds=time.perf_counter() - started,
        cached=cached and sources_cached,
        path=venv,
    )
    return partial, report


def _host_build_environment(bin_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {
        **{k: v for k, v in os.environ.items() if k.startswith(("PIP_", "SSL_", "HTTP"))},
        **extra,
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
    }
    # The image keeps no pip cache (a smaller layer); here the cache changes nothing that is
    # installed and saves downloading the same wheels on every rebuild.
    env.pop("PIP_NO_CACHE_DIR", None)
    return env


def _run_lines(runs: list[dockerfile.Run], cwd: Path, env: dict[str, str]) -> None:
    for run in runs:
        command = dockerfile.host_command(run.command)
        completed = subprocess.run(["/bin/bash", "-c", command], cwd=cwd, env=env, check=False)
        if completed.returncode != 0:
            raise ArtifactBuildError(
                f"Dockerfile line {run.line} failed with exit code {completed.returncode}"
            )


def _build_venv(staging: Path, spec: dockerfile.DockerfileSpec, inputs: list[str]) -> None:
    # The staging directory is renamed once built, which leaves the console scripts' shebangs
    # pointing at it; nothing runs them afterwards (the command is `python -m ...`).
    subprocess.run([sys.executable, "-m", "venv", str(staging)], check=True)
    workdir = Path(tempfile.mkdtemp(prefix="ml-worker-build-"))
    try:
        for name in inputs:
            shutil.copy2(REPO_ROOT / name, workdir / name)
        image_env = {k: v for k, v in spec.env.items() if k != "PYTHONPATH"}
        env = _host_build_environment(staging / "bin", {**image_env, "VIRTUAL_ENV": str(staging)})
        _run_lines(spec.install_runs(), workdir, env)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _build_sources(staging: Path, worker: WorkerEnvironment) -> None:
    """The COPY lines that bring the sources (``tasks/``, ``statemachines/``), then the RUN
    lines that work on them (the catalog embeddings: the model loads here, as in the build)."""
    spec = worker.image
    for source, destination in spec.copies:
        origin = REPO_ROOT / source
        target = staging / destination
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=shutil.ignore_patterns(*_IGNORED))
        else:
            target = target / origin.name if destination.endswith("/") else target
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)
    # Paths of the image's WORKDIR point at the staging directory while it is built.
    building = WorkerEnvironment(venv=worker.venv, app_dir=staging, image=spec)
    _carry_embeddings(worker.app_dir.parent, building)
    env = _host_build_environment(worker.venv / "bin", building.environment({}))
    _run_lines(spec.source_runs(), staging, env)


def _carry_embeddings(root: Path, building: WorkerEnvironment) -> None:
    """Seed the embeddings cache from the previous source layer. Any change under tasks/ makes
    a new layer, and recomputing the catalog's embeddings takes a minute on two cores; the
    cache files are named by model path and catalog hash, so a file that no longer fits is
    never read (the build-time line then computes it anew)."""
    cache = building.environment({}).get("HEALTHFLOW_EMBEDDING_CACHE_DIR")
    if not cache:
        return
    earlier = sorted(root.glob("app-*/"), key=lambda p: p.stat().st_mtime)
    if not earlier:
        return
    previous = WorkerEnvironment(venv=building.venv, app_dir=earlier[-1], image=building.image)
    Path(cache).mkdir(parents=True, exist_ok=True)
    for file in previous.embedding_files():
        if file.is_file():
            shutil.copy2(file, Path(cache) / file.name)


def main(argv: list[str] | None = None) -> int:
    """``python -m tasks.localcloud.artifacts lambda-asset|ml-worker``: build, print the path."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tasks.localcloud.artifacts")
    parser.add_argument("artifact", choices=["lambda-asset", "ml-worker"])
    args = parser.parse_args(argv)
    if args.artifact == "lambda-asset":
        asset, report = build_lambda_asset()
        where = asset.code_dir
    else:
        environment, report = build_ml_worker_environment()
        where = environment.venv
    state = "cached" if report.cached else "built"
    print(
        f"{where}  ({state} in {report.seconds:.1f} s, {report.size_bytes() / 1e6:.1f} MB)",
        file=sys.stderr,
    )
    print(where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
