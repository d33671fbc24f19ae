"""Feature-usefulness figures (Paper 1, Sec. IV, Figs 5-8) and the feature-pruning curves."""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import torch

from ..features import KINDS, RANKINGS, usefulness_spearman

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

    from ..attacks import Attack

__all__ = ['plot_sorted_usefulness', 'plot_normalized_usefulness', 'plot_actual_usefulness', 'plot_robust_usefulness', 'plot_robust_usefulness_kinds', 'plot_robust_usefulness_models', 'plot_feature_pruning']


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
