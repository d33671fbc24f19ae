"""Properties of sparse momentum (FLOATS-i / FLOATS-c) that a wrong implementation would break.

Exact global density after every prune/regrow step (SGD with momentum and Adam), Eq. 5 for channel
structure, zeros that survive optimiser steps, the dense gradient that feeds the momentum, pruning and
regrowth against a direct computation, regrowth at zero with fresh optimiser state, the cosine schedule.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from helpers.pruning import apply_masks, current_masks, effective_weights
from helpers.pruning.sparse_momentum import SparseMomentum, _allocate, cosine_death_rate


def make_mlp(seed: int = 0) -> nn.Sequential:
    """Tanh everywhere: every weight gets a non-zero gradient, so momentum has no ties."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 20), nn.Tanh(), nn.Linear(20, 16), nn.Tanh(), nn.Linear(16, 3))


def make_conv(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 6, 3), nn.Tanh(), nn.Conv2d(6, 8, 3), nn.Tanh(), nn.Flatten(), nn.Linear(8 * 2 * 2, 3)
    )


def make_batch(model: nn.Module, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (24, 6) if isinstance(model[0], nn.Linear) else (24, 2, 6, 6)
    return torch.randn(*shape, generator=g), torch.randint(0, 3, (24,), generator=g)


def make_optimizer(model: nn.Module, kind: str) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    return torch.optim.Adam(model.parameters(), lr=0.01)


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int, seed: int = 1) -> None:
    for step in range(steps):
        x, y = make_batch(model, seed + step)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def sparse_setup(kind: str, density: float, total_epochs: int, model: nn.Module | None = None, **kwargs):
    """A model, its optimiser and a SparseMomentum with its initial masks attached."""
    model = make_mlp() if model is None else model
    optimizer = make_optimizer(model, kind)
    sm = SparseMomentum(model, density, optimizer, total_epochs=total_epochs, **kwargs)
    sm.apply_initial()
    return model, optimizer, sm


