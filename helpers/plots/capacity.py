"""Clean and adversarial accuracy against capacity scale (Paper 1, Figs 2 and 3)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

from ..models import CAPACITY_SCALES
from ..train.adversarial import CAPACITY_TRAININGS, capacity_accuracies
from .paper import plot_ours_vs_paper

if TYPE_CHECKING:
    import pandas as pd

__all__ = ['plot_capacity_accuracy', 'plot_capacity_trainings']

#: The two panels of each row: (method, figure name).
CAPACITY_PANELS = (("fgsm", "Fig. 2: FGSM-AT, FGSM attack"), ("pgd", "Fig. 3: PGD-AT, PGD attack"))


def plot_capacity_accuracy(measured: pd.DataFrame, paper: Mapping[str, Mapping[str, Sequence[float]]],
                           epsilons: Sequence[float], paper_eps: float, *, suptitle: str) -> None:
    """Figs 2 and 3 of Paper 1: clean and adversarial accuracy against capacity scale, FGSM-AT and PGD-AT side by
    side, one row per eps (``paper_eps`` first, with the paper's numbers beside ours); shows the figure."""
    import matplotlib.pyplot as plt

    all_scales = list(CAPACITY_SCALES)
    rows_of_plots = [paper_eps] + [e for e in epsilons if e != paper_eps]
    fig, axes = plt.subplots(len(rows_of_plots), 2, figsize=(12, 4.2 * len(rows_of_plots)), squeeze=False)
    for r, eps in enumerate(rows_of_plots):
        for c, (method, fig_name) in enumerate(CAPACITY_PANELS):
            ours = {kind: capacity_accuracies(measured, method, kind, eps) for kind in ("clean", "adversarial")}
            ran = [s for s in all_scales if ours["clean"][s] is not None]
            theirs = paper[method] if eps == paper_eps else None
            plot_ours_vs_paper(ran, {kind: [ours[kind][s] for s in ran] for kind in ("clean", "adversarial")},
                               theirs, paper_x=all_scales if theirs else None, ax=axes[r, c], reference=0.1,
                               xlabel="capacity scale (Table I)", ylabel="test accuracy",
                               title=f"{fig_name}, eps {eps:g}" + ("" if theirs else " (no paper numbers)"))
    fig.suptitle(suptitle, y=1.0)
    fig.tight_layout()
    plt.show()


def plot_capacity_trainings(measured: pd.DataFrame, epsilons: Sequence[float], *, suptitle: str) -> None:
    """The test of "adversarial training requires more capacity than standard training": clean accuracy (left) and
    PGD accuracy (right) against capacity scale for every training of :data:`CAPACITY_TRAININGS`, one row per eps,
    the mean over seeds with the seeds' range as a band; shows the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import PercentFormatter

    fig, axes = plt.subplots(len(epsilons), 2, figsize=(9, 3.3 * len(epsilons)), squeeze=False, sharey=True)
    for r, eps in enumerate(epsilons):
        chosen = measured[measured["eps"] == eps]
        for c, (kind, what) in enumerate((("clean", "clean accuracy"), ("pgd", "PGD accuracy"))):
            ax = axes[r, c]
            for method, label in CAPACITY_TRAININGS.items():
                rows = chosen[chosen["method"] == method]
                if rows.empty:
                    continue
                stats = rows.groupby("scale")[kind].agg(["mean", "min", "max"])
                line, = ax.plot(stats.index, stats["mean"], marker="o", label=label)
                ax.fill_between(stats.index, stats["min"], stats["max"], color=line.get_color(), alpha=0.15)
            ax.axhline(0.1, color="grey", linestyle=":", linewidth=1, label="chance")
            attack = chosen["pgd attack"].iloc[0] if kind == "pgd" and not chosen.empty else ""
            ax.set(title=f"{what}, eps {eps:g}" + (f"\n({attack})" if attack else ""), xlabel="capacity scale (Table I)",
                   ylim=(0, 1))
            ax.set_xticks(sorted(chosen["scale"].unique()))
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
            ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="lower right", fontsize="small")
    fig.suptitle(suptitle)
    fig.tight_layout()
    plt.show()
