"""Chapter 4's training recipes (FLOAT, OAT, PGD-AT, FLOATS): the once-for-all losses over lambda, slimmable
training, and the load-or-train factory :func:`train_once_for_all`, all built on :func:`helpers.train.fit`.
:func:`once_for_all_units` lists one ``helpers.units`` unit per model (variant, seed) and :func:`once_for_all_unit`
trains one; :func:`once_for_all_model` loads it again (the same checkpoint) in the notebook.

The conditioned layers themselves are in :mod:`helpers.models.conditioned`; this module only trains them.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from .. import checks, device, limit_cpu_threads
from ..attacks import Attack, classification_loss
from ..cache import fingerprint
from ..data import load_quietly
from ..models.conditioned import (FLOAT_EVAL_LAMBDAS, FLOAT_TRAIN_LAMBDAS, Conditioning, conditioned_on,
                                  set_lambda)
from ..models.resnet import cifar_resnet, resnet34
from ..models.slimmable import WIDTHS, set_width
from ..pruning.sparse_momentum import SparseMomentum
from .loop import AUGMENTATIONS, LR_SCHEDULES, StepLoss, checkpoint_path, fit

__all__ = ["sample_lambdas", "once_for_all_step_loss", "slimmable_step_loss", "METHODS", "ARCHS", "chapter_model",
           "train_once_for_all", "TRAINING_RULES", "training_settings", "training_work", "once_for_all_units",
           "once_for_all_unit", "once_for_all_model"]


def sample_lambdas(batch_size: int, choices: Sequence[float], generator: torch.Generator | None = None) -> Tensor:
    """Per-sample lambdas, OAT's element-wise sampling: ``ceil(B / |S|)`` zeros first, the rest uniform over S minus 0.

    With S = {0, 1} this is FLOAT's Algorithm 1: the first half clean (lambda = 0), the second adversarial.
    """
    checks.integer("batch_size", batch_size, low=1)
    values = sorted(checks.number("choices[i]", c, 0, 1) for c in choices)
    if not values:
        raise ValueError("choices must not be empty")
    nonzero = [c for c in values if c != 0]
    zeros = batch_size if not nonzero else (math.ceil(batch_size / len(values)) if values[0] == 0 else 0)
    picks = torch.randint(len(nonzero) or 1, (batch_size - zeros,), generator=generator)
    return torch.cat([torch.zeros(zeros), torch.tensor(nonzero or [0.0])[picks]])


def training_work(choices: Sequence[float], batch_size: int, attack_steps: int, batches: int = 1000,
                  seed: int = 0) -> float:
    """Forward-backward passes per training image that :func:`once_for_all_step_loss` makes, on average over
    ``batches`` batches of lambdas drawn by :func:`sample_lambdas` from ``choices``.

    Each lambda group costs one clean pass per image if lam < 1, and ``attack_steps`` attack steps plus one
    adversarial pass per image if lam > 0 (Eq. 3 as the hook computes it). The ratio of two methods' values is the
    work each does by construction: OAT with S = {0, 0.2, 0.7, 1} attacks 75% of a batch, FLOAT (S = {0, 1}) 50%.
    It ignores FiLM's own cost and the per-group overhead, which only a timing measures.
    """
    checks.integer("batch_size", batch_size, low=1)
    checks.integer("attack_steps", attack_steps, low=0)
    checks.integer("batches", batches, low=1)
    generator = torch.Generator().manual_seed(checks.integer("seed", seed, low=0))
    passes = 0.0
    for _ in range(batches):
        lams = sample_lambdas(batch_size, choices, generator)
        passes += float((lams < 1).sum()) + float((lams > 0).sum()) * (attack_steps + 1)
    return passes / (batches * batch_size)


def once_for_all_step_loss(attack: Callable[..., Tensor], lambda_choices: Sequence[float] = FLOAT_TRAIN_LAMBDAS,
                           generator: torch.Generator | None = None) -> StepLoss:
    """A ``fit(step_loss=...)`` hook: mean over the batch of (1 - lam) CE(x) + lam CE(x_adv) (Eq. 3; OAT; Alg. 1 of FLOAT).

    Lambdas come from :func:`sample_lambdas`; each lambda group runs at that lambda (clean pass if lam < 1,
    attack and adversarial pass if lam > 0). Pass the attack here, not to ``fit``. Outputs are clean logits for
    lam < 1 and adversarial logits for lam = 1. The model's previous lambda is restored after each step.
    Unlike OAT's code, which runs all lam > 0 samples through BN_a together, BN statistics are per lambda group.
    """
    choices = tuple(checks.number("lambda_choices[i]", c, 0, 1) for c in lambda_choices)
    if not choices:
        raise ValueError("lambda_choices must not be empty")

    def step_loss(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        lams = sample_lambdas(len(y), choices, generator).to(x.device)
        total, outputs = x.new_zeros(()), None
        for value in sorted(set(choices)):
            rows = (lams - value).abs().lt(1e-6).nonzero().squeeze(1)
            if len(rows) == 0:
                continue
            xs, ys = x[rows], y[rows]
            with conditioned_on(model, value):
                if value < 1:
                    out = model(xs)
                    total = total + (1 - value) * classification_loss(out, ys).sum()
                if value > 0:
                    x_adv = attack(model, xs, ys, generator=generator)
                    out_adv = model(x_adv)
                    total = total + value * classification_loss(out_adv, ys).sum()
                    out = out_adv if value == 1 else out
            if outputs is None:
                outputs = out.new_empty((len(y),) + tuple(out.shape[1:]))
            outputs[rows] = out.detach()
        return total / len(y), outputs

    return step_loss


def slimmable_step_loss(step_loss: StepLoss, widths: Sequence[float] = WIDTHS) -> StepLoss:
    """FLOATS slim training: the sum over the slimming factors of ``step_loss`` at each width (Sec. 3.2 of FLOAT).

    Yu et al.'s slimmable training (every width on every batch, one optimiser step on the summed gradients);
    the outputs returned are those of the widest network. The model is left at its widest width.
    """
    widths = tuple(sorted(widths, reverse=True))
    if not widths:
        raise ValueError("widths must not be empty")

    def step(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        total, outputs = x.new_zeros(()), None
        try:
            for width in widths:
                set_width(model, width)
                loss, out = step_loss(model, x, y)
                total = total + loss
                outputs = out if outputs is None else outputs
        finally:
            set_width(model, widths[0])
        return total, outputs

    return step


#: The models Chapter 4 trains with :func:`train_once_for_all`.
METHODS = ("float", "oat", "pgd-at", "floats-i", "floats-c", "floats-slim")
#: The networks :func:`chapter_model` builds: He et al.'s CIFAR ResNets (depth 6n + 2) and the paper's ResNet34.
ARCHS = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet34")
#: Rules for the training settings that Chapter 4's notebooks share (``book/ch4_float/scales.yml``); ``EPOCHS``,
#: ``TRAIN_N``, ``TEST_N``, ``BATCH_SIZE``, ``LR`` and ``WEIGHT_DECAY`` are in ``helpers.results.COMMON_RULES``.
TRAINING_RULES: dict[str, checks.Rule] = {
    "ARCH": checks.Choice(ARCHS),
    "WIDTH": checks.Integer(low=1),
    "LR_SCHEDULE": checks.Choice([s for s in LR_SCHEDULES if s is not None], optional=True),
    "AUGMENT": checks.Choice([a for a in AUGMENTATIONS if a is not None], optional=True),
}


def chapter_model(method: str, arch: str, num_classes: int, in_channels: int, width: int, *,
                  lambda_choices: Sequence[float] = FLOAT_EVAL_LAMBDAS, widths: Sequence[float] = WIDTHS,
                  film_identity_init: bool = True) -> nn.Module:
    """A fresh Chapter 4 network: ``arch`` "resnet<6n+2>" (He et al.'s CIFAR ResNet) or "resnet34", built for ``method``.

    FLOAT and FLOATS-i/-c: noisy weights + dual BN (Eq. 4); FLOATS slim: the same, slimmable at ``widths``;
    OAT: FiLM + dual BN with the rand lambda encoding of ``lambda_choices``; PGD-AT: the plain network.
    """
    checks.choice("method", method, METHODS)
    if method == "oat":
        conditioning = Conditioning("oat", lambda_choices=tuple(lambda_choices), film_identity_init=film_identity_init)
    elif method == "pgd-at":
        conditioning = Conditioning("none")
    else:
        conditioning = Conditioning("float", widths=tuple(widths) if method == "floats-slim" else None)
    if arch == "resnet34":
        return resnet34(num_classes, in_channels, width, conditioning=conditioning)
    depth = arch[len("resnet"):] if arch.startswith("resnet") else ""
    if not depth.isdigit():
        raise ValueError(f"arch must be 'resnet34' or 'resnet<depth>' with depth = 6n + 2 (e.g. resnet20), got {arch!r}")
    return cifar_resnet(int(depth), num_classes, in_channels, width, conditioning=conditioning)


def training_settings(config: Mapping[str, Any], *, attack: Callable[..., Tensor], seed: int = 0,
                      device: torch.device | str | None = None) -> dict:
    """The keyword arguments of :func:`train_once_for_all` from a Chapter 4 scale row (Sec. 4.1 of FLOAT's recipe).

    ``config`` holds ``ARCH, WIDTH, EPOCHS, LR, BATCH_SIZE, WEIGHT_DECAY, LR_SCHEDULE, AUGMENT`` (the rows of
    ``book/ch4_float/scales.yml``); the same row gives the same checkpoint in every notebook of the chapter.
    """
    missing = [k for k in ("ARCH", "WIDTH", "EPOCHS", "LR", "BATCH_SIZE", "WEIGHT_DECAY", "LR_SCHEDULE", "AUGMENT")
               if k not in config]
    if missing:
        raise ValueError(f"config lacks the training settings {', '.join(missing)} (see book/ch4_float/scales.yml)")
    if not callable(attack):
        raise ValueError(f"attack must be callable (model, x, y, generator=...) -> x_adv, got {attack!r}")
    return dict(attack=attack, arch=config["ARCH"], width=config["WIDTH"], epochs=config["EPOCHS"], lr=config["LR"],
                batch_size=config["BATCH_SIZE"], weight_decay=config["WEIGHT_DECAY"],
                lr_schedule=config["LR_SCHEDULE"], augment=config["AUGMENT"], seed=checks.integer("seed", seed, low=0),
                device=device)


def train_once_for_all(method: str, data, *, attack: Callable[..., Tensor], arch: str = "resnet20", width: int = 16,
                       epochs: int, lr: float, batch_size: int = 128, weight_decay: float = 5e-4,
                       lr_schedule: str | None = "cosine", augment: str | None = None, lam: float | None = None,
                       lambda_choices: Sequence[float] = FLOAT_EVAL_LAMBDAS, density: float | None = None,
                       widths: Sequence[float] = WIDTHS, film_identity_init: bool = True, seed: int = 0,
                       cache: bool = True, progress: bool = True, desc: str | None = None,
                       device: torch.device | str | None = None) -> tuple[nn.Module, list[dict]]:
    """Load-or-train one of Chapter 4's models through :func:`helpers.train.fit` (SGD, momentum 0.9); returns (model, history).

    ``method``: "float" (Algorithm 1 of FLOAT: half clean at lambda 0, half ``attack`` at lambda 1, loss
    0.5 L_C + 0.5 L_A); "oat" (lambda per image from ``lambda_choices``, (1 - lam) CE + lam CE_adv);
    "pgd-at" (a plain model with Eq. 3 at ``lam``; lam = 0 is standard training); "floats-i" / "floats-c"
    (FLOAT with sparse momentum at global ``density``, irregular / input-channel, Eq. 5); "floats-slim"
    (FLOAT at every width of ``widths`` per batch, with irregular sparse momentum at ``density``; None: dense).
    The checkpoint under the data root is keyed by every setting and the data (name, size, a hash of the
    labels), so notebooks asking for the same model share it; ``cache=False`` always trains afresh.
    """
    checks.choice("method", method, METHODS)
    if method == "pgd-at":
        lam = checks.number("lam", lam, 0, 1)
    elif lam is not None:
        raise ValueError(f"lam is the PGD-AT loss weight (Eq. 3); leave it None for method {method!r}, got {lam!r}")
    if method in ("floats-i", "floats-c") and density is None:
        raise ValueError(f"method {method!r} needs a global density in (0, 1], got density=None")
    if density is not None and method not in ("floats-i", "floats-c", "floats-slim"):
        raise ValueError(f"density applies to floats-i, floats-c and floats-slim only, got method {method!r}")
    x, y = (data.x, data.y) if hasattr(data, "x") else data
    num_classes = int(y.max()) + 1 if not hasattr(data, "num_classes") else int(data.num_classes)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    torch.manual_seed(seed)  # the same initial weights wherever the architectures agree
    model = chapter_model(method, arch, num_classes, int(x.shape[1]), width, lambda_choices=lambda_choices,
                          widths=widths, film_identity_init=film_identity_init).to(dev)
    generator = torch.Generator().manual_seed(seed)
    kwargs: dict = {}
    if method == "pgd-at":
        kwargs = dict(attack=attack, adv_weight=lam) if lam > 0 else {}
    elif method == "oat":
        kwargs = dict(step_loss=once_for_all_step_loss(attack, lambda_choices, generator))
    else:
        kwargs = dict(step_loss=once_for_all_step_loss(attack, FLOAT_TRAIN_LAMBDAS, generator))
        if method == "floats-slim":
            kwargs["step_loss"] = slimmable_step_loss(kwargs["step_loss"], widths)
    sparse = None
    if density is not None:
        sparse = SparseMomentum(model, density, total_epochs=max(epochs, 1), seed=seed,
                                structure="channel" if method == "floats-c" else "irregular")
        sparse.apply_initial()
        kwargs["on_epoch_end"] = sparse
    describe = getattr(attack, "as_dict", lambda: repr(attack))
    key = dict(method=method, arch=arch, width=width, lam=lam, density=density, attack=describe(),
               lambda_choices=list(lambda_choices) if method == "oat" else None,
               widths=list(widths) if method == "floats-slim" else None, film_identity_init=film_identity_init
               if method == "oat" else None, data=getattr(data, "name", "tensors"), n=len(y),
               labels=fingerprint(y, length=12), lr_schedule=lr_schedule,
               augment=augment, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay, seed=seed)
    checkpoint = checkpoint_path(f"ch4-{method}", **key) if cache else None
    try:
        history = fit(model, data, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
                      lr_schedule=lr_schedule, augment=augment, seed=seed, checkpoint=checkpoint, progress=progress,
                      desc=desc or method, **kwargs)
    finally:
        if sparse is not None:
            sparse.remove()  # the masks stay; no dense-gradient hooks left on the returned model
    if method not in ("pgd-at",):
        set_lambda(model, 0.0)
    return model, history


#: The scale-row keys that decide a Chapter 4 model's training (:func:`training_settings`).
TRAINING_KEYS = ("ARCH", "WIDTH", "EPOCHS", "LR", "BATCH_SIZE", "WEIGHT_DECAY", "LR_SCHEDULE", "AUGMENT")
#: The keywords of :func:`train_once_for_all` that a variant may set beside its method.
VARIANT_OPTIONS = ("lam", "lambda_choices", "density", "widths", "film_identity_init")


def once_for_all_units(dataset: str, variants: Mapping[str, Mapping[str, Any]], runs: Sequence[tuple[str, int]],
                       config: Mapping[str, Any], *, attack: Attack, train_n: int | None,
                       subset_seed: int) -> list[dict[str, Any]]:
    """The units of a Chapter 4 notebook (:func:`once_for_all_unit`): one per model ``(name, seed)`` of ``runs``, in
    that order, as plain settings. ``variants`` maps a name to its ``method`` and :data:`VARIANT_OPTIONS` keywords;
    ``config`` is the scale row (:data:`TRAINING_KEYS`), ``attack`` the training attack; the data is ``dataset``'s
    first ``train_n`` training images of a shuffle seeded with ``subset_seed`` (those of ``run.datasets``)."""
    checks.text("dataset", dataset)
    if not isinstance(attack, Attack):
        raise ValueError(f"attack must be a helpers.attacks.Attack (plain settings for a unit), got {attack!r}")
    missing = [k for k in TRAINING_KEYS if k not in config]
    if missing:
        raise ValueError(f"config lacks the training settings {', '.join(missing)} (see book/ch4_float/scales.yml)")
    out = []
    for name, seed in runs:
        if name not in variants:
            raise ValueError(f"runs names variant {name!r}; variants are {', '.join(map(repr, variants))}")
        variant = dict(variants[name])
        method = checks.choice(f"variants[{name!r}]['method']", variant.pop("method", None), METHODS)
        unknown = set(variant) - set(VARIANT_OPTIONS)
        if unknown:
            raise ValueError(f"variants[{name!r}] has {', '.join(sorted(unknown))}; a variant holds method and "
                             f"{', '.join(VARIANT_OPTIONS)}")
        out.append(dict(dataset=dataset, train_n=train_n, subset_seed=subset_seed, name=name, method=method,
                        seed=checks.integer("seed", seed, low=0), options=variant, attack=attack.as_dict(),
                        training={k: config[k] for k in TRAINING_KEYS}))
    return out


def once_for_all_model(settings: Mapping[str, Any], data, *, device: torch.device | str | None = None,
                       progress: bool = True) -> tuple[nn.Module, list[dict]]:
    """The model of one :func:`once_for_all_units` unit on ``data`` (its training subset), loaded from the unit's
    checkpoint (or trained, when no unit ran): :func:`train_once_for_all` with the unit's settings; (model, history)."""
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in settings["options"].items()}
    kwargs = training_settings(settings["training"], attack=Attack(**settings["attack"]), seed=settings["seed"],
                               device=device)
    return train_once_for_all(settings["method"], data, desc=f"{settings['name']} (seed {settings['seed']})",
                              progress=progress, **kwargs, **options)


def once_for_all_unit(settings: dict[str, Any]) -> dict[str, Any]:
    """One Chapter 4 model (a ``helpers.units`` unit): load the training subset ``settings`` names, then
    :func:`once_for_all_model` on the best device with one CPU thread (checkpointed after every epoch under the data
    root, so a rerun resumes). Returns the name, the seed and the training history."""
    dev = device()
    limit_cpu_threads(dev, 1)
    train = load_quietly(settings["dataset"], "train")
    if settings["train_n"]:
        train = train.subset(settings["train_n"], seed=settings["subset_seed"])
    _, history = once_for_all_model(settings, train, device=dev)
    return {"name": settings["name"], "seed": settings["seed"], "history": history}