def momentum_of(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> torch.Tensor:
    """Direct: SGD's momentum buffer, or Adam's exp_avg / (sqrt(exp_avg_sq) + 1e-8) (official sparse_learning)."""
    state = optimizer.state[param]
    if "exp_avg" in state:
        return state["exp_avg"] / (state["exp_avg_sq"].sqrt() + 1e-8)
    return state["momentum_buffer"]


def rows(tensor: torch.Tensor, structure: str) -> torch.Tensor:
    """Direct: one row per weight, or per input-channel slice tensor[:, c]."""
    if structure == "irregular":
        return tensor.reshape(-1, 1)
    return torch.stack([tensor[:, c].reshape(-1) for c in range(tensor.shape[1])])


def kept_count(model: nn.Module, names) -> int:
    masks = current_masks(model)
    return sum(int(masks[name].count_nonzero()) for name in names)


def test_initial_masks_are_exact_uniform_and_seeded():
    model = make_mlp()
    sm = SparseMomentum(model, 0.25, total_epochs=5, seed=3)
    masks = sm.apply_initial()
    total = 6 * 20 + 20 * 16 + 16 * 3
    assert sm.target == total // 4 == kept_count(model, masks)
    for mask in masks.values():  # every layer at density d, to one weight
        assert abs(int(mask.count_nonzero()) - 0.25 * mask.numel()) <= 1
    again = SparseMomentum(make_mlp(), 0.25, total_epochs=5, seed=3).apply_initial()
    other = SparseMomentum(make_mlp(), 0.25, total_epochs=5, seed=4).apply_initial()
    assert all(torch.equal(masks[n], again[n]) for n in masks)
    assert any(not torch.equal(masks[n], other[n]) for n in masks)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_global_density_stays_exact_over_several_steps(kind):
    model, optimizer, sm = sparse_setup(kind, 0.25, 6)
    changed = False
    for epoch in range(5):
        before = current_masks(model)
        train_steps(model, optimizer, 3, seed=10 * epoch)
        record = sm.step_epoch(epoch)
        assert kept_count(model, sm.params) == sm.target
        assert record["density"] == sm.target / sm.total == sm.managed_density()
        assert record["pruned"] == record["regrown"] > 0
        changed |= any(not torch.equal(before[n], m) for n, m in current_masks(model).items())
    assert changed


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_pruned_weights_stay_zero_between_mask_updates(kind):
    model, optimizer, sm = sparse_setup(kind, 0.3, 4)
    for epoch in range(3):
        train_steps(model, optimizer, 4, seed=epoch)
        masks, weights = current_masks(model), effective_weights(model)
        for name in sm.params:
            assert torch.all(weights[name][masks[name] == 0] == 0)
            x, _ = make_batch(model)
            model(x)  # the forward pass uses the masked weight too
            assert torch.all(sm.params[name][0].weight[masks[name] == 0] == 0)
        sm.step_epoch(epoch)


def test_weight_orig_receives_the_dense_gradient_and_input_gradients_do_not_leak():
    model = make_mlp()
    sm = SparseMomentum(model, 0.3, total_epochs=3)
    masks = sm.apply_initial()
    dense = make_mlp(seed=5)  # same architecture, no masks, weights set to the masked ones
    with torch.no_grad():
        for (name, (module, _)), target in zip(sm.params.items(), [dense[0], dense[2], dense[4]]):
            target.weight.copy_(effective_weights(model)[name])
            target.bias.copy_(module.bias)
    x, y = make_batch(model)
    x_attack = x.clone().requires_grad_(True)  # a PGD step: gradient w.r.t. the input only
    torch.autograd.grad(nn.functional.cross_entropy(model(x_attack), y), x_attack)
    nn.functional.cross_entropy(model(x), y).backward()
    nn.functional.cross_entropy(dense(x), y).backward()
    for (name, (module, _)), target in zip(sm.params.items(), [dense[0], dense[2], dense[4]]):
        assert torch.allclose(module.weight_orig.grad, target.weight.grad, atol=1e-7)
        assert module.weight_orig.grad[masks[name] == 0].abs().sum() > 0  # pruned weights get a gradient
    sm.remove()  # without the hooks, torch.nn.utils.prune gives pruned weights a zero gradient
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    for name, (module, _) in sm.params.items():
        assert torch.all(module.weight_orig.grad[masks[name] == 0] == 0)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("structure", ["irregular", "channel"])
def test_prune_and_regrow_match_a_direct_computation(kind, structure):
    model = make_mlp() if structure == "irregular" else make_conv()
    model, optimizer, sm = sparse_setup(kind, 0.4, 10, model=model, structure=structure)
    train_steps(model, optimizer, 5)
    masks, weights = current_masks(model), effective_weights(model)
    momenta = {name: momentum_of(optimizer, module.weight_orig).clone() for name, (module, _) in sm.params.items()}
    rate = sm.death_rate_at(0)
    sm.step_epoch(0)
    new_masks = current_masks(model)
    removed, grown, means = {}, {}, {}
    for name in sm.params:
        kept = rows(masks[name], structure).any(1)
        size = rows(masks[name], structure).shape[1]
        n_remove = min(math.ceil(rate * int(kept.sum())), int(kept.sum()) - 1)
        score = rows(weights[name], structure).pow(2).sum(1)
        score[~kept] = float("inf")
        survivors = kept.clone()
        survivors[torch.argsort(score)[:n_remove]] = False  # the n_remove smallest |w| / F-norms
        new_kept = rows(new_masks[name], structure).any(1)
        assert torch.all(new_kept[survivors])
        regrown = new_kept & ~survivors
        growth_score = rows(momenta[name], structure).pow(2).sum(1)
        growth_score[survivors] = -1.0
        expected = torch.zeros_like(kept)
        expected[torch.argsort(growth_score, descending=True)[: int(regrown.sum())]] = True
        assert torch.equal(regrown, expected)  # regrowth = the zeros with the largest momentum
        if structure == "channel":  # masks are whole input-channel slices
            assert torch.equal(rows(new_masks[name], structure).amin(1) > 0, new_kept)
        removed[name], grown[name] = n_remove * size, int(regrown.sum()) * size
        means[name] = momenta[name].abs()[masks[name] != 0].mean().item()
    if structure == "irregular":  # exact budget, split by mean momentum; layers that fill up pass the rest on
        assert sum(grown.values()) == sum(removed.values())
        full = {name for name in sm.params if bool(new_masks[name].all())}
        rest = sum(removed.values()) - sum(grown[name] for name in full)
        others = sum(means[name] for name in sm.params if name not in full)
        for name in set(sm.params) - full:
            assert abs(grown[name] - rest * means[name] / others) <= 1
        for name in full:
            assert means[name] / sum(means.values()) * sum(removed.values()) >= grown[name] - 1
    assert kept_count(model, sm.params) <= 0.4 * sm.total  # FLOAT Eq. 5


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_regrown_weights_start_at_zero_with_fresh_optimiser_state(kind):
    model, optimizer, sm = sparse_setup(kind, 0.25, 5)
    train_steps(model, optimizer, 4)
    before = current_masks(model)
    sm.step_epoch(0)
    after = current_masks(model)
    n_regrown = 0
    for name, (module, _) in sm.params.items():
        regrown = (after[name] != 0) & (before[name] == 0)
        n_regrown += int(regrown.sum())
        assert torch.all(module.weight_orig[regrown] == 0)
        for key in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
            if key in optimizer.state[module.weight_orig]:
                assert torch.all(optimizer.state[module.weight_orig][key][regrown] == 0)
    assert n_regrown > 0


def test_cosine_death_rate_matches_the_official_per_batch_schedule():
    epochs, batches = 8, 5
    sm = SparseMomentum(make_mlp(), 0.5, total_epochs=epochs)
    expected = [0.005 + 0.495 * (1 + math.cos(math.pi * (e + 1) / epochs)) / 2 for e in range(epochs)]
    assert [sm.death_rate_at(e) for e in range(epochs)] == pytest.approx(expected, abs=1e-12)
    assert sm.death_rate_at(3) == pytest.approx(0.2525)  # half way: (0.5 + 0.005) / 2
    assert sm.death_rate_at(epochs - 1) == pytest.approx(0.005)
    # Official: CosineDecay(0.5, len(loader) * epochs) (CosineAnnealingLR, eta_min 0.005) stepped every batch.
    holder = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.5)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(holder, batches * epochs, eta_min=0.005)
    for epoch in range(epochs):
        for _ in range(batches):
            holder.step()
            scheduler.step()
        assert holder.param_groups[0]["lr"] == pytest.approx(sm.death_rate_at(epoch), abs=1e-9)
    assert cosine_death_rate(0, 10) == 0.5
    constant = SparseMomentum(make_mlp(), 0.5, total_epochs=epochs, decay="constant", death_rate=0.3)
    assert [constant.death_rate_at(e) for e in range(epochs)] == [0.3] * epochs


