"""Several seeds of one small network trained together: their parameters stacked and run with ``torch.func``.

A network small enough to be bound by per-operator overhead (the lottery MLP, the small capacity CNNs) costs
about the same per step for 3 stacked copies as for one, so the book replicates its claims over seeds at a
fraction of the sequential cost. :class:`Stacked` holds ``S`` copies of one architecture
(``torch.func.stack_module_state``) and evaluates them with ``vmap(functional_call(...))``: its ``forward``
takes the seeds' batches one after another (``[S * B, ...]``, seed-major) and returns their outputs in the same
order, so attacks and losses written for one network work on it unchanged. :func:`fit_stacked` trains it as
:func:`helpers.train.fit` trains each seed: each seed shuffles with its own ``torch.Generator(seed)``, the loss is
the sum of the seeds' batch means (so each seed's gradient is its own), and the optimisers' updates are
elementwise, so each seed's weights equal its single-seed run to float tolerance (for attacks that draw no
random numbers: FGSM, PGD without a random start). Networks with batch normalisation are refused (its
running statistics are updated in place, which ``vmap`` cannot batch).

Measured on this book's 2-core CPU (``benchmarks/seed_batching.py``, one thread): only the tiniest networks are
overhead-bound there (an MLP of Chapter 2's offline-RL size: 3 stacked seeds in about 1.9x one seed's time). The
lottery MLP and the capacity CNNs are arithmetic-bound at one thread (``bmm`` over 3 stacked seeds costs 3 single
``mm`` s), and stacking them is slower than 3 sequential runs (vmap's copies), so the chapter notebooks train those
seeds one after another on the CPU; stacking is for accelerators, where small networks are bound by kernel launches.
"""
from __future__ import annotations

import copy
import time
from typing import Sequence

import torch
import torch.nn as nn
from torch.func import functional_call, stack_module_state, vmap
from ..progress import tqdm

from .. import checks, model_device
from ..attacks import Attack, LossFn, classification_loss
from ..data import batches
from ..metrics import predictions
from .loop import _tensors, make_optimizer

__all__ = ["Stacked", "fit_stacked"]


def _key(name: str) -> str:
    return name.replace(".", "__")


