"""Fully connected networks (LeNet-300-100 style) and parameter counting."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters; masked weights count once, as their dense tensor."""
    return sum(p.numel() for name, p in model.named_parameters() if (p.requires_grad or not trainable_only))


class MLP(nn.Sequential):
    """Flatten -> [Linear -> ReLU] per hidden width -> Linear to the classes.

    ``MLP(784, (300, 100, 100), 10)`` is the fully connected net of Paper 1, Sec. V-A.
    """

    def __init__(self, in_features: int = 784, hidden: Sequence[int] = (300, 100, 100), num_classes: int = 10):
        if in_features < 1 or num_classes < 1 or any(h < 1 for h in hidden):
            raise ValueError(f"layer widths must be >= 1, got in_features={in_features}, hidden={hidden}, num_classes={num_classes}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102 (nn.Sequential's)
        return super().forward(x)
