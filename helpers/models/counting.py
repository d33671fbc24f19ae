"""The thesis's count regressor (Paper 5, thesis Sec. 2.2): strided convolutions, a linear layer, a ReLU."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from .. import checks
from ..shapes import BOOK_IMAGE_SIZE, SHAPE_TYPES
from .defences import PixelScale

__all__ = ["ACTIVATIONS", "ConvSpec", "BOOK_LAYERS", "PAPER_LAYERS", "CountingCNN"]

ACTIVATIONS: tuple[str, ...] = ("relu", "softplus", "sigmoid")

#: paper's is the official ``ConvolutionalLarge`` (10 convolutions, 80 features for 1000 x 1000 images).
ConvSpec = tuple[int, int, int, int]
BOOK_LAYERS: tuple[ConvSpec, ...] = ((16, 5, 2, 2), (32, 5, 2, 2), (32, 3, 2, 1), (32, 3, 2, 1))
PAPER_LAYERS: tuple[ConvSpec, ...] = (
    (30, 7, 3, 0), (40, 7, 3, 0), (50, 7, 3, 0), (60, 5, 1, 2), (70, 5, 1, 2),
    (60, 5, 1, 2), (50, 5, 2, 0), (40, 5, 2, 0), (30, 3, 1, 0), (20, 3, 1, 0),
)


def _activation(name: str) -> nn.Module:
    layers = {"relu": nn.ReLU, "softplus": nn.Softplus, "sigmoid": nn.Sigmoid}
    return layers[checks.choice("activation", name, ACTIVATIONS)]()


class CountingCNN(nn.Module):
    """Strided convolutions with ``activation``, then a linear layer and a ReLU: one count per shape type.

    The thesis's network (Sec. 2.2: "no other layers besides activation functions and a linear layer", a
    ReLU on the outputs; Sec. 2.2.3: ReLU, softplus, sigmoid). ``layers`` lists (out_channels, kernel, stride,
    padding); ``PAPER_LAYERS`` with ``image_size=1000`` is the official ``ConvolutionalLarge``. ``batch_norm``
    puts a BatchNorm2d after each convolution, standing in for the Batch Renormalization the thesis needed to
    train the sigmoid net (in eval mode both are one affine map per channel, so saliency is unaffected).
    The head's bias starts at ``output_bias``: with PyTorch's default start an output's ReLU is often dead
    on every image, and a dead output never learns. ``pixel_scale`` multiplies the [0, 1] input first (255: the
    official net's 0..255 pixels, for which its lr 0.07 was set; 1: none); ``body[0]`` stays the first convolution.
    """

    def __init__(
        self,
        activation: str = "relu",
        num_outputs: int = len(SHAPE_TYPES),
        layers: Sequence[ConvSpec] = BOOK_LAYERS,
        image_size: int = BOOK_IMAGE_SIZE,
        in_channels: int = 3,
        batch_norm: bool = False,
        output_bias: float = 1.0,
        pixel_scale: float = 1.0,
    ):
        super().__init__()
        self.pixels = PixelScale(pixel_scale)  # checks pixel_scale > 0 by name
        checks.choice("activation", activation, ACTIVATIONS)
        checks.integer("num_outputs", num_outputs, low=1)
        checks.integer("in_channels", in_channels, low=1)
        side, channels, body = checks.integer("image_size", image_size, low=1), in_channels, []
        for out_channels, kernel, stride, padding in layers:
            body.append(nn.Conv2d(channels, out_channels, kernel, stride, padding))
            if batch_norm:
                body.append(nn.BatchNorm2d(out_channels))
            body.append(_activation(activation))
            side, channels = (side + 2 * padding - kernel) // stride + 1, out_channels
            if side < 1:
                raise ValueError(f"layers shrink a {image_size} px image to nothing; give a larger image_size")
        self.activation = activation
        self.body = nn.Sequential(*body, nn.Flatten())
        self.head = nn.Linear(channels * side * side, num_outputs)
        nn.init.constant_(self.head.bias, output_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.head(self.body(self.pixels(x))))


