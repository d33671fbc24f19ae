"""ResNets for small images with optional lambda conditioning (Chapter 4).

``cifar_resnet(20 | 32 | 56 ...)`` is He et al.'s CIFAR ResNet (Sec. 4.2 of He et al. 2016: 3 stages of
(depth - 2) / 6 basic blocks, widths 16/32/64, parameter-free zero-padding shortcuts, "option A");
``resnet34`` is the ImageNet BasicBlock [3, 4, 6, 3] net adapted to 32x32 as in OAT's code (3x3 stem, no
max-pool, 1x1 projection shortcuts). ``conditioning`` = "none" | "float" | "oat" (or a
:class:`~helpers.models.conditioned.Conditioning`) swaps in FLOAT's noisy convs and dual BN, or OAT's dual BN
with FiLM after every BN except the shortcut's (as OAT's BasicBlockOAT). A ``Conditioning`` with ``widths``
builds the slimmable version (FLOATS slim): switch it with :func:`~helpers.models.slimmable.set_width`.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import checks
from .conditioned import Conditioning, set_lambda

__all__ = ["ResNet", "BasicBlock", "cifar_resnet", "resnet34"]

SHORTCUTS = ("pad", "conv")


class PadShortcut(nn.Module):
    """He et al.'s option A: subsample by ``stride`` and append zero channels (no parameters).

    The output has ``planes / in_planes`` times the input's channels, so a slimmed (narrower) input works too.
    """

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.in_planes, self.planes, self.stride = in_planes, planes, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        extra = x.shape[1] * self.planes // self.in_planes - x.shape[1]  # integer ops: shape arithmetic, no tensor op
        return F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, 0, extra))


class BasicBlock(nn.Module):
    """conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus the shortcut, then ReLU (He et al. 2016, Fig. 2).

    Each BN is a plain BN, FLOAT's dual BN, or OAT's dual BN + FiLM, as ``conditioning`` builds it.
    """

    def __init__(self, in_planes: int, planes: int, stride: int, shortcut: str, conditioning: Conditioning) -> None:
        super().__init__()
        self.conv1 = conditioning.conv(in_planes, planes, 3, stride, 1)
        self.bn1 = conditioning.norm(planes)
        self.conv2 = conditioning.conv(planes, planes, 3, 1, 1)
        self.bn2 = conditioning.norm(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            if shortcut == "pad":
                self.shortcut = PadShortcut(in_planes, planes, stride)
            else:
                self.shortcut = nn.Sequential(conditioning.conv(in_planes, planes, 1, stride),
                                              conditioning.norm(planes, film=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """3x3 stem -> stages of basic blocks -> global average pool -> linear (He et al. 2016).

    ``features`` gives the pooled penultimate activations; conditioned models start at lambda = 0 (clean path).
    """

    def __init__(self, stage_blocks: Sequence[int], stage_widths: Sequence[int], stage_strides: Sequence[int],
                 shortcut: str = "pad", num_classes: int = 10, in_channels: int = 3,
                 conditioning: str | Conditioning = "none") -> None:
        super().__init__()
        checks.choice("shortcut", shortcut, SHORTCUTS)
        if not (len(stage_blocks) == len(stage_widths) == len(stage_strides) >= 1):
            raise ValueError("stage_blocks, stage_widths and stage_strides must have the same, non-zero length")
        if min(*stage_blocks, *stage_widths, *stage_strides, num_classes, in_channels) < 1:
            raise ValueError(f"blocks, widths, strides, num_classes and in_channels must be >= 1, got "
                             f"{list(stage_blocks)}, {list(stage_widths)}, {list(stage_strides)}, {num_classes}, {in_channels}")
        self.conditioning = cond = Conditioning.of(conditioning)
        self.conv1 = cond.conv(in_channels, stage_widths[0], 3, 1, 1, slim_in=False)
        self.bn1 = cond.norm(stage_widths[0])
        stages, width = [], stage_widths[0]
        for blocks, planes, stride in zip(stage_blocks, stage_widths, stage_strides):
            stage = []
            for i in range(blocks):
                stage.append(BasicBlock(width, planes, stride if i == 0 else 1, shortcut, cond))
                width = planes
            stages.append(nn.Sequential(*stage))
        self.layers = nn.Sequential(*stages)
        self.fc = cond.linear(width, num_classes)
        encoder = cond.encoder()
        if encoder is not None:
            self.lambda_encoding = encoder
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if cond.kind != "none":
            set_lambda(self, 0.0)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The globally pooled activations before the classifier, one row per image."""
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def cifar_resnet(depth: int = 20, num_classes: int = 10, in_channels: int = 3, width: int = 16,
                 conditioning: str | Conditioning = "none") -> ResNet:
    """He et al.'s CIFAR ResNet-``depth`` (depth = 6n + 2: 20, 32, 44, 56, 110; 0.27M parameters at depth 20).

    Widths ``width``, 2 ``width``, 4 ``width``; option-A shortcuts; FLOAT or OAT layers via ``conditioning``.
    """
    if not (isinstance(depth, int) and depth >= 8 and (depth - 2) % 6 == 0):
        raise ValueError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), got {depth!r}")
    checks.integer("width", width, low=1)
    n = (depth - 2) // 6
    return ResNet((n, n, n), (width, 2 * width, 4 * width), (1, 2, 2), "pad", num_classes, in_channels, conditioning)


def resnet34(num_classes: int = 10, in_channels: int = 3, width: int = 64,
             conditioning: str | Conditioning = "none") -> ResNet:
    """ResNet-34 (BasicBlock [3, 4, 6, 3]) for 32x32 inputs as in OAT's code, FLOAT's paper-scale model (Sec. 4.1).

    Widths ``width`` x (1, 2, 4, 8); 1x1 projection shortcuts; 21.28M parameters at width 64 and 10 classes.
    """
    checks.integer("width", width, low=1)
    return ResNet((3, 4, 6, 3), tuple(width * m for m in (1, 2, 4, 8)), (1, 2, 2, 2), "conv", num_classes,
                  in_channels, conditioning)