class Stacked(nn.Module):
    """``S`` networks of one architecture evaluated together. ``forward(x)`` takes ``[S * B, ...]`` (seed 0's ``B``
    inputs first) and returns ``[S * B, ...]``; :meth:`unstack` gives back ``S`` ordinary networks."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        models = list(models)
        checks.nonempty("models", len(models))
        kinds = {type(m) for m in models}
        if len(kinds) != 1:
            raise ValueError(f"Stacked needs networks of one architecture; got {sorted(k.__name__ for k in kinds)}")
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for net in models for m in net.modules()):
            raise ValueError("Stacked cannot train networks with batch normalisation (vmap cannot batch its in-place "
                             "running statistics); train their seeds one by one with helpers.train.fit")
        self.n = len(models)
        self._template = copy.deepcopy(models[0])
        self._base = [copy.deepcopy(models[0]).to("meta")]  # a list: not a submodule, so not in parameters()
        params, buffers = stack_module_state(models)
        self._names = list(params)
        self._buffer_names = list(buffers)
        for name, value in params.items():
            self.register_parameter(_key(name), nn.Parameter(value.detach().clone()))
        for name, value in buffers.items():
            self.register_buffer(_key(name), value.detach().clone())

    def _stacked(self) -> tuple[dict, dict]:
        return ({n: getattr(self, _key(n)) for n in self._names}, {n: getattr(self, _key(n)) for n in self._buffer_names})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] % self.n:
            raise ValueError(f"Stacked of {self.n} networks needs a batch of S * B inputs; got {x.shape[0]}")
        base = self._base[0]
        base.train(self.training)
        params, buffers = self._stacked()

        def one(p: dict, b: dict, xs: torch.Tensor) -> torch.Tensor:
            return functional_call(base, (p, b), (xs,))

        out = vmap(one)(params, buffers, x.reshape(self.n, -1, *x.shape[1:]))
        return out.reshape(-1, *out.shape[2:])

    def unstack(self) -> list[nn.Module]:
        """The ``S`` networks as ordinary modules (copies of the first one's architecture, on this device)."""
        params, buffers = self._stacked()
        out = []
        for s in range(self.n):
            net = copy.deepcopy(self._template).to(model_device(self))
            state = {n: v[s].detach().clone() for n, v in {**params, **buffers}.items()}
            net.load_state_dict(state)
            net.eval()
            out.append(net)
        return out


def fit_stacked(models: Sequence[nn.Module], data, *, seeds: Sequence[int], epochs: int, lr: float,
                batch_size: int = 128, optimizer: str = "sgd", momentum: float = 0.9, weight_decay: float = 0.0,
                attack: Attack | None = None, adv_weight: float = 0.5, loss_fn: LossFn = classification_loss,
                progress: bool = True, desc: str | None = None) -> tuple[list[nn.Module], list[list[dict]]]:
    """Train ``models[s]`` as ``fit(models[s], data, seed=seeds[s], ...)`` would, all together; return the trained
    networks and each seed's per-epoch records (loss, train_accuracy, seconds: the stacked epoch's time).

    Supports the options of :func:`helpers.train.fit` that small classifiers use: the optimiser, momentum, weight
    decay, and an ``attack`` mixed with ``adv_weight``. A random-start attack draws its noise from seed 0's
    generator for every seed (statistically the same, not bit-equal to the seeds' single runs).
    """
    models = list(models)
    seeds = [checks.integer("seed", s, low=0) for s in seeds]
    if len(seeds) != len(models):
        raise ValueError(f"fit_stacked needs one seed per model; got {len(seeds)} seeds for {len(models)} models")
    checks.integer("epochs", epochs, low=1)
    checks.integer("batch_size", batch_size, low=1)
    if not 0.0 <= adv_weight <= 1.0:
        raise ValueError(f"adv_weight must be in [0, 1], got {adv_weight!r}")
    x_all, y_all = _tensors(data)
    checks.nonempty("data", len(x_all))
    stacked = Stacked(models).to(model_device(models[0]))
    dev, n_seeds = model_device(stacked), len(models)
    opt = make_optimizer(stacked, optimizer, lr, momentum, weight_decay)
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    histories: list[list[dict]] = [[] for _ in seeds]
    for epoch in tqdm(range(epochs), desc=desc or f"fit x{n_seeds} seeds", disable=not progress, leave=False):
        start = time.perf_counter()
        stacked.train()
        loss_sum = torch.zeros(n_seeds)
        correct_sum = torch.zeros(n_seeds)
        seen = 0
        streams = [batches(x_all, y_all, batch_size, shuffle=True, generator=g) for g in generators]
        for seed_batches in zip(*streams):
            xb = torch.cat([xb for xb, _ in seed_batches]).to(dev)
            yb = torch.cat([yb for _, yb in seed_batches]).to(dev)
            b = len(seed_batches[0][1])

            def seed_losses(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                out = stacked(inputs)
                return loss_fn(out, yb).reshape(n_seeds, b).mean(dim=1), out

            if attack is not None and adv_weight > 0:
                adv, out = seed_losses(attack(stacked, xb, yb, generator=generators[0], loss_fn=loss_fn))
                losses = adv_weight * adv
                if adv_weight < 1:
                    clean, out = seed_losses(xb)
                    losses = losses + (1 - adv_weight) * clean
            else:
                losses, out = seed_losses(xb)
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt.step()
            loss_sum += losses.detach().cpu() * b
            correct_sum += (predictions(out.detach()) == yb).reshape(n_seeds, b).sum(dim=1).cpu()
            seen += b
        seconds = time.perf_counter() - start
        for s in range(n_seeds):
            histories[s].append({"epoch": epoch + 1, "loss": float(loss_sum[s]) / seen,
                                 "train_accuracy": float(correct_sum[s]) / seen, "seconds": seconds})
    trained = stacked.unstack()
    for model, net in zip(models, trained):
        model.load_state_dict(net.state_dict())
        model.eval()
    return models, histories
