"""Shared code of the Lean & Robust book.

Models, attacks, pruning, training loops, metrics and results live here so that every chapter
uses one implementation of each idea. Notebooks import this package and stay thin.
"""
from __future__ import annotations

import contextlib
import inspect
import os
import random
from typing import Iterator

import numpy as np
import torch

from . import checks

__version__ = "0.1.0"
__all__ = ["device", "eval_mode", "model_device", "batch_slices", "limit_cpu_threads", "seed_everything", "show", "__version__"]


def device() -> torch.device:
    """The best available device: CUDA, then Apple MPS, then the CPU.

    Set ``BOOK_DEVICE`` (e.g. ``cpu``) to force one.
    """
    forced = os.environ.get("BOOK_DEVICE")
    if forced:
        return torch.device(forced)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
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
