"""Chapter 1's training recipes (helpers.train.adversarial) key their checkpoints exactly as the notebooks did, so
models cached by earlier builds still load; and their attacks are the notebooks' attacks."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from helpers import cache
from helpers.attacks import Attack, pgd_attack
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
