"""Training recipes of the dynamic networks that GradAuto attacks: SkipNet's supervised pre-training (SP) and
hybrid-RL stage (HRL), SACT's ponder cost and ManiDP's sparsity penalty, trained with :func:`helpers.train.fit` and
cached under the data root.

The networks themselves are in :mod:`helpers.models.dynamic`; this module only trains them. It keeps the methods'
defaults (:data:`HRL_DEFAULTS`, :data:`DEFAULT_PENALTY`); the sizes of a run come from the caller
(:func:`recipe_net` takes a notebook's configuration, whose per-scale rows are in ``book/ch3_gradauto/scales.yml``).
:func:`recipe_units` lists one ``helpers.units`` unit per (seed, kind) and :func:`recipe_unit` trains one (the same
checkpoints as :func:`recipe_net`, which then loads them).
"""
from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .. import checks, limit_cpu_threads
from .. import device as default_device
from ..cache import fingerprint
from ..data import load_quietly
from ..io import atomic_torch_save, load_checkpoint
from ..metrics import accuracy, flops_reduction
from ..models.dynamic import DYNAMIC_KINDS, DynamicResNet, GateTrace, dynamic_resnet, policy_sampling
from .loop import AUGMENTATIONS, LR_SCHEDULES, OPTIMIZERS, checkpoint_path, fit, recalibrate_batchnorm

__all__ = ["DEFAULT_PENALTY", "HRL_DEFAULTS", "RECIPE_RULES", "hybrid_rl_loss", "trained_dynamic_net", "recipe_net",
           "recipe_units", "recipe_unit", "savings", "gate_statistics"]


#: Default computation-penalty weights per kind (tuned at book scale on the offline Fashion-MNIST substitute
#: so that each net skips a visible share of its FLOPs; see dynamic_networks.ipynb).
DEFAULT_PENALTY: dict[str, float] = {"depth": 0.5, "act": 0.5, "width": 0.4}

#: SkipNet's hybrid-RL stage, the official cifar/train_rl.py defaults: SGD (momentum 0.9) at 1e-4, weight decay 1e-4,
#: skipping reward alpha 0.1 shared by the gates, REINFORCE weight 0.01, gamma 1; 10k iterations of batch 128
#: (about 26 CIFAR-10 epochs).
HRL_DEFAULTS: dict = dict(epochs=26, lr=1e-4, optimizer="sgd", weight_decay=1e-4, alpha=0.1, rl_weight=0.01, gamma=1.0)



def _resnet_depth(low: int) -> checks.Rule:
    """A rule for a CIFAR ResNet depth 6n + 2 of at least ``low``."""
    def check(name: str, value) -> int:
        value = checks.integer(name, value, low=low)
        if (value - 2) % 6:
            raise ValueError(name)
        return value
    return checks.Rule(check, f"an int 6n + 2 >= {low} (14, 20, 32, 56, 110, ...)", "int")


#: The settings of a Chapter 3 victim's training recipe and their rules: the keys of a row of the chapter's
#: ``book/ch3_gradauto/scales.yml`` (the sizes are the notebooks'; the paper row there gives the papers' settings),
#: which :func:`recipe_net` reads. ``LAYERS_<KIND>`` is the ResNet depth of each net, ``PENALTY_<KIND>`` its penalty
#: weight, ``HRL_*`` SkipNet's hybrid-RL stage (the rest of the stage from :data:`HRL_DEFAULTS`).
RECIPE_RULES: dict[str, checks.Rule] = {
    "TRAIN_N": checks.Integer(low=1, optional=True), "EPOCHS": checks.Integer(low=1),
    "BATCH_SIZE": checks.Integer(low=1), "TRAIN_LR": checks.Number(low=0, low_open=True),
    "OPTIMIZER": checks.Choice(OPTIMIZERS), "WEIGHT_DECAY": checks.Number(low=0),
    "LR_SCHEDULE": checks.Choice([s for s in LR_SCHEDULES if s], optional=True),
    "AUGMENT": checks.Choice([a for a in AUGMENTATIONS if a], optional=True), "WIDTH": checks.Integer(low=1),
    "LAYERS_DEPTH": _resnet_depth(8), "LAYERS_ACT": _resnet_depth(14), "LAYERS_WIDTH": _resnet_depth(8),
    "PENALTY_DEPTH": checks.Number(low=0), "PENALTY_ACT": checks.Number(low=0), "PENALTY_WIDTH": checks.Number(low=0),
    "HRL_EPOCHS": checks.Integer(low=1), "HRL_LR": checks.Number(low=0, low_open=True),
    "HRL_OPTIMIZER": checks.Choice(OPTIMIZERS), "HRL_WEIGHT_DECAY": checks.Number(low=0),
}


