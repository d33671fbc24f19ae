"""Shared fixtures: small deterministic models and data, offline by default."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("BOOK_OFFLINE", "1")


@pytest.fixture
def tiny_cnn() -> torch.nn.Module:
    """A small trained-free CNN on 1x28x28 inputs (deterministic weights)."""
    from helpers.models import SmallCNN

    torch.manual_seed(0)
    return SmallCNN(4, 8, 32).eval()


@pytest.fixture
def images() -> tuple[torch.Tensor, torch.Tensor]:
    """32 random images in [0, 1] and labels."""
    g = torch.Generator().manual_seed(1)
    return torch.rand(32, 1, 28, 28, generator=g), torch.randint(0, 10, (32,), generator=g)


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Unit tests use tiny tensors: one torch thread is as fast and leaves the other core free."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def shown(monkeypatch) -> list:
    """The figures a plotting helper shows (``plt.show`` records the current figure instead of showing it),
    drawn on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures: list = []
    monkeypatch.setattr(plt, "show", lambda *args, **kwargs: figures.append(plt.gcf()))
    yield figures
    plt.close("all")
