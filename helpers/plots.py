"""Figures for the chapter notebooks: our measurements beside the paper's numbers, Chapter 1's feature usefulness
and lottery-ticket curves, Chapter 4's CA-RA trade-offs, and the counting chapter's images, saliency maps and
detections."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import torch

from .features import KINDS, RANKINGS, usefulness_spearman
from .saliency import Detection, saliency, saliency_image
from .shapes import ShapesData
from .train.adversarial import RESET_LABELS, lottery_curve
from .train.counting import count_errors_by_true_count

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

    from .attacks import Attack

__all__ = ["plot_ours_vs_paper", "plot_sorted_usefulness", "plot_normalized_usefulness", "plot_actual_usefulness",
           "plot_robust_usefulness", "plot_robust_usefulness_kinds", "plot_robust_usefulness_models",
           "plot_feature_pruning", "lottery_density_axes", "plot_lottery_accuracy", "plot_lottery_pgd",
           "CA_RA_STYLES", "plot_ca_ra", "show_image", "count_title", "plot_count_errors", "plot_saliency_maps",
           "plot_second_derivative", "plot_detections", "plot_pixel_shortcut", "plot_shape_examples"]


def _values(label: str, values: Sequence[float | None], xs: Sequence[float]) -> list[float]:
    if len(values) != len(xs):
        raise ValueError(f"series {label!r} has {len(values)} values for {len(xs)} x positions")
    return [math.nan if v is None else float(v) for v in values]


def plot_ours_vs_paper(
    x: Sequence[float],
    ours: Mapping[str, Sequence[float | None]],
    paper: Mapping[str, Sequence[float | None]] | None = None,
    *,
    paper_x: Sequence[float] | None = None,
    ax: Axes | None = None,
    xlabel: str = "",
    ylabel: str = "",
    title: str | None = None,
    percent: bool = True,
    reference: float | None = None,
    reference_label: str = "chance",
) -> Axes:
    """Plot our series (solid, filled markers) and the paper's (dashed, hollow markers, same colour per label) against x.

    Values are fractions shown as percent when ``percent``; ``None``/NaN means not measured; returns the Axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import PercentFormatter

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    paper = dict(paper or {})
    paper_x = list(x if paper_x is None else paper_x)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labels = list(dict.fromkeys([*ours, *paper]))
    for i, label in enumerate(labels):
        colour = colours[i % len(colours)]
        if label in ours:
            ax.plot(list(x), _values(label, ours[label], x), "-o", color=colour, label=f"{label} (ours)")
        if label in paper:
            ax.plot(paper_x, _values(label, paper[label], paper_x), "--s", color=colour, markerfacecolor="none",
                    label=f"{label} (paper)")
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle=":", linewidth=1, label=reference_label)
    ticks = sorted(set(map(float, x)) | set(map(float, paper_x)))
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if percent:
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_ylim(-0.02, 1.02)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return ax


# --------------------------------------------------------------------------------------------
# Chapter 1: feature usefulness (Paper 1, Sec. IV, Figs 5-8) and lottery tickets (Sec. V, Figs 9-12)

def plot_sorted_usefulness(ax: Axes, values: torch.Tensor, dots: torch.Tensor | None = None, *, title: str = "",
                           ylabel: str = "usefulness", live: torch.Tensor | None = None) -> None:
    """One bar per feature, most useful first (blue >= 0, red < 0), ``dots`` (Ilyas et al.'s measure) in the same
    order and the dead features (``live`` False) shaded: Paper 1's Figs 5 and 6."""
    order = np.argsort(-values.numpy(), kind="stable")
    xs = np.arange(len(order))
    colours = np.where(values.numpy()[order] >= 0, "tab:blue", "tab:red")
    ax.bar(xs, values.numpy()[order], color=colours, width=0.9, label="sigmoid (Paper 1)")
    if dots is not None:
        ax.plot(xs, dots.numpy()[order], "k.", ms=3, label="Ilyas et al. E[ỹ f̂]")
    if live is not None:
        dead = np.flatnonzero(~live.numpy()[order])
        if len(dead):
            ax.axvspan(dead.min() - 0.5, dead.max() + 0.5, color="0.85", zorder=0, label="dead features")
    ax.axhline(0, color="k", lw=0.6)
    ax.set(title=title, xlabel="feature (sorted)", ylabel=ylabel)
    ax.legend(fontsize=8)


