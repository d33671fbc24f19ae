"""benchmarks/paper_cost.py: its FLOP counts match hand counts, and its unit counts match the notebooks' paper rows."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def paper_cost():
    spec = importlib.util.spec_from_file_location("paper_cost", ROOT / "benchmarks" / "paper_cost.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["paper_cost"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def test_linear_forward_and_backward_match_a_hand_count(paper_cost):
    b, n_in, n_out = 3, 8, 5
    layer = nn.Linear(n_in, n_out)
    x = torch.randn(b, n_in)
    forward = 2 * b * n_in * n_out  # one multiply and one add per weight per sample
    with torch.no_grad():
        assert paper_cost.count_flops(lambda: layer(x)) == forward
    # backward: the weight gradient (one more matmul); the bias gradient is a sum (not counted)
    assert paper_cost.count_flops(lambda: layer(x).pow(2).sum().backward()) == 2 * forward
    # with an input gradient too (what an attack needs): a third matmul
    x.requires_grad_(True)
    assert paper_cost.count_flops(lambda: layer(x).pow(2).sum().backward()) == 3 * forward


def test_one_fit_step_and_one_pgd_iteration_match_a_hand_count(paper_cost):
    n_in, n_out = 4, 3
    model = lambda: nn.Sequential(nn.Flatten(), nn.Linear(n_in, n_out))  # noqa: E731
    forward = 2 * n_in * n_out  # per image
    # helpers.train.fit, one optimiser step: forward + weight gradient, per image
    assert paper_cost.fit_step(model, (1, 2, 2), classes=n_out, lr=0.1) == pytest.approx(2 * forward)
    # with FGSM adversarial training (50/50): the attack (forward + input gradient), adversarial and clean passes,
    # and the backward of both (weight gradients only)
    from helpers.attacks import Attack

    fgsm = paper_cost.fit_step(model, (1, 2, 2), classes=n_out, lr=0.1, attack=Attack("fgsm", eps=0.1))
    assert fgsm == pytest.approx(2 * forward + 2 * forward + 2 * forward)
    # one PGD iteration (helpers.attacks, PGD-2 minus PGD-1): a forward and an input gradient
    assert paper_cost.pgd_iteration(model, (1, 2, 2), eps=0.1, classes=n_out) == pytest.approx(2 * forward)


def test_a_convnet_costs_the_same_per_image_at_any_batch(paper_cost):
    # the script measures convnets on a micro-batch and scales linearly to the paper's batch
    model = lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),  # noqa: E731
                                  nn.Linear(4 * 8 * 8, 10))
    one, three = (paper_cost.fit_step(model, (3, 8, 8), n=n, lr=0.1) for n in (1, 3))
    assert one == pytest.approx(three) and one > 0


def test_unit_counts_follow_the_paper_rows(paper_cost):
    dry = paper_cost.Meter(dry=True)  # unit counts only: no model is built

    def units(chapter, notebook):
        return sum(r.units for r in paper_cost.notebook_rows(chapter, notebook, dry))

    cfg = paper_cost.paper_row("ch1_lighter_robust", "capacity")
    assert cfg["SEEDS"] == 5 and cfg["CAPACITIES"] == [0, 1, 2, 3, 4, 5] and cfg["EXTRA_EPS"] is None
    assert units("ch1_lighter_robust", "capacity") == 5 * 3 * 6 * 1  # seeds x trainings x capacities x eps
    # seeds x pruning scopes x trainings (each unit: both resets' rounds, and the control for the first scope)
    assert units("ch1_lighter_robust", "lottery_tickets") == 5 * 2 * 2
    # Chapter 2's sweep: tasks x algorithms x seeds (UNIT_SEEDS = 1), each (dense + methods x sparsities > 0) agents
    assert units("ch2_offline_rl_pruning", "sweep") == 3 * 2 * 5
    # Chapter 3's ablations: per seed 4 variants on two nets + 5 more K values on the first
    assert units("ch3_gradauto", "ablations") == 5 * (4 + 4 + 5)


def test_the_report_states_its_assumptions(paper_cost):
    row = paper_cost.Row("capacity", "x", 2, "a unit", 1e15, "a note")
    text = paper_cost.report([row], 1.0)
    assert "ESTIMATES" in text and f"{paper_cost.THROUGHPUT / 1e12:.0f} TFLOP/s" in text and torch.__version__ in text
    assert row.gpu_hours == pytest.approx(2e15 / paper_cost.THROUGHPUT / 3600)