def trained_dynamic_net(kind: str, data, *, depth: int = 14, width: int = 16, epochs: int = 3, lr: float = 3e-3,
                        batch_size: int = 64, penalty: float | None = None, optimizer: str = "adam",
                        weight_decay: float = 0.0, lr_schedule: str | None = None, augment: str | None = None,
                        hrl: dict | None = None, seed: int = 0, progress: bool = True,
                        device: torch.device | str | None = None, **options) -> DynamicResNet:
    """Load-or-train a dynamic ResNet of ``kind`` on ``data`` (ImageData or (x, y)); returned in eval mode, on the CPU.

    Loss = cross-entropy + ``penalty`` * ``model.gating_penalty(trace)`` (SkipNet computation cost, SACT ponder
    cost, ManiDP sparsity), trained with :func:`helpers.train.fit` (straight-through hard gates). The checkpoint
    lives under the data root, keyed by every setting and a fingerprint of the data, so a second call (e.g. from
    the attack notebooks) loads in seconds. After training the BN statistics are recomputed exactly over the
    training images (:func:`helpers.train.recalibrate_batchnorm`, cached beside the checkpoint). ``model.history`` holds fit's
    per-epoch records plus the training FLOPs share that ran (``flops_fraction``); ``model.settings`` the settings.

    ``hrl`` (depth only): SkipNet's hybrid-RL stage after this supervised pre-training, a dict of
    :data:`HRL_DEFAULTS` keys (epochs, lr, optimizer, weight_decay, alpha, rl_weight, gamma); the gates become
    Bernoulli policies trained by REINFORCE (:func:`hybrid_rl_loss`), with its own cached checkpoint.
    ``model.history`` then holds the pre-training epochs followed by the HRL epochs (``stage`` "sp" / "hrl").
    Training runs on ``device`` (default :func:`helpers.device`: CUDA, then MPS, then the CPU; not part of the cache
    key); the returned net is on the CPU, where the chapter's attacks and FLOP traces run.
    """
    checks.choice("kind", kind, DYNAMIC_KINDS)
    penalty = DEFAULT_PENALTY[kind] if penalty is None else penalty
    hrl = _hrl_settings(kind, hrl)
    if kind in ("depth", "width"):
        options = {"gate": "bn_mlp", **options}  # part of the cache key: nets cached with the older gate stay apart
    checks.number("penalty", penalty, low=0)
    x, y = (data.x, data.y) if hasattr(data, "x") else data
    if x.dim() != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"data must hold square images (N, C, H, H), got {tuple(x.shape)}")
    num_classes = int(getattr(data, "num_classes", int(y.max()) + 1))
    settings = dict(kind=kind, depth=depth, width=width, epochs=epochs, lr=lr, batch_size=batch_size, penalty=penalty,
                    optimizer=optimizer, weight_decay=weight_decay, lr_schedule=lr_schedule, augment=augment,
                    seed=seed, options=options,
                    data=getattr(data, "name", "tensors"), n=len(x), shape=list(x.shape[1:]),
                    num_classes=num_classes, fingerprint=fingerprint(y, x[:, :, ::7, ::7], length=16))
    torch.manual_seed(seed)
    model = dynamic_resnet(kind, depth, num_classes, int(x.shape[1]), width, int(x.shape[-1]), **options)
    model.static_flops()  # profile before training
    static = float(model.static_flops())
    model.to(default_device() if device is None else torch.device(device))
    running = {"flops": 0.0, "n": 0}

    def step_loss(m: nn.Module, xb: Tensor, yb: Tensor) -> tuple[Tensor, Tensor]:
        logits, trace = m.forward_with_gates(xb)
        running["flops"] += float(trace.dynamic_flops().sum())
        running["n"] += len(xb)
        return F.cross_entropy(logits, yb) + penalty * m.gating_penalty(trace), logits

    def on_epoch_end(epoch: int, m: nn.Module, opt) -> dict:
        share = running["flops"] / max(running["n"], 1) / static
        running.update(flops=0.0, n=0)
        return {"flops_fraction": share}

    path = checkpoint_path(f"dynamic-{kind}", **settings)
    extra = {k: v for k, v in dict(lr_schedule=lr_schedule, augment=augment).items() if v is not None}
    history = fit(model, (x, y), epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer,
                  weight_decay=weight_decay, step_loss=step_loss, on_epoch_end=on_epoch_end, seed=seed,
                  checkpoint=path, progress=progress, desc=f"train {kind}", **extra)
    for record in history:
        record["stage"] = "sp"
    if hrl is not None:
        def hrl_loss(m: nn.Module, xb: Tensor, yb: Tensor) -> tuple[Tensor, Tensor]:
            logits, trace = m.forward_with_gates(xb)
            running["flops"] += float(trace.dynamic_flops().sum())
            running["n"] += len(xb)
            return hybrid_rl_loss(logits, yb, trace, hrl["alpha"], hrl["rl_weight"], hrl["gamma"]), logits

        settings["hrl"] = hrl
        path = checkpoint_path(f"dynamic-{kind}-hrl", **settings)
        with policy_sampling(model):
            rl_history = fit(model, (x, y), epochs=hrl["epochs"], lr=hrl["lr"], batch_size=batch_size,
                             optimizer=hrl["optimizer"], weight_decay=hrl["weight_decay"], step_loss=hrl_loss,
                             on_epoch_end=on_epoch_end, seed=seed + 1, checkpoint=path, progress=progress,
                             desc=f"HRL {kind}")
        history = history + [dict(r, stage="hrl") for r in rl_history]
    calibrated = path.with_name(path.stem + "-precise-bn.pt")
    if calibrated.exists():
        model.load_state_dict(load_checkpoint(calibrated))
    else:
        recalibrate_batchnorm(model, x, batch_size=max(batch_size, 200))
        atomic_torch_save(model.state_dict(), calibrated)
    model.cpu()
    model.history = history
    model.settings = settings
    model.checkpoint = path
    return model.eval()


