"""Clean and adversarial accuracy against capacity scale (Paper 1, Figs 2 and 3)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

from ..models import CAPACITY_SCALES
from ..train.adversarial import capacity_accuracies
from .paper import plot_ours_vs_paper

if TYPE_CHECKING:
    import pandas as pd

__all__ = ['plot_capacity_accuracy']

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
