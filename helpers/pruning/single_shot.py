"""Pruning at initialisation from one batch: SNIP (Lee et al. 2019) and GraSP (Wang et al. 2020).

Every scorer returns ``{parameter name: importance}`` over the prunable weights of
:func:`~helpers.pruning.masks.prunable_parameters` (keys like ``"l1.weight"``) with ONE convention:
**keep the highest**. :data:`SCORERS` is the one registry of them (name -> ``scorer(model, loss_fn, batch)``),
used by :func:`single_shot_masks` here and by offline RL (:func:`helpers.rl.pruning_scores`).
:func:`keep_top` turns scores into masks with one global top-k, exact counts and
deterministic tie-breaking; :func:`apply_masks` attaches them. ``loss_fn(model, batch)`` returns the
network's own scalar loss (for offline RL: the actor, critic or VAE objective, Algorithm 1 of Arnob et
al. 2021). Biases are not scored and never pruned (the official SNIP TensorFlow code also scores biases;
PyTorch ports, the GraSP code and this book prune weights only).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from .. import checks
from .masks import effective_weights, is_pruned, prunable_parameters, random_keep_mask, random_masks

__all__ = [
    "snip_scores",
    "grasp_scores",
    "magnitude_scores",
    "keep_top",
    "random_masks_like",
    "single_shot_masks",
    "check_density",
    "SCORERS",
    "SINGLE_SHOT_METHODS",
]

#: ``loss(model, batch) -> scalar``: the loss a scorer differentiates (the model and its data, not an output
#: and a label as :data:`helpers.attacks.LossFn` takes).
NetworkLoss = Callable[[nn.Module, Any], Tensor]
Scorer = Callable[[nn.Module, "NetworkLoss | None", Any], dict[str, Tensor]]


def _dense_weights(model: nn.Module, what: str) -> dict[str, nn.Parameter]:
    """The prunable weight parameters of an unmasked ``model``; a model carrying masks is rejected."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    params = prunable_parameters(model)
    if not params:
        raise ValueError("model has no prunable weights (no nn.Linear / nn.Conv2d layer)")
    masked = [name for name, (module, tensor_name) in params.items() if is_pruned(module, tensor_name)]
    if masked:
        raise ValueError(
            f"{what} scores a dense network at initialisation, but model already carries pruning masks on "
            f"{masked}; score an unpruned copy (or call helpers.pruning.remove_masks first)"
        )
    return {name: getattr(module, tensor_name) for name, (module, tensor_name) in params.items()}


@contextmanager
def _scoring(model: nn.Module, weights: Mapping[str, nn.Parameter]) -> Iterator[None]:
    """Train mode and ``requires_grad`` on the scored weights for the duration; both restored afterwards."""
    modes = {module: module.training for module in model.modules()}
    flags = {name: w.requires_grad for name, w in weights.items()}
    try:
        model.train()
        for w in weights.values():
            w.requires_grad_(True)
        with torch.enable_grad():
            yield
    finally:
        for module, mode in modes.items():
            module.training = mode
        for name, w in weights.items():
            w.requires_grad_(flags[name])


def _loss(model: nn.Module, loss_fn: NetworkLoss, batch: Any) -> Tensor:
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be callable as loss_fn(model, batch), got {type(loss_fn).__name__}")
    loss = loss_fn(model, batch)
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise ValueError(f"loss_fn(model, batch) must return a scalar tensor, got {shape}")
    if not loss.requires_grad:
        raise ValueError("loss_fn(model, batch) returned a loss that does not depend on the model's weights")
    if not bool(torch.isfinite(loss.detach()).all()):
        raise ValueError(f"loss_fn(model, batch) returned a non-finite loss ({loss.item()})")
    return loss.reshape(())


def _grads(outputs: Tensor, weights: Mapping[str, nn.Parameter], create_graph: bool) -> list[Tensor]:
    grads = torch.autograd.grad(outputs, list(weights.values()), create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(w) if g is None else g for g, w in zip(grads, weights.values())]