def plot_normalized_usefulness(m: dict) -> None:
    """Paper 1's Fig 5: the normalized usefulness of every feature of :func:`helpers.features.usefulness_measures`
    ``m``, raw and sign-aligned (−f where f is negatively useful), both kinds."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), sharey=True)
    plot_sorted_usefulness(axes[0], m[("raw", "sigmoid")], m[("raw", "ilyas")],
                           title="Fig 5 (raw): normalized usefulness", live=m["live"])
    plot_sorted_usefulness(axes[1], m[("aligned", "sigmoid")], m[("aligned", "ilyas")],
                           title="Fig 5 (sign-aligned): −f where f is negatively useful", live=m["live"])
    fig.tight_layout()
    plt.show()


def plot_actual_usefulness(m: dict) -> None:
    """Paper 1's Figs 6 and 7: the actual usefulness (× head weight) of every feature of ``m``, both kinds, and its
    scatter against the sign-aligned normalized usefulness, titled with their Spearman rho
    (:func:`helpers.features.usefulness_spearman`)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), gridspec_kw=dict(width_ratios=[1.2, 1.2, 1]))
    plot_sorted_usefulness(axes[0], m[("actual", "sigmoid")], live=m["live"], ylabel="actual usefulness",
                           title="Fig 6: actual usefulness (sigmoid, × head weight)")
    plot_sorted_usefulness(axes[1], m[("actual", "ilyas")], live=m["live"], ylabel="E[ỹ w f̂]",
                           title="Fig 6, Ilyas kind: E[ỹ w f̂]")
    axes[1].get_legend().remove()
    live = m["live"].numpy()
    x_norm, y_act = m[("aligned", "sigmoid")].numpy(), m[("actual", "sigmoid")].numpy()
    axes[2].scatter(x_norm[live], y_act[live], s=14, label="live features")
    axes[2].scatter(x_norm[~live], y_act[~live], s=14, c="0.6", label="dead features")
    rho, rho_live = usefulness_spearman(m)
    axes[2].axhline(0, color="k", lw=0.6)
    axes[2].set(title=f"Fig 7: Spearman ρ = {rho:.2f} (all 100), {rho_live:.2f} (live only)",
                xlabel="normalized usefulness (sign-aligned)", ylabel="actual usefulness")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    plt.show()


#: Marker, colour and size of each measure of :func:`helpers.features.robust_measures` in Fig 8.
_ROBUST_MARKERS = {"noise": (".", "tab:green", 4), "paper": ("o", "tab:red", 3), "strong": ("x", "tab:purple", 4)}


def plot_robust_usefulness(ax: Axes, r: dict, kind: str, title: str,
                           shown: Sequence[str] = ("noise", "paper", "strong")) -> None:
    """Paper 1's Fig 8 on one axis: the sign-aligned features sorted by clean usefulness (grey bars), then each
    measure of ``shown`` of :func:`helpers.features.robust_measures` ``r`` (the random start, the attacks)."""
    order = np.argsort(-r[("clean", kind)].numpy(), kind="stable")
    xs = np.arange(len(order))
    ax.bar(xs, r[("clean", kind)].numpy()[order], color="0.8", width=0.9, label="clean (same images)")
    for key in shown:
        marker, colour, size = _ROBUST_MARKERS[key]
        ax.plot(xs, r[(key, kind)].numpy()[order], marker, c=colour, ms=size, label=r["labels"][key])
    ax.axhline(0, color="k", lw=0.6)
    ax.set(title=title, xlabel="feature (sorted by clean usefulness)", ylabel="usefulness of the aligned feature")
    ax.legend(fontsize=8)


def plot_robust_usefulness_kinds(r: dict, strong_steps: int) -> None:
    """Paper 1's Fig 8: :func:`plot_robust_usefulness` for each kind of :data:`helpers.features.KINDS`, side by side
    (``strong_steps``: the iterations of ``r``'s stronger PGD, for the titles)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 3.9))
    for ax, kind in zip(axes, KINDS):
        plot_robust_usefulness(ax, r, kind, f"Fig 8: robust usefulness, "
                               f"{'sigmoid (Paper 1)' if kind == 'sigmoid' else 'Ilyas et al. E[ỹ f̂]'}"
                               f" ({r['n']} images; {r['n_strong']} for PGD-{strong_steps})")
    fig.tight_layout()
    plt.show()


def plot_robust_usefulness_models(robust: Mapping[str, dict], paper_steps: int, strong_steps: int) -> None:
    """Fig 8 (sigmoid kind, both attacks) for each model of ``robust`` (name ->
    :func:`helpers.features.robust_measures`), side by side, each titled with its features of negative robust
    usefulness under either PGD."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(robust), figsize=(6.5 * len(robust), 3.9), sharey=True, squeeze=False)
    for ax, (name, r) in zip(axes[0], robust.items()):
        plot_robust_usefulness(ax, r, "sigmoid", f"{name}: features < 0: {int((r[('paper', 'sigmoid')] < 0).sum())} "
                               f"under PGD-{paper_steps}, {int((r[('strong', 'sigmoid')] < 0).sum())} under "
                               f"PGD-{strong_steps}", shown=("paper", "strong"))
    fig.tight_layout()
    plt.show()


