"""Counting figures (Paper 5, thesis Ch. 2): generated shapes, count errors, saliency maps, detections."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import torch

from ..saliency import Detection, saliency, saliency_image
from ..shapes import ShapesData
from ..train.counting import count_errors_by_true_count

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ['show_image', 'count_title', 'plot_count_errors', 'plot_saliency_maps', 'plot_second_derivative', 'plot_detections', 'plot_pixel_shortcut', 'plot_shape_examples']


def show_image(ax: Axes, image: torch.Tensor) -> None:
    """Draw one (3, H, W) image in [0, 1] without ticks."""
    ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def count_title(counts: Sequence[float], types: Sequence[str]) -> str:
    """``"2 triangles, 1 square"``."""
    return ", ".join(f"{int(c)} {name}{'s' if int(c) != 1 else ''}" for name, c in zip(types, counts))


def plot_count_errors(predicted: Mapping[str, torch.Tensor], counts: torch.Tensor, types: Sequence[str], *,
                      main: str, limit: int, chance: float) -> None:
    """Three panels: the ``main`` net's raw output against the true count, every net's exact accuracy by true
    count (``chance``: the training-mean baseline), and the ``main`` net's mean error with its MAE as a bar."""
    import matplotlib.pyplot as plt

    by_count = count_errors_by_true_count(predicted[main], counts, types)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    rng = np.random.default_rng(0)
    for j, t in enumerate(types):
        truth = counts[:, j].numpy()
        axes[0].scatter(truth + rng.uniform(-0.15, 0.15, len(truth)) + 0.3 * (j - 0.5), predicted[main][:, j],
                        s=5, alpha=0.3, label=t)
    axes[0].plot([0, limit], [0, limit], "k--", lw=1)
    axes[0].set(xlabel="true count", ylabel="raw output", title=f"{main} net: output vs truth")
    axes[0].legend(markerscale=3)
    for activation, style in zip(predicted, ("-o", "--s", ":^")):
        frame = count_errors_by_true_count(predicted[activation], counts, types)
        for j, t in enumerate(types):
            part = frame[frame["shape"] == t]
            axes[1].plot(part["true_count"], part["accuracy"], style, color=f"C{j}", ms=4,
                         alpha=1.0 if activation == main else 0.6, label=f"{t}, {activation}")
    for j, t in enumerate(types):
        part = by_count[by_count["shape"] == t]
        axes[2].errorbar(part["true_count"] + 0.1 * (j - 0.5), part["mean_error"], yerr=part["mean_abs_error"],
                         fmt="-o", ms=4, capsize=3, color=f"C{j}", label=f"{t}: mean error, bar = MAE")
    for ax in axes[1:]:
        ax.axvline(4.5, color="grey", lw=1, ls=":")
    axes[1].axhline(chance, color="grey", lw=1, ls="--")
    axes[1].set(xlabel="true count", ylabel="exact (rounded) accuracy", ylim=(0, 1.05),
                title="accuracy by true count (dotted: 4, the subitizing limit)")
    axes[1].legend(fontsize=7)
    axes[2].axhline(0, color="k", lw=1)
    axes[2].set(xlabel="true count", ylabel="output - truth", title=f"{main} net: error by true count")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    plt.show()


