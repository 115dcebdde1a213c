"""The package's shape, read from the source with ast (nothing is imported): folders in
layers that only import downwards, no import cycles, typed hand-offs between modules, and
functions short enough to read.

Every import counts: at the top, inside a function (a lazy import), and under
`if TYPE_CHECKING:` (a type named in a signature is a dependency too). Public functions
annotate their parameters, so that a module handed another's object names its type, and
the dependency shows here instead of hiding in an untyped argument.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "neural_style"
LONGEST_FUNCTION = 60  # lines

# The layers from the bottom up: a module may import its own layer and the ones below it,
# never one above. gatys (the optimiser's runs) and feedforward (the trained network) share
# a floor and never import each other.
LAYERS = (
    (
        "neural_style",
        "neural_style.errors",
        "neural_style.names",
        "neural_style.files",
        "neural_style.stopping",
        "neural_style.runtime",
        "neural_style.progress",
    ),
    ("neural_style.settings",),
    ("neural_style.media",),
    ("neural_style.vgg",),
    ("neural_style.losses",),
    ("neural_style.optimize",),
    ("neural_style.gatys", "neural_style.feedforward"),
    ("neural_style.web",),
)
# Pairs of parts that never import each other, in either direction.
STRANGERS = (
    ("neural_style.gatys", "neural_style.feedforward"),
    ("neural_style.feedforward.training", "neural_style.feedforward.stylizing"),
)
# The observers of a Gatys run are chosen in one place, its composition root.
OBSERVERS = "neural_style.gatys.observers"
COMPOSITION_ROOT = "neural_style.gatys.run"
# Layers that never import TensorFlow or Keras, so that settings are checked and inputs
# read before TensorFlow starts.
WITHOUT_TENSORFLOW = ("neural_style.settings", "neural_style.media")
# Modules importable without TensorFlow (their whole import chain): the plan is plain data,
# and the run loop is driven by its unit tests with fakes.
TENSORFLOW_FREE_MODULES = (
    "neural_style.gatys.plan",
    "neural_style.gatys.runner",
    "neural_style.gatys.events",
    "neural_style.gatys.video_plan",
    "neural_style.settings.cli_flags",
)


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, pathlib.Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_names(tree: ast.AST) -> set[str]:
    """Every module name an import anywhere in `tree` names, with `from a import b` also
    as `a.b` (b may be a module)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = sources()
    known = set(modules)
    return {
        name: (imported_names(ast.parse(path.read_text())) & known) - {name}
        for name, path in modules.items()
    }


def within(module: str, part: str) -> bool:
    return module == part or module.startswith(part + ".")


