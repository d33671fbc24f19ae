"""Training and judging the thesis's count regressor (Paper 5, thesis Sec. 2.2): MSE on raw counts."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

import pandas as pd
import torch
import torch.nn as nn

from .. import batch_slices, checks, eval_mode, model_device
from ..models.counting import CountingCNN
from ..shapes import SHAPE_TYPES, ShapesData
from .loop import checkpoint_path, fit, recalibrate_batchnorm

__all__ = ["COUNTING_LR_SCHEDULES", "count_loss", "thirds_lr", "train_counter", "predict_counts", "count_accuracy", "count_scores",
           "count_errors_by_true_count", "count_range_summary", "train_counting_nets", "training_table",
           "input_channel_change", "count_accuracy_table"]


#: Learning-rate schedules of :func:`train_counter`: None (constant) or "thirds" (x0.1 every third of training).
COUNTING_LR_SCHEDULES = (None, "thirds")


def thirds_lr(lr: float, epoch: int, epochs: int) -> float:
    """The rate of 0-based ``epoch`` of ``epochs`` under the official counting schedule: ``lr * 0.1 ** floor(3 epoch /
    epochs)`` (Chainer's ``StepShift("lr", 0.1, iterations / 3)`` in the official ``learn.py``, at epoch granularity:
    each epoch runs at the official rate of its first iteration, so lr, lr/10, lr/100 for a third of training each)."""
    checks.number("lr", lr, low=0.0, low_open=True)
    checks.integer("epochs", epochs, low=1)
    checks.integer("epoch", epoch, low=0, high=epochs - 1)
    return lr * 0.1 ** math.floor(3 * epoch / epochs)


def _thirds_hook(lr: float, epochs: int):
    def on_epoch_end(epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
        ran = optimizer.param_groups[0]["lr"]  # the rate this epoch ran at
        if epoch + 1 < epochs:
            for group in optimizer.param_groups:
                group["lr"] = thirds_lr(lr, epoch + 1, epochs)  # saved with the optimiser: a resumed run keeps it
        return {"lr": ran}
    return on_epoch_end


def count_loss(output: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Squared error on the raw counts, averaged over shape types: one value per image (thesis Sec. 2.2).

    Its mean over a batch is the official ``mean_squared_error``.
    """
    return (output - counts).pow(2).mean(dim=1)


def train_counter(model: CountingCNN, data: ShapesData, *, epochs: int, lr: float, batch_size: int = 20,
                  optimizer: str = "adam", momentum: float = 0.0, lr_schedule: str | None = None, seed: int = 0,
                  checkpoint: str | Path | None = None, progress: bool = True, desc: str | None = None) -> list[dict]:
    """Train ``model`` on ``data`` with ``count_loss`` through ``helpers.train.fit`` (Sec. 2.2: MSE, small batches).

    The official script's defaults: batches of 20, plain SGD (``optimizer="sgd"``, ``momentum=0``; MomentumSGD 0.85
    is its option) at lr 0.07, ``lr_schedule="thirds"`` (:func:`thirds_lr`), on 0..255 pixels (build the net with
    ``pixel_scale=255``). ``momentum`` is SGD's only (Adam ignores it). Returns fit's records (epoch, loss, seconds;
    ``lr``: the epoch's rate, with a schedule); checkpoint and resume are fit's.
    """
    checks.number("momentum", momentum, low=0.0, high=1.0, high_open=True)
    checks.choice("lr_schedule", lr_schedule, COUNTING_LR_SCHEDULES)
    hook = _thirds_hook(lr, epochs) if lr_schedule == "thirds" else None
    return fit(model, (data.x, data.counts), epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer,
               momentum=momentum, loss_fn=count_loss, on_epoch_end=hook, seed=seed, checkpoint=checkpoint,
               progress=progress, desc=desc or "counting")


