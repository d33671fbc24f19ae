"""Iterative magnitude pruning with rewinding: the lottery ticket procedure (Frankle & Carbin 2019).

Train, prune a fraction of the remaining weights by magnitude, reset the survivors (to their initial
values, or to a fresh random initialisation as the control), repeat. Each round can be checkpointed
and a later call continues after the last finished round. :func:`reinitialised_tickets` is Frankle &
Carbin's own control: each round's ticket mask with freshly drawn random weights.
"""
from __future__ import annotations

import copy
import numbers
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.nn.utils import prune
from ..progress import tqdm

from .. import checks
from ..io import atomic_torch_save, load_checkpoint
from .magnitude import SCOPES, prune_magnitude
from .masks import (_sync_pruned_weight, apply_masks, density, layer_density, load_masked_state_dict,
                    prunable_parameters)

__all__ = ["lottery_ticket", "reinitialised_tickets", "RESETS", "CHECKPOINT_NAME", "density_schedule",
           "density_text", "schedule_readings", "holds_down_to", "declines_at"]

RESETS = ("rewind", "random")
CHECKPOINT_NAME = "lottery.pt"


def _state_copy(model: nn.Module) -> dict[str, Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def _rewind(model: nn.Module, theta_0: Mapping[str, Tensor]) -> None:
    """Copy ``theta_0`` into the model in place, keeping the current masks (``x.weight`` -> ``x.weight_orig``)."""
    current = model.state_dict()  # tensors share storage with the parameters and buffers
    with torch.no_grad():
        for key, value in theta_0.items():
            if key.endswith("_mask"):
                continue
            if key in current:
                target = key
            elif f"{key}_orig" in current:
                target = f"{key}_orig"
            elif key.endswith("_orig") and key[: -len("_orig")] in current:
                target = key[: -len("_orig")]
            else:
                raise ValueError(f"theta_0 has key {key!r}, which the model does not have")
            current[target].copy_(value)
    for module in model.modules():
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, prune.BasePruningMethod):
                _sync_pruned_weight(module, hook._tensor_name)


def _reinitialise(model: nn.Module, seed: int) -> None:
    """``reset_parameters()`` on every module with its own parameters, under ``seed``; masks are kept.

    The global RNG state is restored afterwards, so the caller's randomness is unaffected.
    """
    cuda_devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        for module in model.modules():
            if not hasattr(module, "reset_parameters") or not list(module.parameters(recurse=False)):
                continue
            # reset_parameters() writes into module.weight; for a pruned tensor that is the computed
            # weight_orig * weight_mask, so take the reparametrisation off, reset, and put the mask back.
            pruned = {
                hook._tensor_name: getattr(module, f"{hook._tensor_name}_mask").detach().clone()
                for hook in list(module._forward_pre_hooks.values())
                if isinstance(hook, prune.BasePruningMethod)
            }
            for tensor_name in pruned:
                prune.remove(module, tensor_name)
            module.reset_parameters()
            for tensor_name, mask in pruned.items():
                prune.custom_from_mask(module, tensor_name, mask)