def plot_feature_pruning(table: pd.DataFrame, model_name: str, attack: Attack) -> None:
    """Clean and robust accuracy against the features kept, one line per (head, ranking) of
    :func:`helpers.features.pruning_curves` ``table`` (Paper 1's proposed pruning; ``attack``: its robust column)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), sharex=True)
    colours = dict(zip(RANKINGS, ["tab:blue", "tab:orange"]))
    for ax, metric in zip(axes, ["clean", "robust"]):
        for (head, name), part in table.groupby(["head", "ranking"]):
            ax.plot(part.kept, part[metric], "o-" if head == "refit" else "s--", c=colours[name],
                    label=f"keep highest {name}, head {head}")
        ax.set(xscale="log", xlabel="features kept", ylabel=f"{metric} accuracy", ylim=(0, 1.02),
               title=f"{model_name}: {metric} accuracy" + (f" ({attack.describe()})" if metric == "robust" else ""))
        ax.legend(fontsize=8)
    fig.tight_layout()
    plt.show()


def lottery_density_axes(ax: Axes, ylabel: str, sparsest: float) -> None:
    """Accuracy (%) against the weights remaining (%, log scale, pruning proceeding to the right, down to
    ``sparsest``, a fraction)."""
    from matplotlib.ticker import FuncFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlim(110, 100 * sparsest * 0.9)
    ax.set(ylim=(0, 100), ylabel=ylabel)
    ax.grid(True, which="both", alpha=0.3)


#: Paper 1's Figs 9-12: (training, metric, title) of each panel of :func:`plot_lottery_accuracy`.
_LOTTERY_PANELS = [("standard", "clean", "Fig. 9: standard training, clean accuracy"),
                   ("standard", "fgsm", "Fig. 10: standard training, FGSM accuracy"),
                   ("fgsm_at", "clean", "Fig. 11: FGSM training, clean accuracy"),
                   ("fgsm_at", "fgsm", "Fig. 12: FGSM training, FGSM accuracy")]


def plot_lottery_accuracy(curves: pd.DataFrame, *, paper_marks: Mapping[str, Sequence[tuple[float, str]]],
                          paper_window: float, title: str) -> None:
    """Paper 1's Figs 9-12: clean and FGSM accuracy of the four runs of :func:`helpers.train.adversarial.lottery_runs`
    (``curves``: its records) against the weights remaining, the levels the paper quotes (``paper_marks``: training ->
    (density, text)) marked on the clean panels and the levels past ``paper_window`` (its last density) shaded."""
    import matplotlib.pyplot as plt

    sparsest = curves["density"].min()
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5), sharex=True)
    for ax, (training, metric, panel_title) in zip(axes.flat, _LOTTERY_PANELS):
        for reset, style in (("rewind", dict(marker="o", ls="-")), ("random", dict(marker="s", ls="--"))):
            c = lottery_curve(curves, training, reset)
            ax.plot(100 * c["density"], 100 * c[metric], label=RESET_LABELS[reset], **style)
        ax.axhline(10, color="grey", lw=0.8, ls=":", label="chance (10%)")
        if metric == "clean":
            for level, text in [mark for mark in paper_marks[training] if mark[0] >= sparsest]:
                ax.axvline(100 * level, color="tab:red", lw=0.8, ls=":")
                ax.text(100 * level, 12, f" {text} ({level:.1%})", rotation=90, color="tab:red", fontsize=8,
                        va="bottom")
        if sparsest < paper_window:
            ax.axvspan(100 * sparsest * 0.9, 100 * paper_window, color="grey", alpha=0.1)
        lottery_density_axes(ax, f"{'clean' if metric == 'clean' else 'FGSM (eps 0.3)'} test accuracy (%)", sparsest)
        ax.set_title(panel_title)
    for ax in axes[1]:
        ax.set_xlabel("weights remaining (%, log scale)")
    axes[0, 0].legend(loc="lower left", fontsize=9)
    fig.suptitle(title + ("; grey: beyond the paper's 20 iterations" if sparsest < paper_window else ""))
    fig.tight_layout()
    plt.show()


def plot_lottery_pgd(curves: pd.DataFrame) -> None:
    """Clean, FGSM and PGD-40 accuracy of the FGSM-trained lottery runs (``curves``: the records of
    :func:`helpers.train.adversarial.lottery_runs`, with ``pgd``) against the weights remaining."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for metric, name, colour in (("clean", "clean", "tab:blue"), ("fgsm", "FGSM", "tab:orange"),
                                 ("pgd", "PGD-40", "tab:red")):
        for reset, ls in (("rewind", "-"), ("random", "--")):
            c = lottery_curve(curves, "fgsm_at", reset)
            ax.plot(100 * c["density"], 100 * c[metric], ls=ls, marker="o" if reset == "rewind" else "s",
                    color=colour, label=f"{name}, {reset}")
    ax.axhline(10, color="grey", lw=0.8, ls=":")
    lottery_density_axes(ax, "test accuracy (%)", curves["density"].min())
    ax.set(xlabel="weights remaining (%, log scale)", title="FGSM-trained tickets under FGSM and PGD-40 (eps 0.3)")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    plt.show()


