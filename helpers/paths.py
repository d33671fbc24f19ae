"""Where the project's files live: the repository root, the data root and the work root; and whether this process is
a dry run of the paper rows (``BOOK_DRY_RUN=1``). Core: imports nothing of helpers."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["repo_root", "data_root", "work_root", "dry_run", "DRY_RUN_ENV"]

#: The switch of a dry run: every notebook runs its ``paper`` row with its loops capped (:mod:`helpers.results`).
DRY_RUN_ENV = "BOOK_DRY_RUN"


def repo_root() -> Path:
    """The project's root: the folder that holds ``helpers/``."""
    return Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """The folder that holds datasets, checkpoints and caches: ``$BOOK_DATA`` if set, else ``<repo root>/data``."""
    env = os.environ.get("BOOK_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return repo_root() / "data"


def dry_run() -> bool:
    """Whether ``$BOOK_DRY_RUN`` asks for a dry run of the paper rows (``1``, ``true`` or ``yes``; anything else that
    is not empty or ``0``/``false``/``no`` is a ``ValueError`` naming the variable)."""
    value = os.environ.get(DRY_RUN_ENV, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ValueError(f"{DRY_RUN_ENV} must be 1 (a dry run of the paper rows) or 0; got {value!r}")


def work_root() -> Path:
    """Where the book writes what it trains or generates (checkpoints, generated datasets, sweeps): the data root, or
    ``<data root>/dry-run`` in a dry run, so that the capped models of a dry run never stand in for real ones."""
    return data_root() / "dry-run" if dry_run() else data_root()
