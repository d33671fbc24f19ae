"""The gradient-obfuscation checklist flags a deliberately gradient-masked model and passes an honest one."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from helpers.obfuscation import (CHECKS, attack_strengths, checklist_table, obfuscation_checklist, pgd_attack,
                                 warning_signs)

EPS = 0.1


class ShatteredGradients(nn.Module):
    """The honest model behind an input quantiser (x -> round(255 x) / 255, Athalye et al.'s "shattered gradients").

    The forward pass is the honest model's up to 1/510 per pixel; the input gradient is exactly zero.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(x * 255) / 255)


def linear_model(weight: torch.Tensor) -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(weight.shape[1], weight.shape[0], bias=False))
    with torch.no_grad():
        model[1].weight.copy_(weight)
    return model.eval()


@pytest.fixture(scope="module")
def toy():
    """Three classes on 4x4 images; labels are the honest linear model's predictions (clean accuracy 100%).

    The source is a "separately trained" model: the honest weights plus noise.
    """
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(3, 16, generator=g)
    honest = linear_model(weight)
    source = linear_model(weight + 0.5 * torch.randn(3, 16, generator=g))
    x = torch.rand(300, 1, 4, 4, generator=g)
    with torch.no_grad():
        y = honest(x).argmax(1)
    return honest, source, (x, y)


def run(model, source, data, **kwargs):
    return {c["test"]: c for c in obfuscation_checklist(model, data, eps=EPS, source=source, pgd_steps=20, **kwargs)}


def test_checklist_passes_an_honest_model(toy):
    honest, source, data = toy
    checks = run(honest, source, data)
    assert list(checks) == [name for name, _ in CHECKS]
    failed = {name: c["detail"] for name, c in checks.items() if c["passed"] is not True}
    assert not failed, failed
    # the numbers behind the verdicts are there and consistent
    assert checks["unbounded_reaches_zero"]["values"]["accuracy"] <= 0.05
    assert checks["accuracy_falls_with_eps"]["values"]["accuracy"][0] == 1.0


def test_checklist_flags_a_gradient_masked_model(toy):
    honest, source, data = toy
    masked = ShatteredGradients(honest)
    with torch.no_grad():  # the mask changes (almost) nothing in the forward pass
        assert (masked(data[0]).argmax(1) == data[1]).float().mean() > 0.97
    checks = run(masked, source, data)
    failed = {name for name, c in checks.items() if c["passed"] is False}
    # white-box attacks see a zero gradient: a transfer attack beats them and an unbounded budget does nothing
    # (only PGD's random start moves the images, so accuracy still falls a little with eps: check (iii) may pass)
    assert {"transfer_weaker_than_white_box", "unbounded_reaches_zero"} <= failed
    values = checks["transfer_weaker_than_white_box"]["values"]
    assert values["white_box"] > values["transfer"] + 0.2


def test_source_is_optional_and_the_transfer_check_is_then_not_run(toy):
    honest, _, data = toy
    checks = run(honest, None, data)
    assert checks["transfer_weaker_than_white_box"]["passed"] is None
    assert all(c["passed"] for name, c in checks.items() if name != "transfer_weaker_than_white_box")


def test_same_seed_same_numbers_and_table(toy):
    honest, source, data = toy
    first, second = run(honest, source, data, seed=3), run(honest, source, data, seed=3)
    assert [c["values"] for c in first.values()] == [c["values"] for c in second.values()]
    table = checklist_table({"honest": list(first.values()), "masked": list(run(ShatteredGradients(honest), source, data).values())},
                            detail=False)
    assert list(table.columns) == [question for _, question in CHECKS]
    assert set(table.loc["honest"]) == {"pass"} and "FAIL" in set(table.loc["masked"])


def test_pgd_attack_uses_madrys_step_rule():
    attack = pgd_attack(0.3, 40)
    assert attack.kind == "pgd" and attack.steps == 40 and attack.alpha == pytest.approx(2.5 * 0.3 / 40)
    assert pgd_attack(0.3, 40, step_fraction=1 / 30).alpha == pytest.approx(0.01)


@pytest.mark.parametrize("kwargs, name", [
    (dict(eps=-0.1), "eps"), (dict(eps=0.0), "eps"), (dict(eps=0.1, tolerance=2.0), "tolerance"),
    (dict(eps=0.1, pgd_steps=0), "pgd_steps"), (dict(eps=0.1, eps_grid=[0.0]), "eps_grid"),
    (dict(eps=0.1, steps_grid=[10]), "steps_grid"), (dict(eps=0.1, unbounded_eps=2.0), "unbounded_eps"),
])
def test_bad_arguments_raise_value_error_naming_the_parameter(toy, kwargs, name):
    honest, _, data = toy
    with pytest.raises(ValueError, match=name):
        obfuscation_checklist(honest, data, **kwargs)


