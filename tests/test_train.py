"""fit / evaluate: learning, determinism, checkpoint-resume, adversarial training, argument checks."""
from __future__ import annotations

import pytest
import torch

import helpers
from helpers.attacks import Attack
from helpers.models import MLP
from helpers.train import checkpoint_path, evaluate, fit


def blobs(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two separable classes of 1x8x8 'images' in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = (0.25 + 0.5 * y.view(-1, 1, 1, 1).float() + 0.1 * torch.randn(n, 1, 8, 8, generator=g)).clamp(0, 1)
    return x, y


def small_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return MLP(64, (16,), 2)


def params(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_fit_learns_separable_data():
    data = blobs()
    model = small_model()
    history = fit(model, data, epochs=5, lr=1e-2, batch_size=32, optimizer="adam", progress=False)
    assert len(history) == 5 and history[-1]["loss"] < history[0]["loss"]
    assert evaluate(model, data)["clean"] > 0.95


def test_same_seed_same_numbers():
    runs = []
    for _ in range(2):
        helpers.seed_everything(0)
        model = small_model()
        fit(model, blobs(), epochs=2, lr=1e-2, batch_size=32, attack=Attack("pgd", eps=0.1, alpha=0.05, steps=2), progress=False)
        runs.append(params(model))
    assert all(torch.equal(a, b) for a, b in zip(*runs))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resume_equals_uninterrupted(tmp_path, optimizer):
    attack = Attack("pgd", eps=0.1, alpha=0.05, steps=2)  # random starts use the checkpointed generator
    kwargs = dict(lr=1e-2, batch_size=32, optimizer=optimizer, attack=attack, progress=False)
    straight = small_model()
    h_straight = fit(straight, blobs(), epochs=3, **kwargs)

    ckpt = tmp_path / "run.pt"
    first = small_model()
    fit(first, blobs(), epochs=2, checkpoint=ckpt, **kwargs)
    resumed = small_model(seed=123)  # different init: everything must come from the checkpoint
    h_resumed = fit(resumed, blobs(), epochs=3, checkpoint=ckpt, **kwargs)

    assert all(torch.equal(a, b) for a, b in zip(params(straight), params(resumed)))
    assert [h["loss"] for h in h_resumed] == pytest.approx([h["loss"] for h in h_straight])
    assert not list(tmp_path.glob("*.tmp"))


def test_finished_checkpoint_loads_without_training(tmp_path):
    ckpt = tmp_path / "done.pt"
    trained = small_model()
    fit(trained, blobs(), epochs=2, lr=1e-2, checkpoint=ckpt, progress=False)
    loaded = small_model(seed=7)
    history = fit(loaded, blobs(), epochs=2, lr=1e-2, checkpoint=ckpt, progress=False)
    assert len(history) == 2
    assert all(torch.equal(a, b) for a, b in zip(params(trained), params(loaded)))


def test_checkpoint_with_other_settings_is_refused(tmp_path):
    ckpt = tmp_path / "run.pt"
    fit(small_model(), blobs(), epochs=1, lr=1e-2, checkpoint=ckpt, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        fit(small_model(), blobs(), epochs=1, lr=5e-2, checkpoint=ckpt, progress=False)


def test_checkpoint_path_is_keyed_by_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_DATA", str(tmp_path))
    a = checkpoint_path("cnn", scale=1, eps=0.3)
    assert a == checkpoint_path("cnn", eps=0.3, scale=1)
    assert a != checkpoint_path("cnn", scale=2, eps=0.3)
    assert a.parent == tmp_path / "checkpoints"


def test_adversarial_training_beats_clean_training_under_attack():
    data = blobs(512)
    attack = Attack("pgd", eps=0.2, alpha=0.05, steps=5)
    clean_model, robust_model = small_model(), small_model()
    fit(clean_model, data, epochs=8, lr=1e-2, batch_size=32, optimizer="adam", progress=False)
    fit(robust_model, data, epochs=8, lr=1e-2, batch_size=32, optimizer="adam", attack=attack, adv_weight=1.0, progress=False)
    test = blobs(256, seed=1)
    clean_scores = evaluate(clean_model, test, attack)
    robust_scores = evaluate(robust_model, test, attack)
    assert clean_scores["robust"] <= clean_scores["clean"]
    assert robust_scores["robust"] > clean_scores["robust"]


def test_evaluate_reports_clean_and_robust():
    model = small_model()
    scores = evaluate(model, blobs(64), Attack("fgsm", eps=0.3), batch_size=16)
    assert scores["n"] == 64 and 0 <= scores["robust"] <= 1 and 0 <= scores["clean"] <= 1
    assert evaluate(model, blobs(64))["robust"] is None


@pytest.mark.parametrize("kwargs,match", [
    (dict(epochs=-1, lr=0.1), "epochs"),
    (dict(epochs=1, lr=0.0), "lr"),
    (dict(epochs=1, lr=0.1, batch_size=0), "batch_size"),
    (dict(epochs=1, lr=0.1, optimizer="rmsprop"), "optimizer"),
    (dict(epochs=1, lr=0.1, adv_weight=1.5), "adv_weight"),
])
def test_fit_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit(small_model(), blobs(8), progress=False, **kwargs)


def test_fit_rejects_unknown_data():
    with pytest.raises(ValueError, match="data"):
        fit(small_model(), "mnist", epochs=1, lr=0.1, progress=False)


def test_step_loss_replaces_the_batch_loss():
    calls = []

    def doubled(model, x, y):
        out = model(x)
        calls.append(len(x))
        return 2 * torch.nn.functional.cross_entropy(out, y), out

    plain, custom = small_model(), small_model()
    fit(plain, blobs(64), epochs=1, lr=1e-2, batch_size=32, optimizer="sgd", momentum=0.0, progress=False)
    fit(custom, blobs(64), epochs=1, lr=5e-3, batch_size=32, optimizer="sgd", momentum=0.0, step_loss=doubled, progress=False)
    assert calls == [32, 32]
    # plain SGD: twice the loss at half the learning rate takes the same steps
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(params(plain), params(custom)))


def test_early_stopping_keeps_the_best_validation_epoch(tmp_path):
    train, val = blobs(128), blobs(64, seed=3)
    model = small_model()
    history = fit(model, train, epochs=30, lr=0.5, batch_size=16, validation=val, early_stopping=2,
                  checkpoint=tmp_path / "es.pt", progress=False)
    best = max(h["val_accuracy"] for h in history)
    best_epoch = next(h["epoch"] for h in history if h["val_accuracy"] == best)
    assert len(history) == best_epoch + 2 or len(history) == 30
    assert evaluate(model, val)["clean"] == pytest.approx(best)
    with pytest.raises(ValueError, match="validation"):
        fit(small_model(), train, epochs=1, lr=0.1, early_stopping=3, progress=False)


def test_checkpoint_with_more_epochs_than_asked_is_refused(tmp_path):
    ckpt = tmp_path / "long.pt"
    fit(small_model(), blobs(), epochs=2, lr=1e-2, checkpoint=ckpt, progress=False)
    with pytest.raises(ValueError, match="more than epochs"):
        fit(small_model(), blobs(), epochs=1, lr=1e-2, checkpoint=ckpt, progress=False)


def test_transfer_attack_crafts_on_the_source_model():
    data = blobs(64)
    target, source = small_model(0), small_model(1)
    fgsm = Attack("fgsm", eps=0.3)
    white = evaluate(target, data, fgsm)
    transfer = evaluate(target, data, fgsm, source=source)
    from helpers.attacks import fgsm as fgsm_fn
    with torch.no_grad():
        expected = (target(fgsm_fn(source, *data, 0.3)).argmax(1) == data[1]).float().mean().item()
    assert transfer["robust"] == pytest.approx(expected)
    assert white["clean"] == transfer["clean"]


def test_on_epoch_end_runs_after_each_epoch_and_extends_the_record():
    seen = []

    def hook(epoch, model, optimizer):
        seen.append((epoch, type(optimizer).__name__))
        return {"hook": epoch * 10}

    history = fit(small_model(), blobs(32), epochs=3, lr=1e-2, on_epoch_end=hook, progress=False)
    assert seen == [(0, "SGD"), (1, "SGD"), (2, "SGD")]
    assert [h["hook"] for h in history] == [0, 10, 20]


def test_sparse_momentum_through_fit_keeps_the_density():
    from helpers.pruning import SparseMomentum, density

    model = small_model()
    sm = SparseMomentum(model, 0.3, total_epochs=3)
    sm.apply_initial()
    fit(model, blobs(64), epochs=3, lr=1e-2, on_epoch_end=sm, progress=False)
    assert density(model) == pytest.approx(sm.target / sm.total)


def test_cosine_schedule_sets_every_step_and_ends_near_zero():
    from helpers.train import cosine_lr

    assert cosine_lr(0.1, 0, 10) == pytest.approx(0.1)
    assert cosine_lr(0.1, 5, 10) == pytest.approx(0.05)
    assert cosine_lr(0.1, 10, 10) == pytest.approx(0.0, abs=1e-12)
    seen = []

    def hook(epoch, model, optimizer):
        seen.append(optimizer.param_groups[0]["lr"])

    # 64 images, batch 32: 2 steps per epoch, 6 steps; the last step runs at step index 5 of 6
    history = fit(small_model(), blobs(64), epochs=3, lr=0.1, batch_size=32, lr_schedule="cosine", on_epoch_end=hook,
                  progress=False)
    expected = [cosine_lr(0.1, 2 * e + 1, 6) for e in range(3)]
    assert seen == pytest.approx(expected) and [h["lr"] for h in history] == pytest.approx(expected)


def test_new_options_leave_default_runs_and_their_checkpoints_unchanged(tmp_path):
    ckpt = tmp_path / "old.pt"
    model = small_model()
    fit(model, blobs(), epochs=1, lr=1e-2, checkpoint=ckpt, progress=False)
    state = torch.load(ckpt, weights_only=True)
    assert "lr_schedule" not in state["settings"] and "augment" not in state["settings"]
    plain = small_model()
    fit(plain, blobs(), epochs=1, lr=1e-2, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(params(model), params(plain)))


def test_crop_flip_moves_whole_images_and_is_seeded():
    from helpers.train import crop_flip

    x = torch.rand(16, 3, 8, 8)
    a = crop_flip(x, torch.Generator().manual_seed(1), padding=2)
    b = crop_flip(x, torch.Generator().manual_seed(1), padding=2)
    assert a.shape == x.shape and torch.equal(a, b)
    for orig, out in zip(x, a):  # each output is a shifted (and maybe flipped) copy: its pixels come from the image
        found = False
        for img in (orig, orig.flip(-1)):
            padded = torch.nn.functional.pad(img, (2, 2, 2, 2))
            found |= any(torch.equal(padded[:, dy:dy + 8, dx:dx + 8], out) for dy in range(5) for dx in range(5))
        assert found
    assert torch.equal(crop_flip(x, torch.Generator(), padding=0).flip(-1).unique(), x.unique())
    fit(small_model(), (torch.rand(32, 1, 8, 8), torch.randint(0, 2, (32,))), epochs=1, lr=1e-2, augment="crop_flip",
        progress=False)


@pytest.mark.parametrize("kwargs, match", [(dict(lr_schedule="step"), "lr_schedule must be one of"),
                                           (dict(augment="mixup"), "augment must be one of")])
def test_fit_rejects_unknown_schedule_or_augmentation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit(small_model(), blobs(32), epochs=1, lr=1e-2, progress=False, **kwargs)


def test_evaluate_per_example_scores_match_the_accuracies():
    import numpy as np

    from helpers.attacks import pgd_attack
    from helpers.train import evaluate

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x, y = torch.rand(37, 1, 4, 4), torch.randint(0, 3, (37,))
    out = evaluate(model, (x, y), attack=pgd_attack(0.1, 2), batch_size=10, per_example=True)
    assert out["clean_correct"].shape == (37,) and set(np.unique(out["clean_correct"])) <= {0.0, 1.0}
    assert out["clean_correct"].mean() == pytest.approx(out["clean"])
    assert out["robust_correct"].mean() == pytest.approx(out["robust"])
    assert "clean_correct" not in evaluate(model, (x, y))
