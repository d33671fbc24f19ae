"""Shared code of the Lean & Robust book.

Models, attacks, pruning, training loops, metrics and results live here so that every chapter
uses one implementation of each idea. Notebooks import this package and stay thin.
"""
from __future__ import annotations

import contextlib
import functools
import glob
import inspect
import os
import random
import warnings
from typing import Iterator

import numpy as np
import torch

from . import checks

__version__ = "0.1.0"
__all__ = ["device", "DeviceWarning", "gpu_unusable_reason", "eval_mode", "model_device", "batch_slices", "limit_cpu_threads", "seed_everything", "show", "__version__"]


class DeviceWarning(UserWarning):
    """Warned when an NVIDIA GPU is present but torch cannot use it, or a paper-scale run starts on the CPU."""


def _nvidia_gpu_present() -> bool:
    """Whether the machine has an NVIDIA GPU with its kernel driver loaded (whatever torch makes of it)."""
    return bool(glob.glob("/proc/driver/nvidia/gpus/*") or glob.glob("/dev/nvidia[0-9]*"))


def gpu_unusable_reason() -> str | None:
    """Why an NVIDIA GPU that this machine has cannot be used by torch (a CPU-only torch build, or CUDA that fails
    to initialise, e.g. a driver older than the build's CUDA), or None (no such GPU, or it works)."""
    if not _nvidia_gpu_present():
        return None
    if torch.version.cuda is None:
        return (f"torch {torch.__version__} is a CPU-only build (installed with `make env TORCH_INDEX=cpu`?); "
                f"reinstall from PyPI's default wheels (`rm -rf .venv && make env`) to use the GPU")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = torch.cuda.is_available()
    if available:
        return None
    said = "; ".join(str(w.message).strip() for w in caught) or "torch.cuda.is_available() is False"
    return (f"CUDA {torch.version.cuda} of torch {torch.__version__} does not initialise ({said}); check the NVIDIA "
            f"driver (`nvidia-smi`) against that CUDA version")


@functools.lru_cache(maxsize=None)
def _warn_unusable_gpu_once() -> None:
    reason = gpu_unusable_reason()
    if reason:
        warnings.warn(f"An NVIDIA GPU is present but unusable, so helpers.device() falls back to the CPU: {reason}. "
                      f"Set BOOK_DEVICE=cpu to choose the CPU and silence this.", DeviceWarning, stacklevel=3)


def device() -> torch.device:
    """The best available device: CUDA, then Apple MPS, then the CPU.

    Set ``BOOK_DEVICE`` (e.g. ``cpu``) to force one. Falling back to the CPU although an NVIDIA GPU is present warns
    once (a :class:`DeviceWarning` naming the cause: :func:`gpu_unusable_reason`).
    """
    forced = os.environ.get("BOOK_DEVICE")
    if forced:
        return torch.device(forced)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    _warn_unusable_gpu_once()
    return torch.device("cpu")


def limit_cpu_threads(dev: torch.device, threads: int = 1) -> None:
    """On the CPU, run torch ops on ``threads`` threads; on an accelerator, do nothing.

    Small models on small batches gain nothing from intra-op threads, and on a shared CPU two threads per
    process contend badly (measured here: 31 vs 278 images/s for a 34k-weight CNN on batches of 20).
    """
    if not (isinstance(threads, int) and threads >= 1):
        raise ValueError(f"threads must be an int >= 1, got {threads!r}")
    if torch.device(dev).type == "cpu":
        torch.set_num_threads(threads)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch, make CPU kernels deterministic, and return a generator.

    The returned ``torch.Generator`` is the one to pass to helpers that draw random numbers.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.benchmark = False
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def show(obj) -> None:
    """Display the source of a helper in a notebook (syntax-highlighted when IPython is there)."""
    source = inspect.getsource(obj)
    try:
        from IPython.display import Code, display

        display(Code(source, language="python"))
    except ImportError:  # plain Python
        print(source)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put ``model`` in eval mode for the block and restore its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (the CPU for a model without parameters)."""
    return next(model.parameters(), torch.empty(0)).device


def batch_slices(n: int, batch_size: int) -> Iterator[slice]:
    """``slice(0, b), slice(b, 2b), ...`` covering ``range(n)``; ``batch_size`` must be an int >= 1."""
    checks.integer("batch_size", batch_size, low=1)
    for start in range(0, n, batch_size):
        yield slice(start, start + batch_size)