def plot_saliency_maps(nets: Mapping[str, torch.nn.Module], data: ShapesData, shown: Sequence[int]) -> None:
    """Each image of ``shown`` beside each net's saliency map (power 0.1), the true outlines in orange."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(shown), 1 + len(nets), figsize=(3 * (1 + len(nets)), 3 * len(shown)),
                             squeeze=False)
    for row, i in enumerate(shown):
        show_image(axes[row, 0], data.x[i])
        axes[row, 0].set_title(count_title(data.counts[i], data.shape_types), fontsize=9)
        for col, (activation, net) in enumerate(nets.items(), start=1):
            smap = saliency(net, data.x[i:i + 1])[0].cpu()
            axes[row, col].imshow(saliency_image(smap).numpy(), cmap="gray", interpolation="nearest")
            axes[row, col].contour(data.instances[i].numpy() > 0, levels=[0.5], colors="tab:orange", linewidths=0.6)
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
            axes[row, col].set_title(f"{activation}: saliency$^{{0.1}}$", fontsize=9)
    fig.suptitle("Saliency maps (orange: the true shape outlines)")
    fig.tight_layout()
    plt.show()


def plot_second_derivative(second: Mapping[str, tuple], data: ShapesData, i: int) -> None:
    """Image ``i`` beside each net's second-derivative saliency ``h_i`` (power 0.1) and its seed pixel
    (``second`` as returned by :func:`helpers.saliency.second_derivative_summary`)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(second), figsize=(3.2 * (1 + len(second)), 3.6), layout="constrained")
    show_image(axes[0], data.x[i])
    axes[0].set_title(count_title(data.counts[i], data.shape_types), fontsize=9)
    for ax, (activation, (seeds, h, _)) in zip(axes[1:], second.items()):
        ax.imshow(saliency_image(h[i]).numpy(), cmap="magma", interpolation="nearest", vmin=0, vmax=1)
        ax.plot(seeds[i, 1], seeds[i, 0], "c+", ms=10, mew=2)
        ax.contour(data.instances[i].numpy() > 0, levels=[0.5], colors="white", linewidths=0.5)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{activation} net (max $h_i$ = {float(h[i].max()):.2g})", fontsize=9)
    fig.suptitle("Saliency of the most salient pixel's saliency, $h_i^{0.1}$ "
                 "(cyan +: the seed pixel; white: true outlines)")
    plt.show()


def plot_detections(detections: Mapping[str, Sequence[Detection]], data: ShapesData, show_n: int,
                    title: str) -> None:
    """One row per detection setting, ``show_n`` images each: detected pixel groups shaded, true boxes green,
    detected boxes red dashed, seeds cyan."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig, axes = plt.subplots(len(detections), show_n, figsize=(3.4 * show_n, 3.8 * len(detections)), squeeze=False,
                             layout="constrained")
    for row, (label, found) in enumerate(detections.items()):
        for col in range(show_n):
            ax, det = axes[row, col], found[col]
            show_image(ax, data.x[col])
            if len(det.masks):
                labelled = (det.masks.numpy() * np.arange(1, len(det.masks) + 1)[:, None, None]).max(0)
                ax.imshow(np.ma.masked_equal(labelled, 0), cmap="autumn", alpha=0.45, interpolation="nearest")
            for x0, y0, x1, y1 in data.boxes[col].tolist():
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="lime", lw=1.2))
            for x0, y0, x1, y1 in det.boxes.tolist():
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="red", lw=1, ls="--"))
            ax.plot(det.seeds[:, 1], det.seeds[:, 0], "c.", ms=5)
            ax.set_title(f"{label}: {len(det.boxes)} boxes, {len(data.boxes[col])} shapes", fontsize=9)
    fig.suptitle(title, fontsize=10)
    plt.show()


def plot_pixel_shortcut(shortcut: Mapping[str, tuple]) -> None:
    """Total shapes against lit pixels on the training images, one panel per sampler (``shortcut``: name ->
    :func:`helpers.shapes.pixel_count_shortcut`'s result), titled with the fit's test R²."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(shortcut), figsize=(5 * len(shortcut), 3.6), sharey=True, squeeze=False)
    for ax, (name, (pixels, totals, scores)) in zip(axes[0], shortcut.items()):
        jitter = np.random.default_rng(0).uniform(-0.2, 0.2, len(totals["train"]))
        ax.scatter(pixels["train"], totals["train"] + jitter, s=4, alpha=0.3)
        ax.set(xlabel="lit pixels", title=f"{name}: R² {scores['R² (test)']:.2f}")
    axes[0, 0].set_ylabel("total shapes (jittered)")
    fig.tight_layout()
    plt.show()


def plot_shape_examples(data: ShapesData, n: int = 12, title: str = "") -> None:
    """The first ``n`` images of ``data`` (all of them when it holds fewer) in rows of six, each titled with its
    counts."""
    import matplotlib.pyplot as plt

    n = min(n, len(data))
    rows = math.ceil(n / 6)
    fig, axes = plt.subplots(rows, 6, figsize=(13, 2.6 * rows), layout="constrained", squeeze=False)
    for ax, i in zip(axes.flat, range(n)):
        show_image(ax, data.x[i])
        ax.set_title(count_title(data.counts[i], data.shape_types), fontsize=8)
    for ax in axes.flat[n:]:
        ax.axis("off")
    fig.suptitle(title)
    plt.show()
