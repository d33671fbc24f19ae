"""AutoAttack's ``rand`` version for randomised defences, through torchattacks (Croce & Hein 2020).

The ``rand`` version of the official fra31/auto-attack runs APGD on the cross-entropy loss, then APGD on the
DLR loss on the images still classified correctly, each with expectation over transformation (EOT): every
step averages the gradient of ``eot_iter`` forward passes, which a model with random weight noise (FLOAT at
lambda_n > 0) needs. torchattacks ships the ensemble (``torchattacks.AutoAttack(version="rand")``) but with its
APGD default of 10 iterations; :class:`AutoAttackRand` builds the same ensemble from ``torchattacks.APGD`` with
the official 100 iterations and 20 EOT samples by default, both configurable for small-scale runs.
(!) torchattacks' APGD can give slightly different numbers from the official code.

It has the call signature of :class:`~helpers.attacks.Attack`, so ``helpers.train.evaluate(model, data,
attack=AutoAttackRand(eps=8 / 255))`` works unchanged.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from .. import checks, eval_mode

__all__ = ["AutoAttackRand"]


@dataclass(frozen=True)
class AutoAttackRand:
    """APGD-CE then APGD-DLR, each with ``eot_iter`` EOT samples and ``steps`` iterations (AutoAttack ``rand``).

    Croce & Hein 2020, version "rand" (official: steps 100, eot_iter 20, one restart each); L-inf ball of ``eps``.
    ``seed`` fixes APGD's random start; the model's own randomness is left alone (it is what EOT averages over).
    """

    eps: float = 8 / 255
    steps: int = 100
    eot_iter: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        checks.number("eps", self.eps, 0, 1, low_open=True)
        checks.integer("steps", self.steps, low=1)
        checks.integer("eot_iter", self.eot_iter, low=1)
        checks.integer("seed", self.seed, low=0)

    def as_dict(self) -> dict:
        """The settings, for checkpoint keys and result records."""
        return {"kind": "autoattack-rand", **asdict(self)}

    def describe(self) -> str:
        """A one-line name, e.g. ``AutoAttack-rand eps=0.0314 (APGD-CE + APGD-DLR, 100 steps, EOT 20)``."""
        return f"AutoAttack-rand eps={self.eps:.3g} (APGD-CE + APGD-DLR, {self.steps} steps, EOT {self.eot_iter})"

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None,
                 loss_fn=None) -> torch.Tensor:
        """Adversarial images for ``model`` (run in eval mode) from clean ``x`` in [0, 1] with labels ``y``.

        ``generator`` and ``loss_fn`` are accepted for :class:`~helpers.attacks.Attack` compatibility and unused
        (APGD's losses are CE and DLR; its start is seeded by ``seed``).
        """
        import torchattacks

        with eval_mode(model):
            attacks = [torchattacks.APGD(model, norm="Linf", eps=self.eps, steps=self.steps, n_restarts=1,
                                         seed=self.seed, loss=loss, eot_iter=self.eot_iter) for loss in ("ce", "dlr")]
            ensemble = torchattacks.MultiAttack(attacks)
            return ensemble(x, y).detach()
