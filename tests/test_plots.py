"""helpers.plots, smoke tests on the Agg backend: each figure of Chapters 1 and 4 draws without error, with the
expected axes, lines and titles (what the notebooks drew before the code moved)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from helpers import plots  # noqa: E402
from helpers.attacks import Attack  # noqa: E402
from helpers.features import KINDS, RANKINGS  # noqa: E402


def usefulness(n: int = 8, dead: int = 2) -> dict:
    """A usefulness_measures-like dict: n features, the last ``dead`` of them dead (0)."""
    g = torch.Generator().manual_seed(0)
    live = torch.ones(n, dtype=torch.bool)
    live[n - dead:] = False
    m: dict = {"live": live}
    for key in ("raw", "aligned", "actual"):
        for kind in KINDS:
            m[(key, kind)] = torch.where(live, torch.randn(n, generator=g), torch.zeros(n))
    for kind in KINDS:
        m[("aligned", kind)] = m[("aligned", kind)].abs()
    return m


def robust(n: int = 8) -> dict:
    """A robust_measures-like dict over both kinds."""
    g = torch.Generator().manual_seed(1)
    r: dict = {(key, kind): torch.randn(n, generator=g) for key in ("clean", "noise", "paper", "strong") for kind in KINDS}
    r.update(n=12, n_strong=4, labels={"clean": "clean", "noise": "random start only (noise)",
                                       "paper": "paper's PGD-3, step 0.01", "strong": "PGD-10, step 0.03"})
    return r


def lottery_records(with_pgd: bool = True) -> pd.DataFrame:
    rows = []
    for training in ("standard", "fgsm_at"):
        for reset in ("rewind", "random"):
            for k, density in enumerate([1.0, 0.6, 0.36]):
                row = dict(training=training, reset=reset, round=k, density=density, clean=0.9 - 0.1 * k,
                           fgsm=0.3 + 0.05 * k)
                if with_pgd:
                    row["pgd"] = 0.01 * k if training == "fgsm_at" else np.nan
                rows.append(row)
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # rounds out of order: the plots sort them


def trade_off() -> pd.DataFrame:
    rows = [dict(method=method, lam=lam, CA=0.8 - 0.3 * lam, RA=0.1 + 0.3 * lam)
            for method in ("FLOAT λth=0", "OAT") for lam in (1.0, 0.0, 0.2, 0.7)]
    return pd.DataFrame(rows)


# -- Chapter 1: feature usefulness --------------------------------------------------------------------------------

def test_sorted_usefulness_sorts_bars_colours_their_sign_and_shades_dead_features():
    m = usefulness()
    fig, ax = plt.subplots()
    plots.plot_sorted_usefulness(ax, m[("raw", "sigmoid")], m[("raw", "ilyas")], title="t", live=m["live"])
    heights = [bar.get_height() for bar in ax.containers[0]]
    assert heights == sorted(heights, reverse=True) and len(heights) == 8
    assert matplotlib.colors.to_hex(ax.containers[0][0].get_facecolor()) == matplotlib.colors.to_hex("tab:blue")
    assert len(ax.lines) == 2  # Ilyas et al.'s dots and the zero line
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["Ilyas et al. E[ỹ f̂]", "dead features",
                                                                         "sigmoid (Paper 1)"]
    plt.close(fig)


def test_normalized_and_actual_usefulness_draw_figs_5_to_7(shown):
    m = usefulness()
    plots.plot_normalized_usefulness(m)
    plots.plot_actual_usefulness(m)
    fig5, fig67 = shown
    assert [ax.get_title() for ax in fig5.axes] == ["Fig 5 (raw): normalized usefulness",
                                                    "Fig 5 (sign-aligned): −f where f is negatively useful"]
    assert len(fig67.axes) == 3 and fig67.axes[1].get_legend() is None
    assert fig67.axes[2].get_title().startswith("Fig 7: Spearman ρ = ")
    assert len(fig67.axes[2].collections) == 2  # live and dead features


def test_robust_usefulness_draws_fig_8_per_kind_and_per_model(shown):
    r = robust()
    plots.plot_robust_usefulness_kinds(r, strong_steps=10)
    plots.plot_robust_usefulness_models({"standard": r, "PGD-AT": r}, paper_steps=3, strong_steps=10)
    kinds, models = shown
    assert len(kinds.axes) == 2 and all(len(ax.lines) == 4 for ax in kinds.axes)  # three measures and zero
    assert kinds.axes[0].get_title() == "Fig 8: robust usefulness, sigmoid (Paper 1) (12 images; 4 for PGD-10)"
    assert len(models.axes) == 2 and all(len(ax.lines) == 3 for ax in models.axes)  # two attacks and zero
    negative = int((r[("paper", "sigmoid")] < 0).sum())
    assert models.axes[0].get_title().startswith(f"standard: features < 0: {negative} under PGD-3")


def test_feature_pruning_draws_one_line_per_head_and_ranking(shown):
    table = pd.DataFrame([dict(head=head, ranking=ranking, kept=k, clean=0.9, robust=0.1 * k)
                          for head in ("as trained", "refit") for ranking in RANKINGS for k in (6, 3, 1)])
    attack = Attack("pgd", eps=0.3, alpha=0.01, steps=3)
    plots.plot_feature_pruning(table, "PGD-AT", attack)
    (fig,) = shown
    assert [len(ax.lines) for ax in fig.axes] == [4, 4]
    assert fig.axes[1].get_title() == f"PGD-AT: robust accuracy ({attack.describe()})"
    assert fig.axes[0].get_xscale() == "log"


# -- Chapter 1: lottery tickets -----------------------------------------------------------------------------------

def test_lottery_density_axes_run_from_dense_to_sparsest():
    fig, ax = plt.subplots()
    plots.lottery_density_axes(ax, "acc (%)", 0.01)
    assert ax.get_xscale() == "log" and ax.get_xlim() == pytest.approx((110, 0.9)) and ax.get_ylim() == (0, 100)
    plt.close(fig)


def test_lottery_accuracy_draws_figs_9_to_12_with_the_paper_marks(shown):
    marks = {"standard": [(0.5, "paper: random declines"), (0.1, "below the run")], "fgsm_at": [(0.4, "x")]}
    plots.plot_lottery_accuracy(lottery_records(), paper_marks=marks, paper_window=0.5, title="Lottery")
    (fig,) = shown
    assert [ax.get_title() for ax in fig.axes][::3] == ["Fig. 9: standard training, clean accuracy",
                                                        "Fig. 12: FGSM training, FGSM accuracy"]
    # two runs and chance everywhere; one mark at or above the sparsest level on each clean panel
    assert [len(ax.lines) for ax in fig.axes] == [4, 3, 4, 3]
    rewind = fig.axes[0].lines[0]
    assert rewind.get_xdata().tolist() == [100.0, 60.0, 36.0]  # sorted by round
    assert fig._suptitle.get_text() == "Lottery; grey: beyond the paper's 20 iterations"


def test_lottery_pgd_draws_three_metrics_for_both_resets(shown):
    plots.plot_lottery_pgd(lottery_records())
    (fig,) = shown
    (ax,) = fig.axes
    assert len(ax.lines) == 7  # 3 metrics x 2 resets and chance
    assert [t.get_text() for t in ax.get_legend().get_texts()][:2] == ["clean, rewind", "clean, random"]


# -- Chapter 4: CA-RA trade-off curves ------------------------------------------------------------------------------

def test_ca_ra_draws_a_curve_per_present_name_labelled_by_lambda():
    fig, ax = plt.subplots()
    plots.plot_ca_ra(ax, trade_off(), ["FLOAT λth=0", "FLOAT λth=0.5", "OAT"], title="Fig 6", ylabel="RA (%)")
    assert len(ax.lines) == 2  # FLOAT λth=0.5 has no rows: skipped, no legend entry
    assert ax.lines[0].get_xdata().tolist() == pytest.approx([80.0, 74.0, 59.0, 50.0])  # in order of lambda
    assert ax.lines[0].get_marker() == "o" and ax.lines[1].get_color() == "tab:orange"  # CA_RA_STYLES
    assert [t.get_text() for t in ax.texts] == ["0", "0.2", "0.7", "1"] * 2
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["FLOAT λth=0", "OAT"]
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == ("Fig 6", "clean accuracy CA (%)", "RA (%)")
    plt.close(fig)


def test_ca_ra_takes_another_column_labels_styles_and_no_legend():
    fig, ax = plt.subplots()
    frame = trade_off().rename(columns={"method": "model"})
    plots.plot_ca_ra(ax, frame, ["OAT"], column="model", labels={"OAT": "OAT (CR 1.0×)"},
                     styles={"OAT": dict(marker="^", ls="--", color="tab:olive")}, legend=False)
    (line,) = ax.lines
    assert (line.get_label(), line.get_linestyle(), line.get_color()) == ("OAT (CR 1.0×)", "--", "tab:olive")
    assert ax.get_legend() is None
    with pytest.raises(ValueError, match="missing \\['method'\\]"):
        plots.plot_ca_ra(ax, frame, ["OAT"])
    plt.close(fig)
