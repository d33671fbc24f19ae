"""The package's layers, as written in the README's Design section, checked on every module.

Imports only go down (or sideways within a floor): core -> data, metrics, models -> attacks, pruning ->
train, rl, analysis -> results, plots -> notebooks. There are no import cycles, no module imports another
``helpers`` module inside a function, and ``helpers.models`` imports no training, caching or file code.
Notebooks stay thin: a setup cell of at most 8 lines and at most 200 code lines per chapter notebook.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Floor of each module, by the longest matching dotted prefix.
FLOORS: dict[str, int] = {
    "helpers": 0, "helpers.checks": 0, "helpers.cache": 0, "helpers.io": 0, "helpers.paths": 0, "helpers.progress": 0,
    "helpers.data": 1, "helpers.data_sources": 1, "helpers.shapes": 1, "helpers.metrics": 1, "helpers.models": 1,
    "helpers.attacks": 2, "helpers.pruning": 2, "helpers.saliency": 2,
    "helpers.train": 3, "helpers.rl": 3, "helpers.features": 3, "helpers.obfuscation": 3,
    "helpers.results": 4, "helpers.scoreboard": 4, "helpers.claims": 4, "helpers.units": 4, "helpers.verdicts": 4, "helpers.plots": 4, "helpers.widgets": 4,
}
#: Modules a package may never import, whatever their floor.
FORBIDDEN: dict[str, tuple[str, ...]] = {"helpers.models": ("helpers.io", "helpers.cache", "helpers.train")}
MAX_SETUP_LINES = 8
MAX_NOTEBOOK_CODE_LINES = 200


def module_names(package_dir: Path) -> dict[str, Path]:
    """``{dotted name: file}`` for every module of the package rooted at ``package_dir``."""
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def floor(name: str) -> int | None:
    matches = [prefix for prefix in FLOORS if name == prefix or name.startswith(prefix + ".")]
    return FLOORS[max(matches, key=len)] if matches else None


def _resolve(module: str, is_package: bool, node: ast.ImportFrom | ast.Import, known: set[str]) -> list[str]:
    """The package modules that an import statement of ``module`` loads."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] in {k.split(".")[0] for k in known}]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] not in {k.split(".")[0] for k in known}:
        return []
    out = []
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        out.append(sub if sub in known else target)
    return out


def import_graph(package_dir: Path) -> tuple[dict[str, set[str]], list[str]]:
    """Module-level imports between the package's modules, and every import of a package module made inside a
    function (as ``"file:line"`` texts)."""
    names = module_names(package_dir)
    known = set(names)
    graph: dict[str, set[str]] = {name: set() for name in names}
    local: list[str] = []
    for name, path in names.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"

        def visit(node: ast.AST, in_function: bool) -> None:
            for child in ast.iter_child_nodes(node):
                inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    targets = [t for t in _resolve(name, is_package, child, known) if t != name]
                    if targets and inner:
                        local.append(f"{path.relative_to(package_dir.parent)}:{child.lineno}")
                    elif not isinstance(node, ast.If) or not _is_type_checking(node):
                        graph[name].update(targets)
                visit(child, inner)

        visit(tree, False)
    return graph, local


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for source, targets in graph.items():
        if floor(source) is None:
            problems.append(f"{source} has no floor: add it to FLOORS and to the README's Design section")
            continue
        for target in sorted(targets):
            if floor(target) is not None and floor(target) > floor(source):
                problems.append(f"{source} (floor {floor(source)}) imports {target} (floor {floor(target)}): up a layer")
            for package, banned in FORBIDDEN.items():
                if (source == package or source.startswith(package + ".")) and any(
                        target == b or target.startswith(b + ".") for b in banned):
                    problems.append(f"{source} imports {target}: {package} holds definitions only")
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), plus self-imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            strongconnect(v)
    return found


# -- the package ------------------------------------------------------------------------------------

GRAPH, LOCAL = import_graph(ROOT / "helpers")


def test_every_import_goes_down_a_layer():
    assert layer_violations(GRAPH) == []


def test_there_are_no_import_cycles():
    assert cycles(GRAPH) == []


def test_no_helpers_module_is_imported_inside_a_function():
    assert LOCAL == []


# -- the checker itself catches what it should ---------------------------------------------------------

def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / "helpers" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path / "helpers"


def test_the_checker_catches_an_upward_import_a_cycle_and_a_local_import(tmp_path):
    pkg = _package(tmp_path, {
        "__init__.py": "",
        "models/__init__.py": "from .net import Net\n",
        "models/net.py": "from ..train import fit\nclass Net: ...\n",          # models -> train: up
        "train/__init__.py": "from .loop import fit\n",
        "train/loop.py": "from ..models import Net\ndef fit():\n    from ..results import Run\n",  # local import
        "results.py": "import helpers.train\n",
    })
    graph, local = import_graph(pkg)
    problems = layer_violations(graph)
    assert any("helpers.models.net (floor 1) imports helpers.train" in p for p in problems)
    assert any("helpers.models.net imports helpers.train: helpers.models holds definitions only" in p
               for p in problems)
    assert [c for c in cycles(graph) if "helpers.models.net" in c]  # net -> train -> loop -> models -> net
    assert local == ["helpers/train/loop.py:3"]


# -- notebooks ---------------------------------------------------------------------------------------

NOTEBOOKS = sorted((ROOT / "book").glob("ch*/*.ipynb"))


def _code_lines(source: str) -> list[str]:
    return [line for line in source.splitlines() if line.strip() and not line.strip().startswith("#")]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_notebook_is_thin(path):
    cells = [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]
    sources = ["".join(c["source"]) for c in cells]
    setup = [s for s in sources if "results.start(" in s]
    assert len(setup) == 1, "one setup cell opens the run with results.start"
    assert len([line for line in setup[0].splitlines() if line.strip()]) <= MAX_SETUP_LINES, setup[0]
    total = sum(len(_code_lines(s)) for s in sources)
    assert total <= MAX_NOTEBOOK_CODE_LINES, f"{total} code lines"
