"""Lambda code bundling without Docker.

CDK's usual Python bundling runs `pip` inside a Docker image; these machines (and many CI runners)
have no Docker engine. `LocalPipBundling` does the same job on the host: `pip install --target`
with `--platform manylinux2014_<arch> --only-binary=:all:` downloads wheels built for the Lambda
runtime (not for the host), then the `tasks` package sources are copied next to them.

Only the light steps run in Lambda, so only their runtime dependencies are installed (see
LAMBDA_RUNTIME_PACKAGES): torch, transformers and the model live in the ml-worker image, where
the 250 MB Lambda package limit does not apply. Versions are pinned by requirements.lock, passed
as a pip constraints file.

`install_dependencies=False` (context `healthflow:skipBundling=true`) copies the sources only:
synth is then fast and needs no network, which is what the tests and offline synth use. The
resulting asset is not deployable (no dependencies), so deploys must not set that flag.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import jsii
from aws_cdk import BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from healthflow_infra.paths import REQUIREMENTS_LOCK, TASKS_PACKAGE_DIR

# The runtime dependencies of the light steps (validate, claim, resolve known lab names, copy,
# aggregate, mark, migrate). numpy and rapidfuzz come with the lab matcher's model-free tier
# (ResolveKnownNames); torch and transformers stay in the ml-worker image (the 250 MB package
# limit). boto3 signs the IAM database token and is in the Lambda runtime already.
# tests/workflow/test_lambda_asset.py builds the asset from this list and fails when a module
# the steps import is neither here, in the standard library nor in the Lambda runtime.
LAMBDA_RUNTIME_PACKAGES: tuple[str, ...] = (
    "sqlalchemy",
    "alembic",
    "psycopg2-binary",
    "pydantic",
    "pydantic-settings",
    "platformdirs",
    # JSON logs and EMF metrics (tasks.observability); pure Python.
    "aws-lambda-powertools",
    "numpy",
    "rapidfuzz",
    # tasks.lifecycle imports it at module level (every claim step): it checks whether the
    # process that holds a local claim still runs. In Lambda claims are leased and that check
    # never runs, but the import does; the abi3 wheel is 0.3 MB, far cheaper than splitting the
    # claim module into a Lambda and a local half.
    "psutil",
)

# python3.12+ runs on Amazon Linux 2023 (glibc 2.34): manylinux_2_28 wheels and the older
# manylinux2014 ones both fit, and pip takes one --platform per accepted tag.
_PIP_PLATFORMS_BY_ARCHITECTURE = {
    "arm64": ("manylinux_2_28_aarch64", "manylinux2014_aarch64"),
    "x86_64": ("manylinux_2_28_x86_64", "manylinux2014_x86_64"),
}

_IGNORED_SOURCE_PATTERNS = ("__pycache__", "*.pyc", "*.pyo", ".mypy_cache", ".pytest_cache")


@jsii.implements(ILocalBundling)
class LocalPipBundling:
    """Bundle the steps Lambda on the host: pip wheels for Lambda's platform + package sources."""

    def __init__(
        self,
        *,
        architecture: lambda_.Architecture,
        python_version: str = "3.12",
        install_dependencies: bool = True,
        package_dir: Path = TASKS_PACKAGE_DIR,
        constraints_file: Path = REQUIREMENTS_LOCK,
        packages: tuple[str, ...] = LAMBDA_RUNTIME_PACKAGES,
    ) -> None:
        self._pip_platforms = _PIP_PLATFORMS_BY_ARCHITECTURE[architecture.name]
        self._python_version = python_version
        self._install_dependencies = install_dependencies
        self._package_dir = package_dir
        self._constraints_file = constraints_file
        self._packages = packages

    @property
    def packages(self) -> tuple[str, ...]:
        return self._packages

    def try_bundle(self, output_dir: str, *, image: DockerImage, **_options: object) -> bool:
        # Returning True tells CDK the bundle is done: Docker is never consulted.
        output = Path(output_dir)
        if self._install_dependencies:
            self.install_dependencies(output)
        self.copy_sources(output)
        return True

    def copy_sources(self, output: Path) -> None:
        """The package sources, without byte code or tool caches, and the ASL files beside
        them: each step reads its state's TimeoutSeconds there (tasks.statemachines) to end
        its statements before the state gives up on it, as it does in a checkout."""
        shutil.copytree(
            self._package_dir,
            output / self._package_dir.name,
            ignore=shutil.ignore_patterns(*_IGNORED_SOURCE_PATTERNS),
            dirs_exist_ok=True,
        )
        statemachines = self._package_dir.parent / "statemachines"
        (output / statemachines.name).mkdir(exist_ok=True)
        for asl in sorted(statemachines.glob("*.asl.json")):
            shutil.copy2(asl, output / statemachines.name / asl.name)

    def install_dependencies(self, output: Path) -> None:
        """The runtime dependencies, as wheels for the target platform (the slow half: the
        test replica caches it by :meth:`dependency_inputs`)."""
        subprocess.run(self.pip_command(output), check=True)

    def dependency_inputs(self) -> dict[str, object]:
        """Everything the dependency half depends on: pip's arguments and the lock's text."""
        lock = str(self._constraints_file)
        return {
            "command": [
                "LOCK" if arg == lock else arg for arg in self.pip_command(Path("OUTPUT"))[1:]
            ],
            "lock": self._constraints_file.read_text() if self._constraints_file.exists() else "",
        }

    def pip_command(self, output: Path) -> list[str]:
        command = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",  # Lambda's filesystem is read-only; .pyc written at build are stale
            "--target",
            str(output),
            *(flag for platform in self._pip_platforms for flag in ("--platform", platform)),
            "--implementation",
            "cp",
            "--python-version",
            self._python_version,
            "--only-binary=:all:",
            *self._packages,
        ]
        if self._constraints_file.exists():
            command[4:4] = ["--constraint", str(self._constraints_file)]
        return command


def steps_function_code(
    *, architecture: lambda_.Architecture, python_version: str, install_dependencies: bool
) -> lambda_.Code:
    """The asset for the steps Lambda; the handler path is `tasks.runners.lambda_handler`."""
    return lambda_.Code.from_asset(
        str(TASKS_PACKAGE_DIR),
        bundling=BundlingOptions(
            # Required by the API but never pulled: LocalPipBundling always succeeds.
            image=DockerImage.from_registry(f"public.ecr.aws/sam/build-python{python_version}"),
            local=LocalPipBundling(
                architecture=architecture,
                python_version=python_version,
                install_dependencies=install_dependencies,
            ),
        ),
    )
