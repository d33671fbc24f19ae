"""Dynamic-network figures (Paper 3, GradAuto): FLOPs and gate histograms, latency scatter, attack dynamics."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from ..metrics import psnr
from ..models.dynamic import GateTrace

__all__ = ["plot_flops_histograms", "plot_gate_statistics", "plot_latency_vs_flops", "plot_attack_dynamics",
           "plot_attacked_images", "plot_recovery_curves", "RECOVERY_COLOURS", "RECOVERY_STYLES"]


def plot_flops_histograms(flops: Mapping[str, torch.Tensor], static: Mapping[str, float],
                          names: Mapping[str, str]) -> None:
    """One panel per net: the histogram of per-image FLOPs over the static FLOPs, with the static cost and the mean."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    for ax, (kind, f) in zip(axes, flops.items()):
        ax.hist(f.numpy() / static[kind], bins=30, color="tab:blue")
        ax.axvline(1.0, color="k", ls="--", lw=1, label="static (all gates on)")
        ax.axvline(float(f.float().mean()) / static[kind], color="tab:red", lw=1, label="mean")
        ax.set(title=names[kind], xlabel="FLOPs / static FLOPs")
    axes[0].set_ylabel("test images")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    plt.show()


def plot_gate_statistics(traces: Mapping[str, GateTrace], names: Mapping[str, str]) -> None:
    """Per net: the share of test images that run each gated unit (top) and the histogram of gate values (bottom)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 5.5))
    for col, (kind, trace) in enumerate(traces.items()):
        rate = [float(e.float().mean()) for e in trace.executed]
        axes[0, col].bar(range(1, len(rate) + 1), rate, color="tab:green")
        axes[0, col].set_ylim(0, 1.05)
        axes[0, col].set_title(names[kind])
        axes[0, col].set_xlabel("gated unit (block)" if kind != "width" else "block (share of channels on)")
        probs = torch.cat([p.detach().flatten() for p in trace.probs]).numpy()
        axes[1, col].hist(probs, bins=40, color="tab:purple")
        axes[1, col].axvline(0.5, color="k", ls="--", lw=1)
        axes[1, col].set_xlabel("gate value p (runs iff p > 0.5)")
    axes[0, 0].set_ylabel("share executed")
    axes[1, 0].set_ylabel("gate values")
    fig.tight_layout()
    plt.show()


def plot_latency_vs_flops(ratios: Mapping[str, tuple[torch.Tensor, torch.Tensor]], names: Mapping[str, str]) -> None:
    """One panel per net: each image's latency ratio against its FLOPs ratio (``ratios[kind] = (flops, latency)``)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    for ax, (kind, (fr, lr)) in zip(axes, ratios.items()):
        ax.scatter(fr.numpy(), lr.numpy(), s=10)
        ax.plot([0, 1.05], [0, 1.05], color="k", ls="--", lw=1, label="latency = FLOPs")
        ax.set(xlim=(0, 1.05), ylim=(0, max(1.3, float(lr.max()) * 1.05)), title=names[kind],
               xlabel="FLOPs / static FLOPs")
    axes[0].set(ylabel="latency / median static latency")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    plt.show()


