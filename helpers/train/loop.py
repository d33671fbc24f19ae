"""Training loops: clean, FGSM or PGD adversarial training, evaluation, checkpoint and resume.

One ``fit`` covers every chapter's classifier training; the adversarial loss is
(1 - w) * L(x, y) + w * L(x_adv, y) with w = ``adv_weight`` (w = 0.5: Goodfellow et al.'s 50/50 mix;
w = 1: Madry et al.'s adversarial-only objective).
"""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
from ..progress import tqdm

from .. import batch_slices, checks, model_device
from ..attacks import Attack, LossFn, classification_loss
from ..cache import cache_path
from ..data import batches
from ..io import atomic_torch_save, load_checkpoint
from ..metrics import correct, predictions

OPTIMIZERS = ("sgd", "adam")
#: Learning-rate schedules of :func:`fit`: None (constant) or "cosine" (per step, lr -> 0 at the last step).
LR_SCHEDULES = (None, "cosine")
#: Training-time augmentations of :func:`fit`: None or "crop_flip" (random crop after zero padding + horizontal flip).
AUGMENTATIONS = (None, "crop_flip")
#: ``step_loss(model, x, y) -> (scalar loss, outputs)``: a whole-batch loss, e.g. with an input-gradient penalty.
StepLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
#: ``on_epoch_end(epoch, model, optimizer) -> dict | None`` (0-based epoch), e.g. a sparse-momentum mask update.
OnEpochEnd = Callable[[int, nn.Module, torch.optim.Optimizer], "dict | None"]


def _tensors(data) -> tuple[torch.Tensor, torch.Tensor]:
    if hasattr(data, "x") and hasattr(data, "y"):
        return data.x, data.y
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0], data[1]
    raise ValueError(f"data must be an ImageData or an (x, y) pair of tensors, got {type(data).__name__}")


def make_optimizer(model: nn.Module, name: str, lr: float, momentum: float = 0.9, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """SGD with momentum or Adam over the trainable parameters."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {name!r}")
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def cosine_lr(lr: float, step: int, total_steps: int) -> float:
    """The cosine-annealed rate at optimiser step ``step`` of ``total_steps``: ``lr (1 + cos(pi step / total)) / 2``.

    Loshchilov & Hutter's SGDR without restarts (``CosineAnnealingLR`` with eta_min 0), stepped every batch.
    """
    if not (isinstance(total_steps, int) and total_steps >= 1 and isinstance(step, int) and 0 <= step <= total_steps):
        raise ValueError(f"step must be an int in [0, total_steps] and total_steps an int >= 1, got {step!r}, {total_steps!r}")
    return 0.5 * lr * (1 + math.cos(math.pi * step / total_steps))


def crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random crop of the zero-padded image (``padding`` pixels per side) and a horizontal flip with probability 1/2.

    The standard CIFAR augmentation (``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip``), per image.
    """
    if not (isinstance(padding, int) and padding >= 0):
        raise ValueError(f"padding must be an int >= 0, got {padding!r}")
    n, _, h, w = x.shape
    shifts = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    out = torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(shifts.tolist())])
    return torch.where(flips.to(x.device).view(-1, 1, 1, 1), out.flip(-1), out)


def checkpoint_path(name: str, **settings) -> Path:
    """A checkpoint file under ``<data root>/checkpoints`` keyed by a hash of ``settings`` (load-or-train);
    :func:`helpers.cache.cache_path` decides it."""
    return cache_path(name, settings)


