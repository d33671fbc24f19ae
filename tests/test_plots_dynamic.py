"""helpers.plots.dynamic, smoke tests on the Agg backend: each figure of Chapter 3 (dynamic_networks and
energy_attacks) draws without error, with the axes and lines the notebooks drew before the code moved."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from helpers.models import dynamic_resnet  # noqa: E402
from helpers.models.dynamic import DYNAMIC_KINDS, gate_pass  # noqa: E402
from helpers.plots.dynamic import (plot_attack_dynamics, plot_attacked_images, plot_flops_histograms,  # noqa: E402
                                   plot_gate_statistics, plot_latency_vs_flops, plot_recovery_curves)

NAMES = {"depth": "SkipNet (depth)", "act": "SACT (ACT, per image)", "width": "ManiDP (width)"}


@pytest.fixture(scope="module")
def traces() -> dict:
    torch.manual_seed(0)
    x = torch.rand(6, 1, 12, 12)
    return {kind: gate_pass(dynamic_resnet(kind, 14, 10, 1, 4, 12).eval(), x)[1] for kind in DYNAMIC_KINDS}


def test_flops_histograms(shown, traces):
    flops = {kind: trace.dynamic_flops() for kind, trace in traces.items()}
    plot_flops_histograms(flops, {kind: float(f.max()) * 1.2 for kind, f in flops.items()}, NAMES)
    (fig,) = shown
    assert len(fig.axes) == 3 and [ax.get_title() for ax in fig.axes] == list(NAMES.values())
    assert all(len(ax.lines) == 2 for ax in fig.axes)  # static and mean
    assert fig.axes[0].get_legend() is not None


def test_gate_statistics(shown, traces):
    plot_gate_statistics(traces, NAMES)
    (fig,) = shown
    assert len(fig.axes) == 6
    assert [fig.axes[i].get_title() for i in range(3)] == list(NAMES.values())
    assert fig.axes[5].get_xlabel() == "gate value p (runs iff p > 0.5)" and len(fig.axes[5].lines) == 1
    assert len(fig.axes[0].patches) == len(traces["depth"].executed)


def test_latency_vs_flops(shown):
    ratios = {kind: (torch.rand(5), torch.rand(5) + 0.5) for kind in NAMES}
    plot_latency_vs_flops(ratios, NAMES)
    (fig,) = shown
    assert len(fig.axes) == 3 and all(len(ax.lines) == 1 and len(ax.collections) == 1 for ax in fig.axes)
    assert fig.axes[0].get_ylabel() == "latency / median static latency"


def history(steps: int = 5, images: int = 3, gates: int = 4) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"flops": torch.rand(steps, images, generator=g), "gates": torch.rand(steps, images, gates, generator=g),
            "grad_norm_complexity": torch.rand(steps, images, generator=g),
            "angle": 180 * torch.rand(steps, images, generator=g)}


def test_attack_dynamics(shown):
    plot_attack_dynamics(history(), history(), K=1.0, title="depth net")
    (fig,) = shown
    assert len(fig.axes) == 4 and fig._suptitle.get_text() == "depth net"
    a, b, c, d = fig.axes
    assert len(a.lines) == 3 and a.get_yscale() == "log"  # one norm line per recorded image
    assert len(b.lines) == len(c.lines) == 4 + 1  # one line per gate and the threshold
    assert "K=1" in c.get_title() and len(d.lines) == 3 + 1


def test_attacked_images(shown):
    x = torch.rand(5, 1, 8, 8)
    x_adv = {name: (x + 0.05 * torch.randn(x.shape)).clamp(0, 1) for name in ("ILFO", "GradAuto")}
    flops = {name: torch.full((5,), 50.0) for name in ("clean", "ILFO", "GradAuto")}
    plot_attacked_images(x, x_adv, flops, 100.0, title="Fig. 3")
    (fig,) = shown
    assert len(fig.axes) == 4 * 4 and all(len(ax.images) == 1 for ax in fig.axes)
    assert fig.axes[0].get_title() == "clean\nFLOPs 50%"


def test_recovery_curves(shown):
    curves = {(kind, name): np.linspace(0, 1, 6) for kind in NAMES for name in ("ILFO", "GradAuto")}
    plot_recovery_curves(curves, NAMES, title="Recovery")
    (fig,) = shown
    (ax,) = fig.axes
    assert len(ax.lines) == 6 + 1 and ax.get_title() == "Recovery"
    assert [t.get_text() for t in ax.get_legend().get_texts()][:2] == ["SkipNet (depth), ILFO",
                                                                        "SkipNet (depth), GradAuto"]
