"""Chapter 1's recipes (helpers.train.adversarial, helpers.pruning.lottery) key their checkpoints exactly as the
notebooks did, so models cached by earlier builds still load, and compute what the notebooks computed."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from helpers import cache
from helpers.attacks import Attack, pgd_attack
from helpers.models import MLP
from helpers.pruning import declines_at, density_schedule, holds_down_to, layer_density, lottery_ticket
from helpers.train import adversarial


class FakeData(SimpleNamespace):
    def __len__(self) -> int:
        return self.n


def old_capacity_attack(method: str, eps: float, steps: int, step_over_eps: float) -> Attack:
    """capacity.ipynb's former ``attack_for``."""
    if method == "fgsm":
        return Attack("fgsm", eps=eps)
    return Attack("pgd", eps=eps, alpha=round(step_over_eps * eps, 6), steps=steps)


@pytest.mark.parametrize("method, steps, fraction", [("fgsm", 3, 2.5 / 3), ("pgd", 3, 2.5 / 3), ("pgd", 5, 2.5 / 5),
                                                     ("pgd", 40, 1 / 30), ("pgd", 7, 0.3)])
@pytest.mark.parametrize("eps", [0.3, 0.1])
def test_capacity_attack_is_the_notebooks_former_attack_for(method, steps, fraction, eps):
    assert adversarial.capacity_attack(method, eps, steps, fraction) == old_capacity_attack(method, eps, steps, fraction)


@pytest.mark.parametrize("method, digest", [("fgsm", "77241f79b910"), ("pgd", "81767edef5f8")])
def test_capacity_settings_give_the_digest_of_the_hand_built_key(method, digest):
    """The smoke-scale checkpoints of capacity.ipynb before the recipe moved were capacity-<method>-scale<s>-<digest>."""
    train = FakeData(name="fashion-mnist", n=256)
    attack = adversarial.capacity_attack(method, 0.3, 3, 2.5 / 3)
    hand_built = dict(dataset=train.name, train_n=len(train), subset_seed=0, epochs=1, optimizer="adam", lr=1e-3,
                      momentum=0.9, batch_size=128, attack=attack.as_dict(), adv_weight=0.5, seed=0)
    settings = adversarial.capacity_settings(train, attack=attack, epochs=1, optimizer="adam", lr=1e-3, momentum=0.9,
                                             batch_size=128, adv_weight=0.5, seed=0)
    assert settings == hand_built
    assert cache.digest(settings) == digest


def test_train_capacity_cnn_refuses_a_bad_attack_and_zero_epochs():
    train = FakeData(name="fashion-mnist", n=4, num_classes=10)
    common = dict(epochs=1, optimizer="adam", lr=1e-3, momentum=0.9, batch_size=2, adv_weight=0.5, seed=0, device="cpu")
    with pytest.raises(ValueError, match="attack must be an Attack"):
        adversarial.train_capacity_cnn(0, train, "pgd", **common)
    with pytest.raises(ValueError, match="epochs must be an int >= 1; got 0"):
        adversarial.train_capacity_cnn(0, train, Attack("fgsm", eps=0.3), **{**common, "epochs": 0})
    with pytest.raises(ValueError, match="method must be one of"):
        adversarial.capacity_attack("cw", 0.3, 3, 0.5)


def test_pgd_attack_rounds_its_step_on_request():
    assert pgd_attack(0.3, 3, 0.7 / 3).alpha != 0.07 and pgd_attack(0.3, 3, 0.7 / 3, decimals=6).alpha == 0.07
    assert pgd_attack(0.3, 40) == pgd_attack(0.3, 40, decimals=None)


@pytest.mark.parametrize("tag, n, attack, digest", [
    ("standard", 300, None, "45ff9cf18d7d"), ("pgd-at", 64, Attack("pgd", eps=0.3, alpha=0.3, steps=1), "836410f6300c")])
def test_binary_feature_settings_give_the_digest_of_the_notebooks_key(tag, n, attack, digest):
    """feature_usefulness.ipynb's smoke checkpoints before the recipe moved: ch1-feature-usefulness-<tag>-<digest>."""
    data = FakeData(name="fashion-mnist", n=n)
    hand_built = dict(dataset=data.name, n=len(data), epochs=1, lr=1e-3, batch=128, optimizer="adam", seed=0,
                      attack=attack.as_dict() if attack else None, adv_weight=0.5)
    settings = adversarial.binary_feature_settings(data, epochs=1, lr=1e-3, batch_size=128, optimizer="adam", seed=0,
                                                   attack=attack, adv_weight=0.5)
    assert settings == hand_built and cache.digest(settings) == digest


# -- lottery tickets (Sec. V) ---------------------------------------------------------------------------------

def old_density_schedule(amount: float, steps: int) -> np.ndarray:
    """lottery_tickets.ipynb's former schedule, on MLP(784, (300, 100, 100), 10)."""
    sizes = layer_density(MLP(784, (300, 100, 100), 10))
    hidden_weights = sum(n for _, n in list(sizes.values())[:-1])
    output_weights = list(sizes.values())[-1][1]
    hidden, output, out = hidden_weights, output_weights, []
    for _ in range(steps + 1):
        out.append((hidden + output) / (hidden_weights + output_weights))
        hidden -= round(amount * hidden)
        output -= round(amount / 2 * output)
    return np.array(out)


