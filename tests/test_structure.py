"""The package's shape: imports that only point one way, and functions and modules small
enough to read. Read from the source with ast, so nothing here imports TensorFlow."""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "neural_style"
LONGEST_FUNCTION = 60  # lines
LONGEST_MODULE = 450  # lines


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, pathlib.Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(path: pathlib.Path, known: set[str]) -> set[str]:
    """The package's modules that `path` imports anywhere (at the top or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in known)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = sources()
    known = set(modules)
    return {name: imported_modules(path, known) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """A list of modules that import each other in a ring, or [] when there is none."""
    state: dict[str, str] = {}
    trail: list[str] = []

    def visit(name: str) -> list[str]:
        state[name] = "open"
        trail.append(name)
        for other in sorted(graph.get(name, ())):
            if state.get(other) == "open":
                return [*trail[trail.index(other) :], other]
            if other not in state and (ring := visit(other)):
                return ring
        state[name] = "done"
        trail.pop()
        return []

    for name in sorted(graph):
        if name not in state and (ring := visit(name)):
            return ring
    return []


def test_no_module_of_the_package_takes_part_in_an_import_cycle():
    graph = import_graph()
    assert "neural_style.gatys.runner" in graph and "neural_style.gatys.plan" in graph
    assert find_cycle(graph) == []


def test_the_cycle_finder_finds_a_ring():
    ring = find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert ring == ["a", "b", "c", "a"]


def test_nothing_below_the_entry_points_imports_the_gatys_run_module():
    graph = import_graph()
    importers = sorted(
        name for name, imports in graph.items() if "neural_style.gatys.run" in imports
    )
    assert importers == []
    feedforward = {name for name in graph if name.startswith("neural_style.feedforward")}
    assert len(feedforward) >= 5


def test_functions_and_modules_stay_short():
    too_long = []
    for name, path in sources().items():
        text = path.read_text()
        if len(text.splitlines()) > LONGEST_MODULE:
            too_long.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > LONGEST_FUNCTION:
                    too_long.append(f"{name}.{node.name}: {length} lines")
    assert too_long == []
