"""Adversarial-training recipes of Paper 1 (Huang et al. 2020), each a load-or-train cache keyed by its own settings.

* :func:`train_capacity_cnn`: one capacity-scale CNN of Sec. III (Table I) trained with FGSM or PGD adversarial
  training, the 50/50 objective ``adv_weight * L(x_adv) + (1 - adv_weight) * L(x)`` (Goodfellow et al. 2015, Eq. 6);
* :func:`train_binary_feature_cnn`: the binary feature model of Sec. IV, standard or PGD-trained.

Each recipe builds its checkpoint key from its own arguments (:func:`capacity_settings`, ...), with the keys of the
book's first checkpoints, so models cached by earlier builds still load.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from .. import checks, seed_everything
from ..attacks import Attack, pgd_attack
from ..models import BinaryFeatureCNN, capacity_cnn
from .loop import OPTIMIZERS, checkpoint_path, fit

__all__ = ["CAPACITY_METHODS", "capacity_attack", "capacity_settings", "train_capacity_cnn",
           "binary_feature_settings", "train_binary_feature_cnn"]

#: Adversarial training methods of Sec. III: the attack that makes x_adv, and the label of its tables.
CAPACITY_METHODS = {"fgsm": "FGSM-AT", "pgd": "PGD-AT"}
#: Penultimate features of the binary model of Sec. IV ("100 features").
N_FEATURES = 100


def capacity_attack(method: str, eps: float, steps: int, step_fraction: float) -> Attack:
    """The attack of one capacity run, for training or evaluation: FGSM (Goodfellow et al., Eq. 6) or PGD of
    ``steps`` steps of ``step_fraction * eps`` (Madry et al., Eq. 2; the step rounded to 6 decimals)."""
    checks.choice("method", method, tuple(CAPACITY_METHODS))
    if method == "fgsm":
        return Attack("fgsm", eps=checks.number("eps", eps, 0, 1))
    return pgd_attack(eps, steps, step_fraction, decimals=6)


def capacity_settings(data, *, attack: Attack, epochs: int, optimizer: str, lr: float, momentum: float,
                      batch_size: int, adv_weight: float, seed: int) -> dict[str, Any]:
    """What decides a capacity model's weights, as its checkpoint key: the data used (name, size, subset seed:
    ``seed``), the optimisation and the training attack (Paper 1, Sec. III)."""
    return dict(dataset=data.name, train_n=len(data), subset_seed=seed, epochs=epochs, optimizer=optimizer, lr=lr,
                momentum=momentum, batch_size=batch_size, attack=attack.as_dict(), adv_weight=adv_weight, seed=seed)


def train_capacity_cnn(scale: int, data, attack: Attack, *, epochs: int, optimizer: str, lr: float, momentum: float,
                       batch_size: int, adv_weight: float, seed: int, device: torch.device | str,
                       progress: bool = True) -> tuple[nn.Module, list[dict]]:
    """Load or adversarially train the capacity-``scale`` CNN of Paper 1 (Table I) against ``attack`` (Sec. III).

    ``attack`` (from :func:`capacity_attack`) makes x_adv, and its kind names the method; training minimises
    Eq. 6 of Goodfellow et al. with ``adv_weight``. The weights start from ``seed`` (the same initial weights for
    both methods at one scale); ``data`` is the training subset drawn with ``seed``. Returns the model (eval mode)
    and :func:`~helpers.train.fit`'s history (a cached model keeps the history, so the times, of the run that
    trained it).
    """
    if not isinstance(attack, Attack) or attack.kind not in CAPACITY_METHODS:
        raise ValueError(f"attack must be an Attack of kind {', '.join(CAPACITY_METHODS)}; got {attack!r}")
    checks.integer("epochs", epochs, low=1)
    checks.choice("optimizer", optimizer, OPTIMIZERS)
    checks.number("adv_weight", adv_weight, 0, 1)
    seed_everything(seed)
    model = capacity_cnn(scale, num_classes=data.num_classes).to(device)
    settings = capacity_settings(data, attack=attack, epochs=epochs, optimizer=optimizer, lr=lr, momentum=momentum,
                                 batch_size=batch_size, adv_weight=adv_weight, seed=seed)
    history = fit(model, data, epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, momentum=momentum,
                  attack=attack, adv_weight=adv_weight, seed=seed, progress=progress,
                  desc=f"{CAPACITY_METHODS[attack.kind]} scale {scale} eps {attack.eps:g}",
                  checkpoint=checkpoint_path(f"capacity-{attack.kind}-scale{scale}", **settings))
    return model, history


def binary_feature_settings(data, *, epochs: int, lr: float, batch_size: int, optimizer: str, seed: int,
                            attack: Attack | None, adv_weight: float) -> dict[str, Any]:
    """What decides the weights of a binary feature model (Paper 1, Sec. IV), as its checkpoint key."""
    return dict(dataset=data.name, n=len(data), epochs=epochs, lr=lr, batch=batch_size, optimizer=optimizer,
                seed=seed, attack=attack.as_dict() if attack else None, adv_weight=adv_weight)


def train_binary_feature_cnn(tag: str, data, *, epochs: int, lr: float, batch_size: int, optimizer: str,
                             seed: int, device: torch.device | str, attack: Attack | None = None,
                             adv_weight: float = 0.5, progress: bool = True) -> BinaryFeatureCNN:
    """Load or train the binary ``BinaryFeatureCNN`` of Paper 1, Sec. IV (100 features, one logit), standard or,
    with ``attack``, adversarially (Goodfellow et al., Eq. 6 with ``adv_weight``); ``tag`` names its cache entry."""
    checks.text("tag", tag)
    checks.integer("epochs", epochs, low=1)
    torch.manual_seed(seed)
    model = BinaryFeatureCNN(n_features=N_FEATURES).to(device)
    settings = binary_feature_settings(data, epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer,
                                       seed=seed, attack=attack, adv_weight=adv_weight)
    fit(model, data, epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, attack=attack,
        adv_weight=adv_weight, seed=seed, checkpoint=checkpoint_path(f"ch1-feature-usefulness-{tag}", **settings),
        progress=progress, desc=tag)
    return model.eval()
