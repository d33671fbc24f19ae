"""Chapter 5's defences: the official GMR penalty in training, networks trained to a target accuracy, PGD on the
pre-sigmoid margin, the mechanisms of Sec. 3.3.3 measured, and the claims' guards (helpers.verdicts.defences)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import helpers.train.defences as defences
from helpers import claims
from helpers.models.defences import DEFENCES, ElasticSigmoid, defence_network, pooled_defence_network
from helpers.train.defences import (centring, elastic_slopes, gmr_penalty_share, input_gradient_norm,
                                    input_gradient_norms, margin_loss, mechanisms, onehot_mse_loss, pgd_accuracies,
                                    pre_sigmoid, step_loss_for, train_defence, training_summary, zero_pair_share)
from helpers.verdicts.defences import defence_judgements


def sparse_images(n: int, seed: int = 0, side: int = 28) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, side, side, generator=g) * (torch.rand(n, 1, side, side, generator=g) > 0.8)


def test_step_loss_is_the_official_whole_batch_penalty_by_default():
    torch.manual_seed(0)
    net = defence_network("GMR", image_shape=(1, 4, 4), widths=(6, 5))  # pixel_scale 255, as trained
    x, y = torch.rand(20, 1, 4, 4), torch.randint(0, 10, (20,))
    ours, _ = step_loss_for(DEFENCES["GMR"])(net, x, y)
    pixels = (255 * x).requires_grad_(True)  # the official code: the gradient w.r.t. the 0..255 batch
    bare = nn.Sequential(*list(net.children())[1:])
    mean_loss = onehot_mse_loss(bare(pixels), y).mean()
    (grad,) = torch.autograd.grad(mean_loss, pixels, create_graph=True)
    direct = mean_loss + 0.5 * grad.norm()
    assert torch.allclose(ours, direct, rtol=1e-5)
    _, norms, _ = input_gradient_norms(net, x, y, pixel_scale=255.0)
    assert float(grad.norm().detach()) == pytest.approx(float(norms.norm().detach() / 20), rel=1e-5)
    assert float(norms.mean().detach()) >= float(norms.norm().detach() / 20)  # "sample" (per-image mean) >= "batch"
    same = input_gradient_norms(net, x[:1].repeat(20, 1, 1, 1), y[:1].repeat(20), pixel_scale=255.0)[1].detach()
    assert float(same.mean() / (same.norm() / 20)) == pytest.approx(20 ** 0.5, rel=1e-4)  # sqrt(N) for equal norms
    assert step_loss_for(DEFENCES["S"]) is None
    with pytest.raises(ValueError, match="^reduction must be one of"):
        step_loss_for(DEFENCES["GMR"], reduction="sum")


def test_target_accuracy_stops_training_at_the_first_epoch_that_reaches_it(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_DATA", str(tmp_path))
    g = torch.Generator().manual_seed(0)
    x = sparse_images(200, seed=1)
    y = (x.flatten(1)[:, :392].sum(1) > x.flatten(1)[:, 392:].sum(1)).long()  # top half brighter: learnable
    kwargs = dict(epochs=8, patience=8, seed=0, dataset="toy", pd_pool=1)
    torch.manual_seed(0)
    full = train_defence(pooled_defence_network("RS"), "RS", (x, y), (x, y), **kwargs)
    target = full[1]["val_accuracy"]  # reached at epoch 2 (or earlier)
    first = next(i for i, r in enumerate(full) if r["val_accuracy"] >= target) + 1
    torch.manual_seed(0)
    stopped = train_defence(pooled_defence_network("RS"), "RS", (x, y), (x, y), target_accuracy=target, **kwargs)
    assert len(stopped) == first and [r["loss"] for r in stopped] == [r["loss"] for r in full[:first]]
    calls = []
    monkeypatch.setattr(defences, "fit", lambda *a, **k: calls.append(k["epochs"]) or stopped)
    again = train_defence(pooled_defence_network("RS"), "RS", (x, y), (x, y), target_accuracy=target, **kwargs)
    assert again == stopped and calls == [first]  # a rerun resumes at the checkpoint's epoch and stops there
    with pytest.raises(ValueError, match="^target_accuracy must be"):
        train_defence(pooled_defence_network("RS"), "RS", (x, y), (x, y), target_accuracy=1.5, **kwargs)


def test_margin_loss_and_the_pre_sigmoid_network_classify_alike():
    out, y = torch.tensor([[1.0, 3.0, 2.0], [0.0, -1.0, 4.0]]), torch.tensor([1, 0])
    assert margin_loss(out, y).tolist() == [-1.0, 4.0]
    x = sparse_images(16)
    for name in DEFENCES:
        torch.manual_seed(0)
        net = pooled_defence_network(name, pool=4).eval()
        logits = pre_sigmoid(net)
        assert torch.equal(logits(x).argmax(1), net(x).argmax(1)), name
        if name != "A":  # A's outputs are linear already: pre_sigmoid returns it as it is
            last = [m for m in net.modules() if isinstance(m, (nn.Sigmoid, ElasticSigmoid))][-1]
            assert torch.allclose(last(logits.body(x)), net(x), atol=1e-6), name
    assert pre_sigmoid(pooled_defence_network("A")) is not None
    with pytest.raises(ValueError, match="^output must be"):
        margin_loss(torch.zeros(3), torch.zeros(3, dtype=torch.long))


def test_pgd_accuracies_take_the_worse_of_the_two_losses_per_image():
    torch.manual_seed(0)
    nets = {"S": pooled_defence_network("S").eval(), "A": pooled_defence_network("A").eval()}
    x, y = sparse_images(30), torch.randint(0, 10, (30,))
    out = pgd_accuracies(nets, (x, y), eps=0.3, steps=3, step_fraction=0.2, batch_size=10, seed=0)
    for name, scores in out.items():
        assert set(scores) == {"mse", "margin", "both"}
        assert np.array_equal(scores["both"], np.minimum(scores["mse"], scores["margin"]))
        assert scores["both"].shape == (30,)


def test_zero_pair_share_counts_ordered_pairs_of_distinct_zero_pixels():
    x = torch.zeros(2, 1, 2, 2)
    x[1, 0, 0, 0] = 1.0  # 3 of 4 pixels zero: 3 * 2 of 4 * 3 ordered pairs
    assert zero_pair_share(x).tolist() == [1.0, 0.5]
    x4 = torch.zeros(1, 1, 4, 4)
    x4[0, 0, 0, 0] = 1.0  # pooled by 2: one of four pooled pixels is non-zero
    assert zero_pair_share(x4, 2).tolist() == [0.5] and zero_pair_share(x4)[0] == pytest.approx(15 * 14 / (16 * 15))
    with pytest.raises(ValueError, match="^pool must be"):
        zero_pair_share(x, 0)


def test_gradient_norms_penalty_share_slopes_and_centring_by_hand():
    torch.manual_seed(0)
    net = pooled_defence_network("GMRES").eval()
    x, y = sparse_images(40), torch.randint(0, 10, (40,))
    norms = input_gradient_norm(net, (x, y), batch_size=7)
    assert np.allclose(norms, input_gradient_norms(net, x, y, pixel_scale=255.0)[1].detach().numpy(), rtol=1e-5)
    by_hand = []
    for xb, yb in zip(x.split(20), y.split(20)):
        losses, batch_norms, _ = input_gradient_norms(net, xb, yb, pixel_scale=255.0)
        by_hand.append(float((0.5 * batch_norms.norm() / 20 / losses.mean()).detach()))
    assert gmr_penalty_share(net, (x, y)) == pytest.approx(np.mean(by_hand), rel=1e-4)
    with torch.no_grad():
        net.act2.slope.fill_(0.5)
    assert elastic_slopes(net) == [1.0, 0.5, 1.0]
    s_net = pooled_defence_network("S").eval()
    z = s_net.layer1(s_net.flatten(s_net.pixels(x)))
    stats = centring(s_net, x, batch_size=15)
    assert stats["mean |z|"] == pytest.approx(float(z.abs().mean()), rel=1e-5)
    assert stats["share |z| > 5"] == pytest.approx(float((z.abs() > 5).float().mean()))
    rs = centring(pooled_defence_network("RS").eval(), x, batch_size=20)
    assert rs["|mean z| per unit"] < 1e-3  # batch statistics at test time: every unit centred on its batch


def test_mechanisms_and_training_summary_on_untrained_nets():
    nets = {}
    for name in DEFENCES:
        torch.manual_seed(0)
        nets[name] = pooled_defence_network(name, pool=4).eval()
    x, y = sparse_images(40), torch.randint(0, 10, (40,))
    mech = mechanisms([nets, nets], (x, y), pd_pool=4)
    assert set(mech["grad_norm"]) == {"S", "GMR", "GMRES"} and set(mech["penalty_share"]) == {"GMR", "GMRES"}
    assert mech["slopes"] == [[1.0, 1.0, 1.0]] * 2
    assert mech["zero_pairs"]["full resolution"] == pytest.approx(float(zero_pair_share(x).mean()))
    assert set(mech["centring"]) == {"S", "RS"}
    history = [{"val_accuracy": 0.2, "seconds": 1.0}, {"val_accuracy": 0.3, "seconds": 2.0}]
    table = training_summary({("S", 0): history}, {("S", 0): nets["S"]}, (x, y), batch_size=20)
    row = table.loc[("S", 0)]
    assert (row["epochs run"], row["best epoch"], row["best validation accuracy"], row["seconds"]) == (2, 2, 0.3, 3.0)
    assert row["training-set accuracy"] == pytest.approx(float((nets["S"](x).argmax(1) == y).float().mean()))


def _scores(rate: float, n: int = 400, seeds: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return claims.scores([(rng.random(n) < rate).astype(float) for _ in range(seeds)])


def test_defence_judgements_guard_on_clean_accuracy_parity_the_checklist_and_gmr_acting():
    names = list(DEFENCES)
    keys = ("clean", "white", "black", "white_small", "pgd_both")
    rates = {"clean": 0.8, "white": 0.3, "black": 0.5, "white_small": 0.7, "pgd_both": 0.02}
    correct = {(n, k): _scores(rates[k], seed=i) for i, (n, k) in enumerate((n, k) for n in names for k in keys)}
    correct["A", "white"], correct["A", "pgd_both"] = _scores(0.01), _scores(0.0)
    correct["PD", "white_small"] = _scores(0.3)
    clean = {n: 0.8 for n in names} | {"S′": 0.8}
    from helpers.obfuscation import CHECKS, EXTRA_CHECKS

    passing = [{"test": t, "question": q, "passed": True} for t, q in CHECKS + EXTRA_CHECKS]
    checklists = {n: passing for n in names}
    grads = {"S": 1.0, "GMR": 0.5, "GMRES": 0.5}
    kwargs = dict(pgd_label="PGD-160")
    ok = defence_judgements(correct, clean, checklists, grads, **kwargs)
    assert set(ok) == {"angular_whitebox_collapse", "renorm_no_help", "gmr_no_help", "pd_falls_small_eps"}
    assert all(j.verdict != "not run at this scale" for j in ok.values())
    assert [p.name for p in ok["gmr_no_help"].parts] == [
        "GMR minus S, white-box FGSM", "GMRES minus S, white-box FGSM", "GMR minus S, white-box PGD-160",
        "GMRES minus S, white-box PGD-160"]
    assert ok["angular_whitebox_collapse"].parts[1].verdict == "reproduced"
    unequal = defence_judgements(correct, clean | {"RS": 0.9}, checklists, grads, **kwargs)  # 10 points apart
    assert unequal["renorm_no_help"].verdict == "not run at this scale"
    assert unequal["gmr_no_help"].verdict != "not run at this scale"
    lazy = defence_judgements(correct, clean, checklists, grads | {"GMR": 0.95}, **kwargs)  # the penalty did nothing
    assert lazy["gmr_no_help"].verdict == "not run at this scale"
    assert lazy["gmr_no_help"].reason.startswith("the GMR penalty did not act: GMR's input gradient over S's 0.95x")
    masked = checklists | {"A": [dict(c, passed=c["test"] != "unbounded_reaches_zero") for c in passing]}
    flagged = defence_judgements(correct, clean, masked, grads, **kwargs)
    assert flagged["angular_whitebox_collapse"].verdict == "not run at this scale"
    assert flagged["angular_whitebox_collapse"].reason.startswith("the judged PGD fails the checklist: ")
    assert "A (iv)" in flagged["angular_whitebox_collapse"].reason
    assert flagged["pd_falls_small_eps"].verdict == ok["pd_falls_small_eps"].verdict  # A is not compared there
    weak = defence_judgements(correct, clean | {"PD": 0.6}, checklists, grads, **kwargs)
    assert weak["pd_falls_small_eps"].verdict == "not run at this scale"