def _hrl_settings(kind: str, hrl: dict | None) -> dict | None:
    """``hrl`` completed with :data:`HRL_DEFAULTS` and checked (None: no HRL stage)."""
    if hrl is None:
        return None
    if kind != "depth":
        raise ValueError(f"hrl (SkipNet's hybrid-RL stage) is for kind='depth' only, got kind={kind!r}")
    if not isinstance(hrl, dict) or set(hrl) - set(HRL_DEFAULTS):
        raise ValueError(f"hrl must be a dict with keys among {', '.join(HRL_DEFAULTS)}; got {hrl!r}")
    out = {**HRL_DEFAULTS, **hrl}
    checks.integer("hrl['epochs']", out["epochs"], low=1)
    for key in ("lr", "alpha", "rl_weight"):
        checks.number(f"hrl[{key!r}]", out[key], low=0, low_open=True)
    checks.number("hrl['gamma']", out["gamma"], 0, 1, low_open=True)
    checks.choice("hrl['optimizer']", out["optimizer"], OPTIMIZERS)
    checks.number("hrl['weight_decay']", out["weight_decay"], low=0)
    return out


def recipe_net(kind: str, train, recipe: Mapping[str, Any], *, seed: int = 0, hrl: bool = True,
               progress: bool = True) -> DynamicResNet:
    """The Chapter 3 victim of ``kind`` (SkipNet+SP/HRL, SACT, ManiDP) trained by ``recipe`` on ``train``, or loaded.

    ``recipe`` holds the :data:`RECIPE_RULES` keys (a notebook passes its run's configuration, which holds the row of
    ``book/ch3_gradauto/scales.yml``; other keys are ignored); ``train`` is the full training split, subset to
    ``TRAIN_N`` with ``seed`` (None: all of it). ``hrl=False`` gives the depth net after SkipNet's supervised
    pre-training alone (the checkpoint HRL starts from). See :func:`trained_dynamic_net`.
    """
    checks.choice("kind", kind, DYNAMIC_KINDS)
    checks.flag("hrl", hrl)
    missing = [key for key in RECIPE_RULES if key not in recipe]
    if missing:
        raise ValueError(f"recipe is missing {', '.join(missing)}; a recipe holds {', '.join(RECIPE_RULES)}")
    for key, rule in RECIPE_RULES.items():
        rule(key, recipe[key])
    r = {key: recipe[key] for key in RECIPE_RULES}  # as given: the checkpoint digests of cached nets stay valid
    data = train.subset(r["TRAIN_N"], seed=seed) if r["TRAIN_N"] else train
    stage = dict(epochs=r["HRL_EPOCHS"], lr=r["HRL_LR"], optimizer=r["HRL_OPTIMIZER"],
                 weight_decay=r["HRL_WEIGHT_DECAY"])
    return trained_dynamic_net(kind, data, depth=r[f"LAYERS_{kind.upper()}"], width=r["WIDTH"], epochs=r["EPOCHS"],
                               lr=r["TRAIN_LR"], batch_size=r["BATCH_SIZE"], penalty=r[f"PENALTY_{kind.upper()}"],
                               optimizer=r["OPTIMIZER"], weight_decay=r["WEIGHT_DECAY"],
                               lr_schedule=r["LR_SCHEDULE"], augment=r["AUGMENT"],
                               hrl=stage if kind == "depth" and hrl else None, seed=seed, progress=progress)


