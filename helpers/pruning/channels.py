"""Channel pruning (FLOATS-c) and the compression metrics of FLOAT's Table 1.

FLOAT (Kundu et al. 2023, Sec. 3.2) views a layer's 4-D weight ``theta`` (``C_o x C_i x k x k``) as ``C_i``
sub-matrices ``theta[:, c, :, :]`` of ``C_o`` rows and ``k^2`` columns, scores each input channel by the
squared Frobenius norm ``f_c = ||theta[:, c, :, :]||_F^2`` and keeps or removes whole channels by that
ranking. A ``Linear`` weight (``out x in``) is the ``k = 1`` case: one column per input feature.

Channel masks are ordinary masks (whole input-channel slices set to 0) attached with
:func:`~helpers.pruning.masks.apply_masks`, so they mix with every other method of the book. Masks alone
save no time: the speed-up comes from a physically smaller layer, :func:`compact_conv2d`, that reads only
the kept input channels; once no layer reads channel ``c`` of a feature map, the filter (and BN channel)
that produces it can be deleted as well. In FLOAT's training loop (Algorithm 1) the channel mask is
updated at the end of every epoch by sparse momentum with ``structure="channel"``
(:class:`~helpers.pruning.sparse_momentum.SparseMomentum`); :func:`channel_masks` is the one-shot ranking.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import checks
from .masks import current_masks, effective_weights, is_pruned, prunable_parameters

__all__ = ["channel_norms", "channel_masks", "channel_reduction", "compact_conv2d", "compression_ratio"]


def _channel_rows(tensor: Tensor) -> Tensor:
    """``tensor`` (``C_o x C_i x ...``) as a ``C_i x (C_o * k * k)`` matrix: row ``c`` is the slice ``[:, c]``."""
    return tensor.transpose(0, 1).reshape(tensor.shape[1], -1)


def _expand_channels(keep: Tensor, shape: torch.Size) -> Tensor:
    """A per-input-channel 0/1 vector broadcast to a full weight-shaped mask (whole slices ``[:, c]``)."""
    view = [1, shape[1]] + [1] * (len(shape) - 2)
    return keep.reshape(view).expand(shape).clone()


def _active(module: nn.Module, tensor: Tensor) -> Tensor:
    """The part of a weight-shaped ``tensor`` in use: ``[:out, :in]`` for a slimmable layer, else all of it."""
    if hasattr(module, "active_shape"):
        out_active, in_active = module.active_shape()
        return tensor[:out_active, :in_active]
    return tensor


def channel_norms(weight: Tensor) -> Tensor:
    """Squared Frobenius norm of each input-channel slice, ``f_c = ||theta[:, c, :, :]||_F^2``; shape ``(C_i,)``.

    FLOATS-c channel importance (FLOAT Sec. 3.2); a 2-D Linear weight gives one norm per input feature.
    """
    if not isinstance(weight, Tensor) or weight.dim() < 2:
        raise ValueError(f"weight must be a tensor with at least 2 dimensions (C_o, C_i, ...), got {weight!r:.80}")
    return _channel_rows(weight.detach()).pow(2).sum(1)


def channel_masks(model: nn.Module, keep_fraction: float, include_output: bool = True) -> dict[str, Tensor]:
    """Masks keeping, per layer, the ``max(1, round(keep_fraction * C_i))`` input channels with the largest ``f_c``.

    FLOATS-c ranking (FLOAT Sec. 3.2) on the effective weights; nested in the current masks (masks only shrink).

    Every prunable layer (Conv2d input channels, Linear input features) is ranked on its own; equal norms
    are removed in channel order, and a layer always keeps at least one channel. ``include_output=False``
    leaves the last layer as it is. Returns the mask of every prunable weight, ready for ``apply_masks``.
    """
    keep_fraction = checks.number("keep_fraction", keep_fraction, 0, 1)
    if keep_fraction == 0:
        raise ValueError("keep_fraction must be a number in (0, 1], got 0.0")
    masks = current_masks(model)
    weights = effective_weights(model)
    for name in prunable_parameters(model, include_output=include_output):
        norms = channel_norms(weights[name])
        n_keep = max(1, round(keep_fraction * norms.numel()))
        drop = torch.sort(norms, stable=True).indices[: norms.numel() - n_keep]
        keep = torch.ones_like(norms)
        keep[drop] = 0
        masks[name] = masks[name] * _expand_channels(keep, masks[name].shape).to(masks[name])
    return masks


def channel_reduction(model: nn.Module, include_linear: bool = False) -> float:
    """Channel reduction factor ``CRF = total input channels / input channels present`` over the Conv2d layers.

    FLOAT Table 1 (``100 / % of total channels present``); a channel is present if its mask slice has a 1.

    Slimmable layers count the channels of their current width as present (the others are unused), so a
    network at width 0.5 has ``CRF = 2`` before any pruning. ``include_linear=True`` also counts Linear
    input features.
    """
    types = (nn.Conv2d, nn.Linear) if include_linear else (nn.Conv2d,)
    masks = current_masks(model)
    total = present = 0
    for name, (module, _) in prunable_parameters(model).items():
        if not isinstance(module, types):
            continue
        total += masks[name].shape[1]
        present += int((_channel_rows(_active(module, masks[name])) != 0).any(1).sum())
    if total == 0:
        raise ValueError("model has no Conv2d layer (pass include_linear=True to count Linear input features)")
    if present == 0:
        raise ValueError("model has no input channel left, channel reduction factor undefined")
    return total / present


def compact_conv2d(conv: nn.Conv2d) -> tuple[nn.Conv2d, Tensor]:
    """A physically smaller Conv2d over the kept input channels, and their indices: ``small(x[:, kept]) == conv(x)``.

    Where FLOATS-c's speed-up comes from (FLOAT Sec. 3.2): fewer input channels, fewer multiply-accumulates.
    """
    if not isinstance(conv, nn.Conv2d) or conv.groups != 1 or conv.padding_mode != "zeros":
        raise ValueError("conv must be an nn.Conv2d with groups=1 and padding_mode='zeros'")
    if hasattr(conv, "active_shape"):
        raise ValueError("conv is slimmable: compact it per width (slice [:out, :in] first), not here")
    weight = conv.weight_mask * conv.weight_orig.detach() if is_pruned(conv) else conv.weight.detach()
    kept = (_channel_rows(weight) != 0).any(1).nonzero().squeeze(1)
    small = nn.Conv2d(
        len(kept), conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
        dilation=conv.dilation, bias=conv.bias is not None,
    ).to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        small.weight.copy_(weight[:, kept])
        if conv.bias is not None:
            small.bias.copy_(conv.bias.detach())
    return small, kept


def compression_ratio(model: nn.Module) -> float:
    """Compression ratio ``CR = dense prunable-weight count / kept (mask = 1) count``, i.e. ``1 / d``.

    FLOAT Table 1 (``CR = 1/d``); slimmable layers count only the kept weights of their current width.
    """
    masks = current_masks(model)
    total = kept = 0
    for name, (module, _) in prunable_parameters(model).items():
        total += masks[name].numel()
        kept += int(torch.count_nonzero(_active(module, masks[name])))
    if total == 0:
        raise ValueError("model has no prunable weights (nn.Linear / nn.Conv2d)")
    if kept == 0:
        raise ValueError("model has no weight left, compression ratio undefined")
    return total / kept