def test_no_mask_change_after_the_last_epoch():
    model, optimizer, sm = sparse_setup("sgd", 0.3, 2)
    train_steps(model, optimizer, 2)
    before = current_masks(model)
    record = sm.step_epoch(1)
    assert record["pruned"] == record["regrown"] == 0
    assert all(torch.equal(before[n], m) for n, m in current_masks(model).items())


def test_channel_structure_keeps_eq5_and_one_channel_per_layer_over_steps():
    model, optimizer, sm = sparse_setup("sgd", 0.3, 6, model=make_conv(), structure="channel", death_rate=0.9)
    largest_slice = max(rows(m, "channel").shape[1] for m in current_masks(model).values())
    for epoch in range(5):
        train_steps(model, optimizer, 2, seed=epoch)
        sm.step_epoch(epoch)
        kept = kept_count(model, sm.params)
        assert sm.target - largest_slice < kept <= 0.3 * sm.total  # Eq. 5, met to within one slice
        for mask in current_masks(model).values():
            assert rows(mask, "channel").any(1).sum() >= 1


def test_callback_form_and_output_layer_exclusion():
    model = make_mlp()
    optimizer = make_optimizer(model, "sgd")
    sm = SparseMomentum(model, 0.3, total_epochs=3, include_output=False)
    sm.apply_initial()
    assert list(sm.params) == ["0.weight", "2.weight"]
    train_steps(model, optimizer, 2)
    record = sm(0, model, optimizer)  # the (epoch, model, optimizer) callback a training loop calls
    assert set(record) == {"death_rate", "pruned", "regrown", "density"}
    assert kept_count(model, sm.params) == sm.target == math.floor(0.3 * (120 + 320))
    assert int(current_masks(model)["4.weight"].count_nonzero()) == 48  # the head stays dense
    with pytest.raises(ValueError, match="model is not the model"):
        sm(1, make_mlp(), optimizer)


