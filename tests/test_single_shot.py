"""SNIP and GraSP against a direct autograd computation, exact top-k masks, random masks at given counts.

The expected scores are computed independently of the helpers: the loss as a pure function of one flat
weight vector, its gradient with ``torch.func.grad``, its Hessian with ``torch.func.hessian`` (so ``Hg`` is an
explicit matrix-vector product), and a finite-difference check of ``Hg`` in float64.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, hessian

from helpers.pruning import (
    apply_masks,
    grasp_scores,
    keep_top,
    layer_density,
    magnitude_scores,
    random_masks_like,
    single_shot_masks,
    snip_scores,
)


def tiny_net(dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """2 -> 3 -> 2 with tanh: 12 weights, smooth, so the Hessian is dense and non-zero."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2)).to(dtype)


def batch(dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(5, 2, generator=g).to(dtype), torch.randn(5, 2, generator=g).to(dtype)


def mse(model: nn.Module, b) -> torch.Tensor:
    x, y = b
    return ((model(x) - y) ** 2).mean()


NAMES = ["0.weight", "2.weight"]


def flat_loss(model: nn.Module, b):
    """The loss as a function of the flat vector of the two weight matrices (biases fixed)."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    shapes = [params[n].shape for n in NAMES]
    sizes = [params[n].numel() for n in NAMES]

    def f(theta: torch.Tensor) -> torch.Tensor:
        chunks = torch.split(theta, sizes)
        p = dict(params)
        p.update({n: c.reshape(s) for n, c, s in zip(NAMES, chunks, shapes)})
        x, y = b
        return ((functional_call(model, p, (x,)) - y) ** 2).mean()

    theta = torch.cat([params[n].reshape(-1) for n in NAMES])
    return f, theta, sizes


def unflat(vec: torch.Tensor, model: nn.Module, sizes) -> dict[str, torch.Tensor]:
    shapes = [dict(model.named_parameters())[n].shape for n in NAMES]
    return {n: c.reshape(s) for n, c, s in zip(NAMES, torch.split(vec, sizes), shapes)}


def test_snip_matches_direct_autograd():
    model, b = tiny_net(), batch()
    f, theta, sizes = flat_loss(model, b)
    expected = (grad(f)(theta) * theta).abs()
    expected = unflat(expected / expected.sum(), model, sizes)
    scores = snip_scores(model, mse, b)
    assert list(scores) == NAMES
    for n in NAMES:
        torch.testing.assert_close(scores[n], expected[n], rtol=1e-10, atol=1e-12)
    assert abs(sum(float(s.sum()) for s in scores.values()) - 1.0) < 1e-12


def test_grasp_matches_hessian_times_gradient():
    model, b = tiny_net(), batch()
    f, theta, sizes = flat_loss(model, b)
    g = grad(f)(theta)
    H = hessian(f)(theta)
    assert H.abs().max() > 1e-3  # the test network really has curvature
    expected = unflat(theta * (H @ g), model, sizes)
    scores = grasp_scores(model, mse, b)
    assert list(scores) == NAMES
    for n in NAMES:
        torch.testing.assert_close(scores[n], expected[n], rtol=1e-9, atol=1e-12)
    # Finite differences of the gradient along g: Hg ≈ (∇L(θ + εg) − ∇L(θ − εg)) / 2ε.
    eps = 1e-5
    hg_fd = (grad(f)(theta + eps * g) - grad(f)(theta - eps * g)) / (2 * eps)
    torch.testing.assert_close(theta * hg_fd, torch.cat([scores[n].reshape(-1) for n in NAMES]), rtol=1e-5, atol=1e-9)


def test_grasp_keeps_the_lowest_minus_theta_hg():
    """Keeping the highest θ⊙Hg removes the largest S(-θ) = -θ⊙Hg of Eq. 4, as the official code does."""
    model, b = tiny_net(), batch()
    f, theta, _ = flat_loss(model, b)
    s = -theta * (hessian(f)(theta) @ grad(f)(theta))  # Eq. 4
    n_remove = 5
    removed = set(torch.topk(s, n_remove).indices.tolist())
    masks = single_shot_masks(model, "grasp", mse, b, density=(s.numel() - n_remove) / s.numel())
    flat = torch.cat([masks[n].reshape(-1) for n in NAMES])
    assert set((flat == 0).nonzero().squeeze(1).tolist()) == removed


def test_snip_keeps_the_largest_sensitivity():
    model, b = tiny_net(), batch()
    f, theta, _ = flat_loss(model, b)
    s = (grad(f)(theta) * theta).abs()
    masks = single_shot_masks(model, "snip", mse, b, density=4 / 12)
    flat = torch.cat([masks[n].reshape(-1) for n in NAMES])
    assert set(flat.nonzero().squeeze(1).tolist()) == set(torch.topk(s, 4).indices.tolist())


@pytest.mark.parametrize("scorer", [snip_scores, grasp_scores])
def test_scoring_leaves_the_model_unchanged(scorer):
    model, b = tiny_net(), batch()
    model.eval()
    model[0].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scorer(model, mse, b)
    assert not model.training and not any(m.training for m in model.modules())
    assert model[0].weight.requires_grad is False and model[2].weight.requires_grad is True
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_scoring_sees_train_mode_and_restores_it():
    """Scores are computed in train mode (the mode of training) whatever mode the model was in."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 1)).eval()
    seen = []

    def loss(m, b):
        seen.append(m.training)
        return m(b).pow(2).mean()

    snip_scores(model, loss, torch.randn(3, 4))
    assert seen == [True] and not model.training


def test_masked_model_and_bad_losses_are_rejected():
    model, b = tiny_net(), batch()
    apply_masks(model, {"0.weight": torch.ones(3, 2)})
    with pytest.raises(ValueError, match="already carries pruning masks"):
        snip_scores(model, mse, b)
    with pytest.raises(ValueError, match="already carries pruning masks"):
        single_shot_masks(model, "grasp", mse, b, 0.5)
    model = tiny_net()
    with pytest.raises(ValueError, match="scalar"):
        grasp_scores(model, lambda m, bb: m(bb[0]), b)
    with pytest.raises(ValueError, match="does not depend"):
        snip_scores(model, lambda m, bb: torch.tensor(1.0), b)
    with pytest.raises(ValueError, match="loss_fn"):
        snip_scores(model, "mse", b)


def test_keep_top_exact_global_count_and_order():
    g = torch.Generator().manual_seed(0)
    scores = {"a": torch.rand(10, 7, generator=g), "b": torch.rand(33, generator=g) * 0.1, "c": torch.rand(3, 3, generator=g)}
    total = 70 + 33 + 9
    for density in (1 / total, 0.05, 0.3, 0.5, 0.999, 1.0):
        masks = keep_top(scores, density)
        assert {k: m.shape for k, m in masks.items()} == {k: s.shape for k, s in scores.items()}
        kept = sum(int(m.sum()) for m in masks.values())
        assert kept == round(density * total)
        flat_s = torch.cat([s.reshape(-1) for s in scores.values()])
        flat_m = torch.cat([m.reshape(-1) for m in masks.values()])
        if kept < total:
            assert flat_s[flat_m == 1].min() >= flat_s[flat_m == 0].max()  # global: the highest are kept
    # "b" holds the smallest scores: a global top-k at 50% removes all of it (a per-layer top-k would not).
    assert int(keep_top(scores, 0.5)["b"].sum()) == 0


def test_keep_top_ties_are_deterministic():
    scores = {"a": torch.ones(2, 3), "b": torch.ones(4)}
    masks = keep_top(scores, 0.5)
    assert masks["a"].reshape(-1).tolist() == [1, 1, 1, 1, 1, 0] and masks["b"].sum() == 0
    assert all(torch.equal(masks[k], keep_top(scores, 0.5)[k]) for k in masks)


@pytest.mark.parametrize("density", [0, 0.0, -0.1, 1.5, "0.5", True, float("nan")])
def test_keep_top_rejects_bad_density(density):
    with pytest.raises(ValueError, match="density"):
        keep_top({"a": torch.rand(10)}, density)


def test_keep_top_rejects_bad_scores():
    with pytest.raises(ValueError, match="scores"):
        keep_top({}, 0.5)
    with pytest.raises(ValueError, match="scores"):
        keep_top({"a": torch.tensor([1.0, float("nan")])}, 0.5)
    with pytest.raises(ValueError, match="keeps no weight"):
        keep_top({"a": torch.rand(10)}, 0.01)


def test_random_masks_like_keeps_per_layer_counts():
    g = torch.Generator().manual_seed(0)
    masks = keep_top({"a": torch.rand(20, 30, generator=g), "b": torch.rand(30, 5, generator=g) * 2}, 0.2)
    r1 = random_masks_like(masks, torch.Generator().manual_seed(1))
    r2 = random_masks_like(masks, torch.Generator().manual_seed(1))
    r3 = random_masks_like(masks, torch.Generator().manual_seed(2))
    assert layer_density(r1) == layer_density(masks)
    assert all(torch.equal(r1[k], r2[k]) for k in masks)  # same seed, same masks
    assert not torch.equal(r1["a"], r3["a"]) and not torch.equal(r1["a"], masks["a"])
    with pytest.raises(ValueError, match="generator"):
        random_masks_like(masks, 0)
    with pytest.raises(ValueError, match="masks"):
        random_masks_like({"a": torch.full((3,), 0.5)}, g)


def test_single_shot_masks_methods_and_groups():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 20), nn.ReLU(), nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 2)).float()
    b = (torch.randn(16, 6), torch.randn(16, 2))
    total = 120 + 400 + 40
    for method in ("snip", "grasp", "magnitude", "random"):
        masks = single_shot_masks(model, method, mse, b, 0.1, generator=torch.Generator().manual_seed(0))
        assert list(masks) == ["0.weight", "2.weight", "4.weight"]
        assert sum(int(m.sum()) for m in masks.values()) == round(0.1 * total)
    assert all(p.grad is None for p in model.parameters())
    # magnitude = the largest |θ| globally
    mag = magnitude_scores(model)
    masks = single_shot_masks(model, "magnitude", None, None, 0.1)
    flat_s, flat_m = torch.cat([s.reshape(-1) for s in mag.values()]), torch.cat([m.reshape(-1) for m in masks.values()])
    assert flat_s[flat_m == 1].min() >= flat_s[flat_m == 0].max()
    # groups: a separate exact top-k per group (e.g. the VAE's encoder and decoder)
    masks = single_shot_masks(model, "snip", mse, b, 0.25, groups=[["0.weight", "2.weight"], ["4.weight"]])
    assert int(masks["0.weight"].sum() + masks["2.weight"].sum()) == round(0.25 * 520)
    assert int(masks["4.weight"].sum()) == 10


