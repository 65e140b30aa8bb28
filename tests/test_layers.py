"""The import graph of src/mome, read with `ast` (imports at module level, under `if TYPE_CHECKING` and inside
functions all count): no cycle between modules, and no layer imports a layer above it."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS: list[tuple[str, ...]] = [
    ("config", "constants", "errors", "io", "precision", "stopping"),  # basics, imported by every layer
    ("adapters", "convert", "data", "features", "lrs", "models", "synthetic"),  # a model and its inputs
    ("runs",),  # a run's stored files: checkpoints, exports, base-model hashes
    ("analysis", "evaluation", "training"),  # what is done with a model: train, evaluate, analyse
    ("inference",),  # a trained model on one clip: read it, decode it, serve it
    ("workflows",),  # workflows of runs: the demo, the reproduction and the stages they share
    ("__init__", "cli", "commands"),  # the front doors: `mome.load` and the command line
]
"""Lowest first; each name is a module or package directly under `mome` (`__init__`: the package itself)."""

UPWARD_EXCEPTIONS: dict[tuple[str, str], str] = {}
"""(importer, imported) modules allowed to point up a layer, each with its reason."""


def _module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """The mome modules one import statement reads (`from pkg import sub` reads the module `pkg.sub`)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
    found = set()
    for name in names:
        while name and name not in modules:  # `import mome.a.b.c` of a function or class: its module
            name = name.rpartition(".")[0]
        if name:
            found.add(name)
    return found - {module}


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """module -> the mome modules it imports, anywhere in its file."""
    paths = {_module_name(p, src): p for p in sorted((src / "mome").rglob("*.py"))}
    modules = set(paths)
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        is_package = path.name == "__init__.py"
        graph[module] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[module] |= _imported(node, module, is_package, modules)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str) -> int:
    """The index in LAYERS of the top-level name a module belongs to."""
    name = module.split(".")[1] if "." in module else "__init__"
    for i, names in enumerate(LAYERS):
        if name in names:
            return i
    raise KeyError(f"{module}: not in LAYERS")


def test_every_module_is_in_one_layer() -> None:
    names = [name for layer in LAYERS for name in layer]
    assert len(names) == len(set(names))
    top = {m.split(".")[1] if "." in m else "__init__" for m in import_graph()}
    assert top == set(names), f"place in LAYERS: {sorted(top - set(names))}; gone: {sorted(set(names) - top)}"


def test_no_import_cycle() -> None:
    found = cycles(import_graph())
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_layer_imports_a_layer_above_it() -> None:
    upward = sorted(
        f"{module} -> {imported}"
        for module, imports in import_graph().items()
        for imported in imports
        if layer_of(imported) > layer_of(module) and (module, imported) not in UPWARD_EXCEPTIONS
    )
    assert upward == [], "imports pointing up a layer: " + ", ".join(upward)


def test_exceptions_are_still_needed() -> None:
    graph = import_graph()
    assert [pair for pair in UPWARD_EXCEPTIONS if pair[1] not in graph.get(pair[0], set())] == []


def test_the_graph_sees_imports_inside_functions_and_relative_ones(tmp_path: Path) -> None:
    """The checks above can fail: a cycle hidden in a function and an upward relative import are found."""
    package = tmp_path / "mome"
    (package / "training").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "errors.py").write_text("def f():\n    from mome.training import loop\n")
    (package / "training" / "__init__.py").write_text("")
    (package / "training" / "loop.py").write_text("from ..errors import f\nimport mome.training.loop\n")
    graph = import_graph(tmp_path)
    assert graph["mome.errors"] == {"mome.training.loop"}
    assert graph["mome.training.loop"] == {"mome.errors"}
    assert cycles(graph) == [["mome.errors", "mome.training.loop"]]
    assert layer_of("mome.errors") < layer_of("mome.training.loop")
