"""Accuracy and robust accuracy; chapters add their own measures (PSNR, FLOPs, sizes) here."""
from __future__ import annotations

import torch


def predictions(output: torch.Tensor) -> torch.Tensor:
    """Class predictions: arg-max of (N, K) logits, or ``logit > 0`` for a single logit (N,)."""
    return (output > 0).long() if output.dim() == 1 else output.argmax(dim=1)


def correct(output: torch.Tensor, y: torch.Tensor) -> int:
    """How many predictions equal the labels."""
    return int((predictions(output) == y).sum())


def accuracy(output: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of correct predictions, in [0, 1]."""
    if len(y) == 0:
        raise ValueError("accuracy of an empty batch is undefined")
    return correct(output, y) / len(y)