def test_single_shot_masks_bad_arguments():
    model, b = tiny_net(), batch()
    with pytest.raises(ValueError, match="method"):
        single_shot_masks(model, "synflow", mse, b, 0.5)
    with pytest.raises(ValueError, match="density"):
        single_shot_masks(model, "snip", mse, b, 0.0)
    with pytest.raises(ValueError, match="generator"):
        single_shot_masks(model, "random", None, None, 0.5)
    with pytest.raises(ValueError, match="loss_fn"):
        single_shot_masks(model, "snip", None, b, 0.5)
    with pytest.raises(ValueError, match="groups"):
        single_shot_masks(model, "snip", mse, b, 0.5, groups=[["0.weight"]])
    with pytest.raises(ValueError, match="groups"):
        single_shot_masks(model, "snip", mse, b, 0.5, groups=[["0.weight", "nope"], ["2.weight"]])


def test_one_scorer_registry():
    """single_shot_masks dispatches through SCORERS (the registry helpers.rl uses too), with one signature."""
    from helpers.pruning import SCORERS, SINGLE_SHOT_METHODS

    assert SINGLE_SHOT_METHODS == (*SCORERS, "random") and set(SCORERS) == {"snip", "grasp", "magnitude"}
    model, b = tiny_net(), batch()
    for name, scorer in SCORERS.items():
        direct = scorer(model, mse, b)
        masks = single_shot_masks(model, name, mse, b, 0.5)
        assert all(torch.equal(masks[k], keep_top(direct, 0.5)[k]) for k in masks), name
