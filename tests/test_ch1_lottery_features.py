"""Issue 16: layer-wise lottery pruning keeps the exact per-layer densities, Frankle & Carbin's control
(the ticket's mask re-initialised), and the live-feature selection of Sec. IV (dead ReLUs excluded exactly)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from helpers import claims, features
from helpers.models import BinaryFeatureCNN
from helpers.pruning import current_masks, density, density_schedule, layer_density, lottery_ticket, reinitialised_tickets
from helpers.verdicts.lottery import lottery_judgements, mask_control_intervals


def lenet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))


def test_layerwise_lottery_pruning_keeps_the_exact_per_layer_densities_20_20_10():
    """Frankle & Carbin's LeNet rates: 20% of each hidden layer and 10% of the output layer per round, exactly."""
    model = lenet()
    x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    seen = []

    def train_fn(m, r):
        seen.append({name: kept for name, (kept, _) in layer_density(m).items()})
        return {"loss": nn.functional.cross_entropy(m(x), y).item()}

    records = lottery_ticket(model, train_fn, rounds=5, amount=0.2, output_amount=0.1, scope="layer", progress=False)
    sizes = {"1.weight": 784 * 300, "3.weight": 300 * 100, "5.weight": 100 * 10}
    expected = dict(sizes)
    for r, kept in enumerate(seen):
        assert kept == expected, f"round {r}"
        expected = {name: n - round((0.1 if name == "5.weight" else 0.2) * n) for name, n in expected.items()}
    # each layer's density after k rounds is (1 - rate)^k up to the rounding of whole weights
    last = seen[-1]
    assert abs(last["1.weight"] / sizes["1.weight"] - 0.8 ** 4) < 1e-5
    assert abs(last["5.weight"] / sizes["5.weight"] - 0.9 ** 4) < 2e-3
    assert [r["density"] for r in records] == pytest.approx(
        density_schedule(lenet(), 0.2, 4, output_amount=0.1, scope="layer").tolist(), abs=1e-12)


def test_global_pruning_ranks_the_hidden_layers_together_and_differs_from_layerwise():
    model = lenet()
    seen = []
    lottery_ticket(model, lambda m, r: seen.append(layer_density(m)) or {}, rounds=3, amount=0.3, scope="global",
                   progress=False)
    kept = {name: k / n for name, (k, n) in seen[-1].items()}
    # one ranking: the first layer, with the smallest initial weights (bound 1/sqrt(784)), loses more than 1 - 0.7^2
    assert kept["1.weight"] < 0.7 ** 2 < kept["3.weight"]
    with pytest.raises(ValueError, match="scope"):
        lottery_ticket(lenet(), lambda m, r: {}, rounds=2, amount=0.3, scope="row", progress=False)


def test_reinitialised_tickets_use_the_tickets_masks_with_fresh_weights_and_resume(tmp_path):
    ticket = lenet()
    masks = {}

    def record_masks(m, r):
        masks[r] = {k: v.bool() for k, v in current_masks(m).items()}
        return {}

    lottery_ticket(ticket, record_masks, rounds=3, amount=0.5, progress=False)
    initial = lenet()
    weights_seen = []

    def train_fn(m, r):
        weights_seen.append(m[1].weight.detach().clone())
        assert torch.equal(current_masks(m)["1.weight"].bool(), masks[r]["1.weight"])  # the ticket's own mask
        return {"kept": density(m)}

    records = reinitialised_tickets(initial, masks.__getitem__, train_fn, rounds=3, seed=0,
                                    checkpoint_dir=tmp_path, progress=False)
    assert [r["round"] for r in records] == [0, 1, 2]
    assert records[2]["density"] == pytest.approx(density(ticket))
    # fresh weights, not theta_0 (the model passed in is left untouched)
    kept = masks[1]["1.weight"]
    assert not torch.allclose(weights_seen[1][kept], lenet()[1].weight.detach()[kept])
    assert torch.equal(initial[1].weight, lenet()[1].weight)
    # resume: a second call with the same checkpoint trains nothing
    again = reinitialised_tickets(lenet(), masks.__getitem__, lambda m, r: pytest.fail("retrained"), rounds=3,
                                  checkpoint_dir=tmp_path, progress=False)
    assert again == records


