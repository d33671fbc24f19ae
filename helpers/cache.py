"""The one place that decides a run's identity: settings -> digest -> path, and a data fingerprint.

Every load-or-train cache in the book (classifier checkpoints, dynamic nets, once-for-all models, generated
offline-RL datasets, sweep results) is keyed here, so "the same run" means one thing everywhere
(open_lth's ``Desc.hashname`` lesson). The digest recipe is that of the book's first checkpoints
(sha256 of the settings as sorted JSON), so models cached by earlier builds still load.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from .paths import work_root

__all__ = ["digest", "fingerprint", "cache_path"]


def digest(settings: dict[str, Any], length: int = 12) -> str:
    """The first ``length`` hex digits of sha256 over ``settings`` as sorted JSON (non-JSON values as ``str``)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:length]


def fingerprint(*tensors: torch.Tensor, length: int = 16) -> str:
    """A digest of the tensors' bytes, in order: "the same data" for a cache key.

    Callers pass what identifies their data, e.g. ``fingerprint(y, x[:, :, ::7, ::7])`` (labels and a pixel
    subsample) or ``fingerprint(y)`` (labels only).
    """
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:length]


def cache_path(kind: str, settings: dict[str, Any], *, folder: str = "checkpoints", suffix: str = ".pt",
               length: int = 12) -> Path:
    """``<data root>/<folder>/<kind>-<digest of settings><suffix>``: where a cached run of ``kind`` lives."""
    return work_root() / folder / f"{kind}-{digest(settings, length)}{suffix}"