def test_allocation_passes_the_excess_of_full_layers_on():
    assert _allocate(10, [1.0, 0.0, 3.0], [1, 1, 1], [100, 100, 2]) == [8, 0, 2]
    assert _allocate(7, [1.0, 1.0], [1, 1], [3, 10]) == [3, 4]
    assert _allocate(10, [0.0, 0.0], [1, 1], [4, 8]) == [3, 7]  # no shares: in proportion to the room
    units = _allocate(20, [1.0, 1.0], [3, 4], [10, 10])  # slices: at most the budget, within one slice
    assert 20 - 4 < units[0] * 3 + units[1] * 4 <= 20


def test_argument_validation_names_the_parameter_and_the_allowed_values():
    model = make_mlp()
    sgd = make_optimizer(model, "sgd")
    cases = [
        (dict(density=0.0), "density must be a number in \\(0, 1\\]"),
        (dict(density=1.5), "density must be a number in \\(0, 1\\]; got 1.5"),
        (dict(density="half"), "density must be a number"),
        (dict(death_rate=1.0), "death_rate must be a number in \\[0, 1\\)"),
        (dict(min_death_rate=0.9), "min_death_rate must be a number in \\[0, 0.5\\]"),
        (dict(decay="linear"), "decay must be one of 'cosine', 'constant'; got 'linear'"),
        (dict(structure="filter"), "structure must be one of 'irregular', 'channel'; got 'filter'"),
        (dict(total_epochs=0), "total_epochs must be an int >= 1"),
        (dict(seed=-1), "seed must be an int >= 0"),
        (dict(optimizer=torch.optim.SGD(model.parameters(), lr=0.1)), "SGD needs momentum > 0"),
        (dict(optimizer=torch.optim.RMSprop(model.parameters())), "optimizer must be torch.optim.SGD"),
        (dict(optimizer=make_optimizer(make_mlp(), "sgd")), "optimizer does not hold"),
    ]
    for overrides, message in cases:
        kwargs = {"density": 0.3, "total_epochs": 3, **overrides}
        with pytest.raises(ValueError, match=message):
            SparseMomentum(model, **kwargs)
    sm = SparseMomentum(model, 0.3, sgd, total_epochs=3)
    with pytest.raises(ValueError, match="call apply_initial"):
        sm.step_epoch(0)
    sm.apply_initial()
    for epoch in (-1, 3, 1.0):
        with pytest.raises(ValueError, match="epoch must be an int in \\[0, 2\\]"):
            sm.step_epoch(epoch)
    with pytest.raises(ValueError, match="density 0.01 is too low for structure='channel'"):
        SparseMomentum(make_conv(), 0.01, total_epochs=3, structure="channel").apply_initial()
    with pytest.raises(ValueError, match="no prunable weights"):
        SparseMomentum(nn.Sequential(nn.ReLU()), 0.3, total_epochs=3)


def test_masks_are_the_books_masks():
    """apply_masks on top of sparse momentum replaces masks as everywhere else in the book."""
    model = make_mlp()
    sm = SparseMomentum(model, 0.3, total_epochs=3)
    sm.apply_initial()
    ones = {name: torch.ones_like(mask) for name, mask in current_masks(model).items()}
    apply_masks(model, ones)
    assert sm.managed_density() == 1.0
