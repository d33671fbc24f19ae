"""Feature usefulness of a binary classifier's penultimate features (Ilyas et al. 2019; Paper 1, Sec. IV).

A binary model reads ``logit = w . f(x) + b`` from features ``f(x)`` (``model.features(x)``). With labels
y in {0, 1} and ỹ = 2y - 1 in {-1, +1}, and each feature normalised over the data to mean 0 and
variance 1 (f̂_i = (f_i - mean_i) / std_i), the per-sample score of feature i with weight w_i is

* ``kind="ilyas"``:   ỹ · w_i f̂_i(x)                (Ilyas et al.'s E[y f(x)] when w_i = 1)
* ``kind="sigmoid"``: ỹ · (2 s(w_i f̂_i(x)) - 1)      (Paper 1's sigmoid read-out; s is the sigmoid)

Usefulness is its mean over the data; robust usefulness is the mean of its infimum over the
L-inf eps-ball around each image, found by PGD (:func:`helpers.attacks.pgd`) with a separate
perturbation per (feature, image). ``weights=None`` means w_i = 1 (the paper's "normalized
usefulness", Fig 5); the head's weights give its "actual usefulness" (Fig 6); weights of ±1 align
the sign of each feature (−f is useful when f is negatively useful).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from scipy.stats import spearmanr
from .progress import tqdm

from . import batch_slices, checks, eval_mode, model_device
from .attacks import Attack, pgd
from .models import BinaryFeatureCNN
from .train import evaluate
from .train.adversarial import train_binary_feature_cnn

KINDS = ("sigmoid", "ilyas")

__all__ = ["KINDS", "FIG8_READINGS", "dead_features", "dead_at_initialisation", "FeatureStats", "feature_stats", "normalise", "signed_labels", "collect_features",
           "per_sample_usefulness", "usefulness", "robust_usefulness", "prune_features",
           "refit_head", "usefulness_measures", "usefulness_counts", "usefulness_spearman", "ablation_groups",
           "ablation_effect", "ablation_table", "ABLATION_FORMAT", "robust_measures",
           "robust_counts", "ROBUST_COUNT_FORMAT", "RANKINGS", "pruning_curves", "pruning_table", "robust_at_fewest",
           "usefulness_summary", "robust_feature_count", "pruning_summary", "seed_measures",
           "standard_seed_runs"]


@dataclass(frozen=True)
class FeatureStats:
    """Per-feature mean and standard deviation (population, over the rows) used to normalise features.

    Keep the clean statistics to normalise perturbed features the same way (robust usefulness).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __post_init__(self) -> None:
        if self.mean.dim() != 1 or self.mean.shape != self.std.shape:
            raise ValueError(f"mean and std must be 1-D of the same length, got {tuple(self.mean.shape)} "
                             f"and {tuple(self.std.shape)}")
        if (self.std < 0).any():
            raise ValueError("std must be >= 0")

    def __len__(self) -> int:
        return len(self.mean)


def _as_features(features) -> torch.Tensor:
    features = torch.as_tensor(features)
    if features.dim() != 2 or len(features) == 0:
        raise ValueError(f"features must be a non-empty (N, d) array, got shape {tuple(features.shape)}")
    return features.to(torch.float32) if not features.is_floating_point() else features


def feature_stats(features) -> FeatureStats:
    """Mean and population standard deviation of each column of ``features`` (N, d).

    The normalisation of Ilyas et al. (mean 0, variance 1 over the data) uses these.
    """
    features = _as_features(features)
    return FeatureStats(mean=features.mean(0).detach(), std=features.std(0, unbiased=False).detach())


def normalise(features, stats: FeatureStats) -> torch.Tensor:
    """f̂ = (f - mean) / std per column, with f̂ = 0 for a feature whose std is 0 (constant on the data).

    Differentiable in ``features``; a constant feature carries no information, so its usefulness is 0.
    """
    features = _as_features(features)
    if features.shape[1] != len(stats):
        raise ValueError(f"features have {features.shape[1]} columns but stats describe {len(stats)} features")
    mean, std = stats.mean.to(features), stats.std.to(features)
    live = std > 0
    return torch.where(live, (features - mean) / torch.where(live, std, torch.ones_like(std)), torch.zeros_like(features))


