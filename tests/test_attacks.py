"""FGSM and PGD: invariants, equality with torchattacks, and argument checks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers.attacks import Attack, classification_loss, fgsm, pgd

torchattacks = pytest.importorskip("torchattacks")


def test_fgsm_matches_torchattacks(tiny_cnn, images):
    x, y = images
    ours = fgsm(tiny_cnn, x, y, eps=0.1)
    theirs = torchattacks.FGSM(tiny_cnn, eps=0.1)(x, y)
    assert torch.allclose(ours, theirs, atol=1e-6)


@pytest.mark.parametrize("steps", [1, 10])
def test_pgd_matches_torchattacks_without_random_start(tiny_cnn, images, steps):
    x, y = images
    ours = pgd(tiny_cnn, x, y, eps=0.3, alpha=0.01, steps=steps, random_start=False)
    theirs = torchattacks.PGD(tiny_cnn, eps=0.3, alpha=0.01, steps=steps, random_start=False)(x, y)
    assert torch.allclose(ours, theirs, atol=1e-6)


@pytest.mark.parametrize("random_start,restarts", [(True, 1), (True, 3), (False, 1)])
def test_pgd_stays_in_ball_and_image_range(tiny_cnn, images, random_start, restarts):
    x, y = images
    eps = 0.05
    adv = pgd(tiny_cnn, x, y, eps=eps, alpha=0.02, steps=5, random_start=random_start, restarts=restarts,
              generator=torch.Generator().manual_seed(0))
    assert (adv - x).abs().max() <= eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1


def test_fgsm_stays_in_ball_and_image_range(tiny_cnn, images):
    x, y = images
    adv = fgsm(tiny_cnn, x, y, eps=0.2)
    assert (adv - x).abs().max() <= 0.2 + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    # FGSM moves every pixel by exactly eps unless clipped at the image border
    moved = (adv - x).abs()
    inside = (x > 0.2) & (x < 0.8)
    assert torch.allclose(moved[inside], torch.full_like(moved[inside], 0.2), atol=1e-6)


def test_pgd_raises_loss_at_least_as_much_as_fgsm(tiny_cnn, images):
    x, y = images
    eps = 0.1
    with torch.no_grad():
        clean = F.cross_entropy(tiny_cnn(x), y).item()
        after_fgsm = F.cross_entropy(tiny_cnn(fgsm(tiny_cnn, x, y, eps)), y).item()
        after_pgd = F.cross_entropy(tiny_cnn(pgd(tiny_cnn, x, y, eps, alpha=0.01, steps=20, random_start=False)), y).item()
    assert after_fgsm > clean
    assert after_pgd >= after_fgsm - 1e-6


def test_restarts_never_worse_than_first_restart(tiny_cnn, images):
    x, y = images
    one = pgd(tiny_cnn, x, y, 0.1, 0.02, 3, generator=torch.Generator().manual_seed(5))
    many = pgd(tiny_cnn, x, y, 0.1, 0.02, 3, restarts=4, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert (classification_loss(tiny_cnn(many), y) >= classification_loss(tiny_cnn(one), y) - 1e-6).all()


def test_attack_leaves_model_mode_and_parameters_untouched(tiny_cnn, images):
    x, y = images
    tiny_cnn.train()
    before = [p.detach().clone() for p in tiny_cnn.parameters()]
    pgd(tiny_cnn, x, y, 0.1, 0.02, 3)
    assert tiny_cnn.training
    assert all(p.grad is None for p in tiny_cnn.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, tiny_cnn.parameters()))


def test_model_is_in_eval_mode_during_attack(images):
    seen = []

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(784, 10)

        def forward(self, x):
            seen.append(self.training)
            return self.lin(x.flatten(1))

    model = Spy().train()
    x, y = images
    fgsm(model, x, y, 0.1)
    pgd(model, x, y, 0.1, 0.01, 2)
    assert seen and not any(seen)


def test_same_generator_same_attack(tiny_cnn, images):
    x, y = images
    a = pgd(tiny_cnn, x, y, 0.1, 0.02, 3, generator=torch.Generator().manual_seed(3))
    b = pgd(tiny_cnn, x, y, 0.1, 0.02, 3, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_binary_logit_loss_is_supported(images):
    x, _ = images
    y = torch.randint(0, 2, (len(x),))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 1), torch.nn.Flatten(0))
    adv = pgd(model, x, y, 0.1, 0.05, 3, random_start=False)
    with torch.no_grad():
        assert classification_loss(model(adv), y).mean() > classification_loss(model(x), y).mean()


def test_attack_object_dispatches_and_describes(tiny_cnn, images):
    x, y = images
    assert torch.equal(Attack("fgsm", eps=0.1)(tiny_cnn, x, y), fgsm(tiny_cnn, x, y, 0.1))
    spec = Attack("pgd", eps=0.3, alpha=0.01, steps=40)
    assert spec.describe() == "PGD-40 eps=0.3 step=0.01"
    assert spec.as_dict()["steps"] == 40


@pytest.mark.parametrize("kwargs,match", [
    (dict(eps=-0.1, alpha=0.01, steps=1), "eps"),
    (dict(eps=0.1, alpha=-1.0, steps=1), "alpha"),
    (dict(eps=0.1, alpha=0.01, steps=-1), "steps"),
    (dict(eps=0.1, alpha=0.01, steps=1, restarts=0), "restarts"),
])
def test_pgd_rejects_bad_arguments(tiny_cnn, images, kwargs, match):
    x, y = images
    with pytest.raises(ValueError, match=match):
        pgd(tiny_cnn, x, y, **kwargs)


def test_attack_spec_rejects_bad_kind_and_settings():
    with pytest.raises(ValueError, match="kind"):
        Attack("cw", eps=0.1)
    with pytest.raises(ValueError, match="steps"):
        Attack("pgd", eps=0.1)
    with pytest.raises(ValueError, match="eps"):
        fgsm(torch.nn.Linear(1, 1), torch.zeros(1, 1), torch.zeros(1, dtype=torch.long), eps=-1)
