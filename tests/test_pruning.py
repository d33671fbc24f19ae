"""Properties of helpers.pruning that a wrong implementation would break.

Exact counts, smallest-magnitude removal against a direct sort, zeros that survive optimisers,
mask replacement, lottery-ticket rewinding / re-initialisation and checkpoint resume.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers.io import load_checkpoint
from helpers.pruning import (
    apply_masks,
    current_masks,
    density,
    effective_weights,
    layer_density,
    load_masked_state_dict,
    lottery_ticket,
    magnitude_masks,
    prunable_parameters,
    prune_magnitude,
    random_masks,
    remove_masks,
)




def make_mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 30), nn.ReLU(), nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 4))


class TinyConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.head = nn.Linear(6 * 2 * 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.head(x.flatten(1))


def make_conv(seed: int = 0) -> TinyConvNet:
    torch.manual_seed(seed)
    return TinyConvNet()


MLP_NAMES = ["0.weight", "2.weight", "4.weight"]


def test_prunable_parameters_names_and_output_exclusion():
    mlp = make_mlp()
    params = prunable_parameters(mlp)
    assert list(params) == MLP_NAMES
    assert params["2.weight"] == (mlp[2], "weight")
    assert list(prunable_parameters(mlp, include_output=False)) == MLP_NAMES[:2]
    assert list(prunable_parameters(make_conv())) == ["conv1.weight", "conv2.weight", "head.weight"]


@pytest.mark.parametrize("make", [make_mlp, make_conv])
def test_global_pruning_exact_count_and_smallest_removed(make):
    model = make()
    weights = effective_weights(model)
    total = sum(w.numel() for w in weights.values())
    masks = magnitude_masks(model, 0.37)
    removed_expected = round(0.37 * total)
    kept = sum(int(m.count_nonzero()) for m in masks.values())
    assert kept == total - removed_expected
    # compare with a direct sort over all weights
    flat_w = torch.cat([w.reshape(-1).abs() for w in weights.values()])
    flat_m = torch.cat([m.reshape(-1) for m in masks.values()])
    smallest = torch.argsort(flat_w)[:removed_expected]
    expected_mask = torch.ones_like(flat_m)
    expected_mask[smallest] = 0
    assert torch.equal(flat_m, expected_mask)
    assert flat_w[flat_m == 0].max() <= flat_w[flat_m == 1].min()


def test_layer_scope_exact_counts_and_per_layer_smallest():
    model = make_mlp()
    weights = effective_weights(model)
    masks = magnitude_masks(model, 0.25, scope="layer")
    for name, w in weights.items():
        n = w.numel()
        assert int(masks[name].count_nonzero()) == n - round(0.25 * n)
        order = torch.argsort(w.reshape(-1).abs())
        assert torch.all(masks[name].reshape(-1)[order[: round(0.25 * n)]] == 0)
        assert torch.all(masks[name].reshape(-1)[order[round(0.25 * n):]] == 1)


def test_layer_amounts_prune_output_separately():
    model = make_mlp()
    masks = magnitude_masks(model, 0.5, layer_amounts={"4.weight": 0.1})
    counts = layer_density(masks)
    hidden_total = counts["0.weight"][1] + counts["2.weight"][1]
    assert counts["0.weight"][0] + counts["2.weight"][0] == hidden_total - round(0.5 * hidden_total)
    assert counts["4.weight"][0] == 80 - round(0.1 * 80)
    # the hidden threshold is global: every removed hidden weight is smaller than every kept hidden weight
    weights = effective_weights(model)
    hw = torch.cat([weights[n].reshape(-1).abs() for n in MLP_NAMES[:2]])
    hm = torch.cat([masks[n].reshape(-1) for n in MLP_NAMES[:2]])
    assert hw[hm == 0].max() <= hw[hm == 1].min()


def test_iterated_pruning_counts_are_exact_products_and_nested():
    model = make_mlp()
    total = sum(n for _, n in layer_density(model).values())
    remaining = total
    previous = current_masks(model)
    for amount in (0.2, 0.2, 0.35, 0.5, 0.1):
        masks = prune_magnitude(model, amount)
        remaining -= round(amount * remaining)
        assert sum(k for k, _ in layer_density(model).values()) == remaining
        for name in masks:  # already-pruned weights stay pruned
            assert torch.all(masks[name] <= previous[name])
        previous = masks
    assert density(model) == remaining / total
    # layer-wise rounds: each layer follows its own product
    model = make_mlp()
    expected = {name: n for name, (_, n) in layer_density(model).items()}
    for amount in (0.3, 0.3, 0.3):
        prune_magnitude(model, amount, scope="layer")
        expected = {name: r - round(0.3 * r) for name, r in expected.items()}
        assert {name: k for name, (k, _) in layer_density(model).items()} == expected


def test_second_round_ranks_only_remaining_weights_by_effective_weight():
    model = make_mlp()
    prune_magnitude(model, 0.5)
    # make the pruned positions of weight_orig huge: they must not count as "large" nor be re-kept
    with torch.no_grad():
        for name, (module, _) in prunable_parameters(model).items():
            module.weight_orig[module.weight_mask == 0] = 1e6
    masks = magnitude_masks(model, 0.5)
    assert density(masks) == (1040 - 520 - 260) / 1040
    weights = effective_weights(model)
    kept_before = torch.cat([m.reshape(-1) for m in current_masks(model).values()]) == 1
    flat_w = torch.cat([w.reshape(-1).abs() for w in weights.values()])[kept_before]
    flat_m = torch.cat([m.reshape(-1) for m in masks.values()])[kept_before]
    assert flat_w[flat_m == 0].max() <= flat_w[flat_m == 1].min()


def test_ties_are_broken_deterministically_by_position():
    model = nn.Sequential(nn.Linear(4, 5), nn.Linear(5, 2))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    masks = magnitude_masks(model, 0.5)
    flat = torch.cat([m.reshape(-1) for m in masks.values()])
    assert torch.equal(flat, torch.cat([torch.zeros(15), torch.ones(15)]))
    assert torch.equal(flat, torch.cat([m.reshape(-1) for m in magnitude_masks(model, 0.5).values()]))


def test_include_output_false_leaves_last_layer_dense():
    model = make_mlp()
    masks = prune_magnitude(model, 0.6, include_output=False)
    assert int(masks["4.weight"].count_nonzero()) == 80
    counts = layer_density(model)
    assert counts["4.weight"] == (80, 80)
    hidden = 12 * 30 + 30 * 20
    assert counts["0.weight"][0] + counts["2.weight"][0] == hidden - round(0.6 * hidden)
    with pytest.raises(ValueError, match="4.weight"):
        magnitude_masks(model, 0.2, include_output=False, layer_amounts={"4.weight": 0.1})


@pytest.mark.parametrize("make", [make_mlp, make_conv])
@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda params: torch.optim.Adam(params, lr=1e-2),
        lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4),
        lambda params: torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1),
    ],
    ids=["adam", "sgd-momentum-wd", "adamw"],
)
def test_pruned_weights_stay_exactly_zero_under_optimisers(make, make_optimizer):
    model = make()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(32, 12, generator=generator) if make is make_mlp else torch.randn(32, 1, 8, 8, generator=generator)
    n_classes = 4 if make is make_mlp else 3
    y = torch.randint(0, n_classes, (32,), generator=generator)
    # the optimiser is created before pruning: prune keeps the parameter object (renamed weight_orig)
    optimizer = make_optimizer(model.parameters())
    for _ in range(3):  # build up momentum / Adam moments on every weight first
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    masks = prune_magnitude(model, 0.6)
    before = effective_weights(model)
    for _ in range(20):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        for name, w in effective_weights(model).items():  # right after the step, before any forward
            assert torch.all(w[masks[name] == 0] == 0)
    model(x)
    for name, (module, _) in prunable_parameters(model).items():
        assert torch.all(module.weight[masks[name] == 0] == 0)
    after = effective_weights(model)
    assert any(not torch.equal(before[n][masks[n] == 1], after[n][masks[n] == 1]) for n in masks)  # it did train
    assert current_masks(model).keys() == masks.keys()
    assert all(torch.equal(current_masks(model)[n], masks[n]) for n in masks)


def test_apply_masks_replaces_rather_than_combines_and_keeps_weight_orig():
    model = make_mlp()
    original = {n: w.clone() for n, w in effective_weights(model).items()}
    first = {n: (torch.arange(w.numel()).reshape(w.shape) % 2 == 0) for n, w in original.items()}
    second = {n: (torch.arange(w.numel()).reshape(w.shape) % 3 == 0) for n, w in original.items()}
    apply_masks(model, first)
    apply_masks(model, second)
    for name, w in effective_weights(model).items():
        assert torch.equal(current_masks(model)[name], second[name].float())
        # positions pruned by the first mask and kept by the second come back with their stored values
        assert torch.equal(w, original[name] * second[name])
    assert prunable_parameters(model)["0.weight"][0].weight.equal(original["0.weight"] * second["0.weight"])
    # a partial dict only replaces the named layer
    apply_masks(model, {"2.weight": torch.ones(20, 30)})
    assert layer_density(model)["2.weight"] == (600, 600)
    assert torch.equal(current_masks(model)["0.weight"], second["0.weight"].float())


def test_apply_masks_validates_names_shapes_and_values():
    model = make_mlp()
    with pytest.raises(ValueError, match="1.weight"):
        apply_masks(model, {"1.weight": torch.ones(3)})
    with pytest.raises(ValueError, match="0.weight"):
        apply_masks(model, {"0.weight": torch.ones(12, 30)})
    with pytest.raises(ValueError, match="0 and 1"):
        apply_masks(model, {"0.weight": torch.full((30, 12), 0.5)})
    # nothing was attached by the failed calls
    assert density(model) == 1.0 and not hasattr(model[0], "weight_orig")


def test_remove_masks_leaves_plain_parameters_with_the_zeros():
    model = make_conv()
    masks = prune_magnitude(model, 0.5)
    parameter_ids = {n: id(m.weight_orig) for n, (m, _) in prunable_parameters(model).items()}
    expected = effective_weights(model)
    remove_masks(model)
    for name, (module, _) in prunable_parameters(model).items():
        assert isinstance(module.weight, nn.Parameter) and id(module.weight) == parameter_ids[name]
        assert not hasattr(module, "weight_orig") and "weight_mask" not in dict(module.named_buffers())
        assert not module._forward_pre_hooks
        assert torch.equal(module.weight.detach(), expected[name])
        assert torch.all(module.weight[masks[name] == 0] == 0)
    assert sorted(n for n, _ in model.named_parameters()) == sorted(
        ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "head.weight", "head.bias"]
    )
    assert density(model) == 1.0


def test_density_and_layer_density_are_exact():
    model = make_mlp()
    masks = {n: torch.zeros(m.shape) for n, m in current_masks(model).items()}
    masks["0.weight"].view(-1)[:7] = 1
    masks["4.weight"].view(-1)[:80] = 1
    apply_masks(model, masks)
    assert layer_density(model) == {"0.weight": (7, 360), "2.weight": (0, 600), "4.weight": (80, 80)}
    assert density(model) == 87 / 1040
    assert density(masks) == 87 / 1040
    with pytest.raises(ValueError, match="masks_or_model"):
        density([1, 2])


def test_random_masks_exact_counts_and_determinism():
    model = make_mlp()
    masks = random_masks(model, 0.3, torch.Generator().manual_seed(7))
    for name, (kept, total) in layer_density(masks).items():
        assert kept == round(0.3 * total)
    again = random_masks(model, 0.3, torch.Generator().manual_seed(7))
    other = random_masks(model, 0.3, torch.Generator().manual_seed(8))
    assert all(torch.equal(masks[n], again[n]) for n in masks)
    assert any(not torch.equal(masks[n], other[n]) for n in masks)
    per_layer = random_masks(model, {"0.weight": 0.05, "2.weight": 0.5}, torch.Generator().manual_seed(0))
    assert layer_density(per_layer) == {"0.weight": (18, 360), "2.weight": (300, 600), "4.weight": (80, 80)}
    apply_masks(model, per_layer)
    assert density(model) == (18 + 300 + 80) / 1040
    with pytest.raises(ValueError, match="density_per_layer"):
        random_masks(model, 1.5, torch.Generator())
    with pytest.raises(ValueError, match="9.weight"):
        random_masks(model, {"9.weight": 0.5}, torch.Generator())


def test_load_masked_state_dict_round_trip():
    model = make_conv(0)
    prune_magnitude(model, 0.7)
    fresh = make_conv(1)
    load_masked_state_dict(fresh, model.state_dict())
    x = torch.randn(5, 1, 8, 8)
    assert torch.equal(fresh(x), model(x))
    assert all(torch.equal(current_masks(fresh)[n], m) for n, m in current_masks(model).items())


def test_magnitude_argument_validation():
    model = make_mlp()
    for amount in (-0.1, 1.0, 1.5, "0.2"):
        with pytest.raises(ValueError, match="amount"):
            magnitude_masks(model, amount)
    with pytest.raises(ValueError, match="global"):
        magnitude_masks(model, 0.2, scope="local")
    with pytest.raises(ValueError, match="layer_amounts"):
        magnitude_masks(model, 0.2, layer_amounts={"4.weight": 1.0})
    assert density(magnitude_masks(model, 0.0)) == 1.0


# ---------------------------------------------------------------------------------------------- lottery

DATA_GENERATOR = torch.Generator().manual_seed(123)
X = torch.randn(64, 12, generator=DATA_GENERATOR)
Y = torch.randint(0, 4, (64,), generator=DATA_GENERATOR)


def sgd_train(model: nn.Module, round_index: int) -> dict:
    """Deterministic given the global RNG: a few SGD steps on fixed data, shuffled by torch's global RNG."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9, weight_decay=5e-4)
    for _ in range(5):
        order = torch.randperm(64)
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(X[order]), Y[order])
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = (model(X).argmax(1) == Y).float().mean()
    return {"loss": loss.detach(), "accuracy": accuracy}


