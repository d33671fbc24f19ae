"""Progress bars: widgets for a reader in JupyterLab, Notebook, VS Code or Colab; plain text lines when the notebook
is executed by the book, papermill or nbval (and in scripts and tests). Core: imports nothing of helpers.

``from helpers.progress import tqdm`` is a drop-in for ``from tqdm.auto import tqdm``. Executed headlessly, a bar
prints nothing for its first :data:`TEXT_INTERVAL` seconds, then one line every :data:`TEXT_INTERVAL` seconds, and
its final summary line when it closes (``desc: 100%|####| 50/50 [00:12<00:00, 4.1it/s]``); a ``leave=False`` bar that
was quick prints nothing. Lines go to stdout, so the built book shows no stderr, and no widget is embedded in a page.

``interactive()`` decides: ``$BOOK_HEADLESS`` (``1``: text, ``0``: widgets; the Makefile sets 1 for ``make book``,
``test``, ``run`` and ``paper-check``), else widgets only in a Jupyter kernel that a front end started: Jupyter Server
sets ``JPY_SESSION_NAME`` in its kernels' environment, Colab imports ``google.colab``, VS Code sets ``VSCODE_PID``.
Jupyter Book (nbclient), papermill and nbval start their kernels with none of these.
"""
from __future__ import annotations

import os
import sys
from typing import Any

from tqdm import std

__all__ = ["tqdm", "interactive", "HEADLESS_ENV", "TEXT_INTERVAL"]

#: ``1``: progress as text lines (an executed book, papermill, nbval); ``0``: widgets; unset: guessed (see above).
HEADLESS_ENV = "BOOK_HEADLESS"
#: Seconds between two text lines of one bar (and before its first one).
TEXT_INTERVAL = 30.0


def interactive() -> bool:
    """Whether a person is watching this kernel in a notebook front end (then bars are widgets)."""
    value = os.environ.get(HEADLESS_ENV, "").strip().lower()
    if value in ("1", "true", "yes"):
        return False
    if value in ("0", "false", "no"):
        return _in_kernel()
    if value:
        raise ValueError(f"{HEADLESS_ENV} must be 1 (text progress) or 0 (widgets); got {value!r}")
    front_end = "JPY_SESSION_NAME" in os.environ or "google.colab" in sys.modules or "VSCODE_PID" in os.environ
    return front_end and _in_kernel()


def _in_kernel() -> bool:
    shell = sys.modules.get("IPython")
    ipython = shell.get_ipython() if shell is not None and hasattr(shell, "get_ipython") else None
    return ipython is not None and type(ipython).__name__ == "ZMQInteractiveShell"


class _Lines:
    """A file for tqdm that turns its carriage-return redraws into whole lines on ``stream``."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.lines, self.last, self.muted = stream, 0, "", True

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line and line != self.last and not self.muted:
            self.stream.write(line + "\n")
            self.lines, self.last = self.lines + 1, line

    def flush(self) -> None:
        getattr(self.stream, "flush", lambda: None)()


class TextBar(std.tqdm):
    """tqdm as plain lines: silent for ``TEXT_INTERVAL`` s, then a line per ``TEXT_INTERVAL`` s and a final summary
    (also for a ``leave=False`` bar that printed a line)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._lines = _Lines(kwargs.pop("file", None) or sys.stdout)
        kwargs.update(file=self._lines, ascii=kwargs.get("ascii", True), ncols=kwargs.get("ncols", 100),
                      dynamic_ncols=False)
        for key in ("mininterval", "maxinterval"):
            kwargs[key] = max(float(kwargs.get(key) or 0.0), TEXT_INTERVAL)
        super().__init__(*args, **kwargs)
        self._lines.muted = False  # the opening "0%" line is not worth a line

    def close(self) -> None:
        if not self.disable and self.leave is False and self._lines.lines:
            self.leave = True
        super().close()


def tqdm(*args: Any, **kwargs: Any) -> std.tqdm:
    """A progress bar, as ``tqdm.auto.tqdm(*args, **kwargs)``: a widget when :func:`interactive`, else a
    :class:`TextBar`."""
    if interactive():
        from tqdm.auto import tqdm as widget_bar

        return widget_bar(*args, **kwargs)
    return TextBar(*args, **kwargs)
