"""helpers.plots.rl, smoke tests on the Agg backend: each Chapter 2 figure draws without error, with the expected
axes, lines and titles."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402

from helpers.plots.rl import (NETWORK_TITLES, STORAGE_STYLES, plot_layer_densities, plot_learning_curves,  # noqa: E402
                              plot_storage_curve, plot_sweep_scores)
from test_rl_summaries import layers_frame, sweep_frame  # noqa: E402


def test_plot_layer_densities(shown):
    plot_layer_densities(layers_frame(), "Hopper-v5", "BCQ", ["SNIP", "GraSP"], density=0.05, sparsity=0.95,
                         seeds=[0, 1])
    (fig,) = shown
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == list(NETWORK_TITLES.values())
    assert all(len(ax.patches) == 2 * 3 for ax in axes)  # two methods x three layers
    assert all(ax.get_yscale() == "log" for ax in axes)
    assert fig._suptitle.get_text().startswith("Fig. 3: BCQ on Hopper-v5, 95% sparsity")
    assert axes[0].get_legend_handles_labels()[1] == ["uniform (5%)", "SNIP", "GraSP"]


def test_plot_storage_curve(shown):
    networks = {"actor": "Actor", "critic": "Critic (both)", "vae": "VAE"}
    formats = ["dense", "coo", "bitmask-fp16"]
    curve = pd.DataFrame([dict(network=n, format=f, sparsity=s, MB=1 + s) for n in networks for f in formats
                          for s in (0.0, 0.5, 0.95)])
    paper = {("dense", "dense"): {"actor": 0.5, "critic": 1.0, "vae": 4.7},
             ("SNIP", "coo"): {"actor": 0.14, "critic": 0.28, "vae": 1.2}}
    plot_storage_curve(curve, formats, networks, paper, sparsity=0.95, env="HalfCheetah-v5")
    (fig,) = shown
    assert [ax.get_title() for ax in fig.axes] == list(networks.values())
    assert all(len(ax.lines) == len(formats) + len(paper) for ax in fig.axes)
    assert fig.axes[0].lines[0].get_linewidth() == STORAGE_STYLES["dense"]["lw"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == formats + ["paper (Table 1)"]


def test_plot_sweep_scores_and_learning_curves(shown):
    frame = sweep_frame(3)
    final = frame[frame["step"] == frame.groupby(["task", "algorithm"])["step"].transform("max")]
    pairs = [("pendulum-expert", "BC"), ("pendulum-expert", "BCQ")]
    env_ids = {"pendulum-expert": "Pendulum-v1"}
    plot_sweep_scores(final, pairs, ["snip", "grasp"], env_ids)
    plot_learning_curves(frame, pairs, 0.95, env_ids)
    scores, learning = shown
    assert [ax.get_title() for ax in scores.axes] == ["BC on Pendulum-v1", "BCQ on Pendulum-v1"]
    assert all(len(ax.lines) == 2 + 2 and len(ax.collections) == 2 for ax in scores.axes)  # 2 methods, 2 guides
    assert scores.axes[0].get_legend_handles_labels()[1] == ["SNIP", "GraSP"]
    assert learning.axes[0].get_title() == "BC on Pendulum-v1: learning curves"
    assert [line.get_label() for line in learning.axes[0].lines] == ["dense 0%", "grasp 95%", "snip 95%"]