def recipe_units(dataset: str, recipe: Mapping[str, Any], seeds: Sequence[int],
                 kinds: Sequence[str] = DYNAMIC_KINDS) -> list[dict[str, Any]]:
    """The units of Chapter 3's victims (:func:`recipe_unit`): one per (seed, kind), in that order, as plain settings:
    ``dataset``'s name (its full training split, which :func:`recipe_net` subsets per seed), the kind, the seed and
    the :data:`RECIPE_RULES` keys of ``recipe`` as given (the checkpoint keys of :func:`recipe_net`)."""
    checks.text("dataset", dataset)
    for kind in kinds:
        checks.choice("kinds[i]", kind, DYNAMIC_KINDS)
    missing = [key for key in RECIPE_RULES if key not in recipe]
    if missing:
        raise ValueError(f"recipe is missing {', '.join(missing)}; a recipe holds {', '.join(RECIPE_RULES)}")
    r = {key: recipe[key] for key in RECIPE_RULES}
    return [dict(dataset=dataset, kind=kind, seed=seed, recipe=r) for seed in checks.seeds(seeds) for kind in kinds]


def recipe_unit(settings: dict[str, Any]) -> dict[str, Any]:
    """One Chapter 3 victim (a ``helpers.units`` unit of :func:`recipe_units`): load the training split ``settings``
    names, then train-or-load :func:`recipe_net` on the CPU with one thread (checkpointed after every epoch, so a
    rerun resumes); the depth net's SP stage gets its precise-BN file too. Returns the kind, the seed, the history
    and the unit's wall time (``seconds``), which says whether it trained or loaded."""
    start = time.perf_counter()
    kind, seed, recipe = settings["kind"], settings["seed"], settings["recipe"]
    limit_cpu_threads(default_device(), 1)  # trained_dynamic_net trains on the best device (one CPU thread on a CPU)
    train = load_quietly(settings["dataset"], "train")
    net = recipe_net(kind, train, recipe, seed=seed)
    if kind == "depth":
        recipe_net(kind, train, recipe, seed=seed, hrl=False)  # SkipNet's SP stage alone, as the notebooks load it
    return {"kind": kind, "seed": seed, "history": net.history, "seconds": time.perf_counter() - start}