def fit(
    model: nn.Module,
    data,
    *,
    epochs: int,
    lr: float,
    batch_size: int = 128,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    attack: Attack | None = None,
    adv_weight: float = 0.5,
    loss_fn: LossFn = classification_loss,
    step_loss: StepLoss | None = None,
    validation=None,
    early_stopping: int | None = None,
    restore_best: bool = True,
    on_epoch_end: OnEpochEnd | None = None,
    lr_schedule: str | None = None,
    augment: str | None = None,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    desc: str | None = None,
) -> list[dict]:
    """Train ``model`` in place for ``epochs`` epochs; return one record per epoch (loss, accuracy, seconds).

    Integer labels are classes (records carry ``train_accuracy``); float targets are a regression.
    With ``attack``, each batch mixes clean and adversarial loss with ``adv_weight`` (see the module doc); the
    attack ascends ``loss_fn``. ``step_loss(model, x, y) -> (loss, outputs)`` replaces ``loss_fn(model(x), y).mean()``
    where a loss needs the model itself (e.g. an input-gradient penalty). With ``validation`` (ImageData or
    (x, y)) each record has ``val_accuracy``; ``early_stopping=k`` stops after k epochs without a strict
    improvement and, with ``restore_best``, ends on the best epoch's weights. ``on_epoch_end(epoch, model,
    optimizer)`` runs after each epoch's training and validation, before the checkpoint; a dict it returns is
    merged into that epoch's record. ``lr_schedule="cosine"`` anneals the rate every step from ``lr`` to 0 over all
    ``epochs`` (:func:`cosine_lr`); ``augment="crop_flip"`` randomly crops (4-pixel zero padding) and flips each
    training image (:func:`crop_flip`), drawing from the seeded generator. With ``checkpoint``, state is
    saved atomically after every epoch and a finished or partial run resumes from it; the resumed run equals
    an uninterrupted one on the CPU.
    """
    checks.integer("epochs", epochs, low=1)
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if not 0.0 <= adv_weight <= 1.0:
        raise ValueError(f"adv_weight must be in [0, 1], got {adv_weight!r}")
    if early_stopping is not None and not (isinstance(early_stopping, int) and early_stopping >= 1):
        raise ValueError(f"early_stopping must be None or an int >= 1 (patience in epochs), got {early_stopping!r}")
    if early_stopping is not None and validation is None:
        raise ValueError("early_stopping needs validation data: pass validation=(x, y) or an ImageData")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}")
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
    x_all, y_all = _tensors(data)
    checks.nonempty("data", len(x_all))
    classifying = not torch.is_floating_point(y_all)  # float targets (regression): no training accuracy
    dev = model_device(model)
    opt = make_optimizer(model, optimizer, lr, momentum, weight_decay)
    generator = torch.Generator().manual_seed(seed)
    settings = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "optimizer": optimizer, "momentum": momentum,
                "weight_decay": weight_decay, "attack": attack.as_dict() if attack else None,
                "adv_weight": adv_weight, "seed": seed, "n": len(x_all)}
    if validation is not None:
        settings.update(n_validation=len(_tensors(validation)[0]), early_stopping=early_stopping)
    if lr_schedule is not None:  # only when set, so that checkpoints written before these options still load
        settings["lr_schedule"] = lr_schedule
    if augment is not None:
        settings["augment"] = augment
    steps_per_epoch = math.ceil(len(x_all) / batch_size)
    history: list[dict] = []
    best: dict = {}  # epoch, val_accuracy and weights of the best validation epoch
    if checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint, keys=("model", "optimizer", "settings", "generator", "history"))
        saved = {k: v for k, v in state["settings"].items() if k != "epochs"}
        if saved != {k: v for k, v in settings.items() if k != "epochs"}:
            raise ValueError(f"checkpoint {checkpoint} was written with other settings ({state['settings']}); "
                             "delete it or pass another checkpoint path")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history = list(state["history"])
        best = dict(state.get("best") or {})
        if len(history) > epochs:
            raise ValueError(f"checkpoint {checkpoint} holds {len(history)} epochs, more than epochs={epochs}; "
                             "delete it or ask for at least as many epochs")

    def batch_loss(xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if step_loss is not None:
            return step_loss(model, xb, yb)
        out = model(xb)
        return loss_fn(out, yb).mean(), out

    def stopped() -> bool:
        return early_stopping is not None and bool(best) and len(history) - best["epoch"] >= early_stopping

    bar = tqdm(range(len(history), epochs), desc=desc or "fit", disable=not progress, leave=False)
    for epoch in bar:
        if stopped():
            break
        start = time.perf_counter()
        model.train()
        total_loss, total_correct, seen = 0.0, 0, 0
        for step, (xb, yb) in enumerate(batches(x_all, y_all, batch_size, shuffle=True, generator=generator)):
            if lr_schedule == "cosine":
                for group in opt.param_groups:
                    group["lr"] = cosine_lr(lr, epoch * steps_per_epoch + step, epochs * steps_per_epoch)
            if augment == "crop_flip":
                xb = crop_flip(xb, generator)
            xb, yb = xb.to(dev), yb.to(dev)
            if attack is not None and adv_weight > 0:
                adv_loss, out = batch_loss(attack(model, xb, yb, generator=generator, loss_fn=loss_fn), yb)
                loss = adv_weight * adv_loss
                if adv_weight < 1:
                    clean_loss, out = batch_loss(xb, yb)
                    loss = loss + (1 - adv_weight) * clean_loss
            else:
                loss, out = batch_loss(xb, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total_loss += loss.item() * len(yb)
            if classifying:
                total_correct += correct(out.detach(), yb)
            seen += len(yb)
        record = {"epoch": epoch + 1, "loss": total_loss / seen, "seconds": time.perf_counter() - start}
        if lr_schedule is not None:
            record["lr"] = opt.param_groups[0]["lr"]  # the rate of the epoch's last step
        if classifying:
            record["train_accuracy"] = total_correct / seen
        if validation is not None:
            record["val_accuracy"] = evaluate(model, validation)["clean"]
            if not best or record["val_accuracy"] > best["val_accuracy"]:
                best = {"epoch": epoch + 1, "val_accuracy": record["val_accuracy"],
                        "model": copy.deepcopy(model.state_dict())}
        if on_epoch_end is not None:
            record.update(on_epoch_end(epoch, model, opt) or {})
        history.append(record)
        bar.set_postfix({k: f"{v:.3f}" for k, v in record.items() if k in ("loss", "train_accuracy", "val_accuracy")})
        if checkpoint is not None:
            atomic_torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "settings": settings,
                               "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                               "history": history, "best": best}, checkpoint)
    if best and restore_best:
        model.load_state_dict(best["model"])
    model.eval()
    return history


@torch.no_grad()
def _correct_mask(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    return predictions(model(xb)) == yb


def evaluate(model: nn.Module, data, attack: Attack | None = None, batch_size: int = 500, seed: int = 0,
             progress: bool = False, desc: str | None = None, loss_fn: LossFn = classification_loss,
             source: nn.Module | None = None, per_example: bool = False) -> dict:
    """Clean accuracy and, with ``attack``, robust accuracy (accuracy on the attacked images), in [0, 1].

    The attack ascends ``loss_fn`` on ``source`` (a transfer / black-box attack) or on ``model`` itself
    (white-box, the default). Returns ``{"clean": ..., "robust": ... or None, "n": number of images}``; with
    ``per_example=True`` also ``"clean_correct"`` and ``"robust_correct"`` (or None): float arrays of 1/0 per image
    in the data's order, the scores :func:`helpers.claims.bootstrap` pairs across models and seeds.
    """
    x_all, y_all = _tensors(data)
    if len(x_all) == 0:
        raise ValueError("data is empty")
    dev = model_device(model)
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    clean, robust = [], []
    for xb, yb in tqdm(list(batches(x_all, y_all, batch_size)), desc=desc or "evaluate", disable=not progress, leave=False):
        xb, yb = xb.to(dev), yb.to(dev)
        clean.append(_correct_mask(model, xb, yb).cpu())
        if attack is not None:
            x_adv = attack(source if source is not None else model, xb, yb, generator=generator, loss_fn=loss_fn)
            robust.append(_correct_mask(model, x_adv, yb).cpu())
    n = len(x_all)
    clean_mask = torch.cat(clean).double()
    robust_mask = torch.cat(robust).double() if attack is not None else None
    out = {"clean": int(clean_mask.sum()) / n,
           "robust": int(robust_mask.sum()) / n if robust_mask is not None else None, "n": n}
    if per_example:
        out["clean_correct"] = clean_mask.numpy()
        out["robust_correct"] = robust_mask.numpy() if robust_mask is not None else None
    return out


def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int = 200) -> nn.Module:
    """Replace every BN's running statistics by the average of its batch statistics over ``x`` ("precise BN").

    Adam at a constant rate moves the weights fast, so the exponential running averages lag behind the final
    weights, and ACT's halting threshold 1 - eps is sensitive to them. A forward pass in train mode (dense, no gradient) over the training
    images with a cumulative average (equal weight per batch: the exact mean for equal batches) fixes it.
    Returns the model in eval mode.
    """
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: the exact mean over all batches
    model.train()
    dev = model_device(model)
    try:
        with torch.no_grad():
            for part in batch_slices(len(x), batch_size):
                model(x[part].to(dev))
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
    return model.eval()