@torch.no_grad()
def predict_counts(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """The model's raw count outputs (N, T) on the CPU, in eval mode, ``batch_size`` images at a time.

    Round them for a count (``count_accuracy``); their sum is the total the detection uses (Sec. 2.2.2).
    """
    with eval_mode(model):
        return torch.cat([model(x[part].to(model_device(model))).cpu() for part in batch_slices(len(x), batch_size)])


def _check_counts(predicted: torch.Tensor, true: torch.Tensor) -> None:
    if predicted.shape != true.shape or predicted.dim() != 2 or len(true) == 0:
        raise ValueError(f"predicted and true must be non-empty (N, T) counts of one shape, "
                         f"got {tuple(predicted.shape)} and {tuple(true.shape)}")


def count_accuracy(predicted: torch.Tensor, true: torch.Tensor,
                   shape_types: Sequence[str] = SHAPE_TYPES) -> dict[str, float]:
    """Fraction of images whose rounded count is exact, per shape type and for all types at once ("all"),
    and the mean absolute error of the raw outputs per type ("mae_<type>")."""
    _check_counts(predicted, true)
    if len(shape_types) != true.shape[1]:
        raise ValueError(f"shape_types must name the {true.shape[1]} count columns, got {tuple(shape_types)}")
    exact = predicted.detach().cpu().round() == true.cpu()
    scores = {name: float(exact[:, j].float().mean()) for j, name in enumerate(shape_types)}
    scores["all"] = float(exact.all(1).float().mean())
    error = (predicted.detach().cpu() - true.cpu()).abs().mean(0)
    scores.update({f"mae_{name}": float(error[j]) for j, name in enumerate(shape_types)})
    return scores


def count_scores(predicted: torch.Tensor, true: torch.Tensor,
                 shape_types: Sequence[str] = SHAPE_TYPES) -> dict[str, np.ndarray]:
    """Per-image scores, the unit :func:`helpers.claims.bootstrap` resamples: ``exact_<type>`` and ``exact_all``
    (1/0: the rounded count is exact for that type / for every type) and ``abs_error`` (the mean absolute error of
    the raw outputs over the types), each an (N,) float array. Their means are :func:`count_accuracy`'s numbers."""
    _check_counts(predicted, true)
    if len(shape_types) != true.shape[1]:
        raise ValueError(f"shape_types must name the {true.shape[1]} count columns, got {tuple(shape_types)}")
    out, truth = predicted.detach().cpu().double(), true.cpu().double()
    exact = out.round() == truth
    scores = {f"exact_{name}": exact[:, j].double().numpy() for j, name in enumerate(shape_types)}
    scores["exact_all"] = exact.all(1).double().numpy()
    scores["abs_error"] = (out - truth).abs().mean(1).numpy()
    return scores


def count_errors_by_true_count(predicted: torch.Tensor, true: torch.Tensor,
                               shape_types: Sequence[str] = SHAPE_TYPES) -> pd.DataFrame:
    """Per shape type and true count: images, rounded accuracy, mean error and mean absolute error of the output.

    The thesis's plot of predictions against truth (Sec. 2.2.3), as a table: one row per (shape, true_count).
    """
    _check_counts(predicted, true)
    if len(shape_types) != true.shape[1]:
        raise ValueError(f"shape_types must name the {true.shape[1]} count columns, got {tuple(shape_types)}")
    out, truth = predicted.detach().cpu().double().numpy(), true.cpu().double().numpy()
    frame = pd.DataFrame({
        "shape": np.repeat(np.array(shape_types), len(truth)),
        "true_count": truth.T.reshape(-1).astype(int),
        "error": (out - truth).T.reshape(-1),
        "exact": (np.round(out) == truth).T.reshape(-1),
    })
    frame["abs_error"] = frame["error"].abs()
    return (frame.groupby(["shape", "true_count"], sort=True)
            .agg(n=("error", "size"), accuracy=("exact", "mean"), mean_error=("error", "mean"),
                 mean_abs_error=("abs_error", "mean"))
            .reset_index())


def count_range_summary(by_count: pd.DataFrame, split: int = 4) -> dict[str, float]:
    """From :func:`count_errors_by_true_count`'s table: exact accuracy and mean absolute error over the true counts
    ``<= split`` (``accuracy_low``, ``mae_low``) and ``> split`` (``accuracy_high``, ``mae_high``; NaN when no count
    exceeds it), image-weighted over both types, and the largest true count (``top``) with the mean signed error
    of the outputs there (``top_error``: negative when they lean low)."""
    def weighted(rows: pd.DataFrame, column: str) -> float:
        return float((rows[column] * rows["n"]).sum() / rows["n"].sum()) if len(rows) else float("nan")

    low, high = by_count[by_count["true_count"] <= split], by_count[by_count["true_count"] > split]
    top = by_count[by_count["true_count"] == by_count["true_count"].max()]
    return {"accuracy_low": weighted(low, "accuracy"), "accuracy_high": weighted(high, "accuracy"),
            "mae_low": weighted(low, "mean_abs_error"), "mae_high": weighted(high, "mean_abs_error"),
            "top": int(by_count["true_count"].max()), "top_error": weighted(top, "mean_error")}


def train_counting_nets(train: ShapesData, activations: Sequence[str], *, main: str, epochs: int,
                        compare_epochs: int, layers: Sequence, image_size: int, batch_norm: Sequence[str], lr: float,
                        batch_size: int, optimizer: str, seed: int, momentum: float = 0.0,
                        lr_schedule: str | None = None, pixel_scale: float = 1.0, device: torch.device | str = "cpu",
                        progress: bool = True) -> tuple[dict[str, CountingCNN], dict[str, list[dict]]]:
    """One :class:`CountingCNN` per activation (thesis Sec. 2.2.3), loaded from its checkpoint or trained.

    ``main`` (the activation the detection needs) trains for ``epochs``, the others for ``compare_epochs``; the
    nets whose activation is in ``batch_norm`` get a BatchNorm2d after every convolution, and their running
    statistics are re-estimated over the training images afterwards (no weight changes). Every net starts from
    ``torch.manual_seed(seed)``; ``momentum``, ``lr_schedule`` and ``pixel_scale`` as :func:`train_counter` and
    :class:`CountingCNN` take them (the official script: 0, "thirds", 255). Returns ``(nets, histories)`` keyed by
    activation, the nets in eval mode.
    """
    checks.choice("main", main, list(activations))
    for name, value in (("epochs", epochs), ("compare_epochs", compare_epochs)):
        checks.integer(name, value, low=1)
    checks.nonempty("train", len(train))
    nets, histories = {}, {}
    for activation in activations:
        net_epochs = epochs if activation == main else compare_epochs
        norm = activation in batch_norm
        torch.manual_seed(seed)
        net = CountingCNN(activation, layers=layers, image_size=image_size, batch_norm=norm,
                          pixel_scale=pixel_scale).to(device)
        ckpt = checkpoint_path("counting", activation=activation, batch_norm=norm, layers=layers,
                               data=train.settings, n=len(train), seed=seed, epochs=net_epochs, lr=lr,
                               batch_size=batch_size, optimizer=optimizer, momentum=momentum,
                               lr_schedule=lr_schedule, pixel_scale=pixel_scale)
        histories[activation] = train_counter(net, train, epochs=net_epochs, lr=lr, batch_size=batch_size,
                                              optimizer=optimizer, momentum=momentum, lr_schedule=lr_schedule,
                                              seed=seed, checkpoint=ckpt, progress=progress, desc=f"{activation} net")
        nets[activation] = recalibrate_batchnorm(net, train.x, batch_size=500)
    return nets, histories


def training_table(histories: dict[tuple[str, int], list[dict]], batch_norm: Sequence[str]) -> pd.DataFrame:
    """One row per trained net, from ``{(activation, seed): history}`` (the histories of :func:`train_counter`):
    whether it has batch norm, epochs, final training loss and training seconds."""
    return pd.DataFrame([{"activation": a, "seed": s, "batch norm": a in batch_norm, "epochs": len(h),
                          "final training loss (MSE)": h[-1]["loss"] if h else float("nan"),
                          "training s": sum(r["seconds"] for r in h)} for (a, s), h in histories.items()])


def input_channel_change(net: CountingCNN, *, seed: int, layers: Sequence, image_size: int,
                         batch_norm: bool) -> np.ndarray:
    """The largest change of ``net``'s first-layer weights during training, per input channel: the trained weights
    against a fresh :class:`CountingCNN` of the same activation built after ``torch.manual_seed(seed)``, as
    :func:`train_counting_nets` starts it. A channel no training image lights (red and green, for blue shapes)
    never receives a gradient and shows 0."""
    torch.manual_seed(seed)
    initial = CountingCNN(net.activation, layers=layers, image_size=image_size, batch_norm=batch_norm).body[0].weight
    trained = net.body[0].weight.detach().cpu()
    return (trained - initial.detach()).abs().amax(dim=(0, 2, 3)).numpy()


def count_accuracy_table(outputs: dict[str, torch.Tensor], counts: torch.Tensor,
                         shape_types: Sequence[str] = SHAPE_TYPES) -> pd.DataFrame:
    """One row per model (``outputs``: name -> raw outputs): exact accuracy per type and for both, and MAE."""
    rows = []
    for name, output in outputs.items():
        scores = count_accuracy(output, counts, shape_types)
        rows.append({"model": name, **{f"exact {t}": scores[t] for t in shape_types}, "exact both": scores["all"],
                     **{f"MAE {t}": scores[f"mae_{t}"] for t in shape_types}})
    return pd.DataFrame(rows).set_index("model")
