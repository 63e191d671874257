"""The modules of tasks/labs import one another without a cycle, and one module reads names.

Read from the source (every import statement, inside functions too, but not the ones under
``TYPE_CHECKING``), so a cycle that only a call would close is found as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tasks.labs

PACKAGE = "tasks.labs"
FOLDER = Path(tasks.labs.__file__).parent


def _module_name(path: Path) -> str:
    return PACKAGE if path.stem == "__init__" else f"{PACKAGE}.{path.stem}"


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(tree: ast.AST, modules: set[str]) -> set[str]:
    """The package's modules a source imports, wherever the import statement stands."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in modules:
                found.add(node.module)
            found.update(
                f"{node.module}.{alias.name}"
                for alias in node.names
                if f"{node.module}.{alias.name}" in modules
            )
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(folder: Path = FOLDER) -> dict[str, set[str]]:
    paths = sorted(folder.glob("*.py"))
    modules = {_module_name(path) for path in paths}
    return {
        _module_name(path): _imported(ast.parse(path.read_text(encoding="utf-8")), modules)
        - {_module_name(path)}
        for path in paths
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def walk(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := walk(target)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := walk(module)):
            return cycle
    return None


def test_no_import_cycle_in_tasks_labs() -> None:
    graph = import_graph()
    assert {f"{PACKAGE}.catalog", f"{PACKAGE}.normalize", f"{PACKAGE}.parse"} <= set(graph)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_cycles(tmp_path: Path) -> None:
    # The check must be able to fail: two modules importing each other, one only in a function.
    (tmp_path / "a.py").write_text("from tasks.labs.b import thing\n")
    (tmp_path / "b.py").write_text("def thing():\n    from tasks.labs import a\n")
    (tmp_path / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from tasks.labs.a import x\n"
    )
    graph = import_graph(tmp_path)
    assert graph[f"{PACKAGE}.c"] == set()
    assert find_cycle(graph) == [f"{PACKAGE}.a", f"{PACKAGE}.b", f"{PACKAGE}.a"]


def test_names_are_read_by_one_module() -> None:
    # The name parser's pieces (clean-up, noise words, specimen words, forms) live in parse.py;
    # normalize.py is about units and values only.
    graph = import_graph()
    assert f"{PACKAGE}.normalize" not in graph[f"{PACKAGE}.catalog"]
    source = (FOLDER / "normalize.py").read_text(encoding="utf-8")
    for name_piece in ("_NOISE_WORDS", "_SPECIMEN_WORDS", "_DOTTED", "_PREFIX", "def analyze_name"):
        assert name_piece not in source