def snip_scores(model: nn.Module, loss_fn: NetworkLoss, batch: Any, normalise: bool = True) -> dict[str, Tensor]:
    """SNIP connection sensitivity ``|g ⊙ θ|`` on one batch (Eq. 1 of Arnob et al.; Lee et al. 2019, Eq. 6).

    Normalised by the sum over all scored weights (as Lee et al.; the ranking does not depend on it).
    The model is left as it was: no ``.grad`` is written, train/eval modes are restored.
    """
    weights = _dense_weights(model, "snip_scores")
    with _scoring(model, weights):
        grads = _grads(_loss(model, loss_fn, batch), weights, create_graph=False)
    scores = {name: (g * w.detach()).abs() for (name, w), g in zip(weights.items(), grads)}
    if normalise:
        total = sum(float(s.sum()) for s in scores.values())
        if total > 0:
            scores = {name: s / total for name, s in scores.items()}
    return scores


def grasp_scores(model: nn.Module, loss_fn: NetworkLoss, batch: Any) -> dict[str, Tensor]:
    """GraSP importance ``θ ⊙ Hg`` on one batch: keeping the highest keeps the lowest ``S(-θ) = -θ ⊙ Hg`` (Eq. 4).

    Wang et al. 2020 (Eq. 8, alecwangcq/GraSP): ``g`` is the detached gradient, ``z = Σ g · ∇L`` built
    with ``create_graph``, ``Hg = ∇z``; one forward pass, so a stochastic loss (the VAE's noise) uses the
    same sample for ``g`` and ``H``. No temperature: it divides classifier logits, and these are regression
    losses. The official code divides by ``|Σ scores|``, which does not change the ranking; we do not.
    """
    weights = _dense_weights(model, "grasp_scores")
    with _scoring(model, weights):
        grads = _grads(_loss(model, loss_fn, batch), weights, create_graph=True)
        z = sum((g.detach() * g).sum() for g in grads)  # g_detached · ∇L, differentiable in θ
        if not z.requires_grad:  # a loss linear in every weight: H = 0
            hg = [torch.zeros_like(w) for w in weights.values()]
        else:
            hg = _grads(z, weights, create_graph=False)
    return {name: w.detach() * h.detach() for (name, w), h in zip(weights.items(), hg)}


