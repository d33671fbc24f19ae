"""L-infinity gradient attacks on images in [0, 1]: FGSM (Goodfellow et al. 2015) and PGD (Madry et al. 2018).

One implementation with options. The model is put in eval mode during the attack and restored after;
gradients are taken with respect to the input only, so no gradient is left on the model's parameters.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import checks, eval_mode

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def classification_loss(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample classification loss: cross-entropy for (N, K) logits, logistic loss for one logit (N,).

    The default loss of the attacks and of :func:`helpers.train.fit`; attacks ascend its sum.
    """
    if output.dim() == 1:
        return F.binary_cross_entropy_with_logits(output, y.to(output.dtype), reduction="none")
    return F.cross_entropy(output, y, reduction="none")


def _check(eps: float, name: str = "eps") -> None:
    if not (isinstance(eps, (int, float)) and eps >= 0):
        raise ValueError(f"{name} must be a number >= 0, got {eps!r}")


def _input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the summed per-sample loss w.r.t. ``x`` (never w.r.t. the parameters), and the losses."""
    with torch.enable_grad():  # attacks also work when called under torch.no_grad()
        x = x.detach().requires_grad_(True)
        losses = loss_fn(model(x), y)
        (grad,) = torch.autograd.grad(losses.sum(), x)
    return grad, losses.detach()


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, loss_fn: LossFn = classification_loss) -> torch.Tensor:
    """FGSM: x + eps * sign(grad_x loss), clipped to [0, 1] (Eq. 1 of Goodfellow et al.; Sec. II-A.1 of Paper 1).

    ``loss_fn(output, y)`` returns one loss per sample; the attack ascends it.
    """
    _check(eps)
    with eval_mode(model):
        grad, _ = _input_gradient(model, x, y, loss_fn)
    return (x.detach() + eps * grad.sign()).clamp(0, 1).detach()


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool = True,
    restarts: int = 1,
    loss_fn: LossFn = classification_loss,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L-inf PGD: x_{t+1} = Proj_{x+S}(x_t + alpha * sign(grad)), then clip to [0, 1] (Madry et al., Eq. 2 of Paper 1).

    With ``restarts > 1`` each sample keeps the restart with the highest final loss. ``generator`` drives the
    uniform random start in the eps-ball (torchattacks' order of operations, so it matches without it).
    """
    _check(eps)
    _check(alpha, "alpha")
    if not (isinstance(steps, int) and steps >= 0):
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    if not (isinstance(restarts, int) and restarts >= 1):
        raise ValueError(f"restarts must be an int >= 1, got {restarts!r}")
    x = x.detach()
    best, best_loss = x.clone(), None
    with eval_mode(model):
        for _ in range(restarts):
            adv = x.clone()
            if random_start:
                noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
                adv = (adv + (2 * noise - 1) * eps).clamp(0, 1)
            for _ in range(steps):
                grad, _ = _input_gradient(model, adv, y, loss_fn)
                adv = adv.detach() + alpha * grad.sign()
                delta = torch.clamp(adv - x, min=-eps, max=eps)
                adv = torch.clamp(x + delta, min=0, max=1).detach()
            if restarts == 1:
                return adv
            with torch.no_grad():
                loss = loss_fn(model(adv), y)
            if best_loss is None:
                best, best_loss = adv, loss
            else:
                better = loss > best_loss
                best = torch.where(better.view(-1, *([1] * (x.dim() - 1))), adv, best)
                best_loss = torch.where(better, loss, best_loss)
    return best


@dataclass(frozen=True)
class Attack:
    """A named, serialisable attack setting: ``Attack("pgd", eps=0.3, alpha=0.01, steps=40)``.

    Calling it runs :func:`fgsm` or :func:`pgd`; ``describe()`` gives a short label for tables.
    """

    kind: str
    eps: float
    alpha: float = 0.0
    steps: int = 0
    random_start: bool = True
    restarts: int = 1

    KINDS = ("fgsm", "pgd")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"kind must be one of {', '.join(self.KINDS)}; got {self.kind!r}")
        _check(self.eps)
        if self.kind == "pgd" and (self.steps < 1 or self.alpha <= 0):
            raise ValueError(f"a pgd Attack needs steps >= 1 and alpha > 0, got steps={self.steps}, alpha={self.alpha}")

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None, loss_fn: LossFn = classification_loss) -> torch.Tensor:
        if self.kind == "fgsm":
            return fgsm(model, x, y, self.eps, loss_fn=loss_fn)
        return pgd(model, x, y, self.eps, self.alpha, self.steps, self.random_start, self.restarts, loss_fn=loss_fn, generator=generator)

    def describe(self) -> str:
        if self.kind == "fgsm":
            return f"FGSM eps={self.eps:g}"
        extra = "" if self.random_start else ", no random start"
        extra += f", {self.restarts} restarts" if self.restarts > 1 else ""
        return f"PGD-{self.steps} eps={self.eps:g} step={self.alpha:g}{extra}"

    def as_dict(self) -> dict:
        return asdict(self)


def pgd_attack(eps: float, steps: int, step_fraction: float | None = None, *, decimals: int | None = None) -> Attack:
    """An L-inf PGD :class:`Attack` of ``steps`` steps of size ``step_fraction * eps`` (Madry et al. 2018, Eq. 2).

    ``step_fraction=None``: 2.5 / steps, Madry et al.'s rule (the walk can cross the eps-ball 2.5 times).
    ``decimals``: round the step to that many decimals (a step that reads as written, e.g. 0.25 rather than
    0.24999999999999997; Paper 1's capacity checkpoints are keyed by the step rounded to 6 decimals).
    """
    checks.number("eps", eps, 0, 1)
    checks.integer("steps", steps, low=1)
    fraction = 2.5 / steps if step_fraction is None else step_fraction
    if not (isinstance(fraction, (int, float)) and not isinstance(fraction, bool) and fraction > 0):
        raise ValueError(f"step_fraction must be a number > 0 or None, got {step_fraction!r}")
    alpha = max(fraction * eps, 1e-12)
    if decimals is not None:
        alpha = round(alpha, checks.integer("decimals", decimals, low=0))
    return Attack("pgd", eps=eps, alpha=alpha, steps=steps)
