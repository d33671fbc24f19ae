"""Chapter 3's training recipes (GradAuto): SkipNet's supervised pre-training (SP) and hybrid-RL stage (HRL), SACT's
ponder cost and ManiDP's sparsity penalty, trained with :func:`helpers.train.fit` and cached under the data root.

The networks themselves are in :mod:`helpers.models.dynamic`; this module only trains them.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..cache import fingerprint
from ..io import atomic_torch_save, load_checkpoint
from ..models.dynamic import DYNAMIC_KINDS, DynamicResNet, GateTrace, dynamic_resnet, policy_sampling
from .loop import checkpoint_path, fit, recalibrate_batchnorm

__all__ = ["DEFAULT_PENALTY", "HRL_DEFAULTS", "DYNAMIC_RECIPES", "hybrid_rl_loss", "trained_dynamic_net", "recipe_net"]


#: Default computation-penalty weights per kind (tuned at book scale on the offline Fashion-MNIST substitute
#: so that each net skips a visible share of its FLOPs; see dynamic_networks.ipynb).
DEFAULT_PENALTY: dict[str, float] = {"depth": 0.5, "act": 0.5, "width": 0.4}

#: SkipNet's hybrid-RL stage, the official cifar/train_rl.py defaults: SGD (momentum 0.9) at 1e-4, weight decay 1e-4,
#: skipping reward alpha 0.1 shared by the gates, REINFORCE weight 0.01, gamma 1; 10k iterations of batch 128
#: (about 26 CIFAR-10 epochs).
HRL_DEFAULTS: dict = dict(epochs=26, lr=1e-4, optimizer="sgd", weight_decay=1e-4, alpha=0.1, rl_weight=0.01, gamma=1.0)


#: The Chapter 3 training recipes per scale, shared by dynamic_networks.ipynb (which trains the nets) and the
#: attack notebooks (which load them from the cache through :func:`recipe_net`). ``paper``: SkipNet ResNet-110,
#: SACT ResNet-110, ManiDP ResNet-56 on all of CIFAR-10 with SGD 0.1 / momentum 0.9 / wd 1e-4, batch 128,
#: ~164 epochs (SkipNet's 64k iterations), crop + flip; cosine decay stands in for SkipNet's steps at 32k and 48k;
#: then SkipNet's hybrid-RL stage with the official settings (:data:`HRL_DEFAULTS`). ``HRL`` applies to the depth
#: net only; at smoke and book scale it is a short Adam stage (SGD at 1e-4 would not move in 60-200 steps).
DYNAMIC_RECIPES: dict[str, dict] = {
    "smoke": dict(TRAIN_N=256, EPOCHS=1, BATCH_SIZE=64, LR=3e-3, OPTIMIZER="adam", WEIGHT_DECAY=0.0,
                  LR_SCHEDULE=None, AUGMENT=None, WIDTH=4, DEPTHS=dict(depth=14, act=14, width=14),
                  PENALTIES=dict(DEFAULT_PENALTY),
                  HRL=dict(epochs=1, lr=1e-3, optimizer="adam", weight_decay=0.0)),
    "book": dict(TRAIN_N=4000, EPOCHS=3, BATCH_SIZE=64, LR=3e-3, OPTIMIZER="adam", WEIGHT_DECAY=0.0,
                 LR_SCHEDULE=None, AUGMENT=None, WIDTH=16, DEPTHS=dict(depth=14, act=14, width=14),
                 PENALTIES=dict(DEFAULT_PENALTY),
                 HRL=dict(epochs=3, lr=1e-3, optimizer="adam", weight_decay=0.0)),
    "paper": dict(TRAIN_N=None, EPOCHS=164, BATCH_SIZE=128, LR=0.1, OPTIMIZER="sgd", WEIGHT_DECAY=1e-4,
                  LR_SCHEDULE="cosine", AUGMENT="crop_flip", WIDTH=16, DEPTHS=dict(depth=110, act=110, width=56),
                  PENALTIES=dict(depth=0.5, act=0.01, width=0.4), HRL=dict(HRL_DEFAULTS)),
}


def trained_dynamic_net(kind: str, data, *, depth: int = 14, width: int = 16, epochs: int = 3, lr: float = 3e-3,
                        batch_size: int = 64, penalty: float | None = None, optimizer: str = "adam",
                        weight_decay: float = 0.0, lr_schedule: str | None = None, augment: str | None = None,
                        hrl: dict | None = None, seed: int = 0, progress: bool = True, **options) -> DynamicResNet:
    """Load-or-train a dynamic ResNet of ``kind`` on ``data`` (ImageData or (x, y)); returned in eval mode.

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
    """
    if kind not in DYNAMIC_KINDS:
        raise ValueError(f"kind must be one of {', '.join(DYNAMIC_KINDS)}; got {kind!r}")
    penalty = DEFAULT_PENALTY[kind] if penalty is None else penalty
    hrl = _hrl_settings(kind, hrl)
    if kind in ("depth", "width"):
        options = {"gate": "bn_mlp", **options}  # part of the cache key: nets cached with the older gate stay apart
    if not penalty >= 0:
        raise ValueError(f"penalty must be >= 0, got {penalty!r}")
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
    model.history = history
    model.settings = settings
    model.checkpoint = path
    return model.eval()


def _hrl_settings(kind: str, hrl: dict | None) -> dict | None:
    if hrl is None:
        return None
    if kind != "depth":
        raise ValueError(f"hrl (SkipNet's hybrid-RL stage) is for kind='depth' only, got kind={kind!r}")
    if not isinstance(hrl, dict) or set(hrl) - set(HRL_DEFAULTS):
        raise ValueError(f"hrl must be a dict with keys among {', '.join(HRL_DEFAULTS)}; got {hrl!r}")
    out = {**HRL_DEFAULTS, **hrl}
    if not (isinstance(out["epochs"], int) and out["epochs"] >= 1):
        raise ValueError(f"hrl['epochs'] must be an int >= 1, got {out['epochs']!r}")
    for key in ("lr", "alpha", "rl_weight"):
        if not (isinstance(out[key], (int, float)) and out[key] > 0):
            raise ValueError(f"hrl[{key!r}] must be a number > 0, got {out[key]!r}")
    if not 0 < out["gamma"] <= 1:
        raise ValueError(f"hrl['gamma'] must be in (0, 1], got {out['gamma']!r}")
    return out


def recipe_net(kind: str, scale: str, train, *, seed: int = 0, progress: bool = True, **changes) -> DynamicResNet:
    """The Chapter 3 net of ``kind`` at ``scale`` (:data:`DYNAMIC_RECIPES`), trained on ``train`` (the full training
    split; subset to the recipe's TRAIN_N with ``seed``) or loaded from the cache. ``changes`` override recipe keys.
    """
    if scale not in DYNAMIC_RECIPES:
        raise ValueError(f"scale must be one of {', '.join(DYNAMIC_RECIPES)}; got {scale!r}")
    if kind not in DYNAMIC_KINDS:
        raise ValueError(f"kind must be one of {', '.join(DYNAMIC_KINDS)}; got {kind!r}")
    r = dict(DYNAMIC_RECIPES[scale])
    unknown = set(changes) - set(r)
    if unknown:
        raise ValueError(f"unknown recipe keys {sorted(unknown)}; allowed: {', '.join(sorted(r))}")
    r.update(changes)
    data = train.subset(r["TRAIN_N"], seed=seed) if r["TRAIN_N"] else train
    return trained_dynamic_net(kind, data, depth=r["DEPTHS"][kind], width=r["WIDTH"], epochs=r["EPOCHS"], lr=r["LR"],
                               batch_size=r["BATCH_SIZE"], penalty=r["PENALTIES"][kind], optimizer=r["OPTIMIZER"],
                               weight_decay=r["WEIGHT_DECAY"], lr_schedule=r["LR_SCHEDULE"], augment=r["AUGMENT"],
                               hrl=r["HRL"] if kind == "depth" else None, seed=seed, progress=progress)


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
