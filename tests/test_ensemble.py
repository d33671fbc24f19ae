"""helpers.train.ensemble: seeds trained together equal their single-seed runs."""
from __future__ import annotations

import pytest
import torch

import helpers
from helpers.attacks import Attack
from helpers.models import MLP, capacity_cnn
from helpers.train import fit
from helpers.train.ensemble import Stacked, fit_stacked


def nets(make, seeds):
    out = []
    for s in seeds:
        torch.manual_seed(100 + s)
        out.append(make())
    return out


@pytest.mark.parametrize("attack", [None, Attack("fgsm", eps=0.1)])
def test_each_stacked_seed_equals_its_single_seed_run(attack):
    torch.manual_seed(0)
    x, y = torch.rand(70, 1, 8, 8), torch.randint(0, 4, (70,))
    make = lambda: MLP(64, (16, 8), 4)  # noqa: E731
    seeds = [0, 1, 2]
    singles = nets(make, seeds)
    for model, seed in zip(singles, seeds):
        fit(model, (x, y), epochs=2, lr=0.05, batch_size=16, optimizer="adam", weight_decay=1e-4, attack=attack,
            seed=seed, progress=False)
    stacked, histories = fit_stacked(nets(make, seeds), (x, y), seeds=seeds, epochs=2, lr=0.05, batch_size=16,
                                     optimizer="adam", weight_decay=1e-4, attack=attack, progress=False)
    for single, together in zip(singles, stacked):
        for (name, a), b in zip(single.state_dict().items(), together.state_dict().values()):
            assert torch.allclose(a, b, atol=1e-5), name
    assert len(histories) == 3 and len(histories[0]) == 2 and {"loss", "train_accuracy"} <= set(histories[0][0])


def test_stacked_forward_is_each_network_on_its_own_batch():
    models = nets(lambda: capacity_cnn(1, num_classes=10), [0, 1])
    stacked = Stacked(models).eval()
    x = torch.rand(2 * 5, 1, 28, 28)
    out = stacked(x)
    with torch.no_grad():
        expect = torch.cat([models[0](x[:5]), models[1](x[5:])])
    assert torch.allclose(out, expect, atol=1e-5)
    assert [type(m) for m in stacked.unstack()] == [type(models[0])] * 2


def test_stacked_refuses_batch_norm_and_mixed_architectures():
    with pytest.raises(ValueError, match="batch normalisation"):
        Stacked([torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))])
    with pytest.raises(ValueError, match="one architecture"):
        Stacked([MLP(4, (2,), 2), torch.nn.Linear(4, 2)])
    with pytest.raises(ValueError, match="one seed per model"):
        fit_stacked([MLP(4, (2,), 2)], (torch.rand(4, 4), torch.zeros(4, dtype=torch.long)), seeds=[0, 1], epochs=1,
                    lr=0.1)