@pytest.mark.parametrize("amount, steps", [(0.4, 2), (0.4, 11), (0.3, 40), (1 - 0.002 ** (1 / 40), 40)])
def test_density_schedule_is_the_notebooks_former_schedule_bit_for_bit(amount, steps):
    ours = density_schedule(MLP(*adversarial.LOTTERY_ARCH, 10), amount, steps)
    assert ours.tolist() == old_density_schedule(amount, steps).tolist()


def test_density_schedule_counts_what_lottery_ticket_prunes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 30), nn.ReLU(), nn.Linear(30, 4))
    x, y = torch.rand(16, 12), torch.randint(0, 4, (16,))
    records = lottery_ticket(model, lambda m, r: {"loss": nn.functional.cross_entropy(m(x), y).item()}, rounds=4,
                             amount=0.3, progress=False)
    torch.manual_seed(0)
    fresh = nn.Sequential(nn.Linear(12, 30), nn.ReLU(), nn.Linear(30, 4))
    assert [r["density"] for r in records] == pytest.approx(density_schedule(fresh, 0.3, 3).tolist(), abs=1e-12)
    with pytest.raises(ValueError, match="steps"):
        density_schedule(fresh, 0.3, -1)


def old_holds_down_to(c: pd.DataFrame, tol: float) -> float:
    ok = (c["clean"] >= c["clean"].iloc[0] - tol).to_numpy()
    first_bad = int(np.argmin(ok)) if not ok.all() else len(c)
    return float(c["density"].iloc[max(first_bad - 1, 0)])


def old_declines_at(c: pd.DataFrame, tol: float) -> float | None:
    below = (c["clean"] < c["clean"].iloc[0] - tol).to_numpy()
    if not below[-1]:
        return None
    start = len(below) - int(np.argmin(below[::-1])) if not below.all() else 0
    return float(c["density"].iloc[start])


@pytest.mark.parametrize("clean", [[0.9, 0.9, 0.89, 0.85, 0.8], [0.9, 0.91, 0.92], [0.9, 0.8, 0.9, 0.7],
                                   [0.9], [0.5, 0.52, 0.3, 0.31, 0.2], [0.9, 0.87, 0.95, 0.86, 0.85]])
def test_holds_and_declines_read_the_curve_as_the_notebook_did(clean):
    curve = pd.DataFrame({"clean": clean, "density": 0.6 ** np.arange(len(clean))})
    for tol in (0.015, 0.02, 0.03):
        assert holds_down_to(curve, tol) == old_holds_down_to(curve, tol)
        assert declines_at(curve, tol) == old_declines_at(curve, tol)
    assert holds_down_to({"clean": clean, "density": curve["density"].tolist()}, 0.015) == old_holds_down_to(curve, 0.015)


def test_holds_and_declines_refuse_a_curve_without_its_columns():
    with pytest.raises(ValueError, match="curve must map 'clean' and 'density'"):
        holds_down_to({"clean": [0.9]}, 0.01)
    with pytest.raises(ValueError, match="non-empty and of one length"):
        declines_at({"clean": [0.9, 0.8], "density": [1.0]}, 0.01)


def test_lottery_settings_give_the_digest_of_the_notebooks_folder():
    """lottery_tickets.ipynb's smoke run before the recipe moved kept its rounds in lottery_tickets-7af8dab9b03f."""
    train, test, pgd_test = FakeData(name="fashion-mnist", n=1000), FakeData(name="fashion-mnist", n=1000), \
        FakeData(name="fashion-mnist", n=50)
    fgsm, pgd = Attack("fgsm", eps=0.3), Attack("pgd", eps=0.3, alpha=0.01, steps=40)
    settings = adversarial.lottery_settings(train, test, pgd_test, rounds=3, amount=0.4, epochs=1, lr=1.2e-3,
                                            batch_size=60, adv_weight=0.5, fgsm=fgsm, pgd=pgd, seed=0)
    assert cache.digest(settings) == "7af8dab9b03f"
    assert adversarial.lottery_settings(train, test, None, rounds=3, amount=0.4, epochs=1, lr=1.2e-3, batch_size=60,
                                        adv_weight=0.5, fgsm=fgsm, pgd=pgd, seed=0)["pgd_n"] == 0


def test_lottery_runs_refuse_swapped_attacks_and_zero_epochs():
    data = FakeData(name="fashion-mnist", n=4, num_classes=10)
    fgsm, pgd = Attack("fgsm", eps=0.3), Attack("pgd", eps=0.3, alpha=0.01, steps=40)
    common = dict(rounds=2, amount=0.4, epochs=1, lr=1e-3, batch_size=2, adv_weight=0.5, seed=0, device="cpu")
    with pytest.raises(ValueError, match="fgsm must be an Attack of kind 'fgsm'"):
        adversarial.lottery_runs(data, data, None, fgsm=pgd, pgd=pgd, **common)
    with pytest.raises(ValueError, match="epochs must be an int >= 1; got 0"):
        adversarial.lottery_runs(data, data, None, fgsm=fgsm, pgd=pgd, **{**common, "epochs": 0})
