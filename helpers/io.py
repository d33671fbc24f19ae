"""Atomic file writes and checksummed checkpoints that load safely or fail naming the file.

Every checkpoint is written through a temporary file and a rename, with a ``<file>.sha256`` beside it;
:func:`load_checkpoint` verifies that checksum, loads with ``weights_only=True`` and turns every failure
(truncated, empty, corrupt, a flipped bit, other keys) into a :class:`CheckpointError` that names the path
and says how to recover: delete the file and the notebook retrains.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

import torch

__all__ = ["CheckpointError", "atomic_write_bytes", "atomic_write_json", "atomic_torch_save", "load_checkpoint",
           "checksum_path", "clean_stale_temporaries"]

#: A temporary file of a write older than this (seconds) is from a killed write and is removed.
STALE_TMP_SECONDS = 600.0


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and how to recover."""


def _file_mode() -> int:
    """What ``open()`` would give a new file under the current umask (``mkstemp`` alone gives 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def checksum_path(path: str | os.PathLike) -> Path:
    """The checksum file written beside ``path``: ``<path>.sha256``."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def clean_stale_temporaries(path: str | os.PathLike, older_than: float = STALE_TMP_SECONDS) -> list[Path]:
    """Remove temporary files that a killed write of ``path`` left behind (``.<name>.*.tmp`` older than
    ``older_than`` seconds); return what was removed."""
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    now = time.time()
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            if now - tmp.stat().st_mtime > older_than:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:
            pass
    return removed


def _write_via_temporary(path: Path, write) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename: never a half-written file."""
    return _write_via_temporary(Path(path), lambda handle: handle.write(data))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` atomically, then its checksum beside it (a crash leaves the previous
    checkpoint and checksum intact, or a new checkpoint whose missing checksum is rewritten on load)."""
    path = Path(path)
    _write_via_temporary(path, lambda handle: torch.save(obj, handle))
    atomic_write_bytes(checksum_path(path), (_sha256(path) + "\n").encode())
    return path


def _fail(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path} {why}; delete it (and {checksum_path(path).name} beside it) "
                           "and re-run to rebuild it")


def load_checkpoint(path: str | os.PathLike, keys: Iterable[str] = ()) -> Any:
    """Load a checkpoint written by :func:`atomic_torch_save`: checksum verified, ``weights_only=True``.

    ``keys``: names the loaded mapping must hold. A checkpoint without a checksum file (written before
    checksums existed, or by a save killed between the two renames) is loaded and then given one.
    Every failure is a :class:`CheckpointError` naming ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "does not exist")
    if path.stat().st_size == 0:
        raise _fail(path, "is empty (a write was interrupted)")
    recorded = checksum_path(path)
    actual = _sha256(path)
    if recorded.is_file():
        expected = recorded.read_text(encoding="ascii", errors="replace").strip()
        if expected != actual:
            raise _fail(path, f"does not match its checksum (sha256 {actual[:12]}..., recorded {expected[:12]}...):"
                              " the file is corrupt")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises OSError, EOFError, RuntimeError, UnpicklingError, ... for bad files
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights_only" in reason or "Weights only" in reason:
            reason = "it holds objects other than tensors and plain containers"
        raise _fail(path, f"cannot be read as a checkpoint ({type(err).__name__}: {reason[:200]})") from None
    missing = [k for k in keys if not (isinstance(obj, dict) and k in obj)]
    if missing:
        held = ", ".join(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
        raise _fail(path, f"lacks {', '.join(missing)} (it holds {held}): it was written by other code")
    if not recorded.is_file():
        atomic_write_bytes(recorded, (actual + "\n").encode())
    return obj
