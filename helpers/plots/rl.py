"""Offline RL pruning figures (Arnob et al. 2021, Figs 1-4): layer densities, storage, sweep scores."""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ['plot_layer_densities', 'plot_storage_curve', 'plot_sweep_scores', 'plot_learning_curves',
           'NETWORK_TITLES', 'METHOD_COLOURS', 'STORAGE_STYLES', 'SWEEP_STYLES']

#: The four networks of a BCQ agent in Fig. 3, with their panel titles.
NETWORK_TITLES: dict[str, str] = {"actor": "actor π_φ", "critic": "critic Q_θ1 (Q_θ2 copies it)",
                                  "vae_encoder": "VAE encoder ω_E", "vae_decoder": "VAE decoder ω_D"}
#: The bar colour of each pruning method in Fig. 3.
METHOD_COLOURS: dict[str, str] = {"SNIP": "tab:blue", "GraSP": "tab:orange"}
#: The line style of each storage format in Fig. 4: thick the paper's, dashed compact lossless, thin fp16.
STORAGE_STYLES: dict[str, dict] = {
    "dense": dict(color="tab:blue", lw=2.5), "coo": dict(color="tab:green", lw=2.5),
    "csr": dict(color="tab:purple", ls="--"), "bitmask": dict(color="tab:red", ls="--"),
    "bitmask-lzma": dict(color="tab:brown", ls="--"), "csr-fp16": dict(color="tab:purple"),
    "bitmask-fp16": dict(color="tab:red"), "bitmask-fp16-lzma": dict(color="tab:brown")}
#: (label, colour, marker) of each pruning method in the sweep's figures (Figs 1-2).
SWEEP_STYLES: dict[str, tuple[str, str, str]] = {
    "snip": ("SNIP", "tab:blue", "o"), "grasp": ("GraSP", "tab:orange", "s"),
    "random": ("random (SNIP's layer densities)", "tab:grey", "v"), "magnitude": ("magnitude at init", "tab:green", "^")}


def plot_layer_densities(layers: pd.DataFrame, env: str, algo: str, methods: Sequence[str], *, density: float,
                         sparsity: float, seeds: Sequence[int]) -> None:
    """Fig. 3: the share of each layer's weights kept (log scale, mean ± std over seeds) by each method of
    ``methods``, one panel per network of :data:`NETWORK_TITLES`; ``layers`` as from ``rl.layer_densities``."""
    import matplotlib.pyplot as plt

    sel = layers[(layers["env"] == env) & (layers["algo"] == algo)]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    for ax, (network, title) in zip(axes, NETWORK_TITLES.items()):
        part = sel[sel["network"] == network]
        stats = part.groupby(["position", "layer", "method"])["density"].agg(["mean", "std"]).reset_index()
        names = list(dict.fromkeys(stats.sort_values("position")["layer"]))
        x = np.arange(len(names))
        for i, method in enumerate(methods):
            s = stats[stats["method"] == method].set_index("layer").loc[names]
            ax.bar(x + (i - 0.5) * 0.38, 100 * s["mean"], 0.38, yerr=100 * s["std"].fillna(0), capsize=3,
                   color=METHOD_COLOURS[method], label=method)
        ax.axhline(100 * density, color="grey", ls="--", lw=1, label="uniform (5%)")
        ax.set_xticks(x, [f"{n}\n{part[part['layer'] == n]['total'].iloc[0]:,}" for n in names], fontsize=8)
        ax.set_yscale("log")
        ax.set_ylim(0.1, 100)
        ax.set_title(title, fontsize=10)
        ax.grid(True, axis="y", which="both", alpha=0.3)
    axes[0].set_ylabel("weights remaining in the layer (%)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Fig. 3: {algo} on {env}, {sparsity:.0%} sparsity, mean ± std over seeds {seeds[0]}-{seeds[-1]} "
                 "(under each layer: its number of weights)", fontsize=11)
    fig.tight_layout()
    plt.show()


