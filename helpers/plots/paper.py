"""Our measurements beside the paper's numbers, one line per series (the chapters' common figure)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping, Sequence

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ['plot_ours_vs_paper']


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
