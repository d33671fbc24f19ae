"""Losses and training of the thesis's defence networks (Paper 5, Sec. 3.2.1 and 3.3.1): squared error to one-hot
targets, Gradient Magnitude Reduction (L + 0.5 * ||dL/dx||_2 by double backprop), and the Sec. 3.3.1 recipe, also as
``helpers.units`` units (:func:`defence_units`, :func:`defence_unit`: one network and seed each; the driver loads the
trained networks with :func:`load_trained_defence`)."""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import checks, device, limit_cpu_threads, seed_everything
from ..attacks import Attack
from ..data import load_quietly
from ..io import load_checkpoint
from ..models.defences import DEFENCES, THESIS_PIXEL_SCALE, Defence, pooled_defence_network
from .loop import StepLoss, checkpoint_path, evaluate, fit

__all__ = ["GMR_REDUCTIONS", "THESIS_TRAINING", "gmr_loss", "input_gradient_norms", "onehot_mse_loss", "step_loss_for",
           "defence_checkpoint", "train_defence", "defence_units", "defence_network", "defence_unit",
           "load_trained_defence", "fgsm_accuracies", "lead_over_best"]

#: Training settings of Sec. 3.3.1 shared by all six networks (momentum 0.85 and the 20-epoch patience:
#: the official code and our reading of "its 20 epoch limit"; eps 77 of 255 follows Madry et al.'s 0.3).
THESIS_TRAINING: dict[str, float | int | str] = {
    "batch_size": 20, "momentum": 0.85, "validation_size": 4_200, "max_epochs": 100, "patience": 20,
    "fgsm_eps": 77 / 255, "loss": "onehot_mse_loss",
}
GMR_REDUCTIONS = ("sample", "batch")


# ---------------------------------------------------------------------------------------------------
# Losses: squared error to one-hot targets (Sec. 3.3.1) and Gradient Magnitude Reduction (Sec. 3.2.1)
# ---------------------------------------------------------------------------------------------------