def plot_storage_curve(curve: pd.DataFrame, formats: Sequence[str], networks: Mapping[str, str],
                       paper: Mapping[tuple[str, str], Mapping[str, float]], *, sparsity: float, env: str) -> None:
    """Fig. 4: file size (MB, log) against sparsity, one line per format of ``formats`` (styles of
    :data:`STORAGE_STYLES`), one panel per network, the paper's Table 1 (``paper``) as crosses."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, (network, title) in zip(axes, networks.items()):
        for fmt in formats:
            c = curve[(curve["network"] == network) & (curve["format"] == fmt)]
            ax.plot(100 * c["sparsity"], c["MB"], marker="o", ms=3, label=fmt, **STORAGE_STYLES[fmt])
        for (model, fmt), sizes in paper.items():
            ax.plot(0 if model == "dense" else 100 * sparsity, sizes[network], marker="x", color="black", ms=8,
                    ls="none", label="paper (Table 1)" if (model, fmt) == ("dense", "dense") else None)
        ax.set_yscale("log")
        ax.set_xlabel("sparsity (%)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("file size (MB, log scale)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(f"Fig. 4: storage against sparsity ({env} networks, SNIP masks); thick: the paper's formats, "
                 "dashed: compact lossless (fp32), thin: fp16 values", fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    plt.show()


def plot_sweep_scores(final: pd.DataFrame, pairs: Sequence[tuple[str, str]], methods: Sequence[str],
                      env_ids: Mapping[str, str]) -> None:
    """Figs 1-2: the final normalised score against sparsity (mean, min-max band over seeds), one line per method
    (with the dense agent at 0%), one panel per (task, algorithm) of ``pairs``; ``env_ids`` names each task's env."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(pairs), figsize=(6.2 * len(pairs), 4.2), squeeze=False)
    for ax, (task, algorithm) in zip(axes[0], pairs):
        for method in methods:
            name, colour, marker = SWEEP_STYLES[method]
            sub = final[(final["task"] == task) & (final["algorithm"] == algorithm)
                        & ((final["method"] == method) | (final["method"] == "dense"))]
            c = sub.groupby("sparsity")["score"].agg(["mean", "min", "max", "count"]).reset_index()
            x = 100 * c["sparsity"]
            ax.plot(x, c["mean"], marker=marker, color=colour, label=name, lw=2 if method in ("snip", "grasp") else 1)
            ax.fill_between(x, c["min"], c["max"], color=colour, alpha=0.15)
        ax.axhline(100, color="k", lw=0.7, ls=":")
        ax.axhline(0, color="k", lw=0.7, ls=":")
        ax.set_xlabel("sparsity (% of weights pruned)")
        ax.set_ylabel("normalised score")
        ax.set_title(f"{algorithm} on {env_ids[task]}")
        ax.legend(fontsize=8)
    plt.tight_layout()
    plt.show()


def plot_learning_curves(frame: pd.DataFrame, pairs: Sequence[tuple[str, str]], top_sparsity: float,
                         env_ids: Mapping[str, str]) -> None:
    """The mean normalised score against gradient steps of the dense agent and of SNIP and GraSP at 0% and at
    ``top_sparsity``, one panel per (task, algorithm) of ``pairs``."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(pairs), figsize=(6.2 * len(pairs), 4), squeeze=False)
    for ax, (task, algorithm) in zip(axes[0], pairs):
        sub = frame[(frame["task"] == task) & (frame["algorithm"] == algorithm)]
        for (method, sparsity), g in sub.groupby(["method", "sparsity"]):
            if method not in ("dense", "snip", "grasp") or sparsity not in (0.0, top_sparsity):
                continue
            c = g.groupby("step")["score"].mean()
            ax.plot(c.index, c.values, label=f"{method} {sparsity:.0%}")
        ax.set_xlabel("gradient steps")
        ax.set_ylabel("normalised score")
        ax.set_title(f"{algorithm} on {env_ids[task]}: learning curves")
        ax.legend(fontsize=8)
    plt.tight_layout()
    plt.show()