def signed_labels(y) -> torch.Tensor:
    """ỹ = 2y - 1 in {-1, +1} (float) from binary labels y in {0, 1}.

    Ilyas et al. write the binary label as ±1; Paper 1 writes (2y - 1).
    """
    y = torch.as_tensor(y)
    if y.dim() != 1 or len(y) == 0:
        raise ValueError(f"y must be a non-empty 1-D array of labels, got shape {tuple(y.shape)}")
    if not bool(((y == 0) | (y == 1)).all()):
        raise ValueError(f"y must hold binary labels 0 or 1, got values {sorted(set(y.tolist()))[:5]}")
    return 2 * y.to(torch.float32) - 1


def _weights(weights, d: int, like: torch.Tensor) -> torch.Tensor:
    if weights is None:
        return torch.ones(d, dtype=like.dtype, device=like.device)
    weights = torch.as_tensor(weights).detach().to(like).reshape(-1)
    if len(weights) != d:
        raise ValueError(f"weights must have one value per feature ({d}), got {len(weights)}")
    return weights


def _read_out(z: torch.Tensor, kind: str) -> torch.Tensor:
    """z for Ilyas et al., 2 s(z) - 1 for Paper 1's sigmoid read-out."""
    return z if kind == "ilyas" else 2 * torch.sigmoid(z) - 1


