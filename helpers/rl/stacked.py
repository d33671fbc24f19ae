"""Stacked (batched) MLPs: E copies of one architecture trained at once with ``torch.baddbmm``.

A :class:`StackedMLP` holds, for every layer, weights ``W (E, in, out)`` and biases ``b (E, 1, out)`` built from
E ``nn.Module`` copies of a network; ``forward(x (E, B, in))`` runs all members in one batched matmul per layer.
Masks are kept in the book's mask format (``{"l1.weight": 0/1 tensor (out, in)}`` per member) and applied
multiplicatively: the weights are multiplied by the mask once, and every gradient is multiplied by the mask
before the optimiser step (:meth:`StackedMLP.mask_grads`). Since Adam's moments of a weight that only ever
sees zero gradients stay zero, a pruned weight stays exactly zero: the same effective weights as
``torch.nn.utils.prune`` (``weight = weight_orig * mask``, whose gradient w.r.t. ``weight_orig`` is masked too).
``tests/test_rl_offline.py`` checks that an ensemble member equals the single masked model step for step.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

__all__ = ["StackedMLP", "LAYERS"]

# Layers of each network, in order; a group of several names is one stacked layer with concatenated outputs
# (the VAE encoder's mean and log_std heads).
LAYERS: dict[str, tuple[tuple[str, ...], ...]] = {
    "actor": (("l1",), ("l2",), ("l3",)),
    "critic": (("l1",), ("l2",), ("l3",)),
    "vae_encoder": (("e1",), ("e2",), ("mean", "log_std")),
    "vae_decoder": (("d1",), ("d2",), ("d3",)),
}


class StackedMLP:
    """E members of a ReLU MLP as stacked tensors; see the module docstring for the mask convention."""

    def __init__(self, modules: Sequence[nn.Module], layers: tuple[tuple[str, ...], ...],
                 masks: Sequence[Mapping[str, Tensor] | None] | None = None) -> None:
        if not modules:
            raise ValueError("modules must be a non-empty list of networks")
        if masks is not None and len(masks) != len(modules):
            raise ValueError(f"masks must have one entry per module ({len(modules)}), got {len(masks)}")
        self.layers = layers
        self.members = len(modules)
        self.weights: list[Tensor] = []
        self.biases: list[Tensor] = []
        self.masks: list[Tensor | None] = []
        self.splits: list[tuple[int, ...]] = []
        for group in layers:
            ws, bs, ms = [], [], []
            for i, module in enumerate(modules):
                linears = [getattr(module, name) for name in group]
                w = torch.cat([lin.weight.detach() for lin in linears], 0)
                ws.append(w.t())
                bs.append(torch.cat([lin.bias.detach() for lin in linears], 0))
                member_masks = None if masks is None else masks[i]
                if member_masks is None:
                    ms.append(None)
                else:
                    parts = []
                    for name, lin in zip(group, linears):
                        m = member_masks.get(f"{name}.weight")
                        parts.append(torch.ones_like(lin.weight) if m is None else m.to(lin.weight))
                    ms.append(torch.cat(parts, 0).t())
            self.splits.append(tuple(getattr(modules[0], name).out_features for name in group))
            w = torch.stack(ws).contiguous()
            if all(m is None for m in ms):
                mask = None
            else:
                mask = torch.stack([torch.ones_like(ws[0]) if m is None else m for m in ms]).contiguous()
                w = w * mask
            self.weights.append(w.requires_grad_(True))
            self.biases.append(torch.stack(bs).unsqueeze(1).contiguous().requires_grad_(True))
            self.masks.append(mask)

    def parameters(self) -> list[Tensor]:
        return [*self.weights, *self.biases]

    def forward(self, x: Tensor, weights: Sequence[Tensor] | None = None,
                biases: Sequence[Tensor] | None = None) -> Tensor:
        """``x (E, B, in) -> (E, B, out)``: ReLU between layers, none after the last."""
        weights = self.weights if weights is None else weights
        biases = self.biases if biases is None else biases
        n = len(weights)
        for i, (w, b) in enumerate(zip(weights, biases)):
            x = torch.baddbmm(b, x, w)
            if i < n - 1:
                x = torch.relu_(x)  # in place: baddbmm's backward does not need its output
        return x

    __call__ = forward

    def mask_grads(self, grads: Sequence[Tensor]) -> None:
        """Multiply the weight gradients (first ``len(weights)`` of ``grads``) by the masks, in place."""
        pairs = [(g, m) for g, m in zip(grads, self.masks) if m is not None]
        if pairs:
            torch._foreach_mul_([g for g, _ in pairs], [m for _, m in pairs])

    def clone(self) -> StackedMLP:
        """A detached copy (for target networks): same tensors' values, no gradient."""
        other = object.__new__(StackedMLP)
        other.layers, other.members, other.splits, other.masks = self.layers, self.members, self.splits, self.masks
        other.weights = [w.detach().clone() for w in self.weights]
        other.biases = [b.detach().clone() for b in self.biases]
        return other

    def select(self, index: Sequence[int] | slice) -> tuple[list[Tensor], list[Tensor]]:
        """Weights and biases of some members (views when ``index`` is a slice), for ``forward``."""
        return [w[index] for w in self.weights], [b[index] for b in self.biases]

    def state_dict_of(self, member: int) -> dict[str, Tensor]:
        """Member ``member`` as an ``nn.Module`` state dict (``"l1.weight"``, ``"l1.bias"``, ...)."""
        out: dict[str, Tensor] = {}
        for group, split, w, b in zip(self.layers, self.splits, self.weights, self.biases):
            for name, wpart, bpart in zip(group, torch.split(w[member].detach().t(), split, 0),
                                          torch.split(b[member, 0].detach(), split, 0)):
                out[f"{name}.weight"] = wpart.clone()
                out[f"{name}.bias"] = bpart.clone()
        return out

    def masks_of(self, member: int) -> dict[str, Tensor] | None:
        """Member ``member``'s masks in the book's format, or None when unmasked."""
        if all(m is None for m in self.masks):
            return None
        out: dict[str, Tensor] = {}
        for group, split, w, m in zip(self.layers, self.splits, self.weights, self.masks):
            full = torch.ones_like(w[member]) if m is None else m[member]
            for name, part in zip(group, torch.split(full.t(), split, 0)):
                out[f"{name}.weight"] = part.clone()
        return out