def _round_seed(seed: int, round_index: int) -> int:
    """A seed for the re-initialisation after round ``round_index``, mixed from (seed, round)."""
    return int(np.random.SeedSequence([seed, round_index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _plain(value: Any) -> Any:
    """Numbers as Python numbers, so records are plain data and load with ``weights_only=True``."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Tensor) and value.numel() == 1:
        return value.item()
    return value


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def lottery_ticket(
    model: nn.Module,
    train_fn: Callable[[nn.Module, int], dict],
    rounds: int,
    amount: float,
    reset: str = "rewind",
    output_amount: float | None = None,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    scope: str = "layer",
) -> list[dict]:
    """Iterative magnitude pruning with resetting; returns one record per round ``{round, density, **metrics}``.

    Frankle & Carbin 2019, Algorithm 1 (iterative pruning). ``scope="layer"`` (default) prunes each hidden layer at
    ``amount`` on its own ranking, as their LeNet experiments (Sec. 2: 20% per layer, the output layer at half the
    rate) and Cosentino et al. 2019 do; ``scope="global"`` ranks all hidden weights together, as their convnet
    experiments (Sec. 4) do. The output layer is always pruned on its own at ``output_amount``.

    ``theta_0`` is the model's state at call time. Round ``r``: ``train_fn(model, r)`` trains the masked
    model in place and returns a metrics dict; then (unless it is the last round) ``amount`` of the
    remaining hidden weights are pruned by magnitude (per layer or globally, ``scope``) and the output layer at
    ``output_amount`` (default ``amount / 2``); the survivors are reset: ``"rewind"`` copies ``theta_0``
    back (weights, biases, buffers), ``"random"`` re-initialises every layer (``reset_parameters`` under
    a seed mixed from ``seed`` and ``r``). With ``checkpoint_dir``, ``lottery.pt`` is written atomically
    after each round (after training, before pruning) and a later call resumes after the last finished
    round, also restoring torch's global RNG; the model ends trained at the last round's density.
    """
    if isinstance(rounds, bool) or not isinstance(rounds, numbers.Integral) or rounds < 1:
        raise ValueError(f"rounds must be an int >= 1, got {rounds!r}")
    rounds = int(rounds)
    amount = checks.number("amount", amount, 0, 1, high_open=True)
    if amount == 0:
        raise ValueError("amount must be a number in (0, 1), got 0.0")
    if reset not in RESETS:
        raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
    output_amount = amount / 2 if output_amount is None else checks.number("output_amount", output_amount, 0, 1, high_open=True)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if not callable(train_fn):
        raise ValueError(f"train_fn must be callable (model, round) -> dict, got {type(train_fn).__name__}")
    checks.choice("scope", scope, SCOPES)
    params = prunable_parameters(model)
    if not params:
        raise ValueError("model has no prunable weights (nn.Linear / nn.Conv2d)")
    output_name = next(reversed(params))
    config = {"amount": amount, "reset": reset, "output_amount": output_amount, "seed": int(seed), "scope": scope}

    def prune_and_reset(after_round: int) -> None:
        prune_magnitude(model, amount, scope=scope, layer_amounts={output_name: output_amount})
        _rewind(model, theta_0)  # "random" also starts here, so parameters without reset_parameters are rewound
        if reset == "random":
            _reinitialise(model, _round_seed(int(seed), after_round))

    path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    records: list[dict] = []
    start = 0
    if path is not None and path.exists():
        checkpoint = load_checkpoint(path)
        if checkpoint["config"] != config:
            raise ValueError(
                f"checkpoint {path} was written with {checkpoint['config']}, this call has {config}; "
                "use another checkpoint_dir or the same settings"
            )
        records = list(checkpoint["records"])
        if len(records) > rounds:
            raise ValueError(f"rounds={rounds}, but checkpoint {path} already holds {len(records)} finished rounds")
        theta_0 = checkpoint["theta_0"]
        load_masked_state_dict(model, checkpoint["state_dict"])
        _set_rng_state(checkpoint["rng"])
        start = int(checkpoint["round"]) + 1
        if start < rounds:
            prune_and_reset(start - 1)
    else:
        theta_0 = _state_copy(model)

    bar = tqdm(range(start, rounds), total=rounds, initial=start, disable=not progress, desc="lottery rounds")
    for round_index in bar:
        metrics = train_fn(model, round_index)
        if not isinstance(metrics, Mapping):
            raise ValueError(f"train_fn must return a dict of metrics, got {type(metrics).__name__}")
        clash = {"round", "density"} & set(metrics)
        if clash:
            raise ValueError(f"train_fn's metrics must not use the reserved keys {sorted(clash)}")
        record = {"round": round_index, "density": density(model), **{k: _plain(v) for k, v in metrics.items()}}
        records.append(record)
        bar.set_postfix(density=f"{record['density']:.3f}")
        if path is not None:
            atomic_torch_save(
                {
                    "round": round_index,
                    "records": records,
                    "state_dict": model.state_dict(),
                    "theta_0": theta_0,
                    "config": config,
                    "rng": _rng_state(),
                },
                path,
            )
        if round_index < rounds - 1:
            prune_and_reset(round_index)
    bar.close()
    return records


def reinitialised_tickets(
    model: nn.Module,
    masks: Callable[[int], Mapping[str, Tensor]],
    train_fn: Callable[[nn.Module, int], dict],
    rounds: int,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
) -> list[dict]:
    """Frankle & Carbin's control (2019, Sec. 2, "randomly reinitialized"): each ticket's *own* mask with fresh
    random weights. Returns one record per round ``{round, density, **metrics}``, as :func:`lottery_ticket`.

    For round ``r`` in ``0..rounds-1``, ``masks(r)`` is the mask of the ticket trained in round ``r`` (e.g. saved by
    the rewind run's ``train_fn``); a copy of ``model`` gets that mask and weights re-initialised under a seed
    mixed from ``seed`` and ``r`` (``reset_parameters``, as ``reset="random"``), and ``train_fn(copy, r)`` trains
    and evaluates it. The difference from ``reset="random"`` of :func:`lottery_ticket`: there the masks come from
    that chain's own re-initialised training, here from the lottery ticket's. With ``checkpoint_dir`` the records
    are saved atomically after every round, and a later call resumes after the last finished round.
    """
    checks.integer("rounds", rounds, low=1)
    checks.integer("seed", seed, low=0)
    if not callable(masks) or not callable(train_fn):
        raise ValueError("masks and train_fn must be callables of the round index")
    path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    records: list[dict] = list(load_checkpoint(path)["records"]) if path is not None and path.exists() else []
    if len(records) > rounds:
        raise ValueError(f"rounds={rounds}, but checkpoint {path} already holds {len(records)} finished rounds")
    bar = tqdm(range(len(records), rounds), total=rounds, initial=len(records), disable=not progress,
               desc="re-initialised tickets")
    for round_index in bar:
        ticket = copy.deepcopy(model)
        apply_masks(ticket, {name: torch.as_tensor(m) for name, m in masks(round_index).items()})
        _reinitialise(ticket, _round_seed(int(seed) + 1_000_003, round_index))  # not the random chain's draws
        metrics = train_fn(ticket, round_index)
        clash = {"round", "density"} & set(metrics)
        if clash:
            raise ValueError(f"train_fn's metrics must not use the reserved keys {sorted(clash)}")
        records.append({"round": round_index, "density": density(ticket), **{k: _plain(v) for k, v in metrics.items()}})
        if path is not None:
            atomic_torch_save({"records": records}, path)
    bar.close()
    return records


def density_schedule(model: nn.Module, amount: float, steps: int, output_amount: float | None = None,
                     scope: str = "layer") -> np.ndarray:
    """The fraction of ``model``'s prunable weights left after 0..``steps`` pruning steps of :func:`lottery_ticket`.

    Each step removes ``round(amount * remaining)`` hidden weights (of each hidden layer, ``scope="layer"``, or of
    all of them together, ``"global"``) and ``round(output_amount * remaining)`` of the last layer's (default
    ``amount / 2``, Frankle & Carbin's output rate); the counts are exact, so the schedule does not depend on
    training: after k steps about (1 - amount)^k remain.
    """
    checks.choice("scope", scope, SCOPES)
    amount = checks.number("amount", amount, 0, 1, high_open=True)
    output_amount = amount / 2 if output_amount is None else checks.number("output_amount", output_amount, 0, 1, high_open=True)
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    sizes = list(layer_density(model).values())
    if not sizes:
        raise ValueError("model has no prunable weights (nn.Linear / nn.Conv2d)")
    total = sum(t for _, t in sizes)
    groups = [kept for kept, _ in sizes[:-1]] if scope == "layer" else [sum(kept for kept, _ in sizes[:-1])]
    output, out = sizes[-1][0], []
    for _ in range(int(steps) + 1):
        out.append((sum(groups) + output) / total)
        groups = [kept - round(amount * kept) for kept in groups]
        output -= round(output_amount * output)
    return np.array(out)


def density_text(density: float) -> str:
    """A fraction of weights remaining as a percentage with 3 significant digits: ``0.0039 -> "0.39%"``."""
    return f"{100 * density:.3g}%"


def schedule_readings(model: nn.Module, readings: Mapping[str, float], levels: Mapping[str, float],
                      steps: int, scope: str = "layer") -> pd.DataFrame:
    """Readings of a paper's pruning schedule (name -> ``amount`` per step of :func:`density_schedule`) against the
    levels it quotes: per level the step whose density is closest in log, then the density after half and all steps.

    One column per reading; a level's row reads "x% after k" (after k pruning steps).
    """
    checks.integer("steps", steps, low=1)
    levels = {label: checks.number(f"levels[{label!r}]", level, 0, 1, low_open=True) for label, level in levels.items()}
    rows = []
    for name, amount in readings.items():
        schedule = density_schedule(model, amount, steps, scope=scope)
        row = {"reading": name}
        for label, level in levels.items():
            k = int(np.argmin(np.abs(np.log(schedule) - np.log(level))))
            row[f"{label}: paper {level:.1%}"] = f"{schedule[k]:.2%} after {k}"
        row[f"after {steps // 2} iterations"] = f"{schedule[steps // 2]:.3%}"
        row[f"after {steps} iterations"] = f"{schedule[steps]:.4%}"
        rows.append(row)
    return pd.DataFrame(rows).set_index("reading").T


def _accuracy_curve(curve) -> tuple[np.ndarray, np.ndarray]:
    try:
        clean, densities = np.asarray(curve["clean"], dtype=float), np.asarray(curve["density"], dtype=float)
    except (KeyError, TypeError, IndexError) as err:
        raise ValueError(f"curve must map 'clean' and 'density' to sequences (a DataFrame or a dict); {err!r}") from None
    if clean.ndim != 1 or len(clean) == 0 or clean.shape != densities.shape:
        raise ValueError(f"curve's clean and density must be 1-D, non-empty and of one length, got shapes "
                         f"{clean.shape} and {densities.shape}")
    return clean, densities


def holds_down_to(curve, tol: float) -> float:
    """The sparsest level down to which every level's accuracy is within ``tol`` of the dense (first) one.

    ``curve["clean"][r]`` is the accuracy at ``curve["density"][r]``, densest first (a DataFrame of
    :func:`lottery_ticket` records); Paper 1's "until more than 98.5% of the weights are pruned", Fig 9.
    """
    clean, densities = _accuracy_curve(curve)
    ok = clean >= clean[0] - tol
    first_bad = int(np.argmin(ok)) if not ok.all() else len(clean)
    return float(densities[max(first_bad - 1, 0)])


def declines_at(curve, tol: float) -> float | None:
    """The first level from which the accuracy stays more than ``tol`` below the dense (first) one at every sparser
    level, a sustained decline (Paper 1's "random re-initialisation declines after about 88.1%"); None if none."""
    clean, densities = _accuracy_curve(curve)
    below = clean < clean[0] - tol
    if not below[-1]:
        return None
    start = len(below) - int(np.argmin(below[::-1])) if not below.all() else 0
    return float(densities[start])
