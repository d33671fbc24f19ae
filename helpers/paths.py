"""Where the project's files live: the repository root, the data root and the work root; how a path is shown on a
page (never as the building machine's absolute path); and whether this process is a dry run of the paper rows
(``BOOK_DRY_RUN=1``). Core: imports nothing of helpers."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["repo_root", "data_root", "work_root", "dry_run", "DRY_RUN_ENV", "shown", "shown_in", "ShownPath"]

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


def _display_roots() -> list[tuple[Path, str]]:
    """(absolute root, how it is written), most specific first: the data root when it lies outside the repository
    (``$BOOK_DATA``), then the repository (``<repo>``)."""
    repo, data = repo_root(), data_root()
    roots = [] if data.is_relative_to(repo) else [(data, "$BOOK_DATA")]
    return roots + [(repo, "<repo>")]


def shown(path: str | os.PathLike) -> str:
    """``path`` as a page shows it: ``<repo>/results/ch1/x.json``, ``<repo>/data``, ``$BOOK_DATA/d4rl`` (a data root
    outside the repository); any other path as it is (it is then one the reader chose, e.g. ``$BOOK_RESULTS``)."""
    absolute = Path(os.fspath(path)).expanduser()
    absolute = absolute if absolute.is_absolute() else absolute.resolve()
    for root, label in _display_roots():
        if absolute == root:
            return label
        if absolute.is_relative_to(root):
            return f"{label}/{absolute.relative_to(root).as_posix()}"
    return os.fspath(path)


def shown_in(text: str) -> str:
    """``text`` with every occurrence of the data root's and the repository's absolute paths written as
    :func:`shown` writes them (for messages that end up on a page, e.g. why a dataset was substituted)."""
    for root, label in _display_roots():
        text = text.replace(str(root), label)
    return text


class ShownPath(type(Path())):
    """A path that prints as :func:`shown` (``str``, ``repr``, f-strings) but opens, stats and compares as the real
    absolute path (``os.fspath``): what :meth:`helpers.results.Run.save` returns, so ``print(run.save())`` puts no
    machine path on a page."""

    def __fspath__(self) -> str:
        return Path.__str__(self)

    def __str__(self) -> str:
        return shown(Path(Path.__str__(self)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"