# --------------------------------------------------------------------------------------------
# Chapter 4: CA-RA trade-off curves (FLOAT, Figs 3, 5, 6, 8, 9)

#: The style of each method's curve in the Chapter 4 trade-off figures.
CA_RA_STYLES: dict[str, dict] = {"FLOAT λth=0": dict(marker="o", color="tab:blue"),
                                 "FLOAT λth=0.5": dict(marker="s", ls="--", color="tab:cyan"),
                                 "OAT": dict(marker="^", color="tab:orange"),
                                 "PGD-AT": dict(marker="D", ls=":", color="tab:green")}


def plot_ca_ra(ax: Axes, frame: pd.DataFrame, names: Sequence[str], *, column: str = "method",
               labels: Mapping[str, str] | None = None, styles: Mapping[str, dict] | None = None,
               title: str | None = None, ylabel: str | None = None, legend: bool = True) -> Axes:
    """Robust against clean accuracy (%), one curve per name of ``names`` (the rows of ``frame`` whose ``column`` is
    that name, with columns ``lam, CA, RA``), in order of λ, each point labelled with its λ; a name with no rows is
    skipped. Styles from ``styles``, else :data:`CA_RA_STYLES`; legend labels from ``labels``, else the name."""
    missing = {column, "lam", "CA", "RA"} - set(frame.columns)
    if missing:
        raise ValueError(f"frame must have the columns {column!r}, 'lam', 'CA' and 'RA'; missing {sorted(missing)}")
    labels, styles = dict(labels or {}), dict(styles or {})
    for name in names:
        c = frame[frame[column] == name].sort_values("lam")
        if c.empty:
            continue
        style = styles.get(name, CA_RA_STYLES.get(name, {}))
        ax.plot(100 * c["CA"], 100 * c["RA"], label=labels.get(name, name), **style)
        for _, r in c.iterrows():
            ax.annotate(f"{r['lam']:g}", (100 * r["CA"], 100 * r["RA"]), fontsize=8, xytext=(3, 3),
                        textcoords="offset points")
    if title is not None:
        ax.set_title(title)
    ax.set_xlabel("clean accuracy CA (%)")
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=8)
    return ax


# --------------------------------------------------------------------------------------------
# Counting figures (generated shapes, saliency, detection)

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
    """The first ``n`` images of ``data`` in rows of six, each titled with its counts."""
    import matplotlib.pyplot as plt

    rows = math.ceil(n / 6)
    fig, axes = plt.subplots(rows, 6, figsize=(13, 2.6 * rows), layout="constrained", squeeze=False)
    for ax, i in zip(axes.flat, range(n)):
        show_image(ax, data.x[i])
        ax.set_title(count_title(data.counts[i], data.shape_types), fontsize=8)
    for ax in axes.flat[n:]:
        ax.axis("off")
    fig.suptitle(title)
    plt.show()
