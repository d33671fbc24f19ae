"""Unstructured pruning: masks on ``torch.nn.utils.prune``, magnitude pruning, lottery tickets.

A mask is a ``{parameter name: 0/1 tensor}`` dict over the prunable (Linear / Conv2d) weights; every
pruning method in the book produces one and attaches it with :func:`apply_masks`.
"""
from __future__ import annotations

from .lottery import lottery_ticket
from .magnitude import magnitude_masks, prune_magnitude
from .masks import (
    apply_masks,
    current_masks,
    density,
    effective_weights,
    is_pruned,
    layer_density,
    load_masked_state_dict,
    prunable_parameters,
    random_masks,
    remove_masks,
)

__all__ = [
    "prunable_parameters",
    "apply_masks",
    "current_masks",
    "effective_weights",
    "density",
    "layer_density",
    "remove_masks",
    "random_masks",
    "load_masked_state_dict",
    "is_pruned",
    "magnitude_masks",
    "prune_magnitude",
    "lottery_ticket",
]