def plot_attack_dynamics(h_ilfo: Mapping[str, torch.Tensor], h_ga: Mapping[str, torch.Tensor], *, K: float,
                         title: str) -> None:
    """Figs. 1 and 2 of GradAuto from two attacks' histories: ILFO's complexity-gradient norm, the gate values of the
    recorded image whose gates flip most under each attack, and GradAuto's angle between g_F and g_C."""
    import matplotlib.pyplot as plt

    flips = (h_ilfo["gates"] > 0.5).int().diff(dim=0).abs().sum(dim=(0, 2))  # state changes per recorded image
    show_i = int(flips.argmax())
    its = np.arange(h_ilfo["flops"].shape[0])
    n_rec = h_ilfo["gates"].shape[1]
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5))
    ax = axes[0, 0]
    for i in range(n_rec):
        norms = h_ilfo["grad_norm_complexity"][:, i].clone()
        norms[norms == 0] = float("nan")  # every gate open: no complexity gradient (a gap in the line)
        ax.plot(its, norms, lw=1, marker=".", ms=3, label=f"image {i}")
    ax.set(yscale="log", title="Fig. 1A/B (ILFO): $\\|g_C\\|_2$ (gaps: every gate open)", xlabel="iteration")
    ax.legend(fontsize=7, ncol=2)
    for ax, hist, name in ((axes[0, 1], h_ilfo, "Fig. 1C/D (ILFO)"), (axes[1, 0], h_ga, f"Fig. 2A/B (GradAuto, K={K:g})")):
        g = hist["gates"][:, show_i, :]
        for j in range(g.shape[1]):
            ax.plot(its[:len(g)], g[:, j], lw=1, label=f"gate {j + 1}")
        ax.axhline(0.5, color="k", ls=":", lw=0.8)
        span = max(float((g - 0.5).abs().max()), 0.02) * 1.1  # zoom on the gates around the threshold
        ax.set(ylim=(max(0.5 - span, -0.02), min(0.5 + span, 1.02)), title=f"{name}: gate values of image {show_i}",
               xlabel="iteration")
    if h_ilfo["gates"].shape[2] <= 12:
        axes[0, 1].legend(fontsize=7, ncol=2)
    ax = axes[1, 1]
    for i in range(n_rec):
        ax.plot(its, h_ga["angle"][:, i], lw=1)
    ax.axhline(90, color="k", ls=":", lw=0.8)
    ax.set(ylim=(0, 180), title="Fig. 2C (GradAuto): angle between $g_F$ and $g_C$ (degrees)", xlabel="iteration")
    fig.suptitle(title)
    fig.tight_layout()
    plt.show()


def _as_image(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu()
    return t[0].numpy() if t.shape[0] == 1 else t.permute(1, 2, 0).numpy()


def plot_attacked_images(x: torch.Tensor, x_adv: Mapping[str, torch.Tensor], flops: Mapping[str, torch.Tensor],
                         static: float, *, title: str, n: int = 4) -> None:
    """Fig. 3 (ours): the first ``n`` clean images, each attack's image (``x_adv``: "ILFO", "GradAuto") with its PSNR
    and FLOPs share (``flops``: "clean" and per attack), and GradAuto's perturbation, magnified."""
    import matplotlib.pyplot as plt

    show = list(range(min(n, len(x))))
    cmap = "gray" if x.shape[1] == 1 else None
    fig, axes = plt.subplots(4, len(show), figsize=(2.6 * len(show), 10.5), squeeze=False)
    for col, i in enumerate(show):
        axes[0, col].imshow(_as_image(x[i]), cmap=cmap, vmin=0, vmax=1)
        axes[0, col].set_title(f"clean\nFLOPs {float(flops['clean'][i]) / static:.0%}", fontsize=9)
        for row, name in ((1, "ILFO"), (2, "GradAuto")):
            xa = x_adv[name][i]
            p = float(psnr(xa[None], x[i][None])[0])
            axes[row, col].imshow(_as_image(xa), cmap=cmap, vmin=0, vmax=1)
            axes[row, col].set_title(f"{name}: PSNR {p:.1f} dB\nFLOPs {float(flops[name][i]) / static:.0%}",
                                     fontsize=9)
        diff = (x_adv["GradAuto"][i] - x[i]).abs()
        scale = float(diff.max()) or 1.0
        axes[3, col].imshow(_as_image(diff / scale), cmap="magma", vmin=0, vmax=1)
        axes[3, col].set_title(f"|GradAuto - clean| x{1 / scale:.0f}", fontsize=9)
    for ax in axes.flat:
        ax.set(xticks=[], yticks=[])
    fig.suptitle(title)
    fig.tight_layout()
    plt.show()


#: The recovery curves' colour per net kind and line style per attack (energy_attacks.ipynb).
RECOVERY_COLOURS = {"depth": "tab:blue", "act": "tab:orange", "width": "tab:green"}
RECOVERY_STYLES = {"ILFO": "--", "GradAuto": "-"}


def plot_recovery_curves(curves: Mapping[tuple[str, str], np.ndarray], labels: Mapping[str, str], *,
                         title: str) -> None:
    """Recovery of the saved FLOPs over the attack's iterations, one line per (net kind, attack), 95% dotted."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2))
    for (kind, name), curve in curves.items():
        ax.plot(np.arange(len(curve)), 100 * curve, ls=RECOVERY_STYLES[name], color=RECOVERY_COLOURS[kind],
                label=f"{labels[kind]}, {name}")
    ax.axhline(95, color="k", ls=":", lw=0.8)
    ax.set(xlabel="iteration", ylabel="recovery of the saved FLOPs (%)", title=title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    plt.show()
