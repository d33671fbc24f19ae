"""The counting net's official training recipe (thesis Sec. 2.2; the official Counting/learn.py): plain SGD, lr x0.1
after each third of training, 0..255 pixels. What the paper row builds, checked against a hand-written SGD loop."""
from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

import helpers.train.loop as loop
from helpers.models.counting import CountingCNN
from helpers.shapes import make_shapes
from helpers.train.counting import count_loss, thirds_lr, train_counter
from notebook_params import open_run

LAYERS = ((4, 5, 2, 2), (4, 3, 2, 1))


def tiny_net(seed: int = 0, pixel_scale: float = 1.0) -> CountingCNN:
    torch.manual_seed(seed)
    return CountingCNN("softplus", image_size=32, layers=LAYERS, pixel_scale=pixel_scale)


def test_thirds_lr_is_the_official_step_shift_at_epoch_granularity():
    rates = [thirds_lr(0.07, e, 100) for e in range(100)]
    assert rates[:34] == [0.07] * 34  # epoch 34 is the first to start past a third of the iterations
    assert rates[34:67] == [pytest.approx(0.007)] * 33 and rates[67:] == [pytest.approx(0.0007)] * 33
    assert [thirds_lr(1.0, e, 3) for e in range(3)] == [1.0, pytest.approx(0.1), pytest.approx(0.01)]
    assert thirds_lr(0.5, 0, 1) == 0.5  # one epoch: no step
    for kwargs, name in ((dict(lr=0.0, epoch=0, epochs=3), "lr"), (dict(lr=0.1, epoch=3, epochs=3), "epoch"),
                         (dict(lr=0.1, epoch=0, epochs=0), "epochs")):
        with pytest.raises(ValueError, match=f"^{name} must be"):
            thirds_lr(**kwargs)


def test_train_counter_builds_plain_sgd_with_the_thirds_schedule(monkeypatch):
    built = []
    original = loop.make_optimizer
    monkeypatch.setattr(loop, "make_optimizer", lambda *a, **k: built.append(original(*a, **k)) or built[-1])
    data = make_shapes(4, image_size=32, limit=2, scale=(4, 6), seed=1)
    history = train_counter(tiny_net(), data, epochs=6, lr=0.01, batch_size=2, optimizer="sgd", lr_schedule="thirds",
                            progress=False)
    (opt,) = built
    assert type(opt) is torch.optim.SGD
    assert [(g["momentum"], g["nesterov"], g["weight_decay"], g["dampening"]) for g in opt.param_groups] == [(0.0, False, 0.0, 0)]
    assert [r["lr"] for r in history] == pytest.approx([0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001])
    with pytest.raises(ValueError, match="^lr_schedule must be one of"):
        train_counter(tiny_net(), data, epochs=1, lr=0.01, lr_schedule="cosine", progress=False)
    with pytest.raises(ValueError, match="^momentum must be"):
        train_counter(tiny_net(), data, epochs=1, lr=0.01, momentum=1.0, progress=False)


def test_train_counter_updates_are_plain_sgd_steps_at_the_scheduled_rates():
    """Four copies of one image, batches of 2: every batch is the same, so the order of batches cannot matter and
    6 epochs x 2 steps of fit must equal 12 hand-written steps w <- w - lr_e * grad (no momentum)."""
    one = make_shapes(1, image_size=32, limit=2, scale=(4, 6), seed=3)
    data = SimpleNamespace(x=one.x.repeat(4, 1, 1, 1), counts=one.counts.repeat(4, 1) + 1.0)
    net = tiny_net(pixel_scale=255.0)
    by_hand = copy.deepcopy(net)
    train_counter(net, data, epochs=6, lr=1e-6, batch_size=2, optimizer="sgd", lr_schedule="thirds", progress=False)
    by_hand.train()
    for epoch in range(6):
        for _ in range(2):
            by_hand.zero_grad()
            count_loss(by_hand(data.x[:2]), data.counts[:2]).mean().backward()
            with torch.no_grad():
                for p in by_hand.parameters():
                    p -= thirds_lr(1e-6, epoch, 6) * p.grad
    for (name, a), b in zip(net.named_parameters(), by_hand.parameters()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7), name
    moved = [not torch.equal(a, b) for a, b in zip(net.parameters(), tiny_net(pixel_scale=255.0).parameters())]
    assert any(moved)


def test_pixel_scale_makes_the_net_a_function_of_0_255_pixels():
    x = make_shapes(3, image_size=32, limit=2, scale=(4, 6), seed=2).x
    scaled, plain = tiny_net(pixel_scale=255.0).eval(), tiny_net().eval()
    assert torch.allclose(scaled(x), plain(255 * x), rtol=1e-5, atol=1e-5)
    assert isinstance(scaled.body[0], torch.nn.Conv2d)  # the first convolution stays body[0]
    with pytest.raises(ValueError, match="^pixel_scale must be"):
        tiny_net(pixel_scale=0.0)


def test_the_paper_row_trains_as_the_official_script():
    cfg = open_run("ch5_representation", "counting", SCALE="paper").config
    assert (cfg["OPTIMIZER"], cfg["MOMENTUM"], cfg["LR"], cfg["LR_SCHEDULE"], cfg["PIXEL_SCALE"]) == ("sgd", 0.0, 0.07, "thirds", 255.0)
    assert (cfg["BATCH_SIZE"], cfg["EPOCHS"]) == (20, 100)