def savings(model: DynamicResNet, logits: Tensor, trace: GateTrace, y: Tensor) -> dict[str, float]:
    """What a dynamic net saves on a batch, from its eval pass ``(logits, trace)`` and the labels ``y``: accuracy,
    static and mean dynamic MFLOPs, the reduced FLOPs 1 - mean dynamic / static (GradAuto Sec. 5.1 quotes SkipNet's
    ResNet-101 on ImageNet: 15.08% SP, 29.94% +HRL, counted in blocks), the reduced gated units (blocks; channels for
    the width net: the official code's count) and the share of the static FLOPs spent in the gating networks."""
    static = model.static_flops()
    flops = trace.dynamic_flops()
    return {"accuracy": accuracy(logits, y), "gated units": trace.total_units(), "static MFLOPs": static / 1e6,
            "mean dynamic MFLOPs": float(flops.float().mean()) / 1e6, "reduced FLOPs": flops_reduction(flops, static),
            "reduced units (count)": 1 - float(trace.executed_units().float().mean()) / trace.total_units(),
            "gate overhead": 1 - model.backbone_flops() / static}


def hybrid_rl_loss(logits: Tensor, y: Tensor, trace: GateTrace, alpha: float = 0.1, rl_weight: float = 0.01,
                   gamma: float = 1.0) -> Tensor:
    """SkipNet's hybrid-RL objective for one batch sampled with :func:`policy_sampling` (Wang et al. 2018, Sec. 3.3).

    Mean cross-entropy (trains the blocks along the sampled path) plus REINFORCE for the gates: gate l of image
    i gets the return R_l = sum_{k >= l} gamma^(k-l) r_k + gamma^(G-l) (-CE_i), with the skipping reward
    r_k = (alpha / G) (1 - a_k), and contributes -rl_weight R_l log pi(a_l), summed over the batch as the official
    code's ``action.reinforce(rl_weight * R)`` does (cifar/train_rl.py; defaults alpha 0.1, rl_weight 0.01,
    gamma 1, no baseline).
    """
    if trace.log_probs is None:
        raise ValueError("trace has no log-probabilities: run the forward pass in train mode within policy_sampling()")
    ce = F.cross_entropy(logits, y, reduction="none")
    ret = -ce.detach()
    policy = torch.zeros((), dtype=logits.dtype, device=logits.device)
    scale = alpha / len(trace.log_probs)
    for log_p, run in zip(reversed(trace.log_probs), reversed(trace.executed)):
        ret = scale * (1 - run.squeeze(1).to(ce.dtype)) + gamma * ret
        policy = policy - (rl_weight * ret * log_p.squeeze(1)).sum()
    return ce.mean() + policy


def gate_statistics(trace: GateTrace, flops: Tensor) -> dict[str, float | int]:
    """A net's gates on a test set (``flops``: its per-image dynamic FLOPs): the gated units, the share executed,
    the share of gate values within 0.1 of the 0.5 threshold, and how many distinct per-image FLOPs values occur."""
    probs = torch.cat([p.detach().flatten() for p in trace.probs])
    return {"gated units": trace.total_units(),
            "share executed": float(trace.executed_units().float().mean()) / trace.total_units(),
            "gates within 0.1 of 0.5": float(((probs - 0.5).abs() < 0.1).float().mean()),
            "distinct FLOPs values": int(flops.unique().numel())}
