"""FLOAT against OAT and PGD-AT (Kundu et al. 2023): the CA-RA curves of Figs 3, 5, 6 and 9, the training times and
the obfuscation checklist sweeps of Fig. 10."""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

from .tradeoff import plot_ca_ra

if TYPE_CHECKING:
    import pandas as pd

__all__ = ['plot_float_tradeoffs', 'plot_training_time', 'plot_attack_tradeoffs', 'plot_autoattack_tradeoff',
           'plot_checklist_sweeps']


def plot_float_tradeoffs(scores: pd.DataFrame, ylabel: str = "robust accuracy RA, PGD-7 ε=8/255 (%)") -> None:
    """Figs 3/5 (FLOAT at both λ_th) and Fig. 6 (FLOAT, OAT, PGD-AT) of FLOAT side by side, from
    :func:`~helpers.train.tradeoff.tradeoff_rows`' rows; shows the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    plot_ca_ra(axes[0], scores, ["FLOAT λth=0", "FLOAT λth=0.5"], ylabel=ylabel,
               title="Figs 3/5: FLOAT, λ_n re-scaling (labels: λ_n)")
    plot_ca_ra(axes[1], scores, ["FLOAT λth=0", "OAT", "PGD-AT"], ylabel=ylabel,
               title="Fig 6: FLOAT vs OAT vs PGD-AT (labels: λ)")
    fig.tight_layout()
    plt.show()


def plot_training_time(time_table: pd.DataFrame, paper_ratio: float = 1.43) -> None:
    """Each model's training time per epoch relative to FLOAT's (:func:`~helpers.train.tradeoff.training_time_table`)
    as bars, with the paper's OAT / FLOAT ratio (Sec. 4.3) as a dotted line; shows the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    ax.barh(list(time_table.index), time_table["relative to FLOAT"], color="tab:blue")
    ax.axvline(paper_ratio, color="tab:red", ls=":", label=f"paper: OAT {paper_ratio:g}× FLOAT")
    ax.set_xlabel("training time per epoch / FLOAT's")
    ax.legend(fontsize=8)
    fig.tight_layout()
    plt.show()


def plot_attack_tradeoffs(scores: pd.DataFrame, attacks: Sequence[str] = ("PGD-20", "FGSM", "PGD-7")) -> None:
    """Fig. 9(a) (PGD-20) and 9(b) (FGSM) of FLOAT, and PGD-7 for reference: one CA-RA panel per attack of
    :func:`~helpers.train.tradeoff.tradeoff_rows`' rows, FLOAT at both λ_th, OAT and PGD-AT; shows the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(attacks), figsize=(15, 4.3))
    for ax, attack in zip(axes, attacks):
        plot_ca_ra(ax, scores[scores["attack"] == attack], ["FLOAT λth=0", "FLOAT λth=0.5", "OAT", "PGD-AT"],
                   title=f"{'Fig 9(a)' if attack == 'PGD-20' else 'Fig 9(b)' if attack == 'FGSM' else 'reference'}: "
                         f"{attack} (labels: λ)", ylabel=f"robust accuracy RA, {attack} ε=8/255 (%)")
    fig.tight_layout()
    plt.show()


def plot_autoattack_tradeoff(aa_scores: pd.DataFrame, attack_text: str) -> None:
    """Fig. 9(c) of FLOAT: CA-RA of FLOAT (λ_th = 0) and PGD-AT under AutoAttack-rand (``attack_text`` names its
    settings); shows the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.3))
    plot_ca_ra(ax, aa_scores, ["FLOAT λth=0", "PGD-AT"], title=f"Fig 9(c): {attack_text}",
               ylabel="robust accuracy RA, AutoAttack-rand (%)")
    fig.tight_layout()
    plt.show()


def plot_checklist_sweeps(checklist: Mapping[str, Sequence[Mapping]], check_steps: int) -> None:
    """Fig. 10 of FLOAT from :func:`~helpers.obfuscation.obfuscation_checklist` results by setting name: (a) accuracy
    against the bound ε (the last point unbounded), (b) accuracy against the PGD iterations; shows the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, result in checklist.items():
        by_name = {c["test"]: c for c in result}
        sweep = by_name["accuracy_falls_with_eps"]["values"]
        eps = [255 * e for e in sweep["eps"]] + [255]
        acc = sweep["accuracy"] + [by_name["unbounded_reaches_zero"]["values"]["accuracy"]]
        axes[0].plot(eps[1:], [100 * a for a in acc[1:]], marker="o", label=name)
        steps = by_name["more_steps_reach_asymptote"]["values"]
        axes[1].plot(steps["steps"], [100 * a for a in steps["accuracy"]], marker="o", label=name)
    axes[0].set_xscale("log", base=2)
    axes[0].set_xlabel("ε (× 1/255; the last point is ε = 1, unbounded)")
    axes[0].set_title(f"Fig 10(a): PGD-{check_steps} accuracy against the bound ε")
    axes[1].set_xlabel("PGD iterations K (ε = 8/255)")
    axes[1].set_title("Fig 10(b): accuracy against the number of iterations")
    for ax in axes:
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    plt.show()
