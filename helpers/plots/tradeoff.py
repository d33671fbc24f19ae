"""CA-RA trade-off curves of the lambda-conditioned networks (FLOAT, Figs 3, 5, 6, 8, 9)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

__all__ = ['plot_ca_ra', 'CA_RA_STYLES']


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
