"""Open a chapter notebook's run from its rules cell, without executing the notebook.

``rules_cell`` executes only the notebook's hidden cell that defines ``SCALES`` and ``RULES`` (its imports
included); ``open_run`` hands them to :func:`helpers.results.start` with the given parameters, as the notebook's
setup cell would. The ``test_params_<chapter>.py`` files use them to show that a bad parameter is refused by its
notebook name before any work.
"""
from __future__ import annotations

import json
from pathlib import Path

from helpers import results

BOOK = Path(__file__).resolve().parents[1] / "book"


def rules_cell(chapter: str, notebook: str) -> dict:
    """The namespace of the notebook's rules cell: its imports, ``SCALES`` and ``RULES``."""
    cells = json.loads((BOOK / chapter / f"{notebook}.ipynb").read_text(encoding="utf-8"))["cells"]
    source = next("".join(c["source"]) for c in cells if c["cell_type"] == "code" and "RULES = " in "".join(c["source"]))
    namespace: dict = {}
    exec(compile(source, f"{notebook}.ipynb:rules", "exec"), namespace)
    return namespace


def open_run(chapter: str, notebook: str, **params) -> results.Run:
    """``results.start`` of the notebook at smoke scale, seed 0, with ``params`` over those defaults."""
    cell = rules_cell(chapter, notebook)
    return results.start(chapter, notebook, cell["SCALES"], {"SCALE": "smoke", "SEED": 0, **params},
                         rules=cell["RULES"], threads=None)