def expected_densities(rounds: int, amount: float, output_amount: float) -> list[float]:
    hidden, output, total = 12 * 30 + 30 * 20, 80, 1040
    out = []
    for _ in range(rounds):
        out.append((hidden + output) / total)
        hidden -= round(amount * hidden)
        output -= round(output_amount * output)
    return out


@pytest.mark.parametrize("reset", ["rewind", "random"])
def test_lottery_ticket_reset_masks_and_densities(reset):
    model = make_mlp()
    theta_0 = {k: v.clone() for k, v in model.state_dict().items()}
    seen: dict[int, dict] = {}
    expected_next_mask: dict = {}

    def train_fn(m: nn.Module, r: int) -> dict:
        seen[r] = {"masks": current_masks(m), "weights": effective_weights(m),
                   "biases": {k: v.clone() for k, v in m.state_dict().items() if k.endswith("bias")}}
        metrics = sgd_train(m, r)
        expected_next_mask[r] = magnitude_masks(m, 0.3, layer_amounts={"4.weight": 0.15})
        return metrics

    records = lottery_ticket(model, train_fn, rounds=4, amount=0.3, reset=reset, scope="global", progress=False)
    assert [rec["round"] for rec in records] == [0, 1, 2, 3]
    assert [rec["density"] for rec in records] == expected_densities(4, 0.3, 0.15)
    assert all(isinstance(rec["loss"], float) and 0 <= rec["accuracy"] <= 1 for rec in records)
    for r in (1, 2, 3):
        masks, weights = seen[r]["masks"], seen[r]["weights"]
        for name, mask in masks.items():
            # the mask is the magnitude mask of the model trained in the previous round
            assert torch.equal(mask, expected_next_mask[r - 1][name])
            initial = theta_0[name]
            assert torch.all(weights[name][mask == 0] == 0)
            if reset == "rewind":
                assert torch.equal(weights[name][mask == 1], initial[mask == 1])
            else:
                assert not torch.any(weights[name][mask == 1] == initial[mask == 1])
        for key, bias in seen[r]["biases"].items():
            assert torch.equal(bias, theta_0[key]) == (reset == "rewind")
    # the model ends trained at the last round's density, masks attached
    assert density(model) == records[-1]["density"]


