"""helpers.plots.capacity and helpers.plots.float, smoke tests on the Agg backend: each figure draws without error,
with the axes, lines and titles that capacity.ipynb and float_vs_oat.ipynb drew before the code moved."""
from __future__ import annotations

import builtins

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from helpers.plots.capacity import plot_capacity_accuracy  # noqa: E402
from helpers.plots.float import (plot_attack_tradeoffs, plot_autoattack_tradeoff, plot_checklist_sweeps,  # noqa: E402
                                 plot_float_tradeoffs, plot_training_time)
from helpers.widgets import pruning_explorer  # noqa: E402

PAPER = {"pgd": {"clean": [0.9] * 6, "adversarial": [0.1] * 6}, "fgsm": {"clean": [0.95] * 6, "adversarial": [0.2] * 6}}


def capacity_measured(epsilons=(0.3,), scales=(0, 2, 3)) -> pd.DataFrame:
    return pd.DataFrame([{"eps": e, "method": m, "scale": s, "clean": 0.5 + 0.1 * s, "adversarial": 0.05 * s}
                         for e in epsilons for m in ("fgsm", "pgd") for s in scales])


@pytest.mark.parametrize("epsilons", [(0.3,), (0.3, 0.1)])
def test_plot_capacity_accuracy_draws_a_row_per_eps(shown, epsilons):
    plot_capacity_accuracy(capacity_measured(epsilons), PAPER, list(epsilons), 0.3, suptitle="Ours: X, smoke scale")
    (fig,) = shown
    assert len(fig.axes) == 2 * len(epsilons)
    assert fig.axes[0].get_title() == "Fig. 2: FGSM-AT, FGSM attack, eps 0.3"
    assert fig.axes[1].get_title() == "Fig. 3: PGD-AT, PGD attack, eps 0.3"
    assert len(fig.axes[0].lines) >= 4  # ours and the paper's, clean and adversarial
    if len(epsilons) > 1:
        assert fig.axes[2].get_title() == "Fig. 2: FGSM-AT, FGSM attack, eps 0.1 (no paper numbers)"
    assert fig._suptitle.get_text() == "Ours: X, smoke scale"


def test_plot_float_tradeoffs_draws_two_panels(shown):
    scores = pd.DataFrame([{"method": m, "lam": lam, "CA": 0.9 - 0.3 * lam, "RA": 0.1 + 0.3 * lam}
                           for m in ("FLOAT λth=0", "FLOAT λth=0.5", "OAT", "PGD-AT") for lam in (0.0, 0.2, 0.7, 1.0)])
    plot_float_tradeoffs(scores)
    (fig,) = shown
    assert len(fig.axes) == 2
    assert [len(ax.lines) for ax in fig.axes] == [2, 3]
    assert fig.axes[1].get_title() == "Fig 6: FLOAT vs OAT vs PGD-AT (labels: λ)"


def test_plot_training_time_draws_a_bar_per_model(shown):
    table = pd.DataFrame({"relative to FLOAT": {"FLOAT": 1.0, "OAT": 1.5, "PGD-AT:4T (sum of the four)": 3.9}})
    plot_training_time(table)
    (fig,) = shown
    (ax,) = fig.axes
    assert len(ax.patches) == 3 and len(ax.lines) == 1
    assert ax.get_legend().get_texts()[0].get_text() == "paper: OAT 1.43× FLOAT"


def test_pruning_explorer_shows_the_largest_kept_first(monkeypatch, capsys):
    table = pd.DataFrame([dict(head=h, ranking=r, kept=k, clean=0.9, robust=0.1 * k / 100)
                          for h in ("as trained", "refit") for r in ("usefulness", "|weight|") for k in (100, 10)])
    pruning_explorer(table, [100, 10])  # with ipywidgets: an interact whose first view is kept = 100
    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "ipywidgets" else real_import(name, *a, **k))
    pruning_explorer(table, [100, 10])
    assert "ipywidgets is not installed" in capsys.readouterr().out


def tradeoff_scores(attacks=("PGD-7",)) -> pd.DataFrame:
    return pd.DataFrame([{"method": m, "attack": a, "lam": lam, "CA": 0.9 - 0.3 * lam, "RA": 0.1 + 0.3 * lam}
                         for m in ("FLOAT λth=0", "FLOAT λth=0.5", "OAT", "PGD-AT") for a in attacks
                         for lam in (0.0, 0.2, 0.7, 1.0)])


def test_plot_attack_tradeoffs_draws_a_panel_per_attack(shown):
    plot_attack_tradeoffs(tradeoff_scores(("PGD-20", "FGSM", "PGD-7")))
    (fig,) = shown
    assert [len(ax.lines) for ax in fig.axes] == [4, 4, 4]
    assert [ax.get_title() for ax in fig.axes] == ["Fig 9(a): PGD-20 (labels: λ)", "Fig 9(b): FGSM (labels: λ)",
                                                   "reference: PGD-7 (labels: λ)"]


def test_plot_autoattack_tradeoff_draws_float_and_pgdat(shown):
    plot_autoattack_tradeoff(tradeoff_scores(("AutoAttack-rand",)), "AutoAttack-rand (2 steps)")
    (fig,) = shown
    (ax,) = fig.axes
    assert len(ax.lines) == 2 and ax.get_title() == "Fig 9(c): AutoAttack-rand (2 steps)"


def test_plot_checklist_sweeps_draws_a_line_per_setting_in_each_panel(shown):
    def result(scale: float) -> list:
        return [{"test": "accuracy_falls_with_eps", "values": {"eps": [0, 4 / 255, 8 / 255], "accuracy": [0.9, 0.5, scale]}},
                {"test": "unbounded_reaches_zero", "values": {"accuracy": 0.0}},
                {"test": "more_steps_reach_asymptote", "values": {"steps": [1, 4, 8], "accuracy": [0.5, 0.4, scale]}}]
    plot_checklist_sweeps({"FLOAT λn=1": result(0.3), "FLOAT λn=0": result(0.2)}, 4)
    (fig,) = shown
    assert [len(ax.lines) for ax in fig.axes] == [2, 2]
    assert fig.axes[0].get_title() == "Fig 10(a): PGD-4 accuracy against the bound ε"
    assert list(fig.axes[0].lines[0].get_xdata()) == [4, 8, 255]