def layer_of(module: str) -> int:
    """The index in LAYERS of the deepest part that holds `module`."""
    best, depth = -1, -1
    for index, parts in enumerate(LAYERS):
        for part in parts:
            if within(module, part) and part.count(".") > depth:
                best, depth = index, part.count(".")
    return best


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Each import that breaks the layer rules, as `importer -> imported (why)`."""
    wrong = []
    for importer, imports in sorted(graph.items()):
        for imported in sorted(imports):
            if layer_of(imported) > layer_of(importer):
                wrong.append(f"{importer} -> {imported} (a lower layer imports a higher one)")
            for one, other in STRANGERS:
                for a, b in ((one, other), (other, one)):
                    if within(importer, a) and within(imported, b):
                        wrong.append(f"{importer} -> {imported} ({a} never imports {b})")
            outside = not within(importer, OBSERVERS) and importer != COMPOSITION_ROOT
            if within(imported, OBSERVERS) and outside:
                wrong.append(
                    f"{importer} -> {imported} (only {COMPOSITION_ROOT} chooses observers)"
                )
    return wrong


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


def untyped_parameters(tree: ast.AST, module: str) -> list[str]:
    """`module.function(parameter)` for each parameter without an annotation of a public
    module-level function or method (`__init__` included; closures are local)."""
    missing = []

    def visit(node: ast.AST, owner: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, f"{owner}.{child.name}")
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                if child.name.startswith("_") and child.name != "__init__":
                    continue
                arguments = child.args.posonlyargs + child.args.args + child.args.kwonlyargs
                missing.extend(
                    f"{owner}.{child.name}({argument.arg})"
                    for argument in arguments
                    if argument.annotation is None and argument.arg not in ("self", "cls")
                )

    visit(tree, module)
    return missing


# --- the package as it is ---------------------------------------------------------------------


def test_every_module_is_in_a_layer_and_the_root_holds_few():
    graph = import_graph()
    assert [name for name in graph if layer_of(name) < 0] == []
    at_the_root = [path.name for path in PACKAGE.glob("*.py")]
    assert len(at_the_root) <= 8, sorted(at_the_root)


def test_imports_follow_the_layers():
    assert layer_violations(import_graph()) == []


def test_no_module_of_the_package_takes_part_in_an_import_cycle():
    graph = import_graph()
    assert "neural_style.gatys.runner" in graph and "neural_style.gatys.plan" in graph
    assert find_cycle(graph) == []


def test_nothing_in_the_package_imports_a_composition_root():
    roots = {COMPOSITION_ROOT, "neural_style.feedforward.training.run"}
    roots.add("neural_style.feedforward.stylizing.run")
    graph = import_graph()
    assert sorted(name for name, imports in graph.items() if imports & roots) == []


def test_the_settings_and_media_layers_never_import_tensorflow():
    offenders = []
    for name, path in sources().items():
        if any(within(name, part) for part in WITHOUT_TENSORFLOW):
            names = imported_names(ast.parse(path.read_text()))
            offenders += [
                f"{name} -> {n}" for n in names if n.split(".")[0] in ("tensorflow", "keras")
            ]
    assert offenders == []


def test_the_plan_and_the_loop_import_without_tensorflow():
    code = (
        "import sys\n"
        + "".join(f"import {name}\n" for name in TENSORFLOW_FREE_MODULES)
        + "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_public_functions_annotate_their_parameters():
    missing = []
    for name, path in sources().items():
        missing += untyped_parameters(ast.parse(path.read_text()), name)
    assert missing == []


def test_functions_stay_short():
    too_long = []
    for name, path in sources().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > LONGEST_FUNCTION:
                    too_long.append(f"{name}.{node.name}: {length} lines")
    assert too_long == []


# --- the checks themselves, on planted graphs and sources --------------------------------------


def test_the_layer_rule_fails_a_wrong_way_import():
    graph = {
        "neural_style.media.images": {"neural_style.gatys.plan"},  # down imports up
        "neural_style.feedforward.training.session": {"neural_style.gatys.runner"},
        "neural_style.web.observer": {"neural_style.gatys.observers.files"},
        "neural_style.gatys.runner": {"neural_style.optimize.protocols", "neural_style.errors"},
        COMPOSITION_ROOT: {"neural_style.gatys.observers.terminal"},
    }
    assert layer_violations(graph) == [
        "neural_style.feedforward.training.session -> neural_style.gatys.runner "
        "(neural_style.feedforward never imports neural_style.gatys)",
        "neural_style.media.images -> neural_style.gatys.plan (a lower layer imports a higher one)",
        "neural_style.web.observer -> neural_style.gatys.observers.files "
        f"(only {COMPOSITION_ROOT} chooses observers)",
    ]


def test_the_graph_sees_lazy_and_type_checking_imports():
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from neural_style.gatys.runner import Runner\n"
        "def run(runner: 'Runner') -> None:\n"
        "    from neural_style.gatys import observers\n"
    )
    found = imported_names(ast.parse(source))
    assert {"neural_style.gatys.runner", "neural_style.gatys.observers"} <= found


def test_an_untyped_hand_off_is_found():
    source = (
        "def run_video(runner, count: int) -> None: ...\n"
        "def _helper(x): ...\n"
        "class Video:\n"
        "    def __init__(self, runner): ...\n"
        "    def step(self, event: object, *, now) -> None: ...\n"
    )
    assert untyped_parameters(ast.parse(source), "m") == [
        "m.run_video(runner)",
        "m.Video.__init__(runner)",
        "m.Video.step(now)",
    ]


def test_the_cycle_finder_finds_a_ring():
    ring = find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert ring == ["a", "b", "c", "a"]
