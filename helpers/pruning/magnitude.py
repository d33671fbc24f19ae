"""Magnitude pruning: remove the weights with the smallest absolute value (Han et al. 2015).

Counts are exact: pruning a fraction ``amount`` of ``n`` remaining weights removes ``round(amount * n)``
of them, ties in ``|w|`` broken by position (layer order, then flat index), so the same model always
gives the same mask. Already-pruned weights stay pruned (masks only ever shrink here).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from .. import checks
from .masks import apply_masks, current_masks, effective_weights, prunable_parameters

__all__ = ["magnitude_masks", "prune_magnitude", "SCOPES"]

SCOPES = ("global", "layer")


def _prune_smallest(names: Sequence[str], amount: float, weights: Mapping[str, Tensor], masks: dict[str, Tensor]) -> None:
    """Zero, in ``masks``, the ``round(amount * remaining)`` remaining weights of ``names`` with the smallest |w|."""
    if not names or amount == 0:
        return
    device = weights[names[0]].device
    positions, scores = [], []
    offset = 0
    for name in names:
        kept = (masks[name].reshape(-1) != 0).to(device)
        index = kept.nonzero().squeeze(1)
        positions.append(index + offset)
        scores.append(weights[name].reshape(-1).to(device).abs()[index])
        offset += kept.numel()
    all_positions, all_scores = torch.cat(positions), torch.cat(scores)
    n_prune = round(amount * all_scores.numel())
    if n_prune == 0:
        return
    # Stable sort: equal magnitudes are removed in position order, so the result is deterministic.
    drop = all_positions[torch.sort(all_scores, stable=True).indices[:n_prune]]
    flat = torch.cat([masks[name].reshape(-1).to(device) for name in names])
    flat[drop] = 0
    for name, chunk in zip(names, torch.split(flat, [masks[name].numel() for name in names])):
        masks[name] = chunk.reshape(masks[name].shape).to(masks[name].device)


def magnitude_masks(
    model: nn.Module,
    amount: float,
    scope: str = "global",
    layer_amounts: Mapping[str, float] | None = None,
    include_output: bool = True,
) -> dict[str, Tensor]:
    """Masks that prune the fraction ``amount`` of the remaining weights with the smallest ``|effective weight|``.

    Han et al. 2015; global scope as in Frankle & Carbin 2019 (Sec. 4), layer-wise as in their Algorithm 1.

    ``scope="global"`` ranks all prunable weights together, except the layers named in ``layer_amounts``,
    which are pruned on their own at their own fraction; ``scope="layer"`` prunes each layer at ``amount``.
    ``include_output=False`` leaves the last Linear/Conv layer as it is. Returns the full mask of every
    prunable weight (unchanged layers included), ready for :func:`apply_masks`.
    """
    amount = checks.number("amount", amount, 0, 1, high_open=True)
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    all_params = prunable_parameters(model, include_output=True)
    eligible = prunable_parameters(model, include_output=include_output)
    layer_amounts = dict(layer_amounts or {})
    for name, value in layer_amounts.items():
        if name not in all_params:
            raise ValueError(
                f"layer_amounts has key {name!r}, which is not a prunable weight; allowed keys: {list(all_params)}"
            )
        if name not in eligible:
            raise ValueError(f"layer_amounts names {name!r}, the output layer, but include_output=False excludes it")
        layer_amounts[name] = checks.number(f"layer_amounts[{name!r}]", value, 0, 1, high_open=True)

    masks = current_masks(model)
    weights = effective_weights(model)
    shared = [name for name in eligible if name not in layer_amounts]
    if scope == "global":
        _prune_smallest(shared, amount, weights, masks)
    else:
        for name in shared:
            _prune_smallest([name], amount, weights, masks)
    for name, value in layer_amounts.items():
        _prune_smallest([name], value, weights, masks)
    return masks


def prune_magnitude(model: nn.Module, amount: float, **kwargs) -> dict[str, Tensor]:
    """Compute :func:`magnitude_masks` and attach them to ``model`` with :func:`apply_masks`; returns the masks.

    One pruning step of Han et al. 2015 / Frankle & Carbin 2019 (Algorithm 1, step 4).
    """
    masks = magnitude_masks(model, amount, **kwargs)
    apply_masks(model, masks)
    return masks
