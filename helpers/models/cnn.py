"""Convolutional nets: the MNIST CNN of Madry et al. at the capacity scales of Paper 1 (Table I),
and the binary feature CNN of Paper 1, Sec. IV."""
from __future__ import annotations

import torch
import torch.nn as nn

#: Paper 1, Table I: (conv1 filters, conv2 filters, FC neurons, the paper's parameter count) per scale.
CAPACITY_SCALES: dict[int, tuple[int, int, int, int]] = {
    0: (2, 4, 100, 5_590),
    1: (4, 8, 200, 20_000),
    2: (8, 16, 400, 80_000),
    3: (16, 32, 800, 320_000),
    4: (32, 64, 1600, 1_200_000),
    5: (64, 128, 3200, 4_800_000),
}


class SmallCNN(nn.Module):
    """conv5x5(c1) -> ReLU -> maxpool2 -> conv5x5(c2) -> ReLU -> maxpool2 -> FC(fc) -> ReLU -> FC(out).

    Madry et al.'s MNIST network with 'same' padding (c1=32, c2=64, fc=1024); ``features`` gives the
    penultimate activations, ``head`` the last linear layer.
    """

    def __init__(self, c1: int, c2: int, fc: int, num_outputs: int = 10, in_channels: int = 1, image_size: int = 28):
        super().__init__()
        if min(c1, c2, fc, num_outputs, in_channels) < 1 or image_size < 4:
            raise ValueError(f"widths must be >= 1 and image_size >= 4, got c1={c1}, c2={c2}, fc={fc}, "
                             f"num_outputs={num_outputs}, in_channels={in_channels}, image_size={image_size}")
        side = image_size // 4
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(c2 * side * side, fc), nn.ReLU(),
        )
        self.head = nn.Linear(fc, num_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate activations f(x) (after the ReLU), one row per image."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def capacity_cnn(scale: int, num_classes: int = 10, in_channels: int = 1, image_size: int = 28) -> SmallCNN:
    """The MNIST CNN at capacity scale 0..5 of Paper 1, Table I (filters and FC width double per scale)."""
    if scale not in CAPACITY_SCALES:
        raise ValueError(f"scale must be one of {sorted(CAPACITY_SCALES)}, got {scale!r}")
    c1, c2, fc, _ = CAPACITY_SCALES[scale]
    return SmallCNN(c1, c2, fc, num_classes, in_channels, image_size)


class BinaryFeatureCNN(SmallCNN):
    """A shallow CNN with ``n_features`` penultimate features and one logit: sigmoid(w . f(x) + b) (Paper 1, Sec. IV).

    ``forward`` returns the logit with shape (N,), so the logistic loss is the classification loss.
    """

    def __init__(self, n_features: int = 100, c1: int = 16, c2: int = 32, in_channels: int = 1, image_size: int = 28):
        super().__init__(c1, c2, n_features, num_outputs=1, in_channels=in_channels, image_size=image_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).squeeze(-1)