def test_lottery_ticket_random_reset_is_seeded():
    runs = []
    for seed in (3, 3, 4):
        model = make_mlp()
        torch.manual_seed(0)
        records = lottery_ticket(model, sgd_train, rounds=3, amount=0.2, reset="random", seed=seed, progress=False)
        runs.append((records, {k: v.clone() for k, v in model.state_dict().items()}))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])
    assert not all(torch.equal(runs[0][1][k], runs[2][1][k]) for k in runs[0][1])


@pytest.mark.parametrize("reset", ["rewind", "random"])
def test_lottery_ticket_resume_equals_uninterrupted(tmp_path, reset):
    model = make_mlp()
    torch.manual_seed(42)
    uninterrupted = lottery_ticket(model, sgd_train, rounds=3, amount=0.25, reset=reset, checkpoint_dir=tmp_path / "a", progress=False)
    final_state = {k: v.clone() for k, v in model.state_dict().items()}

    first = make_mlp()
    torch.manual_seed(42)
    partial = lottery_ticket(first, sgd_train, rounds=2, amount=0.25, reset=reset, checkpoint_dir=tmp_path / "b", progress=False)
    assert partial == uninterrupted[:2]

    calls = []

    def counting_train(m: nn.Module, r: int) -> dict:
        calls.append(r)
        return sgd_train(m, r)

    resumed_model = make_mlp(seed=99)  # a different model object and init: everything comes from the checkpoint
    torch.manual_seed(12345)  # a different global RNG state: the checkpoint restores it
    resumed = lottery_ticket(resumed_model, counting_train, rounds=3, amount=0.25, reset=reset, checkpoint_dir=tmp_path / "b", progress=False)
    assert calls == [2]
    assert resumed == uninterrupted
    state = resumed_model.state_dict()
    assert state.keys() == final_state.keys()
    assert all(torch.equal(state[k], final_state[k]) for k in state)

    checkpoint = load_checkpoint(tmp_path / "b" / "lottery.pt")  # weights_only=True
    assert checkpoint["round"] == 2 and checkpoint["records"] == uninterrupted
    assert {"0.weight_orig", "0.weight_mask"} <= checkpoint["state_dict"].keys()
    assert "0.weight" in checkpoint["theta_0"]

    # finished: calling again trains nothing and returns the records
    calls.clear()
    again = lottery_ticket(make_mlp(), counting_train, rounds=3, amount=0.25, reset=reset, checkpoint_dir=tmp_path / "b", progress=False)
    assert calls == [] and again == uninterrupted
    with pytest.raises(ValueError, match="rounds"):
        lottery_ticket(make_mlp(), counting_train, rounds=2, amount=0.25, reset=reset, checkpoint_dir=tmp_path / "b", progress=False)
    with pytest.raises(ValueError, match="amount"):
        lottery_ticket(make_mlp(), counting_train, rounds=4, amount=0.5, reset=reset, checkpoint_dir=tmp_path / "b", progress=False)


def test_lottery_ticket_argument_validation():
    model = make_mlp()
    bad = [
        dict(rounds=0), dict(rounds=2.5), dict(amount=0.0), dict(amount=1.0), dict(amount=-0.2),
        dict(reset="reinit"), dict(output_amount=1.0), dict(seed=-1),
    ]
    for override in bad:
        kwargs = dict(rounds=2, amount=0.2, progress=False) | override
        name = next(iter(override))
        with pytest.raises(ValueError, match=name):
            lottery_ticket(model, sgd_train, **kwargs)
    with pytest.raises(ValueError, match="reserved"):
        lottery_ticket(model, lambda m, r: {"density": 1.0}, rounds=1, amount=0.2, progress=False)
    with pytest.raises(ValueError, match="dict"):
        lottery_ticket(model, lambda m, r: 0.5, rounds=1, amount=0.2, progress=False)
