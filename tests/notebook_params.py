"""Open a chapter notebook's run from its own cells, without executing the notebook.

``notebook_setup`` executes only the notebook's parameters cell and the hidden cell that defines ``SCALES`` and
``RULES`` (its imports included); ``open_run`` hands them to :func:`helpers.results.start` with the given
parameters over the notebook's own defaults, as the notebook's setup cell would. The ``test_params_<chapter>.py``
files use them to show that a bad parameter is refused by its notebook name before any work.
"""
from __future__ import annotations

import json
from pathlib import Path

from helpers import results

BOOK = Path(__file__).resolve().parents[1] / "book"


def notebook_setup(chapter: str, notebook: str) -> tuple[dict, dict, dict]:
    """(the parameters as the notebook's parameters cell sets them, its ``SCALES``, its ``RULES``)."""
    cells = [c for c in json.loads((BOOK / chapter / f"{notebook}.ipynb").read_text(encoding="utf-8"))["cells"]
             if c["cell_type"] == "code"]
    params: dict = {}
    exec("".join(next(c for c in cells if "parameters" in c["metadata"].get("tags", []))["source"]), {}, params)
    namespace: dict = {}
    source = next("".join(c["source"]) for c in cells if "RULES = " in "".join(c["source"]))
    exec(compile(source, f"{notebook}.ipynb:rules", "exec"), namespace)
    return {k: v for k, v in params.items() if k.isupper()}, namespace["SCALES"], namespace["RULES"]


def open_run(chapter: str, notebook: str, *, book_dir: Path | None = None, **params) -> results.Run:
    """``results.start`` of the notebook at smoke scale with ``params`` over its own defaults."""
    defaults, scales, rules = notebook_setup(chapter, notebook)
    return results.start(chapter, notebook, scales, {**defaults, "SCALE": "smoke", **params}, rules=rules,
                         threads=None, book_dir=book_dir)
