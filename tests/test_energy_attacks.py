"""ILFO / GradAuto energy attacks: the rectifications (Eqs. 17, 23-25), and the attack on tiny gated toy models."""
from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers.attacks import EnergyAttack, complexity_losses, energy_attack, gate_weights, rectify_complexity_gradient
from helpers.attacks.energy import (attack_summary, budgeted_flops, flops_arms, gate_closings, gradient_spikiness,
                                    inference_seconds, obtuse_share, pooled_recovery, recovery_gap, recovery_milestones,
                                    timed_attack)
from helpers.metrics import flops_recovery, per_sample_recovery, psnr, recovery
from helpers.models import GateTrace, dynamic_resnet
from helpers.models.dynamic import gate_pass


class ToyDepth(nn.Module):
    """Three gated residual convs on 1x8x8 images (SkipNet-like, or per-channel gates with ``width=True``).

    Each gate reads the flattened features before its block, so the input can move it; some start closed.
    """

    COSTS = (100, 200, 300)

    def __init__(self, width: bool = False):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.width = width
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.blocks = nn.ModuleList(nn.Conv2d(4, 4, 3, padding=1) for _ in self.COSTS)
        self.gates = nn.ModuleList(nn.Linear(4 * 64, 4 if width else 1) for _ in self.COSTS)
        self.head = nn.Linear(4, 3)
        with torch.no_grad():
            for module in (self.stem, *self.blocks, self.head):
                for p in module.parameters():
                    p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            g = torch.Generator().manual_seed(1)
            for gate in self.gates:
                gate.weight.copy_(torch.randn(gate.weight.shape, generator=g) / 16)
                gate.bias.fill_(-0.5)
        self.eval()

    def forward_with_gates(self, x):
        h = F.relu(self.stem(x))
        probs, executed = [], []
        for block, gate in zip(self.blocks, self.gates):
            p = torch.sigmoid(gate(h.flatten(1)))  # (N, 1) depth, (N, 4) width
            e = p > 0.5
            h = h + F.relu(block(h)) * e[:, :, None, None].to(h.dtype)
            probs.append(p)
            executed.append(e)
        unit = [c if not self.width else c // 4 for c in self.COSTS]
        return self.head(h.mean(dim=(2, 3))), GateTrace(probs, executed, unit, 1000)

    def forward(self, x):
        return self.forward_with_gates(x)[0]

    def static_flops(self) -> int:
        return 1000 + sum(self.COSTS)


@pytest.fixture
def toy_images():
    return torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(3))


