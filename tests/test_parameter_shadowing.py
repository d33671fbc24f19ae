"""No notebook rebinds one of its papermill parameters before ``results.start`` reads them.

``results.start(..., globals())`` takes a parameter from the notebook's globals: a later import or assignment of
the same name (``from helpers.pruning import SCOPES`` beside a ``SCOPES`` parameter) would silently replace the
reader's ``None`` with another value, and the run would ignore its scale table. Found in lottery_tickets.ipynb.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("ch*/*.ipynb"))


def bound_names(tree: ast.AST) -> set[str]:
    """Names bound at the top level of a cell: imports (their alias), assignments, defs."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
    return names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_cell_before_results_start_rebinds_a_parameter(path):
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    params = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    names = bound_names(ast.parse("".join(params["source"])))
    for cell in cells[cells.index(params) + 1:]:
        source = "".join(cell["source"])
        tree = ast.parse(source)
        start = next((i for i, node in enumerate(tree.body) if "results.start(" in ast.unparse(node)), None)
        before = ast.Module(body=tree.body[:start] if start is not None else tree.body, type_ignores=[])
        clash = names & bound_names(before)
        assert not clash, f"{path.name}: a cell rebinds the parameter(s) {sorted(clash)} before results.start reads them"
        if start is not None:
            break
