"""Sparse momentum: prune by magnitude, regrow by momentum, at the end of every epoch (FLOATS-i / FLOATS-c).

FLOAT (Kundu et al. 2023, Sec. 3.2, Algorithm 1) trains at a fixed global density ``d`` with the sparse
learning of Dettmers & Zettlemoyer (2019, official code TimDettmers/sparse_learning). At the end of each
epoch but the last:

1. every layer loses the fraction ``death_rate`` of its remaining weights with the smallest magnitude;
2. the freed budget is shared across layers in proportion to each layer's mean absolute momentum over its
   non-zero weights (layers with larger momentum get more weights);
3. each layer regrows its share at the zero weights with the largest absolute momentum, starting at 0
   with their optimiser state reset;

so that ``sum_l card(theta^l * pi^l) <= d * sum_l card(theta^l)`` (FLOAT Eq. 5) holds after every step,
with equality (exactly ``floor(d * N)`` weights) for irregular sparsity. The death rate follows the
official cosine decay from 0.5 to 0.005. Biases and BatchNorm are never pruned (only Linear/Conv2d
weights are prunable). ``structure="channel"`` (FLOATS-c) applies the same steps to whole input-channel
slices ``theta[:, c]``, scored by their squared Frobenius norm; the budget is then met up to one slice.

Masks are the book's ``torch.nn.utils.prune`` masks. Because ``weight = weight_orig * weight_mask`` would
give pruned weights a zero gradient, and hence no momentum to regrow by, :class:`SparseMomentum` hands
``weight_orig`` the dense gradient ``dL/dW`` as the official code does (it multiplies the weights by the
mask and lets the gradient of zero weights through); the optimiser moves ``weight_orig`` at pruned
positions, the mask keeps them out of every forward pass, and a regrown weight is set to 0.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from .. import checks
from .channels import _channel_rows, _expand_channels
from .masks import (
    apply_masks,
    current_masks,
    effective_weights,
    is_pruned,
    prunable_parameters,
    random_masks,
)

__all__ = ["SparseMomentum", "cosine_death_rate", "DECAYS", "STRUCTURES"]

DECAYS = ("cosine", "constant")
STRUCTURES = ("irregular", "channel")
#: Final death rate of the official cosine decay (``CosineDecay(..., eta_min=0.005)``).
MIN_DEATH_RATE = 0.005


def cosine_death_rate(epochs_done: int, total_epochs: int, death_rate: float = 0.5,
                      min_death_rate: float = MIN_DEATH_RATE) -> float:
    """The death rate after ``epochs_done`` epochs: ``min + (p - min) * (1 + cos(pi * epochs_done / total)) / 2``.

    Cosine decay of sparse momentum (Dettmers & Zettlemoyer 2019; official ``CosineDecay``, eta_min 0.005).
    """
    return min_death_rate + (death_rate - min_death_rate) * (1 + math.cos(math.pi * epochs_done / total_epochs)) / 2


def _rows(tensor: Tensor, structure: str) -> Tensor:
    """One row per unit: a single weight (irregular) or an input-channel slice ``[:, c]`` (channel)."""
    return tensor.reshape(-1, 1) if structure == "irregular" else _channel_rows(tensor)


def _unrows(units: Tensor, shape: torch.Size, structure: str) -> Tensor:
    """A per-unit vector back to a weight-shaped tensor (the inverse of :func:`_rows` for masks)."""
    return units.reshape(shape).clone() if structure == "irregular" else _expand_channels(units, shape)


def _allocate(budget: int, shares: Sequence[float], sizes: Sequence[int], capacity: Sequence[int]) -> list[int]:
    """Units per layer with ``sum(units * size) <= budget``: the budget split in proportion to ``shares``.

    Water-filling under each layer's ``capacity`` (full layers pass their excess on), floors, then the rest
    one unit at a time by largest remainder; exact when every size is 1 and the layers have room.
    """
    n = len(sizes)
    room = [capacity[i] * sizes[i] for i in range(n)]
    target = [0.0] * n
    free = [i for i in range(n) if room[i] > 0]
    remaining = float(budget)
    while free and remaining > 1e-9:
        weights = [shares[i] for i in free] if sum(shares[i] for i in free) > 0 else [room[i] for i in free]
        total = sum(weights)
        split = {i: remaining * w / total for i, w in zip(free, weights)}
        full = [i for i in free if target[i] + split[i] >= room[i]]
        if not full:
            for i in free:
                target[i] += split[i]
            break
        for i in full:
            remaining -= room[i] - target[i]
            target[i] = float(room[i])
        free = [i for i in free if i not in full]
    units = [min(capacity[i], math.floor(target[i] / sizes[i] + 1e-9)) for i in range(n)]
    left = budget - sum(u * s for u, s in zip(units, sizes))
    order = sorted(range(n), key=lambda i: units[i] - target[i] / sizes[i])  # largest remainder first, stable
    grown = True
    while grown:
        grown = False
        for i in order:
            if units[i] < capacity[i] and sizes[i] <= left:
                units[i] += 1
                left -= sizes[i]
                grown = True
    return units


def _momentum(optimizer: Optimizer, param: Tensor) -> Tensor:
    """The momentum sparse momentum ranks by: SGD's ``momentum_buffer``, Adam's ``exp_avg / (sqrt(exp_avg_sq) + 1e-8)``.

    Official ``get_momentum_for_weight``; zeros before the optimiser's first step.
    """
    state = optimizer.state.get(param, {})
    if "exp_avg" in state and "exp_avg_sq" in state:
        return state["exp_avg"] / (torch.sqrt(state["exp_avg_sq"]) + 1e-8)
    if state.get("momentum_buffer") is not None:
        return state["momentum_buffer"]
    return torch.zeros_like(param)


def _momentum_optimizer(optimizer: object, params: Sequence[Tensor]) -> Optimizer:
    """``optimizer`` if sparse momentum can rank by its momentum: SGD with momentum > 0, Adam or AdamW, holding
    ``params``; a ValueError naming the optimiser otherwise (the one check :mod:`helpers.checks` has no word for)."""
    if not isinstance(optimizer, (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW)):
        raise ValueError(
            "optimizer must be torch.optim.SGD with momentum > 0, torch.optim.Adam or torch.optim.AdamW "
            f"(sparse momentum regrows by the optimiser's momentum), got {type(optimizer).__name__}"
        )
    groups = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    for param in params:
        if id(param) not in groups:
            raise ValueError("optimizer does not hold the model's prunable weights; build it from model.parameters()")
        if isinstance(optimizer, torch.optim.SGD) and not groups[id(param)]["momentum"] > 0:
            raise ValueError("optimizer: SGD needs momentum > 0 for sparse momentum, got momentum="
                             f"{groups[id(param)]['momentum']!r}")
    return optimizer


class SparseMomentum:
    """Sparse momentum at global density ``density``: ``apply_initial()`` once, ``step_epoch(e)`` after epoch ``e``.

    FLOATS-i / FLOATS-c of FLOAT (Sec. 3.2, Algorithm 1, Eq. 5) with Dettmers & Zettlemoyer's sparse momentum.

    ``death_rate`` (0.5 in the official code) decays with ``decay="cosine"`` over ``total_epochs`` to
    ``min_death_rate`` (0.005), or stays constant. The initial masks are uniformly random at density ``d`` in
    every layer (the official ``enforce_density_per_layer``; exact counts here, ``seed`` picks them).
    ``include_output=False`` leaves the last layer dense and outside the budget. ``structure="channel"``
    prunes and regrows whole input channels (FLOATS-c), every layer keeping at least one. The optimiser
    (SGD with momentum, Adam or AdamW) can be given here or to each :meth:`step_epoch`; an instance is also
    an epoch callback ``(epoch, model, optimizer) -> record``.
    """

    def __init__(
        self,
        model: nn.Module,
        density: float,
        optimizer: Optimizer | None = None,
        *,
        death_rate: float = 0.5,
        decay: str = "cosine",
        total_epochs: int,
        min_death_rate: float = MIN_DEATH_RATE,
        include_output: bool = True,
        structure: str = "irregular",
        seed: int = 0,
    ) -> None:
        density = checks.number("density", density, 0, 1, low_open=True)
        self.death_rate = checks.number("death_rate", death_rate, 0, 1, high_open=True)
        self.min_death_rate = checks.number("min_death_rate", min_death_rate, 0, self.death_rate)
        checks.choice("decay", decay, DECAYS)
        checks.choice("structure", structure, STRUCTURES)
        total_epochs, seed = checks.integer("total_epochs", total_epochs, low=1), checks.integer("seed", seed, low=0)
        self.params = prunable_parameters(model, include_output=include_output)
        if not self.params:
            raise ValueError("model has no prunable weights (nn.Linear / nn.Conv2d) to make sparse")
        self.model, self.density, self.decay, self.structure = model, density, decay, structure
        self.total_epochs, self.seed = int(total_epochs), int(seed)
        self.optimizer = None if optimizer is None else _momentum_optimizer(optimizer, self._weights())
        self.total = sum(self._weight(name).numel() for name in self.params)
        self.target = math.floor(density * self.total + 1e-9)  # Eq. 5's right-hand side, in weights
        self._hooks: list = []
        self._dense_grads: dict[str, Tensor] = {}

    # -- parameters and hooks -------------------------------------------------------------------------
    def _weight(self, name: str) -> Tensor:
        module, tensor_name = self.params[name]
        pruned = is_pruned(module, tensor_name)
        return getattr(module, f"{tensor_name}_orig" if pruned else tensor_name)

    def _weights(self) -> list[Tensor]:
        return [self._weight(name) for name in self.params]

    def _sizes(self) -> dict[str, int]:
        return {name: _rows(self._weight(name).detach(), self.structure).shape[1] for name in self.params}

    def _attach(self) -> None:
        """Give ``weight_orig`` the dense gradient ``dL/dW`` (see the module doc); once per model."""
        if self._hooks:
            return
        for name, (module, tensor_name) in self.params.items():

            def capture(module: nn.Module, _inputs, _output, name: str = name, tensor_name: str = tensor_name) -> None:
                weight = getattr(module, tensor_name)
                if is_pruned(module, tensor_name) and weight.requires_grad and not isinstance(weight, nn.Parameter):
                    weight.register_hook(lambda grad: self._stash(name, grad))

            def dense(grad: Tensor, name: str = name) -> Tensor:
                stored = self._dense_grads.pop(name, None)
                return grad if stored is None else stored

            self._hooks.append(module.register_forward_hook(capture))
            self._hooks.append(self._weight(name).register_hook(dense))

    def _stash(self, name: str, grad: Tensor) -> None:
        stored = self._dense_grads.get(name)
        self._dense_grads[name] = grad if stored is None else stored + grad

    def remove(self) -> None:
        """Detach the gradient hooks (the masks stay); the model then trains like any masked model.

        After this, pruned weights get a zero gradient again (``torch.nn.utils.prune``'s own behaviour).
        """
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()
        self._dense_grads.clear()

    # -- the schedule ---------------------------------------------------------------------------------
    def death_rate_at(self, epoch: int) -> float:
        """The death rate used at the end of epoch ``epoch`` (0-based): cosine after ``epoch + 1`` epochs, or constant.

        Official schedule: ``CosineDecay`` stepped every batch over ``total_epochs`` epochs, read at each epoch end.
        """
        if self.decay == "constant":
            return self.death_rate
        return cosine_death_rate(epoch + 1, self.total_epochs, self.death_rate, self.min_death_rate)

    def managed_density(self) -> float:
        """Kept weights / all weights over the managed layers: Eq. 5's left-hand side over ``sum card(theta^l)``.

        FLOAT Eq. 5; equals ``density(model)`` when the output layer is managed too.
        """
        masks = current_masks(self.model)
        return sum(int(torch.count_nonzero(masks[name])) for name in self.params) / self.total

    # -- initial masks --------------------------------------------------------------------------------
    def apply_initial(self) -> dict[str, Tensor]:
        """Attach uniformly random masks with exactly ``target`` weights (irregular) or at most that (channel).

        Official ``enforce_density_per_layer`` initialisation (each layer at density ``d``), exact counts.
        """
        generator = torch.Generator().manual_seed(self.seed)
        sizes = self._sizes()
        names = list(self.params)
        numels = [self._weight(name).numel() for name in names]
        units = [numel // sizes[name] for name, numel in zip(names, numels)]
        if self.structure == "irregular":
            counts = _allocate(self.target, numels, [1] * len(names), units)
            masks = random_masks(self.model, {name: c / n for name, c, n in zip(names, counts, numels)}, generator)
            masks = {name: masks[name] for name in names}
        else:
            floor = sum(sizes.values())
            if floor > self.target:
                raise ValueError(
                    f"density {self.density} is too low for structure='channel': every layer keeps at least one input "
                    f"channel, which needs density >= {floor / self.total:.4f}"
                )
            extra = _allocate(self.target - floor, numels, [sizes[name] for name in names], [u - 1 for u in units])
            masks = {}
            for name, n_units, n_extra in zip(names, units, extra):
                keep = torch.zeros(n_units)
                keep[torch.randperm(n_units, generator=generator)[: n_extra + 1]] = 1
                weight = self._weight(name)
                masks[name] = _unrows(keep, weight.shape, self.structure).to(weight)
        apply_masks(self.model, masks)
        self._attach()
        return masks

    # -- one prune / regrow step ----------------------------------------------------------------------
    def __call__(self, epoch: int, model: nn.Module, optimizer: Optimizer) -> dict:
        """Epoch callback for a training loop: ``step_epoch(epoch, optimizer)`` on this instance's model.

        Algorithm 1 of FLOAT, lines 12-14, at the end of epoch ``epoch``.
        """
        if model is not self.model:
            raise ValueError("model is not the model this SparseMomentum was built for")
        return self.step_epoch(epoch, optimizer)

    @torch.no_grad()
    def step_epoch(self, epoch: int, optimizer: Optimizer | None = None) -> dict:
        """Prune by magnitude and regrow by momentum after epoch ``epoch`` (0-based); returns a record.

        FLOAT Algorithm 1 lines 12-14 (updateLayerMomentum, pruneRegrow, updateMask) under Eq. 5.

        No change after the last epoch (``epoch + 1 == total_epochs``), as in the official loop. The record
        has ``death_rate``, ``pruned`` and ``regrown`` (weights) and ``density`` (managed layers, after).
        """
        epoch = checks.integer("epoch", epoch, 0, self.total_epochs - 1)  # 0-based
        if not self._hooks:
            raise ValueError("call apply_initial() before step_epoch()")
        optimizer = _momentum_optimizer(optimizer if optimizer is not None else self.optimizer, self._weights())
        rate = self.death_rate_at(epoch)
        record = {"death_rate": rate, "pruned": 0, "regrown": 0}
        if epoch + 1 == self.total_epochs:
            return {**record, "density": self.managed_density()}
        masks, weights, sizes = current_masks(self.model), effective_weights(self.model), self._sizes()
        survivors, momenta, shares, removed = {}, {}, {}, {}
        for name in self.params:
            mask = masks[name] != 0
            momenta[name] = _momentum(optimizer, self._weight(name))
            shares[name] = momenta[name].abs()[mask].mean().item() if mask.any() else 0.0
            kept = _rows(mask, self.structure).any(1)
            n_kept = int(kept.sum())
            removed[name] = min(math.ceil(rate * n_kept), max(n_kept - 1, 0))  # a layer keeps one unit
            kept_index = kept.nonzero().squeeze(1)
            scores = _rows(weights[name], self.structure).pow(2).sum(1)[kept_index]
            kept[kept_index[torch.sort(scores, stable=True).indices[: removed[name]]]] = False
            survivors[name] = kept
        names = list(self.params)
        if not sum(shares.values()) > 0:
            shares = {name: float(removed[name] * sizes[name]) for name in names}  # no momentum yet: refill in place
        budget = self.target - sum(int(survivors[name].sum()) * sizes[name] for name in names)
        capacity = [survivors[name].numel() - int(survivors[name].sum()) for name in names]
        growth = _allocate(budget, [shares[name] for name in names], [sizes[name] for name in names], capacity)
        new_masks = {}
        for name, n_grow in zip(names, growth):
            zero_index = (~survivors[name]).nonzero().squeeze(1)
            scores = _rows(momenta[name], self.structure).pow(2).sum(1)[zero_index]
            grow = torch.zeros_like(survivors[name])
            grow[zero_index[torch.sort(scores, descending=True, stable=True).indices[:n_grow]]] = True
            weight = self._weight(name)
            regrown = _unrows(grow, weight.shape, self.structure)
            weight[regrown] = 0  # sparse momentum regrows at zero ...
            for value in optimizer.state.get(weight, {}).values():  # ... with fresh optimiser state
                if isinstance(value, Tensor) and value.shape == weight.shape:
                    value[regrown] = 0
            new_masks[name] = _unrows(survivors[name] | grow, weight.shape, self.structure).to(weight)
            record["pruned"] += removed[name] * sizes[name]
            record["regrown"] += n_grow * sizes[name]
        apply_masks(self.model, new_masks)
        return {**record, "density": self.managed_density()}
