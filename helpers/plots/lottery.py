"""Lottery-ticket figures (Paper 1, Sec. V, Figs 9-12): accuracy against the weights remaining."""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

from .. import claims
from ..train.adversarial import MASK_REINIT, RESET_LABELS, TRAINING_LABELS, lottery_curve

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

__all__ = ['lottery_density_axes', 'plot_lottery_accuracy', 'plot_lottery_pgd', 'plot_lottery_scopes']

#: Line style of each reset.
_RESET_STYLES = {"rewind": dict(marker="o", ls="-"), "random": dict(marker="s", ls="--"),
                 MASK_REINIT: dict(marker="^", ls=":")}


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
        for reset, style in [(r, st) for r, st in _RESET_STYLES.items() if r in set(curves["reset"])]:
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


def plot_lottery_scopes(curves: pd.DataFrame, layer_names: Sequence[str]) -> None:
    """Layer-wise against global pruning (``curves``: lottery records of both scopes, with ``layer_densities``):
    left, the rewound tickets' clean accuracy of each training and scope; right, the density of each layer of
    ``layer_names`` per round under each scope (the mean over seeds) against the weights remaining."""
    import matplotlib.pyplot as plt
    import numpy as np

    rewound = curves[curves["reset"] == "rewind"]
    scopes = list(dict.fromkeys(rewound["scope"]))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for scope, ls in zip(scopes, ("-", "--")):
        of_scope = rewound[rewound["scope"] == scope]
        for training, colour in (("standard", "tab:blue"), ("fgsm_at", "tab:orange")):
            c = lottery_curve(of_scope, training, "rewind")
            left.plot(100 * c["density"], 100 * c["clean"], ls=ls, marker="o", ms=3, color=colour,
                      label=f"{TRAINING_LABELS[training]}, {scope}")
        rounds = of_scope.sort_values("round").groupby("round")
        total = rounds["density"].first().to_numpy()
        for i, name in enumerate(layer_names):
            per_layer = rounds["layer_densities"].apply(lambda v, n=name: float(np.mean([d[n] for d in v])))
            right.plot(100 * total, 100 * per_layer.to_numpy(), ls=ls, color=f"C{i}",
                       label=f"{name}, {scope}")
    sparsest = curves["density"].min()
    lottery_density_axes(left, "clean test accuracy (%)", sparsest)
    left.set(xlabel="weights remaining (%, log scale)", title="Rewound tickets, by pruning scope")
    left.legend(fontsize=7)
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlim(110, 100 * sparsest * 0.9)
    right.set(xlabel="weights remaining overall (%, log scale)", ylabel="weights remaining in the layer (%)",
              title="Each layer's density")
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    plt.show()