def onehot_mse_loss(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample (c - o)^T (c - o) with c the one-hot target (Sec. 3.3.1); its batch mean is the thesis's loss.

    Usable as ``loss_fn`` by :func:`helpers.train.fit` and by :func:`helpers.attacks.fgsm` / ``pgd`` (which ascend it).
    """
    if output.dim() != 2:
        raise ValueError(f"output must be (N, classes), got {tuple(output.shape)}")
    target = F.one_hot(y, output.shape[1]).to(output.dtype)
    return (output - target).pow(2).sum(dim=1)


def input_gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                         loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = onehot_mse_loss,
                         pixel_scale: float = 1.0, create_graph: bool = True,
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample losses L_i, norms ||dL_i/dx_i||_2 and outputs, the norms by double backprop (Sec. 3.2.1).

    The norm is w.r.t. the pixels the layers see (``pixel_scale * x``); samples must not interact (no batch statistics).
    """
    checks.number("pixel_scale", pixel_scale, low=0.0, low_open=True)
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        output = model(x)
        losses = loss_fn(output, y)
        (grad,) = torch.autograd.grad(losses.sum(), x, create_graph=create_graph)
    norms = torch.linalg.vector_norm(grad.flatten(1), dim=1) / pixel_scale
    return losses, norms, output


def gmr_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, weight: float = 0.5,
             loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = onehot_mse_loss,
             pixel_scale: float = 1.0, reduction: str = "sample") -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient Magnitude Reduction: mean L + weight * ||dL/dx||_2 (Sec. 3.2.1; weight 0.5, Sec. 3.3.1); and the outputs.

    ``reduction="sample"``: the mean of the per-image norms; "batch": the norm of d(mean L)/dX over the whole batch (official code).

    A ``StepLoss``: ``fit(..., step_loss=partial(gmr_loss, pixel_scale=255))``. With ``weight=0`` it is
    the plain mean loss, without double backprop.
    """
    checks.number("weight", weight, low=0.0)
    if reduction not in GMR_REDUCTIONS:
        raise ValueError(f"reduction must be one of {GMR_REDUCTIONS}, got {reduction!r}")
    if weight == 0:
        output = model(x)
        return loss_fn(output, y).mean(), output
    losses, norms, output = input_gradient_norms(model, x, y, loss_fn=loss_fn, pixel_scale=pixel_scale)
    if reduction == "sample":
        penalty = norms.mean()
    else:  # ||d(mean_i L_i)/dX||_F = sqrt(sum_i ||dL_i/dx_i||^2) / N
        penalty = torch.linalg.vector_norm(norms) / len(norms)
    return losses.mean() + weight * penalty, output



def step_loss_for(defence: Defence, pixel_scale: float = THESIS_PIXEL_SCALE) -> StepLoss | None:
    """The training loss of ``defence`` for ``fit(step_loss=...)``: :func:`gmr_loss` with its weight, or ``None``
    (train with ``loss_fn=onehot_mse_loss``). ``pixel_scale`` must be the one the network was built with (the
    penalty is in the layers' pixel units)."""
    if not defence.uses_gmr:
        return None
    return partial(gmr_loss, weight=defence.gmr_weight, pixel_scale=pixel_scale)


def defence_checkpoint(name: str, *, seed: int, dataset: str, train_n: int, epochs: int, patience: int,
                       pd_pool: int) -> Path:
    """Where :func:`train_defence` keeps the Table 3.1 network ``name`` trained from ``seed`` on ``train_n`` images of
    ``dataset`` (the name of the dataset used): fit's checkpoint under the work root, keyed by these settings."""
    spec = DEFENCES[checks.choice("name", name, list(DEFENCES))]
    settings = dict(network=name, seed=seed, dataset=dataset, train_n=train_n, epochs=epochs,
                    patience=patience, pd_pool=pd_pool if name == "PD" else None, lr=spec.lr)
    return checkpoint_path(f"ch5-defences-{name}", **settings)


def train_defence(net: nn.Module, name: str, train: tuple[torch.Tensor, torch.Tensor],
                  validation: tuple[torch.Tensor, torch.Tensor], *, epochs: int, patience: int, seed: int,
                  dataset: str, pd_pool: int, desc: str | None = None) -> list[dict]:
    """Train the Table 3.1 network ``name`` as Sec. 3.3.1 does: SGD at its learning rate, batches of 20, momentum
    0.85, squared error to one-hot targets (plus GMR for GMR and GMRES), early stopping on ``validation`` after
    ``patience`` epochs without gain. Loads or writes its checkpoint (:func:`defence_checkpoint`, after every epoch,
    so a run resumes); returns fit's records."""
    spec = DEFENCES[checks.choice("name", name, list(DEFENCES))]
    checkpoint = defence_checkpoint(name, seed=seed, dataset=dataset, train_n=len(train[1]), epochs=epochs,
                                    patience=patience, pd_pool=pd_pool)
    return fit(net, train, epochs=epochs, lr=spec.lr, batch_size=THESIS_TRAINING["batch_size"],
               momentum=THESIS_TRAINING["momentum"], loss_fn=onehot_mse_loss, step_loss=step_loss_for(spec),
               validation=validation, early_stopping=patience, seed=seed, checkpoint=checkpoint,
               desc=desc or f"train {name}")


def defence_units(dataset: str, networks: Sequence[str], seeds: Sequence[int], *, split_seed: int,
                  validation_n: int, train_n: int | None, epochs: int, patience: int,
                  pd_pool: int) -> list[dict[str, Any]]:
    """The training units of Sec. 3.3.1 (:func:`defence_unit`), as plain settings: per seed ``s`` of ``seeds``, each
    network of ``networks`` from ``s``, then the black-box source S' (network S from ``s + len(seeds)``, label
    ``S′``). The data: ``dataset``'s training images in a shuffle seeded with ``split_seed``, the first
    ``validation_n`` for validation and the next ``train_n`` (``None``: all the rest) for training."""
    checks.text("dataset", dataset)
    for name in networks:
        checks.choice("networks", name, list(DEFENCES))
    seeds = checks.seeds(seeds)
    common = dict(dataset=dataset, split_seed=split_seed, validation_n=validation_n, train_n=train_n, epochs=epochs,
                  patience=patience, pd_pool=pd_pool)
    return [dict(common, network=name, seed=seed, label=label, of_seed=s) for s in seeds
            for name, seed, label in [*((n, s, n) for n in networks), ("S", s + len(seeds), "S′")]]


def defence_network(name: str, seed: int, *, image_shape: Sequence[int], pd_pool: int,
                    device: torch.device | str = "cpu") -> nn.Module:
    """The Table 3.1 network ``name`` initialised from ``seed`` (``torch.manual_seed``), PD on images average-pooled
    by ``pd_pool`` (:func:`helpers.models.defences.pooled_defence_network`), on ``device``."""
    torch.manual_seed(seed)
    return pooled_defence_network(name, image_shape=tuple(image_shape), pool=pd_pool).to(device)


def defence_unit(settings: dict[str, Any]) -> dict[str, Any]:
    """One unit of Sec. 3.3.1 (a ``helpers.units`` unit): load the split :func:`defence_units` describes, build the
    network (:func:`defence_network`) and :func:`train_defence` it on the best device with one CPU thread
    (checkpointed under the work root after every epoch; a rerun resumes). Returns the unit's ``network, seed,
    label, of_seed``, fit's ``history``, and what :func:`load_trained_defence` needs: ``checkpoint, image_shape,
    pd_pool``."""
    name, seed = settings["network"], settings["seed"]
    dev = device()
    limit_cpu_threads(dev, 1)
    seed_everything(settings["split_seed"])  # and deterministic kernels, as the notebook's run sets them
    full_train = load_quietly(settings["dataset"], "train")
    order = torch.randperm(len(full_train), generator=torch.Generator().manual_seed(settings["split_seed"]))
    val_idx = order[:settings["validation_n"]]
    train_idx = order[settings["validation_n"]:][:settings["train_n"]]
    validation = (full_train.x[val_idx], full_train.y[val_idx])
    train = (full_train.x[train_idx], full_train.y[train_idx])
    image_shape = list(full_train.x.shape[1:])
    net = defence_network(name, seed, image_shape=image_shape, pd_pool=settings["pd_pool"], device=dev)
    history = train_defence(net, name, train, validation, epochs=settings["epochs"], patience=settings["patience"],
                            seed=seed, dataset=full_train.name, pd_pool=settings["pd_pool"],
                            desc=f"train {settings['label']}, seed {settings['of_seed']}")
    checkpoint = defence_checkpoint(name, seed=seed, dataset=full_train.name, train_n=len(train[1]),
                                    epochs=settings["epochs"], patience=settings["patience"], pd_pool=settings["pd_pool"])
    return {"network": name, "seed": seed, "label": settings["label"], "of_seed": settings["of_seed"],
            "history": history, "checkpoint": str(checkpoint), "image_shape": image_shape,
            "pd_pool": settings["pd_pool"]}


def load_trained_defence(trained: Mapping[str, Any], device: torch.device | str = "cpu") -> nn.Module:
    """The network a :func:`defence_unit` trained (``trained``: its result), from its checkpoint (``weights_only``):
    built as the unit built it, with the weights training ended on (the best validation epoch's), in eval mode."""
    net = defence_network(trained["network"], trained["seed"], image_shape=trained["image_shape"],
                          pd_pool=trained["pd_pool"], device=device)
    state = load_checkpoint(trained["checkpoint"], keys=("model",))
    best = state.get("best")
    net.load_state_dict(best["model"] if best else state["model"])  # fit's restore_best
    return net.eval()


def fgsm_accuracies(nets: dict[str, nn.Module], data: tuple[torch.Tensor, torch.Tensor], *, eps: float,
                    small_eps: float, source: nn.Module, batch_size: int, seed: int,
                    per_example: bool = False) -> dict[str, dict]:
    """Tables 3.2 and 3.3 for each net: clean accuracy, white-box FGSM at ``eps``, black-box FGSM crafted on
    ``source`` (the thesis's second standard net), and white-box FGSM at ``small_eps`` (Sec. 3.3.3), all on the
    squared-error loss the nets were trained with. With ``per_example``, each net's entry also holds
    ``"correct"``: ``{"clean", "white", "black", "white_small"}`` -> 1/0 per image in the data's order (the scores
    :func:`helpers.claims.bootstrap` pairs across nets and seeds)."""
    fgsm, fgsm_small = Attack("fgsm", eps=eps), Attack("fgsm", eps=small_eps)
    measured = {}
    for name, net in nets.items():
        kwargs = dict(batch_size=batch_size, seed=seed, loss_fn=onehot_mse_loss, per_example=per_example)
        white = evaluate(net, data, fgsm, **kwargs)
        black = evaluate(net, data, fgsm, source=source, **kwargs)
        small = evaluate(net, data, fgsm_small, **kwargs)
        measured[name] = {"clean": white["clean"], "white": white["robust"], "black": black["robust"],
                          "white_small": small["robust"]}
        if per_example:
            measured[name]["correct"] = {"clean": white["clean_correct"], "white": white["robust_correct"],
                                         "black": black["robust_correct"], "white_small": small["robust_correct"]}
    return measured


def lead_over_best(first: np.ndarray, *others: np.ndarray) -> np.ndarray:
    """``mean(first) - max_k mean(others[k])`` over arrays ``[..., seeds, examples]``: how far the first arm is
    ahead of the best of the others (negative: behind it). A vectorized statistic for
    :func:`helpers.claims.bootstrap` (e.g. "A has the best black-box accuracy of the six networks")."""
    if not others:
        raise ValueError("lead_over_best needs at least one other arm")
    best = np.max(np.stack([o.mean(axis=(-2, -1)) for o in others]), axis=0)
    return first.mean(axis=(-2, -1)) - best
