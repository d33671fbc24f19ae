"""The scoreboard's figures: the verdict counts per paper, and a forest plot of every claim's statistic with its
interval against its threshold."""
from __future__ import annotations

from typing import Any

#: One colour per verdict (the badges' hues, darker).
VERDICT_HUES = {
    "reproduced": "#2e7d32", "partly": "#f9a825", "inconclusive": "#0288d1", "not reproduced": "#c62828",
    "not run at this scale": "#9e9e9e", "checked": "#5e35b1", "does not check": "#ad1457",
}

__all__ = ["VERDICT_HUES", "plot_verdict_counts", "plot_forest"]


def plot_verdict_counts(counts) -> Any:
    """A stacked bar per paper of :func:`helpers.scoreboard.verdict_counts` (the total row left out): the
    empirical verdicts, then the arithmetic checks hatched, so that checks never read as reproductions."""
    import matplotlib.pyplot as plt

    data = counts.drop(index="all papers", errors="ignore")
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(data) + 1.4))
    left = [0] * len(data)
    for verdict in counts.columns:
        values = list(data[verdict].iloc[::-1])
        ax.barh(list(data.index[::-1]), values, left=left, color=VERDICT_HUES.get(verdict, "#777"), height=0.6,
                label=verdict, hatch="//" if verdict in ("checked", "does not check") else None, edgecolor="white")
        left = [a + b for a, b in zip(left, values)]
    ax.set_xlabel("claims")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


def plot_forest(best, title: str = "") -> Any:
    """One row per part of every judged empirical claim in ``best`` (the rows of
    :func:`helpers.scoreboard.best_per_claim` for one paper): the estimate and its interval, the threshold as a
    dashed line and the claim's side of it shaded. Each row has its own axis (the parts' units differ); the dot's
    colour is the part's verdict. ``None`` when no claim has a part to show."""
    import textwrap

    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    rows = [(r.id, part) for r in best.itertuples(index=False)
            for part in (r.parts if isinstance(r.parts, list) else []) if "low" in part]
    if not rows:
        return None
    fig, axes = plt.subplots(len(rows), 1, figsize=(9.0, 0.62 * len(rows) + 0.7), squeeze=False)
    for ax, (claim_id, part) in zip(axes[:, 0], rows):
        low, high, est, thr = (float(part[k]) for k in ("low", "high", "estimate", "threshold"))
        span = max(high, thr, est) - min(low, thr, est) or abs(thr) or 1.0
        lo, hi = min(low, thr, est) - 0.15 * span, max(high, thr, est) + 0.15 * span
        if part.get("side") == "above":
            ax.axvspan(thr, hi, color="#e8f5e9", zorder=0)
        else:
            ax.axvspan(lo, thr, color="#e8f5e9", zorder=0)
        ax.axvline(thr, color="#555", ls="--", lw=1)
        colour = VERDICT_HUES.get(str(part.get("verdict")), "#777")
        ax.plot([low, high], [0, 0], color=colour, lw=2.5, solid_capstyle="butt")
        ax.plot([est], [0], "o", color=colour, ms=5)
        ax.set_xlim(lo, hi)
        ax.set_ylim(-1, 1)
        ax.set_yticks([])
        fmt = str(part.get("fmt") or "{:.3g}")
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos, f=fmt: f.format(v)))
        ax.tick_params(axis="x", labelsize=7, length=2, pad=1)
        ax.spines[["top", "right", "left"]].set_visible(False)
        name = textwrap.shorten(str(part.get("name", "")), width=60, placeholder="…")
        ax.text(-0.03, 0.5, f"$\\bf{{{claim_id.replace('_', '~')}}}$\n{name}", transform=ax.transAxes, ha="right",
                va="center", fontsize=8, linespacing=1.3)
    if title:
        fig.suptitle(title, fontsize=9, x=0.02, ha="left")
    fig.subplots_adjust(left=0.46, right=0.98, top=1 - 0.6 / fig.get_figheight(), bottom=0.35 / fig.get_figheight(),
                        hspace=1.4)
    return fig
