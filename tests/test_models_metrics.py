"""Models of Chapter 1, accuracy, device and seeding."""
from __future__ import annotations

import pytest
import torch

import helpers
from helpers.metrics import accuracy, predictions
from helpers.models import CAPACITY_SCALES, MLP, BinaryFeatureCNN, capacity_cnn, count_parameters


def test_capacity_widths_double_per_scale_and_counts_grow_fourfold():
    counts = [count_parameters(capacity_cnn(s)) for s in sorted(CAPACITY_SCALES)]
    for s in range(1, 6):
        c1, c2, fc, _ = CAPACITY_SCALES[s]
        assert (c1, c2, fc) == tuple(2 * v for v in CAPACITY_SCALES[s - 1][:3])
        assert 3.5 < counts[s] / counts[s - 1] < 4.5
    # Madry's net with 'same' padding: 5x5 convs, FC on the 7x7 map (hand count for scale 0)
    assert counts[0] == (25 * 2 + 2) + (25 * 2 * 4 + 4) + (7 * 7 * 4 * 100 + 100) + (100 * 10 + 10)


def test_capacity_cnn_output_and_bad_scale():
    assert capacity_cnn(1)(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    with pytest.raises(ValueError, match="scale"):
        capacity_cnn(6)


def test_binary_feature_cnn_has_100_features_and_one_logit():
    model = BinaryFeatureCNN(100)
    x = torch.rand(5, 1, 28, 28)
    assert model.features(x).shape == (5, 100)
    assert model(x).shape == (5,)
    assert torch.allclose(model(x), model.head(model.features(x)).squeeze(-1))


def test_mlp_layers():
    model = MLP(784, (300, 100, 100), 10)
    widths = [(m.in_features, m.out_features) for m in model if isinstance(m, torch.nn.Linear)]
    assert widths == [(784, 300), (300, 100), (100, 100), (100, 10)]
    with pytest.raises(ValueError, match="widths"):
        MLP(784, (0,), 10)


def test_accuracy_multiclass_and_binary():
    assert accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0])) == 0.5
    assert predictions(torch.tensor([-1.0, 2.0])).tolist() == [0, 1]
    with pytest.raises(ValueError):
        accuracy(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))


def test_seed_everything_is_deterministic_and_validates():
    g1 = helpers.seed_everything(3)
    a = torch.rand(3), torch.rand(3, generator=g1)
    g2 = helpers.seed_everything(3)
    b = torch.rand(3), torch.rand(3, generator=g2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="seed"):
        helpers.seed_everything(-1)


def test_device_respects_override(monkeypatch):
    monkeypatch.setenv("BOOK_DEVICE", "cpu")
    assert helpers.device() == torch.device("cpu")
    monkeypatch.delenv("BOOK_DEVICE")
    assert helpers.device().type in {"cpu", "cuda", "mps"}


def test_limit_cpu_threads_sets_cpu_threads_only():
    before = torch.get_num_threads()
    try:
        helpers.limit_cpu_threads(torch.device("cpu"), 1)
        assert torch.get_num_threads() == 1
        helpers.limit_cpu_threads(torch.device("meta"), 2)  # not the CPU: untouched
        assert torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="threads"):
            helpers.limit_cpu_threads(torch.device("cpu"), 0)
    finally:
        torch.set_num_threads(before)