@torch.no_grad()
def collect_features(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The penultimate features ``model.features(x)`` of every image (N, d), in eval mode, without gradients.

    ``model`` is a binary feature model such as :class:`helpers.models.BinaryFeatureCNN`.
    """
    if not hasattr(model, "features"):
        raise ValueError(f"model must have a .features(x) method, got {type(model).__name__}")
    dev = model_device(model)
    with eval_mode(model):
        out = [model.features(x[part].to(dev)).cpu() for part in batch_slices(len(x), batch_size)]
    return torch.cat(out)


def per_sample_usefulness(features, y, weights=None, kind: str = "sigmoid",
                          stats: FeatureStats | None = None) -> torch.Tensor:
    """The per-sample score ỹ · g(w_i f̂_i(x)) (N, d) whose mean is the usefulness (Paper 1, Sec. IV).

    g(z) = z for ``kind="ilyas"``, 2 s(z) - 1 for ``"sigmoid"``; ``stats`` default to those of ``features``.
    """
    checks.choice("kind", kind, KINDS)
    features = _as_features(features)
    signs = signed_labels(y).to(features)
    if len(signs) != len(features):
        raise ValueError(f"features and y must have the same length, got {len(features)} and {len(signs)}")
    stats = feature_stats(features) if stats is None else stats
    normed = normalise(features, stats)
    return signs[:, None] * _read_out(_weights(weights, features.shape[1], normed) * normed, kind)


def usefulness(features, y, weights=None, kind: str = "sigmoid", stats: FeatureStats | None = None) -> torch.Tensor:
    """Usefulness of each feature (d,): E[ỹ f̂_i(x)] (Ilyas et al.) or E[(2y-1)(2 s(w_i f̂_i(x)) - 1)] (Paper 1).

    ``weights=None``: w_i = 1 (normalized usefulness, Fig 5); the head's weights: actual usefulness (Fig 6).
    """
    return per_sample_usefulness(features, y, weights, kind, stats).mean(0)


class _FeatureMap(nn.Module):
    """``model.features`` as a module, so that :func:`helpers.attacks.pgd` attacks the features."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x)


def robust_usefulness(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    kind: str = "sigmoid",
    weights=None,
    stats: FeatureStats | None = None,
    random_start: bool = True,
    restarts: int = 1,
    chunk_size: int = 1000,
    generator: torch.Generator | None = None,
    progress: bool = False,
    per_sample: bool = False,
) -> torch.Tensor:
    """Robust usefulness (d,): ``E[inf_{|δ|<=eps} ỹ · g(w_i f̂_i(x + δ))]``, the infimum by PGD (Paper 1, Sec. IV).

    ``per_sample=True``: the per-image worst-case scores (N, d) instead of their mean (for intervals over images).

    One δ per (feature, image): the batch is expanded to features × images in chunks of about ``chunk_size``
    rows; ``stats`` (default: those of the clean ``x``) normalise perturbed features as the clean ones.
    """
    checks.choice("kind", kind, KINDS)
    for name, value in (("eps", eps), ("alpha", alpha)):
        if not (isinstance(value, (int, float)) and value >= 0):
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    if not (isinstance(steps, int) and steps >= 0):
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    if not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
    if x.dim() != 4 or len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x must be a non-empty (N, C, H, W) batch with one label each, got {tuple(x.shape)} "
                         f"and {tuple(torch.as_tensor(y).shape)}")
    labels = signed_labels(y)
    clean = collect_features(model, x)
    d = clean.shape[1]
    stats = feature_stats(clean) if stats is None else stats
    if len(stats) != d:
        raise ValueError(f"stats describe {len(stats)} features but the model has {d}")
    dev = model_device(model)
    w = _weights(weights, d, clean).to(dev)
    live = (stats.std > 0).to(dev)

    def objective(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """ỹ · g(w_j f̂_j) of each expanded sample; ``target`` holds (ỹ, feature index j) per row."""
        j = target[:, 1].long()
        normed = normalise(output, stats)[torch.arange(len(output), device=output.device), j]
        return target[:, 0] * _read_out(w[j] * normed, kind)

    def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return -objective(output, target)  # pgd ascends its loss: ascend -objective = seek its infimum

    # a feature with std 0 (constant on the clean data) or weight 0 has f̂ = 0 or w f̂ = 0 whatever δ: its
    # objective is the constant 0, so only the others are attacked (dead ReLU features are common)
    attacked = torch.nonzero(live & (w != 0)).squeeze(1)
    k = len(attacked)
    total = torch.zeros(d, dtype=torch.float64)
    each = torch.zeros(len(x), d, dtype=torch.float32) if per_sample else None
    if k == 0:
        return each if per_sample else total.to(torch.float32)
    feature_map = _FeatureMap(model)
    per_chunk = max(1, chunk_size // k)
    starts = range(0, len(x), per_chunk)
    for start in tqdm(starts, desc="robust usefulness", disable=not progress, leave=False):
        xb = x[start:start + per_chunk].to(dev)
        b = len(xb)
        x_exp = xb.repeat(k, 1, 1, 1)  # row r: feature attacked[r // b], image r % b
        feature_index = attacked.repeat_interleave(b)
        target = torch.stack([labels[start:start + b].to(dev).repeat(k), feature_index.to(dev, labels.dtype)], dim=1)
        if eps > 0 and (steps > 0 or random_start):
            x_exp = pgd(feature_map, x_exp, target, eps, alpha, steps, random_start=random_start,
                        restarts=restarts, loss_fn=loss_fn, generator=generator)
        with torch.no_grad(), eval_mode(model):
            worst = objective(model.features(x_exp), target)
        worst = worst.detach().double().cpu().view(k, b)
        total[attacked.cpu()] += worst.sum(1)
        if per_sample:
            each[start:start + b, attacked.cpu()] = worst.T.to(torch.float32)
    return each if per_sample else (total / len(x)).to(torch.float32)


def prune_features(model: nn.Module, keep) -> nn.Module:
    """A copy of ``model`` with the penultimate features outside ``keep`` removed (their head weights zeroed).

    The logit becomes sum over kept i of w_i f_i(x) + b: Paper 1's pruning of features (Sec. I, IV).
    """
    keep = torch.as_tensor(keep)
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Linear):
        raise ValueError(f"model must have a linear .head, got {type(head).__name__}")
    if keep.dtype != torch.bool or keep.shape != (head.in_features,):
        raise ValueError(f"keep must be a boolean mask of shape ({head.in_features},), got {keep.dtype} "
                         f"of shape {tuple(keep.shape)}")
    pruned = copy.deepcopy(model)
    with torch.no_grad():
        pruned.head.weight[:, ~keep.to(pruned.head.weight.device)] = 0
    return pruned


def refit_head(model: nn.Module, features, y, keep, l2: float = 1e-3, max_iter: int = 200) -> nn.Module:
    """A copy of ``model`` whose head is refit on the kept features only (removed weights stay 0).

    Logistic regression by L-BFGS: minimise mean log(1 + exp(-ỹ (w·f + b))) + ``l2/2 |w|^2`` over the kept f_i.
    """
    keep = torch.as_tensor(keep)
    pruned = prune_features(model, keep)  # validates model and keep
    if not (isinstance(l2, (int, float)) and l2 >= 0):
        raise ValueError(f"l2 must be a number >= 0, got {l2!r}")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError(f"max_iter must be an int >= 1, got {max_iter!r}")
    features = _as_features(features).detach().double()
    signs = signed_labels(y).double()
    if len(signs) != len(features) or features.shape[1] != len(keep):
        raise ValueError(f"features must be (N, {len(keep)}) with one label each, got {tuple(features.shape)} "
                         f"and {len(signs)} labels")
    kept = features[:, keep]
    w = torch.zeros(kept.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.softplus(-signs * (kept @ w + b)).mean() + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        head = pruned.head
        head.weight.zero_()
        head.weight[0, keep.to(head.weight.device)] = w.detach().to(head.weight)
        head.bias.fill_(float(b))
    return pruned


# --------------------------------------------------------------------------------------------
# Measurements of one model (Paper 1, Sec. IV, Figs 5-8) and the pruning it proposes


def usefulness_measures(model: nn.Module, x: torch.Tensor, y) -> dict:
    """Every clean usefulness measure of a binary model's features on ``(x, y)`` (Paper 1, Figs 5-7).

    Keys: ``features, stats, live`` (std > 0), ``w, b`` (the head), and per kind of :data:`KINDS`
    ``("raw", kind)`` (w_i = 1), ``("sign", kind)`` (the ±1 that aligns each feature), ``("aligned", kind)``
    (usefulness of the aligned features) and ``("actual", kind)`` (w_i = the head's weight).
    """
    feats = collect_features(model, x)
    stats = feature_stats(feats)
    w = model.head.weight.detach()[0].cpu()
    m = {"features": feats, "stats": stats, "live": stats.std > 0, "w": w, "b": float(model.head.bias.detach()[0])}
    for kind in KINDS:
        m[("raw", kind)] = usefulness(feats, y, kind=kind, stats=stats)
        m[("sign", kind)] = torch.where(m[("raw", kind)] >= 0, 1.0, -1.0)
        m[("aligned", kind)] = usefulness(feats, y, weights=m[("sign", kind)], kind=kind, stats=stats)
        m[("actual", kind)] = usefulness(feats, y, weights=w, kind=kind, stats=stats)
    return m


def usefulness_counts(m: dict) -> pd.DataFrame:
    """How many features of :func:`usefulness_measures` ``m`` are positively / negatively useful, raw and
    actual, and how many are dead; one column per kind."""
    return pd.DataFrame({
        kind: {"features with raw usefulness > 0": int((m[("raw", kind)] > 0).sum()),
               "features with raw usefulness < 0 (−f useful)": int((m[("raw", kind)] < 0).sum()),
               "dead features (constant on the test set)": int((~m["live"]).sum()),
               "features with actual usefulness > 0": int((m[("actual", kind)] > 0).sum()),
               "features with actual usefulness < 0": int((m[("actual", kind)] < 0).sum())}
        for kind in KINDS})


def usefulness_spearman(m: dict, kind: str = "sigmoid") -> tuple[float, float]:
    """Spearman's rho between the sign-aligned normalized and the actual usefulness of :func:`usefulness_measures`
    ``m`` (Paper 1, Fig 7), over all features and over the live ones only (NaN with fewer than three live)."""
    checks.choice("kind", kind, KINDS)
    aligned, actual, live = m[("aligned", kind)].numpy(), m[("actual", kind)].numpy(), m["live"].numpy()
    rho = spearmanr(aligned, actual).statistic
    rho_live = spearmanr(aligned[live], actual[live]).statistic if live.sum() > 2 else float("nan")
    return float(rho), float(rho_live)


def ablation_groups(m: dict, kind: str = "sigmoid") -> tuple[torch.Tensor, torch.Tensor]:
    """The features of :func:`usefulness_measures` ``m`` whose sign-aligned usefulness is below half the largest
    (Paper 1's "features of low usefulness", Fig 7), and as many (at least one) of the most useful ones."""
    checks.choice("kind", kind, KINDS)
    use = m[("aligned", kind)]
    low = torch.nonzero(use < 0.5 * use.max()).squeeze(1)
    return low, use.argsort(descending=True)[:max(1, len(low))]


def ablation_effect(m: dict, group: torch.Tensor) -> dict:
    """Set the features in ``group`` to their mean: the relative logit change and the predictions changed.

    The logit ``w.f + b`` loses ``sum_{i in group} w_i (f_i - mean_i)``; its mean absolute change is divided by
    the mean distance of the logit from its average (Paper 1's "little effect on the prediction", Fig 7).
    """
    logits = m["features"] @ m["w"] + m["b"]
    shift = ((m["features"][:, group] - m["stats"].mean[group]) * m["w"][group]).sum(1)
    return {"features": len(group), "of which live": int(m["live"][group].sum()),
            "relative logit change": float(shift.abs().mean() / (logits - logits.mean()).abs().mean()),
            "predictions changed": float(((logits > 0) != (logits - shift > 0)).float().mean())}


#: Formats of the columns of :func:`ablation_table`.
ABLATION_FORMAT = {"features": "{:.0f}", "of which live": "{:.0f}", "relative logit change": "{:.1%}",
                   "predictions changed": "{:.2%}"}


def ablation_table(m: dict, kind: str = "sigmoid") -> tuple[pd.DataFrame, torch.Tensor]:
    """:func:`ablation_effect` of the low-usefulness features of :func:`ablation_groups` and of as many of the most
    useful (Paper 1's "little effect on the prediction", Fig 7), one row each; also returns the low group."""
    low, high = ablation_groups(m, kind)
    table = pd.DataFrame({"low usefulness (< half the max)": ablation_effect(m, low),
                          "as many of the most useful": ablation_effect(m, high)}).T
    return table, low


def _robust(model: nn.Module, data, attack: Attack, **common) -> torch.Tensor:
    return robust_usefulness(model, data.x, data.y, eps=attack.eps, alpha=attack.alpha, steps=attack.steps,
                             random_start=attack.random_start, restarts=attack.restarts, **common)


def robust_measures(model: nn.Module, m: dict, images, strong_images, paper: Attack, strong: Attack,
                    kinds: Sequence[str] = KINDS, generator: torch.Generator | None = None,
                    progress: bool = True) -> dict:
    """Robust usefulness of the sign-aligned features of ``m`` (Paper 1, Fig 8), normalised with ``m``'s clean stats.

    Per kind: ``("clean", kind)`` on ``images``, ``("noise", kind)`` the random start of ``paper`` alone,
    ``("paper", kind)`` after the ``paper`` PGD, ``("strong", kind)`` after ``strong`` on ``strong_images``;
    ``n``, ``n_strong`` the image counts and ``labels`` the attacks' names for tables.
    """
    for name, attack in (("paper", paper), ("strong", strong)):
        if not isinstance(attack, Attack) or attack.kind != "pgd":
            raise ValueError(f"{name} must be a PGD Attack, got {attack!r}")
    feats = collect_features(model, images.x)
    out: dict = {}
    for kind in kinds:
        common = dict(kind=kind, weights=m[("sign", kind)], stats=m["stats"], generator=generator, progress=progress)
        out[("clean", kind)] = usefulness(feats, images.y, weights=m[("sign", kind)], kind=kind, stats=m["stats"])
        out[("noise", kind)] = robust_usefulness(model, images.x, images.y, eps=paper.eps, alpha=0.0, steps=0, **common)
        out[("paper", kind)] = _robust(model, images, paper, **common)
        out[("strong", kind)] = _robust(model, strong_images, strong, **common)
    out["n"], out["n_strong"] = len(images), len(strong_images)
    out["labels"] = {"clean": "clean", "noise": "random start only (noise)",
                     "paper": f"paper's PGD-{paper.steps}, step {paper.alpha:g}",
                     "strong": f"PGD-{strong.steps}, step {strong.alpha:g}"}
    return out


#: Formats of the columns of :func:`robust_counts`.
ROBUST_COUNT_FORMAT = {"features < 0 (of 100)": "{:.0f}", "live features": "{:.0f}", "live features < 0": "{:.0f}",
                       "mean over live": "{:.3f}"}


def robust_counts(m: dict, r: dict, kinds: Sequence[str] = KINDS) -> pd.DataFrame:
    """Per kind and measure of :func:`robust_measures` ``r``: features with robust usefulness < 0, of all and of
    the live ones, and the mean over the live features (Paper 1's "all 100 features are non-robust", Fig 8)."""
    rows = {}
    for kind in kinds:
        for key, label in r["labels"].items():
            if (key, kind) in r:
                v = r[(key, kind)]
                rows[(kind, label)] = {"features < 0 (of 100)": int((v < 0).sum()),
                                       "live features": int(m["live"].sum()),
                                       "live features < 0": int((v[m["live"]] < 0).sum()),
                                       "mean over live": float(v[m["live"]].mean()) if m["live"].any() else float("nan")}
    return pd.DataFrame(rows).T


#: The rankings of :func:`pruning_curves`: Paper 1's robust usefulness and, as the baseline, the head's |weight|.
RANKINGS = ("robust usefulness", "|weight|")


def pruning_curves(model: nn.Module, robust_scores: torch.Tensor, keep_counts: Sequence[int], train_features, train_y,
                   data, attack: Attack, seed: int = 0, progress: bool = True) -> tuple[pd.DataFrame, int]:
    """Paper 1's proposed pruning of features (Sec. I, IV): keep the ``k`` highest-ranked features for each ``k`` of
    ``keep_counts`` (largest first), with the head as trained (:func:`prune_features`) or refit on the kept features
    (:func:`refit_head` on ``train_features``); clean and robust accuracy of each on ``data`` under ``attack``.

    Two rankings (:data:`RANKINGS`): ``robust_scores`` (the sign-aligned robust usefulness, which does not depend on
    the head) and the current model's head ``|w_i|``. Each removal drops the lowest-ranked kept features of the
    current model. Returns one row per (head, ranking, k) and the number of distinct models attacked (a model met
    twice is evaluated once).
    """
    d = model.head.in_features
    keep_counts = checks.ListOf(checks.Integer(low=1, high=d))("keep_counts", list(keep_counts))
    if torch.as_tensor(robust_scores).shape != (d,):
        raise ValueError(f"robust_scores must hold one score per feature ({d}), got shape "
                         f"{tuple(torch.as_tensor(robust_scores).shape)}")
    rankings: dict[str, Callable[[nn.Module], torch.Tensor]] = {
        RANKINGS[0]: lambda current: torch.as_tensor(robust_scores),
        RANKINGS[1]: lambda current: current.head.weight.detach()[0].abs().cpu()}
    evaluated: dict = {}  # (head, kept features) -> accuracies, so that no model is attacked twice
    rows = []
    for refit in (False, True):
        for name, score_of in rankings.items():
            current, keep = model, torch.ones(d, dtype=torch.bool)
            for k in sorted(keep_counts, reverse=True):
                if k < int(keep.sum()):  # remove the lowest-scoring kept features, scored on the current model
                    score = score_of(current).masked_fill(~keep, -float("inf"))
                    keep = torch.zeros(d, dtype=torch.bool)
                    keep[score.argsort(descending=True, stable=True)[:k]] = True
                current = refit_head(model, train_features, train_y, keep) if refit else prune_features(model, keep)
                key = (refit, tuple(keep.tolist()))
                if key not in evaluated:
                    evaluated[key] = evaluate(current, data, attack, seed=seed, progress=progress)
                rows.append({"head": "refit" if refit else "as trained", "ranking": name, "kept": k,
                             "clean": evaluated[key]["clean"], "robust": evaluated[key]["robust"]})
    return pd.DataFrame(rows), len(evaluated)


def _check_pruning_table(table: pd.DataFrame) -> None:
    columns = {"head", "ranking", "kept", "clean", "robust"}
    if not isinstance(table, pd.DataFrame) or not columns <= set(table.columns):
        raise ValueError(f"table must be the DataFrame of pruning_curves, with the columns "
                         f"{', '.join(sorted(columns))}; "
                         f"got {list(table.columns) if isinstance(table, pd.DataFrame) else type(table).__name__}")


def pruning_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`pruning_curves` ``table`` wide: one row per number of features kept (most first), one column per
    (accuracy, head, ranking)."""
    _check_pruning_table(table)
    return (table.pivot(index="kept", columns=["head", "ranking"], values=["clean", "robust"])
            .sort_index(ascending=False))


def robust_at_fewest(table: pd.DataFrame) -> dict[str, float]:
    """The robust accuracy of each (head, ranking) of :func:`pruning_curves` ``table`` at its fewest features kept
    ``k``, keyed ``"k{k}_{refit|zeroed}_{usefulness|weight}"``."""
    _check_pruning_table(table)
    fewest = int(table["kept"].min())
    out = {}
    for (head, name), part in table[table.kept == fewest].groupby(["head", "ranking"]):
        tag = f"{'refit' if head == 'refit' else 'zeroed'}_{'usefulness' if 'useful' in name else 'weight'}"
        out[f"k{fewest}_{tag}"] = float(part.robust.iloc[0])
    return out


def usefulness_summary(m: dict) -> str:
    """One paragraph on :func:`usefulness_measures` ``m``: live and dead features, the signs of the raw (sigmoid)
    usefulness, and the range of Ilyas et al.'s usefulness of the live features (Paper 1, Sec. IV)."""
    live_use = m[("aligned", "ilyas")][m["live"]]
    return (f"{int(m['live'].sum())} of the 100 features are live; {int((~m['live']).sum())} are dead ReLUs (0 on every "
            f"test image). Before alignment, {int((m[('raw', 'sigmoid')] > 0).sum())} features are positively and "
            f"{int((m[('raw', 'sigmoid')] < 0).sum())} negatively useful. Ilyas et al.'s usefulness of a standardised "
            f"feature is its correlation with ỹ: for the live features it ranges from {float(live_use.min()):.2f} to "
            f"{float(live_use.max()):.2f} (median {float(live_use.median()):.2f}).")


def robust_feature_count(m: dict, r: dict, attack: str = "strong", kind: str = "sigmoid") -> int:
    """Live features of :func:`usefulness_measures` ``m`` whose robust usefulness under ``attack`` (of
    :func:`robust_measures` ``r``) is not negative."""
    return int(m["live"].sum()) - int((r[(attack, kind)][m["live"]] < 0).sum())


def pruning_summary(table: pd.DataFrame, n_images: int) -> str:
    """One paragraph on :func:`pruning_curves` ``table`` measured on ``n_images``: the range of robust accuracy of each
    ranking with the head refit, the lowest clean accuracy, and one standard error of the unpruned robust accuracy."""
    _check_pruning_table(table)
    refit_rows = table[table["head"] == "refit"]
    spans = [f"keeping the highest {name}, robust accuracy ranges over {part.robust.min():.0%}–{part.robust.max():.0%} "
             f"(lowest at {int(part.loc[part.robust.idxmin(), 'kept'])} features)" for name, part in refit_rows.groupby("ranking")]
    p_full = float(refit_rows.robust.iloc[0])
    return (f"With the head refit, {'; '.join(spans)}. Clean accuracy never falls below {table.clean.min():.0%}. "
            f"With {n_images} images, one standard error of an accuracy near {p_full:.0%} is about "
            f"{(p_full * (1 - p_full) / n_images) ** 0.5:.0%}: differences of a few points are noise.")


# --------------------------------------------------------------------------------------------
# Several seeds, and the claims of Sec. IV judged over live features (helpers.claims)
# --------------------------------------------------------------------------------------------

#: Readings of Fig 8 that the paper leaves open: (name, PGD random start, weights inside the sigmoid: "sign" for the
#: sign-aligned +-1 of the note under Fig 5, "head" for the head's w_i of the paper's formula). The first is the one
#: ``standard_features_nonrobust`` is judged on; the others are reported beside it.
FIG8_READINGS = (("random start, sign-aligned +-1", True, "sign"), ("no random start, sign-aligned +-1", False, "sign"),
                 ("random start, head weights w_i", True, "head"), ("no random start, head weights w_i", False, "head"))


def dead_features(model: nn.Module, x: torch.Tensor) -> list[int]:
    """The penultimate features of ``model`` that are 0 on every image of ``x`` (dead ReLUs): the features
    :func:`usefulness_measures` leaves out as not live (a ReLU feature constant on the data is 0 on all of it)."""
    feats = collect_features(model, x)
    return torch.nonzero((feats != 0).sum(0) == 0).squeeze(1).tolist()


def dead_at_initialisation(seed: int, x: torch.Tensor, n_features: int = 100) -> list[int]:
    """:func:`dead_features` of the untrained ``BinaryFeatureCNN`` drawn with ``seed``, as
    :func:`helpers.train.adversarial.train_binary_feature_cnn` draws it before training."""
    torch.manual_seed(checks.integer("seed", seed, low=0))
    return dead_features(BinaryFeatureCNN(n_features=n_features).eval(), x)


def seed_measures(model: nn.Module, test, robust_images, attack: Attack, clean_accuracy: float,
                  generator: torch.Generator | None = None) -> dict:
    """What the claims of Sec. IV need from one standard model, per test example and over its **live** features:
    ``actual`` (N, live) the per-image actual usefulness (sigmoid, head weights, Fig 6); ``robust`` (n, live) the
    per-image robust usefulness of the sign-aligned features under ``attack`` (the paper's PGD-3, Fig 8) on
    ``robust_images``; for the live features of low usefulness (sign-aligned usefulness below half the largest,
    Fig 7) the per-image ablation effect ``logit_shift`` (|change of the logit|), ``logit_spread`` (|logit - its
    mean|) and ``flips`` (1/0: prediction changed); ``readings``: ``{name: (n, live)}`` the robust usefulness under
    each reading of :data:`FIG8_READINGS` (the first is ``robust``); ``n_live``, ``n_low_live``, ``clean``, ``dead``
    (the indices of the features that are 0 on every test image) and ``m`` (:func:`usefulness_measures` on
    ``test``)."""
    if not isinstance(attack, Attack) or attack.kind != "pgd":
        raise ValueError(f"attack must be a PGD Attack, got {attack!r}")
    m = usefulness_measures(model, test.x, test.y)
    live = m["live"]
    actual = per_sample_usefulness(m["features"], test.y, weights=m["w"], kind="sigmoid", stats=m["stats"])
    readings = {}
    for name, random_start, weights in FIG8_READINGS:
        readings[name] = robust_usefulness(
            model, robust_images.x, robust_images.y, eps=attack.eps, alpha=attack.alpha, steps=attack.steps,
            random_start=random_start and attack.random_start, restarts=attack.restarts,
            weights=m[("sign", "sigmoid")] if weights == "sign" else m["w"], stats=m["stats"], generator=generator,
            per_sample=True)[:, live].numpy()
    low, _ = ablation_groups(m)
    low_live = low[live[low]]
    logits = m["features"] @ m["w"] + m["b"]
    shift = ((m["features"][:, low_live] - m["stats"].mean[low_live]) * m["w"][low_live]).sum(1)
    return {"m": m, "clean": float(clean_accuracy), "n_live": int(live.sum()), "n_low_live": len(low_live),
            "dead": torch.nonzero(~live).squeeze(1).tolist(), "readings": readings,
            "actual": actual[:, live].numpy(), "robust": readings[FIG8_READINGS[0][0]],
            "logit_shift": shift.abs().numpy(), "logit_spread": (logits - logits.mean()).abs().numpy(),
            "flips": ((logits > 0) != (logits - shift > 0)).float().numpy()}


def standard_seed_runs(train, test, robust_images, attack: Attack, seeds: Sequence[int], *, epochs: int, lr: float,
                       batch_size: int, optimizer: str, device, adv_weight: float = 0.5) -> list[dict]:
    """The standard binary model of Sec. IV trained once per seed of ``seeds`` (load-or-train,
    :func:`helpers.train.adversarial.train_binary_feature_cnn`; the same training images, each seed its own
    initial weights and batch order), each measured by :func:`seed_measures` (the attack's noise drawn from the
    seed). Returns one dict per seed: :func:`seed_measures`'s keys and ``seed``, ``model``. The one loop over seeds
    of the feature-usefulness notebook."""
    seeds = checks.seeds(seeds)
    out = []
    for s in seeds:
        model = train_binary_feature_cnn("standard", train, epochs=epochs, lr=lr, batch_size=batch_size,
                                         optimizer=optimizer, seed=s, device=device, adv_weight=adv_weight)
        clean = evaluate(model, test)["clean"]
        measures = seed_measures(model, test, robust_images, attack, clean, torch.Generator().manual_seed(s))
        out.append({"seed": s, "model": model, **measures})
        print(f"seed {s}: clean {clean:.2%}, {measures['n_live']} live features, {measures['n_low_live']} live of "
              f"low usefulness")
    return out
