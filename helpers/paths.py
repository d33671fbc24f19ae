"""Where the project's files live: the repository root and the data root (core; imports nothing of helpers)."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["repo_root", "data_root"]


def repo_root() -> Path:
    """The project's root: the folder that holds ``helpers/``."""
    return Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """The folder that holds datasets, checkpoints and caches: ``$BOOK_DATA`` if set, else ``<repo root>/data``."""
    env = os.environ.get("BOOK_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return repo_root() / "data"