def _conflicting_pair(n: int = 5, d: int = 12, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    g_f = torch.randn(n, 1, 3, 4, generator=g)
    g_c = torch.randn(n, 1, 3, 4, generator=g)
    # make images 0, 2 conflicting (obtuse) and 1, 3 agreeing (acute); 4 orthogonal
    dots = (g_c * g_f).flatten(1).sum(1)
    for i, want in ((0, -1), (1, 1), (2, -1), (3, 1)):
        if torch.sign(dots[i]) != want:
            g_c[i] = -g_c[i]
    unit = g_f[4] / g_f[4].norm()
    g_c[4] = g_c[4] - (g_c[4] * unit).sum() * unit
    return g_c, g_f


def test_direction_removes_only_the_conflicting_component():
    g_c, g_f = _conflicting_pair()
    out = rectify_complexity_gradient(g_c, g_f, rectify_direction=True, rectify_magnitude=False)
    dots_before = (g_c * g_f).flatten(1).sum(1)
    dots_after = (out * g_f).flatten(1).sum(1)
    assert (dots_after >= -1e-5).all()
    for i in range(len(g_c)):
        if i == 4:  # orthogonal (up to rounding): unchanged up to rounding
            assert torch.allclose(out[i], g_c[i], atol=1e-6)
        elif dots_before[i] > 0:  # agreeing: passes unchanged
            assert torch.equal(out[i], g_c[i])
        else:  # conflicting: only a multiple of g_F was removed, and what is left is orthogonal to g_F
            removed = (g_c[i] - out[i]).flatten()
            cos = F.cosine_similarity(removed, g_f[i].flatten(), dim=0)
            assert abs(abs(float(cos)) - 1) < 1e-5
            assert abs(float(dots_after[i])) < 1e-4
            # the rejection (Eq. 24) keeps the orthogonal part exactly
            unit = g_f[i] / g_f[i].norm()
            orth = g_c[i] - (g_c[i] * unit).sum() * unit
            assert torch.allclose(out[i], orth, atol=1e-6)


def test_direction_with_zero_finished_gradient_passes_unchanged():
    g_c, _ = _conflicting_pair()
    out = rectify_complexity_gradient(g_c, torch.zeros_like(g_c), rectify_direction=True, rectify_magnitude=False)
    assert torch.equal(out, g_c)


@pytest.mark.parametrize("K", [1e-3, 1.0, 100.0])
def test_magnitude_gives_norm_K(K):
    g_c, g_f = _conflicting_pair()
    g_c = g_c * torch.tensor([1e-6, 1.0, 1e3, 5.0, 0.1]).view(-1, 1, 1, 1)  # wildly different magnitudes
    rm = rectify_complexity_gradient(g_c, None, rectify_direction=False, rectify_magnitude=True, K=K)
    assert torch.allclose(rm.flatten(1).norm(dim=1), torch.full((5,), K), rtol=1e-5)
    # direction unchanged by RM
    assert torch.allclose(F.cosine_similarity(rm.flatten(1), g_c.flatten(1)), torch.ones(5), atol=1e-5)
    official = rectify_complexity_gradient(g_c, g_f, rectify_direction=True, rectify_magnitude=True, K=K,
                                           order="official")
    assert torch.allclose(official.flatten(1).norm(dim=1), torch.full((5,), K), rtol=1e-5)
    paper = rectify_complexity_gradient(g_c, g_f, rectify_direction=True, rectify_magnitude=True, K=K, order="paper")
    norms = paper.flatten(1).norm(dim=1)
    assert (norms <= K * (1 + 1e-5)).all()
    agree = (g_c * g_f).flatten(1).sum(1) >= 0
    assert torch.allclose(norms[agree], torch.full((int(agree.sum()),), K), rtol=1e-5)
    assert (norms[~agree] < K).all()


def test_zero_complexity_gradient_stays_zero():
    g = torch.zeros(2, 1, 2, 2)
    out = rectify_complexity_gradient(g, torch.randn(2, 1, 2, 2), rectify_direction=True, rectify_magnitude=True)
    assert torch.equal(out, g)


def test_losses_and_weights_follow_eqs_6_8_20():
    model = ToyDepth(width=True)
    _, trace = model.forward_with_gates(torch.rand(2, 1, 8, 8))
    w = gate_weights(trace, "flops")
    assert w.shape == (12,) and math.isclose(float(w.sum()), 1.0, rel_tol=1e-6)
    assert torch.allclose(w[:4], torch.full((4,), 25 / 600)) and torch.allclose(w[8:], torch.full((4,), 75 / 600))
    assert torch.equal(gate_weights(trace, "uniform"), torch.ones(12))
    probs = torch.tensor([[0.2, 0.7, 0.5], [0.9, 0.1, 0.6]])
    lc, lf = complexity_losses(probs, torch.tensor([1.0, 2.0, 3.0]))
    assert torch.allclose(lc, torch.tensor([0.3, 0.8]))
    assert torch.allclose(lf, torch.tensor([-0.4, -(0.4 + 0.3)]))


def test_trace_dynamic_flops_counts_executed_units():
    model = ToyDepth()
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    _, trace = model.forward_with_gates(x)
    assert trace.static_flops == model.static_flops()
    flops = trace.dynamic_flops()
    expected = [1000 + sum(c for c, e in zip(model.COSTS, [t[i, 0] for t in trace.executed]) if e) for i in range(4)]
    assert flops.tolist() == expected


@pytest.mark.parametrize("width", [False, True])
@pytest.mark.parametrize("method", ["ilfo", "gradauto"])
def test_attack_opens_gates_and_stays_in_range(width, method, toy_images):
    model = ToyDepth(width=width)
    res = energy_attack(model, toy_images, EnergyAttack(method=method, steps=30, lr=0.1, K=1.0))
    assert res.x_adv.shape == toy_images.shape
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert res.clean_flops.mean() < res.static_flops  # the toy saves FLOPs on clean images
    assert res.flops.mean() > res.clean_flops.mean()
    assert res.recovery() > 0.3
    # the returned FLOPs are those of the returned images
    _, trace = model.forward_with_gates(res.x_adv)
    assert torch.equal(trace.dynamic_flops().double(), res.flops)


def test_gradauto_recovers_everything_on_toy(toy_images):
    res = energy_attack(ToyDepth(), toy_images, EnergyAttack(method="gradauto", steps=60, lr=0.1, K=1.0))
    assert res.recovery() == pytest.approx(1.0)


def test_literal_parameterisation_stays_in_range(toy_images):
    res = energy_attack(ToyDepth(), toy_images, EnergyAttack(steps=5, parameterisation="literal", distortion="squared",
                                                             order="official", weighting="uniform"))
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1


def test_zero_steps_returns_the_clean_image(toy_images):
    res = energy_attack(ToyDepth(), toy_images, EnergyAttack(steps=0))
    assert torch.allclose(res.x_adv, toy_images, atol=1e-5)
    assert torch.equal(res.flops, res.clean_flops)


def test_no_label_is_used(toy_images):
    assert not {"y", "label", "labels", "target", "targets"} & set(inspect.signature(energy_attack).parameters)

    class NanLogits(ToyDepth):
        def forward_with_gates(self, x):
            logits, trace = super().forward_with_gates(x)
            return torch.full_like(logits, float("nan")), trace

    a = energy_attack(ToyDepth(), toy_images, EnergyAttack(steps=10, lr=0.05))
    b = energy_attack(NanLogits(), toy_images, EnergyAttack(steps=10, lr=0.05))
    assert torch.equal(a.x_adv, b.x_adv)


def test_same_seed_same_result_and_batching_does_not_matter(toy_images):
    model = ToyDepth()
    attack = EnergyAttack(steps=15, lr=0.05, init_std=0.1)
    a = energy_attack(model, toy_images, attack, generator=torch.Generator().manual_seed(1))
    b = energy_attack(model, toy_images, attack, generator=torch.Generator().manual_seed(1))
    c = energy_attack(model, toy_images, attack, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a.x_adv, b.x_adv) and not torch.equal(a.x_adv, c.x_adv)
    whole = energy_attack(model, toy_images, EnergyAttack(steps=15, lr=0.05))
    chunked = energy_attack(model, toy_images, EnergyAttack(steps=15, lr=0.05), batch_size=4)
    assert torch.allclose(whole.x_adv, chunked.x_adv, atol=1e-6)


def test_early_stop_at_target_recovery(toy_images):
    model = ToyDepth()
    res = energy_attack(model, toy_images, EnergyAttack(steps=60, lr=0.1, target_recovery=0.95), record=True)
    saved = res.static_flops - res.clean_flops
    own = torch.where(saved > 0, (res.flops - res.clean_flops) / saved.clamp(min=1), torch.ones_like(saved))
    torch.testing.assert_close(torch.nan_to_num(per_sample_recovery(res.clean_flops, res.flops, res.static_flops),
                                                nan=1.0), own.double())
    stopped = res.iterations < 60
    assert stopped.any()
    assert (own[stopped] >= 0.95).all()
    # history is NaN after an image's stop, finite before
    for i in torch.nonzero(stopped).flatten().tolist():
        t = int(res.iterations[i])
        assert torch.isfinite(res.history["flops"][: t + 1, i]).all()
        assert torch.isnan(res.history["flops"][t + 1:, i]).all()


def test_record_history_shapes(toy_images):
    res = energy_attack(ToyDepth(width=True), toy_images, EnergyAttack(steps=7), record=True, record_samples=2,
                        batch_size=4)
    h = res.history
    assert h["flops"].shape == (7, 6) and h["angle"].shape == (7, 6)
    assert h["gates"].shape == (7, 2, 12)
    angles = h["angle"][torch.isfinite(h["angle"])]
    assert ((angles >= 0) & (angles <= 180)).all()
    assert torch.equal(h["flops"][0], res.clean_flops.double())


def test_spec_and_argument_checks(toy_images):
    assert EnergyAttack("ilfo").describe() == "ILFO (baseline)"
    assert EnergyAttack("gradauto", rectify_magnitude=False).describe() == "RD"
    assert EnergyAttack("gradauto", K=0.01).describe() == "GradAuto (RD+RM), K=0.01"
    assert EnergyAttack("gradauto", steps=3)(ToyDepth(), toy_images).x_adv.shape == toy_images.shape
    for bad in (dict(method="pgd"), dict(method="ilfo", rectify_direction=True), dict(K=0), dict(K=float("inf")),
                dict(steps=-1), dict(lr=0), dict(parameterisation="x"), dict(distortion="l1"), dict(order="x"),
                dict(weighting="x"), dict(target_recovery=1.5), dict(tau=1.0), dict(init_std=-1)):
        with pytest.raises(ValueError):
            EnergyAttack(**bad)  # refused when the setting is made, before any model runs
    for bad in (dict(batch_size=0), dict(record_samples=-1), dict(attack="gradauto")):
        with pytest.raises(ValueError):
            energy_attack(ToyDepth(), toy_images, **bad)
    with pytest.raises(ValueError, match="x must be in"):
        energy_attack(ToyDepth(), toy_images * 2)
    with pytest.raises(ValueError, match="forward_with_gates"):
        energy_attack(nn.Linear(2, 2), toy_images)


# -- measuring an attack: Tables 1-2, Figs 1-2 ---------------------------------------------------------------------

def test_attack_summary_is_the_table_row_of_the_gate_passes(toy_images):
    net = ToyDepth(width=True)
    res = energy_attack(net, toy_images, EnergyAttack(steps=6, lr=0.1))
    labels = torch.arange(6) % 3
    row = attack_summary(net, toy_images, res.x_adv, y=labels, batch_size=4)
    with torch.no_grad():
        _, clean = net.forward_with_gates(toy_images)
        _, adv = net.forward_with_gates(res.x_adv)
    assert row["recovery, FLOP-weighted"] == flops_recovery(clean, adv) == res.recovery()
    assert row["recovery, block-count"] == flops_recovery(clean, adv, weights="count")
    p = psnr(res.x_adv, toy_images)
    assert row["PSNR (dB, mean)"] == float(p[torch.isfinite(p)].mean())
    assert 0 <= row["images fully recovered"] <= 1 and 0 <= row["accuracy on attacked"] <= 1
    again = attack_summary(net, toy_images, res.x_adv, clean=gate_pass(net, toy_images), adv=gate_pass(net, res.x_adv))
    assert again["recovery, FLOP-weighted"] == row["recovery, FLOP-weighted"] and "clean accuracy" not in again
    with pytest.raises(ValueError, match="same shape"):
        attack_summary(net, toy_images, res.x_adv[:2])


def test_history_statistics_of_figs_1_2():
    gates = torch.tensor([[[0.6, 0.4]], [[0.4, 0.6]], [[0.6, 0.6]], [[0.4, 0.4]]])  # (T=4, S=1, G=2)
    assert gate_closings({"gates": gates}) == 3.0  # gate 1 closes at t=1 and t=3, gate 2 at t=3
    angle = torch.tensor([[30.0, float("nan")], [120.0, 100.0]])
    assert obtuse_share({"angle": angle}) == pytest.approx(2 / 3)
    assert math.isnan(obtuse_share({"angle": torch.full((2, 2), float("nan"))}))
    norms = torch.tensor([[1.0, 2.0], [1.0, 0.0], [4.0, 2.0], [2.0, 2.0]])
    # image 0: max 4 / (lower) median 1 of (1, 1, 4, 2); image 1: 2 / 2 (zeros left out); the median of 4 and 1
    assert gradient_spikiness({"grad_norm_complexity": norms}) == pytest.approx(2.5)
    with pytest.raises(ValueError, match="record=True"):
        gate_closings({"flops": torch.zeros(2, 2)})


def test_recovery_curve_follows_the_recorded_flops(toy_images):
    res = energy_attack(ToyDepth(), toy_images, EnergyAttack(steps=5), record=True)
    curve = res.recovery_curve()
    assert curve.shape == (5,)
    for t in range(5):
        assert curve[t].item() == recovery(res.clean_flops, res.history["flops"][t], res.static_flops)
    with pytest.raises(ValueError, match="record=True"):
        energy_attack(ToyDepth(), toy_images, EnergyAttack(steps=1)).recovery_curve()


def test_timed_attack_and_inference_seconds_on_a_dynamic_net():
    torch.manual_seed(0)
    net = dynamic_resnet("depth", 8, 3, 1, 4, 8).eval()
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    res, seconds = timed_attack(net, x, EnergyAttack(steps=2))
    assert seconds > 0 and res.x_adv.shape == x.shape and net.sparse_inference  # dense only during the attack
    assert torch.equal(res.x_adv, energy_attack(net, x, EnergyAttack(steps=2)).x_adv)  # same result as sparse
    times = inference_seconds(net, x, {"GradAuto": res.x_adv}, repeats=1)
    assert list(times) == ["clean", "GradAuto", "all gates on"] and all(t > 0 for t in times.values())
    with pytest.raises(ValueError, match="DynamicResNet"):
        timed_attack(ToyDepth(), x, EnergyAttack(steps=1))


def test_recovery_milestones_match_the_notebooks_former_loop():
    for curve in (np.array([0.1, 0.5, 0.96, 0.99, 0.97], dtype=np.float32), np.array([0.2, 0.4, 0.3], dtype=np.float32)):
        hit = np.nonzero(curve >= 0.95)[0]
        expected = {"GradAuto: first iteration at 95%": str(int(hit[0])) if len(hit) else "not reached",
                    "GradAuto: best recovery (iteration)": f"{curve.max():.1%} ({int(curve.argmax())})"}
        assert recovery_milestones(curve, "GradAuto") == expected
    assert recovery_milestones(torch.tensor([0.2, 0.4, 0.3]), "ILFO") == {
        "ILFO: first iteration at 95%": "not reached", "ILFO: best recovery (iteration)": "40.0% (1)"}


def test_budgeted_flops_keeps_the_best_iterate_inside_the_budget(toy_images):
    res = energy_attack(ToyDepth(), toy_images, EnergyAttack("gradauto", steps=30, lr=0.05), record=True)
    mse, flops = res.history["mse"], res.history["flops"]
    unlimited = budgeted_flops(res, toy_images, -1e9)  # every iterate allowed: the best of all and the final one
    assert torch.equal(unlimited, torch.maximum(torch.maximum(flops.max(0).values, res.flops.double()),
                                                res.clean_flops.double()))
    assert torch.equal(budgeted_flops(res, toy_images, 1e9), res.clean_flops.double())  # nothing allowed: clean
    floor = float(psnr(res.x_adv, toy_images).median())  # some final images inside, some outside
    budget = budgeted_flops(res, toy_images, floor)
    for i in range(len(toy_images)):
        allowed = [float(f) for f, m in zip(flops[:, i], mse[:, i]) if 10 * math.log10(1 / float(m)) >= floor]
        if float(psnr(res.x_adv[i:i + 1], toy_images[i:i + 1])) >= floor:
            allowed.append(float(res.flops[i]))
        assert float(budget[i]) == max([float(res.clean_flops[i]), *allowed])
    assert (budget <= unlimited).all() and (budget >= res.clean_flops.double()).all()


def test_pooled_recovery_is_the_ratio_of_means_and_the_gap_is_paired():
    rng = np.random.default_rng(0)
    clean = rng.uniform(50, 80, size=(3, 10))
    static = np.full((3, 10), 100.0)
    adv_a, adv_b = np.minimum(clean + 20, 100), np.minimum(clean + 5, 100)
    expected = (adv_a.mean() - clean.mean()) / (100 - clean.mean())
    assert pooled_recovery(adv_a, clean, static) == pytest.approx(expected)
    assert pooled_recovery(static, clean, static) == pytest.approx(1.0)
    assert recovery_gap(adv_a, adv_b, clean, static) == pytest.approx(
        expected - (adv_b.mean() - clean.mean()) / (100 - clean.mean()))
    stacked = np.stack([adv_a, adv_b])  # vectorised over a leading resample axis, as helpers.claims.bootstrap calls it
    assert pooled_recovery(stacked, np.stack([clean] * 2), np.stack([static] * 2)).shape == (2,)
    one = recovery(torch.tensor(clean[0]), torch.tensor(adv_a[0]), 100.0)  # one seed: helpers.metrics.recovery
    assert pooled_recovery(adv_a[:1], clean[:1], static[:1]) == pytest.approx(float(one))


def test_flops_arms_stack_the_seeds_for_the_pooled_recovery(toy_images):
    results = [energy_attack(ToyDepth(), toy_images, EnergyAttack(method, steps=10, lr=0.05), record=True)
               for method in ("ilfo", "gradauto")]  # two "seeds"
    adv, clean, static = flops_arms(results, toy_images)
    assert adv.shape == clean.shape == static.shape == (2, len(toy_images))
    assert np.array_equal(adv[1], results[1].flops.double().numpy()) and (static == 1600).all()
    assert pooled_recovery(adv[:1], clean[:1], static[:1]) == pytest.approx(results[0].recovery())
    budget, _, _ = flops_arms(results, toy_images, 1e9)
    assert np.array_equal(budget, clean)
    with pytest.raises(ValueError, match="one attack result per seed"):
        flops_arms([], toy_images)