def magnitude_scores(model: nn.Module) -> dict[str, Tensor]:
    """``|θ|`` of the effective weights: global magnitude pruning at initialisation (Han et al. 2015).

    With :func:`keep_top`, the same ranking as :func:`~helpers.pruning.magnitude_masks` with scope "global".
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    return {name: w.abs() for name, w in effective_weights(model).items()}


#: The one registry of single-shot scorers: ``SCORERS[name](model, loss_fn, batch)`` -> importance per prunable
#: weight, keep the highest. SNIP (Eq. 1 of Arnob et al.), GraSP (Eq. 4), magnitude (|θ|; needs no loss or batch).
SCORERS: dict[str, Scorer] = {
    "snip": snip_scores,
    "grasp": grasp_scores,
    "magnitude": lambda model, loss_fn=None, batch=None: magnitude_scores(model),
}
#: Every single-shot method: the scorers, and ``"random"`` (random positions, no score).
SINGLE_SHOT_METHODS = (*SCORERS, "random")


def check_density(density: Any, name: str = "density") -> float:
    """``density`` (the fraction of weights kept) as a float in (0, 1]; a ``ValueError`` naming ``name`` otherwise."""
    return checks.number(name, density, 0.0, 1.0, low_open=True)


def keep_top(scores: Mapping[str, Tensor], density: float) -> dict[str, Tensor]:
    """Masks keeping the ``round(density × n)`` highest scores over ALL given tensors (one global top-k).

    Lee et al. 2019 and Wang et al. 2020 rank globally. Ties are broken by position (dict order, then flat
    index: the earlier one is kept), so the count is exact and the result deterministic. Masks are float 0/1.
    """
    if not isinstance(scores, Mapping) or not scores:
        raise ValueError(f"scores must be a non-empty dict of tensors, got {type(scores).__name__}")
    for name, s in scores.items():
        if not isinstance(s, Tensor):
            raise ValueError(f"scores[{name!r}] must be a tensor, got {type(s).__name__}")
        if not bool(torch.isfinite(s).all()):
            raise ValueError(f"scores[{name!r}] contains NaN or infinite values")
    density = check_density(density)
    names = list(scores)
    device = scores[names[0]].device
    flat = torch.cat([scores[name].detach().reshape(-1).to(device=device, dtype=torch.float64) for name in names])
    keep = round(density * flat.numel())
    if keep == 0:
        raise ValueError(f"density {density!r} keeps no weight of {flat.numel()} (round(density * n) = 0)")
    # Stable ascending sort of -score: equal scores keep their positional order, the earlier one wins.
    order = torch.sort(-flat, stable=True).indices[:keep]
    kept = torch.zeros(flat.numel(), dtype=torch.float32, device=device)
    kept[order] = 1.0
    chunks = torch.split(kept, [scores[name].numel() for name in names])
    return {name: chunk.reshape(scores[name].shape).to(scores[name].device) for name, chunk in zip(names, chunks)}


def random_masks_like(masks: Mapping[str, Tensor], generator: torch.Generator) -> dict[str, Tensor]:
    """Random masks with exactly the per-layer kept counts of ``masks``, at uniformly random positions.

    The layer-wise random baseline (Frankle et al. 2021, "Pruning neural networks at initialization: why are
    we missing the mark?"): same layer densities as SNIP/GraSP, no information in the positions. Draws as
    :func:`~helpers.pruning.random_masks` does (one ``randperm`` per layer from ``generator``).
    """
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if not isinstance(masks, Mapping) or not masks:
        raise ValueError(f"masks must be a non-empty dict of 0/1 tensors, got {type(masks).__name__}")
    out: dict[str, Tensor] = {}
    for name, mask in masks.items():
        if not isinstance(mask, Tensor):
            raise ValueError(f"masks[{name!r}] must be a tensor, got {type(mask).__name__}")
        if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"masks[{name!r}] must contain only 0 and 1 (or be a bool tensor)")
        keep = int(torch.count_nonzero(mask))
        out[name] = random_keep_mask(mask.shape, keep, generator).to(mask.device)
    return out


def _resolve_groups(groups: Sequence[Sequence[str]] | None, names: Sequence[str]) -> list[list[str]]:
    """``groups`` as lists of prunable names that cover ``names`` once each (None: one group of all)."""
    if groups is None:
        return [list(names)]
    if isinstance(groups, (str, bytes)) or not isinstance(groups, Sequence) or not groups:
        raise ValueError(f"groups must be a non-empty list of lists of parameter names, got {groups!r}")
    seen: set[str] = set()
    out = []
    for i, group in enumerate(groups):
        if isinstance(group, (str, bytes)) or not isinstance(group, Sequence) or not group:
            raise ValueError(f"groups must contain non-empty lists of parameter names, got {group!r}")
        for name in group:
            checks.choice(f"groups[{i}] entry (a prunable weight)", name, [n for n in names if n not in seen])
            seen.add(name)
        out.append(list(group))
    missing = [n for n in names if n not in seen]
    if missing:
        raise ValueError(f"groups must cover every prunable weight; missing {missing}")
    return out


def single_shot_masks(
    model: nn.Module,
    method: str,
    loss_fn: NetworkLoss | None,
    batch: Any,
    density: float,
    generator: torch.Generator | None = None,
    groups: Sequence[Sequence[str]] | None = None,
) -> dict[str, Tensor]:
    """Masks keeping the fraction ``density`` of the prunable weights, chosen at initialisation by ``method``.

    Algorithm 1 of Arnob et al. 2021: ``"snip"`` (Eq. 1), ``"grasp"`` (Eq. 4), ``"magnitude"`` (``|θ|``) or
    ``"random"`` (every layer at ``density``, needs ``generator``; for random masks at another method's layer
    densities use :func:`random_masks_like`). One global top-k per entry of ``groups`` (default: the whole
    model; e.g. ``[encoder names, decoder names]`` for the VAE's separate ω_E and ω_D masks).
    """
    checks.choice("method", method, SINGLE_SHOT_METHODS)
    density = check_density(density)
    names = list(_dense_weights(model, "single_shot_masks"))
    parts = _resolve_groups(groups, names)
    if method == "random":
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator for method='random', got {type(generator).__name__}")
        return random_masks(model, density, generator)
    if loss_fn is None and method != "magnitude":
        raise ValueError(f"loss_fn is required for method={method!r}")
    scores = SCORERS[method](model, loss_fn, batch)
    masks: dict[str, Tensor] = {}
    for part in parts:
        masks.update(keep_top({name: scores[name] for name in part}, density))
    return {name: masks[name] for name in names}