def test_autoattack_rand_stays_in_the_ball_and_is_at_least_as_strong_as_pgd(toy):
    from helpers.attacks.autoattack import AutoAttackRand
    from helpers.train import evaluate

    honest, _, (x, y) = toy
    attack = AutoAttackRand(eps=EPS, steps=20, eot_iter=1)
    x_adv = attack(honest, x, y)
    assert x_adv.shape == x.shape and (x_adv - x).abs().max() <= EPS + 1e-6 and 0 <= x_adv.min() and x_adv.max() <= 1
    aa = evaluate(honest, (x, y), attack=attack)
    pgd = evaluate(honest, (x, y), attack=pgd_attack(EPS, 20))
    assert aa["clean"] == 1.0 and aa["robust"] <= pgd["robust"] + 0.02 and aa["robust"] < 0.9
    assert "EOT 1" in attack.describe() and attack.as_dict()["kind"] == "autoattack-rand"
    for bad in (dict(eps=0), dict(steps=0), dict(eot_iter=1.5)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            AutoAttackRand(**bad)


def test_attack_strengths_and_warning_signs_read_the_checklist(toy):
    honest, source, data = toy
    checklist = obfuscation_checklist(honest, data, eps=0.3, source=source, pgd_steps=5, seed=0)
    strengths = attack_strengths(checklist, "PGD-5")
    assert strengths["checks passed"] == 5 and strengths["clean"] == 1.0
    assert strengths["PGD-5"] <= strengths["FGSM"] + 0.02
    line = warning_signs("honest", checklist, strengths, "PGD-5")
    assert line.startswith("- **honest**: no warning sign. Lowest white-box accuracy found: ")


def test_per_example_correctness_averages_to_each_checks_accuracies(toy):
    honest, source, data = toy
    plain, detailed = run(honest, source, data), run(honest, source, data, per_example=True)
    assert all("correct" not in c for c in plain.values())
    for name, check in detailed.items():
        assert check["values"] == plain[name]["values"]  # the same numbers, with the 1/0 behind them
        for values in check["correct"].values():
            assert values.shape == (len(data[1]),) and set(values.tolist()) <= {0.0, 1.0}
    first, transfer = detailed["fgsm_weaker_than_pgd"], detailed["transfer_weaker_than_white_box"]
    assert first["correct"]["fgsm"].mean() == pytest.approx(first["values"]["fgsm"])
    assert first["correct"]["pgd"].mean() == pytest.approx(first["values"]["pgd"])
    assert transfer["correct"]["transfer_fgsm"].mean() == pytest.approx(transfer["values"]["transfer_fgsm"])
    sweep = detailed["accuracy_falls_with_eps"]
    assert [v.mean() for v in sweep["correct"].values()] == pytest.approx(sweep["values"]["accuracy"])
    steps = detailed["more_steps_reach_asymptote"]
    assert [v.mean() for v in steps["correct"].values()] == pytest.approx(steps["values"]["accuracy"])
    assert detailed["unbounded_reaches_zero"]["correct"]["accuracy"].mean() == pytest.approx(
        detailed["unbounded_reaches_zero"]["values"]["accuracy"])


class SaturatedOutputs(nn.Module):
    """The honest model's outputs through a steep sigmoid: the same classifier, whose squared error to one-hot
    targets has (numerically) no gradient, as a sigmoid net on 0..255 pixels can."""

    def __init__(self, model: nn.Module, steepness: float = 1e4):
        super().__init__()
        self.model, self.steepness = model, steepness

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.steepness * self.model(x))


def test_check_vi_flags_a_training_loss_that_saturates_and_passes_when_it_does_not(toy):
    from helpers.obfuscation import EXTRA_CHECKS
    from helpers.train.defences import margin_loss, onehot_mse_loss

    honest, source, data = toy
    saturated = SaturatedOutputs(honest).eval()
    flagged = run(saturated, source, data, loss_fn=onehot_mse_loss, second_loss_fn=margin_loss, second_loss_model=honest,
                  per_example=True)
    assert list(flagged) == [name for name, _ in CHECKS + EXTRA_CHECKS]
    vi = flagged["other_loss_no_stronger"]
    assert vi["passed"] is False and vi["values"]["pgd_second"] < vi["values"]["pgd"] - 0.2
    assert vi["correct"]["pgd_second"].mean() == pytest.approx(vi["values"]["pgd_second"])
    fine = run(honest, source, data, second_loss_fn=margin_loss)  # cross-entropy vs margin on a linear model
    assert fine["other_loss_no_stronger"]["passed"] is True
    table = checklist_table({"saturated": list(flagged.values()), "honest": list(run(honest, source, data).values())})
    assert list(table.columns) == [question for _, question in CHECKS + EXTRA_CHECKS]
    assert table.loc["honest", EXTRA_CHECKS[0][1]] != table.loc["honest", EXTRA_CHECKS[0][1]]  # not run: NaN
    strengths = attack_strengths(list(flagged.values()), "PGD-20")
    assert strengths["PGD-20 (second loss)"] == vi["values"]["pgd_second"] and strengths["checks passed"] <= 5