def fake_lottery(shift: dict, n=3000, seeds=(0, 1, 2), densities=(1.0, 0.3, 0.1, 0.05, 0.02, 0.01)) -> "pd.DataFrame":
    """lottery records with per-image 1/0 at accuracies base + shift[(training, reset)] per level."""
    import pandas as pd
    g = np.random.default_rng(0)
    rows = []
    for seed in seeds:
        for training in ("standard", "fgsm_at"):
            for reset in ("rewind", "random", "mask_reinit"):
                for r, d in enumerate(densities):
                    c = g.random(n) < 0.8 + (shift.get((training, reset), 0.0) if r else 0.0)
                    f = g.random(n) < 0.4 + (shift.get((training, reset, "fgsm"), 0.0) if r else 0.0)
                    rows.append({"seed": seed, "training": training, "scope": "layer", "reset": reset, "round": r,
                                 "density": d, "clean": c.mean(), "fgsm": f.mean(), "clean_correct": c.astype(int),
                                 "fgsm_correct": f.astype(int)})
    return pd.DataFrame(rows)


def test_the_new_lottery_claims_follow_the_measured_gaps():
    curves = fake_lottery({("standard", "random"): -0.2, ("standard", "mask_reinit"): -0.15,
                           ("fgsm_at", "random", "fgsm"): -0.2, ("fgsm_at", "rewind", "fgsm"): 0.05,
                           ("standard", "rewind"): -0.1})
    out = lottery_judgements(curves, 10)
    assert out["ticket_same_robustness"].verdict == claims.REPRODUCED
    assert out["adv_ticket_higher_clean_beyond_98"].verdict == claims.REPRODUCED  # standard ticket 10 points lower
    worse = lottery_judgements(fake_lottery({("fgsm_at", "rewind"): -0.1}), 10)
    assert worse["adv_ticket_higher_clean_beyond_98"].verdict == claims.NOT_REPRODUCED
    control = mask_control_intervals(curves)
    assert control["standard"].low > 0.02 and abs(control["fgsm_at"].estimate) < 0.02  # rewind -10 vs control -15 points


def test_live_features_exclude_exactly_the_features_that_are_zero_on_every_input():
    torch.manual_seed(0)
    model = BinaryFeatureCNN(n_features=100).eval()
    fc = model.body[7]
    x = torch.zeros(64, 1, 28, 28)
    x[0] = torch.rand(1, 28, 28)  # one image differs from 63 blank ones
    y = torch.randint(0, 2, (64,))
    with torch.no_grad():
        fc.bias[:10] = -1e6  # features 0-9: dead, no input can overcome the bias
        pre_fc = model.body[:7](x)  # the FC layer's input: h0 for image 0, the same hz for every blank image
        h0, hz = pre_fc[0], pre_fc[1]
        fc.weight[10] = h0 - hz  # feature 10 fires on image 0 only: w.(h - hz) - small
        fc.bias[10] = -(fc.weight[10] @ hz) - 1e-3
    feats = features.collect_features(model, x)
    assert (feats[1:, 10] == 0).all() and feats[0, 10] > 0
    zero_everywhere = set(torch.nonzero((feats != 0).sum(0) == 0).squeeze(1).tolist())
    assert set(range(10)) <= zero_everywhere and 10 not in zero_everywhere
    m = features.usefulness_measures(model, x, y)
    assert set(torch.nonzero(~m["live"]).squeeze(1).tolist()) == zero_everywhere
    assert set(features.dead_features(model, x)) == zero_everywhere


def test_dead_at_initialisation_is_the_untrained_model_of_the_seed():
    x = torch.rand(32, 1, 28, 28)
    torch.manual_seed(3)
    untrained = BinaryFeatureCNN(n_features=100).eval()
    assert features.dead_at_initialisation(3, x) == features.dead_features(untrained, x)
