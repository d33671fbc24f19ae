"""Unstructured pruning masks on top of ``torch.nn.utils.prune``.

A mask is a ``{parameter name: 0/1 tensor}`` dict over the prunable weights (every ``nn.Linear`` and
``nn.Conv2d`` weight, named as in ``model.named_modules()`` plus ``".weight"``). Masks are attached
with PyTorch's own reparametrisation ``weight = weight_orig * weight_mask`` (a forward pre-hook), so a
pruned weight is exactly zero in every forward pass whatever the optimiser does to ``weight_orig``
(momentum, Adam, weight decay). Magnitude pruning, lottery tickets, SNIP, GraSP and sparse momentum
all produce masks in this format and attach them with :func:`apply_masks`.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.nn.utils import prune

from .. import checks

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
]

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d)


def prunable_parameters(model: nn.Module, include_output: bool = True) -> dict[str, tuple[nn.Module, str]]:
    """The prunable weights of ``model``: ``"fc1.weight" -> (module, "weight")`` for Linear/Conv2d layers.

    Module order; ``include_output=False`` drops the last such layer (the classifier head, Frankle & Carbin 2019).
    """
    params: dict[str, tuple[nn.Module, str]] = {}
    for module_name, module in model.named_modules():
        if isinstance(module, PRUNABLE_TYPES):
            params[f"{module_name}.weight" if module_name else "weight"] = (module, "weight")
    if not include_output and params:
        params.pop(next(reversed(params)))
    return params


def is_pruned(module: nn.Module, tensor_name: str = "weight") -> bool:
    """Whether ``module.<tensor_name>`` carries a ``torch.nn.utils.prune`` reparametrisation.

    True when both ``<tensor_name>_orig`` (parameter) and ``<tensor_name>_mask`` (buffer) exist.
    """
    return f"{tensor_name}_orig" in module._parameters and f"{tensor_name}_mask" in module._buffers


def _sync_pruned_weight(module: nn.Module, tensor_name: str = "weight") -> None:
    """Recompute ``module.weight = weight_orig * weight_mask`` now (the forward pre-hook does it per forward)."""
    orig = getattr(module, f"{tensor_name}_orig")
    mask = getattr(module, f"{tensor_name}_mask")
    setattr(module, tensor_name, mask.to(dtype=orig.dtype) * orig)


def apply_masks(model: nn.Module, masks: Mapping[str, Tensor]) -> None:
    """Attach ``masks`` with ``prune.custom_from_mask``; an existing mask is replaced, not combined.

    PyTorch reparametrisation ``weight = weight_orig * weight_mask`` (Paszke et al., torch.nn.utils.prune);
    ``weight_orig`` is kept, so a weight whose mask goes from 0 back to 1 returns with its stored value.
    """
    params = prunable_parameters(model)
    for name in masks:
        checks.choice("masks key (a prunable weight of the model)", name, list(params))
    checked: dict[str, Tensor] = {}
    for name, mask in masks.items():
        module, tensor_name = params[name]
        if not isinstance(mask, Tensor):
            raise ValueError(f"masks[{name!r}] must be a tensor, got {type(mask).__name__}")
        weight = getattr(module, f"{tensor_name}_orig") if is_pruned(module, tensor_name) else getattr(module, tensor_name)
        if tuple(mask.shape) != tuple(weight.shape):
            raise ValueError(
                f"masks[{name!r}] has shape {tuple(mask.shape)}, but the weight has shape {tuple(weight.shape)}"
            )
        if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"masks[{name!r}] must contain only 0 and 1 (or be a bool tensor)")
        checked[name] = mask.detach().to(device=weight.device, dtype=weight.dtype)
    for name, mask in checked.items():  # validate everything before changing anything
        module, tensor_name = params[name]
        if is_pruned(module, tensor_name):
            with torch.no_grad():
                getattr(module, f"{tensor_name}_mask").copy_(mask)
            _sync_pruned_weight(module, tensor_name)
        else:
            prune.custom_from_mask(module, tensor_name, mask)


def current_masks(model: nn.Module) -> dict[str, Tensor]:
    """The mask of every prunable weight (a copy); an all-ones float tensor for weights not pruned.

    Reads the ``weight_mask`` buffers of ``torch.nn.utils.prune``.
    """
    masks: dict[str, Tensor] = {}
    for name, (module, tensor_name) in prunable_parameters(model).items():
        if is_pruned(module, tensor_name):
            masks[name] = getattr(module, f"{tensor_name}_mask").detach().clone()
        else:
            masks[name] = torch.ones_like(getattr(module, tensor_name), requires_grad=False).detach()
    return masks


def effective_weights(model: nn.Module) -> dict[str, Tensor]:
    """The weights the forward pass uses, ``weight_orig * weight_mask``, detached copies per prunable name.

    Computed fresh, so it is correct right after an optimiser step (before the next forward pass).
    """
    weights: dict[str, Tensor] = {}
    for name, (module, tensor_name) in prunable_parameters(model).items():
        if is_pruned(module, tensor_name):
            orig = getattr(module, f"{tensor_name}_orig").detach()
            weights[name] = getattr(module, f"{tensor_name}_mask").to(dtype=orig.dtype) * orig
        else:
            weights[name] = getattr(module, tensor_name).detach().clone()
    return weights


def _masks_of(masks_or_model: Mapping[str, Tensor] | nn.Module) -> Mapping[str, Tensor]:
    if isinstance(masks_or_model, nn.Module):
        return current_masks(masks_or_model)
    if isinstance(masks_or_model, Mapping):
        return masks_or_model
    raise ValueError(
        f"masks_or_model must be an nn.Module or a dict of masks, got {type(masks_or_model).__name__}"
    )


def layer_density(masks_or_model: Mapping[str, Tensor] | nn.Module) -> dict[str, tuple[int, int]]:
    """``name -> (kept, total)`` for each prunable weight, exact integer counts.

    Density per layer as reported in Frankle & Carbin 2019 (Table 1) and Lee et al. 2019 (SNIP).
    """
    return {
        name: (int(torch.count_nonzero(mask)), int(mask.numel())) for name, mask in _masks_of(masks_or_model).items()
    }


def density(masks_or_model: Mapping[str, Tensor] | nn.Module) -> float:
    """Fraction of prunable weights kept, ``kept / total`` over all prunable weights (1 - sparsity).

    Frankle & Carbin 2019 report it as "percent of weights remaining".
    """
    counts = layer_density(masks_or_model)
    total = sum(n for _, n in counts.values())
    if total == 0:
        raise ValueError("masks_or_model has no prunable weights (no nn.Linear / nn.Conv2d weight), density undefined")
    return sum(k for k, _ in counts.values()) / total


def remove_masks(model: nn.Module) -> None:
    """Make pruning permanent: ``prune.remove`` on every pruned tensor, leaving plain parameters with the zeros.

    ``torch.nn.utils.prune.remove``; the parameter object is kept, so optimisers stay valid.
    """
    for module in model.modules():
        names = [hook._tensor_name for hook in module._forward_pre_hooks.values() if isinstance(hook, prune.BasePruningMethod)]
        for tensor_name in names:
            prune.remove(module, tensor_name)


def random_masks(
    model: nn.Module, density_per_layer: Mapping[str, float] | float, generator: torch.Generator
) -> dict[str, Tensor]:
    """Uniformly random masks keeping exactly ``round(d * numel)`` weights per layer (fresh, not nested).

    The random-pruning baseline of Lee et al. 2019 (SNIP) and Frankle & Carbin 2019; layers missing from a dict stay dense.
    """
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    params = prunable_parameters(model)
    if isinstance(density_per_layer, Mapping):
        for name in density_per_layer:
            checks.choice("density_per_layer key (a prunable weight of the model)", name, list(params))
        densities = {name: 1.0 for name in params}
        for name, value in density_per_layer.items():
            densities[name] = checks.number(f"density_per_layer[{name!r}]", value, 0, 1)
    else:
        value = checks.number("density_per_layer", density_per_layer, 0, 1)
        densities = {name: value for name in params}
    masks: dict[str, Tensor] = {}
    for name, (module, tensor_name) in params.items():
        weight = getattr(module, f"{tensor_name}_orig") if is_pruned(module, tensor_name) else getattr(module, tensor_name)
        keep = round(densities[name] * weight.numel())
        masks[name] = random_keep_mask(weight.shape, keep, generator, weight.dtype).to(weight.device)
    return masks


def random_keep_mask(shape: torch.Size, keep: int, generator: torch.Generator,
                     dtype: torch.dtype = torch.float32) -> Tensor:
    """A 0/1 mask of ``shape`` with exactly ``keep`` ones at uniformly random positions (one ``randperm``)."""
    numel = int(torch.Size(shape).numel())
    order = torch.randperm(numel, generator=generator, device=generator.device)
    flat = torch.zeros(numel, dtype=dtype, device=generator.device)
    flat[order[:keep]] = 1
    return flat.reshape(shape)


def load_masked_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor], strict: bool = True) -> None:
    """Load a ``state_dict`` saved from a pruned model (``*.weight_orig`` / ``*.weight_mask``) into ``model``.

    Attaches (or replaces, or removes) the masks first so the keys match, then ``load_state_dict``.
    """
    params = prunable_parameters(model)
    masks: dict[str, Tensor] = {}
    for name, (module, tensor_name) in params.items():
        if f"{name}_orig" in state_dict:
            if f"{name}_mask" not in state_dict:
                raise ValueError(f"state_dict has {name}_orig but no {name}_mask")
            masks[name] = state_dict[f"{name}_mask"]
        elif name in state_dict and is_pruned(module, tensor_name):
            prune.remove(module, tensor_name)
    apply_masks(model, masks)
    model.load_state_dict(state_dict, strict=strict)
    for name, (module, tensor_name) in params.items():
        if is_pruned(module, tensor_name):
            _sync_pruned_weight(module, tensor_name)
