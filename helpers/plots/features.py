"""Feature-usefulness figures (Paper 1, Sec. IV, Figs 5-8) and the feature-pruning curves; and the verdicts on the
claims of Sec. IV over live features (:func:`feature_judgements`: this floor may import :mod:`helpers.claims`)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import torch

from .. import claims
from ..features import KINDS, RANKINGS, usefulness_spearman

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

    from ..attacks import Attack

__all__ = ['plot_sorted_usefulness', 'plot_normalized_usefulness', 'plot_actual_usefulness', 'plot_robust_usefulness', 'plot_robust_usefulness_kinds', 'plot_robust_usefulness_models', 'plot_feature_pruning', 'share_interval', 'feature_judgements']


def plot_sorted_usefulness(ax: Axes, values: torch.Tensor, dots: torch.Tensor | None = None, *, title: str = "",
                           ylabel: str = "usefulness", live: torch.Tensor | None = None) -> None:
    """One bar per feature, most useful first (blue >= 0, red < 0), ``dots`` (Ilyas et al.'s measure) in the same
    order and the dead features (``live`` False) shaded: Paper 1's Figs 5 and 6."""
    order = np.argsort(-values.numpy(), kind="stable")
    xs = np.arange(len(order))
    colours = np.where(values.numpy()[order] >= 0, "tab:blue", "tab:red")
    ax.bar(xs, values.numpy()[order], color=colours, width=0.9, label="sigmoid (Paper 1)")
    if dots is not None:
        ax.plot(xs, dots.numpy()[order], "k.", ms=3, label="Ilyas et al. E[ỹ f̂]")
    if live is not None:
        dead = np.flatnonzero(~live.numpy()[order])
        if len(dead):
            ax.axvspan(dead.min() - 0.5, dead.max() + 0.5, color="0.85", zorder=0, label="dead features")
    ax.axhline(0, color="k", lw=0.6)
    ax.set(title=title, xlabel="feature (sorted)", ylabel=ylabel)
    ax.legend(fontsize=8)


def plot_normalized_usefulness(m: dict) -> None:
    """Paper 1's Fig 5: the normalized usefulness of every feature of :func:`helpers.features.usefulness_measures`
    ``m``, raw and sign-aligned (−f where f is negatively useful), both kinds."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), sharey=True)
    plot_sorted_usefulness(axes[0], m[("raw", "sigmoid")], m[("raw", "ilyas")],
                           title="Fig 5 (raw): normalized usefulness", live=m["live"])
    plot_sorted_usefulness(axes[1], m[("aligned", "sigmoid")], m[("aligned", "ilyas")],
                           title="Fig 5 (sign-aligned): −f where f is negatively useful", live=m["live"])
    fig.tight_layout()
    plt.show()


def plot_actual_usefulness(m: dict) -> None:
    """Paper 1's Figs 6 and 7: the actual usefulness (× head weight) of every feature of ``m``, both kinds, and its
    scatter against the sign-aligned normalized usefulness, titled with their Spearman rho
    (:func:`helpers.features.usefulness_spearman`)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), gridspec_kw=dict(width_ratios=[1.2, 1.2, 1]))
    plot_sorted_usefulness(axes[0], m[("actual", "sigmoid")], live=m["live"], ylabel="actual usefulness",
                           title="Fig 6: actual usefulness (sigmoid, × head weight)")
    plot_sorted_usefulness(axes[1], m[("actual", "ilyas")], live=m["live"], ylabel="E[ỹ w f̂]",
                           title="Fig 6, Ilyas kind: E[ỹ w f̂]")
    axes[1].get_legend().remove()
    live = m["live"].numpy()
    x_norm, y_act = m[("aligned", "sigmoid")].numpy(), m[("actual", "sigmoid")].numpy()
    axes[2].scatter(x_norm[live], y_act[live], s=14, label="live features")
    axes[2].scatter(x_norm[~live], y_act[~live], s=14, c="0.6", label="dead features")
    rho, rho_live = usefulness_spearman(m)
    axes[2].axhline(0, color="k", lw=0.6)
    axes[2].set(title=f"Fig 7: Spearman ρ = {rho:.2f} (all 100), {rho_live:.2f} (live only)",
                xlabel="normalized usefulness (sign-aligned)", ylabel="actual usefulness")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    plt.show()


#: Marker, colour and size of each measure of :func:`helpers.features.robust_measures` in Fig 8.
_ROBUST_MARKERS = {"noise": (".", "tab:green", 4), "paper": ("o", "tab:red", 3), "strong": ("x", "tab:purple", 4)}


def plot_robust_usefulness(ax: Axes, r: dict, kind: str, title: str,
                           shown: Sequence[str] = ("noise", "paper", "strong")) -> None:
    """Paper 1's Fig 8 on one axis: the sign-aligned features sorted by clean usefulness (grey bars), then each
    measure of ``shown`` of :func:`helpers.features.robust_measures` ``r`` (the random start, the attacks)."""
    order = np.argsort(-r[("clean", kind)].numpy(), kind="stable")
    xs = np.arange(len(order))
    ax.bar(xs, r[("clean", kind)].numpy()[order], color="0.8", width=0.9, label="clean (same images)")
    for key in shown:
        marker, colour, size = _ROBUST_MARKERS[key]
        ax.plot(xs, r[(key, kind)].numpy()[order], marker, c=colour, ms=size, label=r["labels"][key])
    ax.axhline(0, color="k", lw=0.6)
    ax.set(title=title, xlabel="feature (sorted by clean usefulness)", ylabel="usefulness of the aligned feature")
    ax.legend(fontsize=8)


def plot_robust_usefulness_kinds(r: dict, strong_steps: int) -> None:
    """Paper 1's Fig 8: :func:`plot_robust_usefulness` for each kind of :data:`helpers.features.KINDS`, side by side
    (``strong_steps``: the iterations of ``r``'s stronger PGD, for the titles)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 3.9))
    for ax, kind in zip(axes, KINDS):
        plot_robust_usefulness(ax, r, kind, f"Fig 8: robust usefulness, "
                               f"{'sigmoid (Paper 1)' if kind == 'sigmoid' else 'Ilyas et al. E[ỹ f̂]'}"
                               f" ({r['n']} images; {r['n_strong']} for PGD-{strong_steps})")
    fig.tight_layout()
    plt.show()


def plot_robust_usefulness_models(robust: Mapping[str, dict], paper_steps: int, strong_steps: int) -> None:
    """Fig 8 (sigmoid kind, both attacks) for each model of ``robust`` (name ->
    :func:`helpers.features.robust_measures`), side by side, each titled with its features of negative robust
    usefulness under either PGD."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(robust), figsize=(6.5 * len(robust), 3.9), sharey=True, squeeze=False)
    for ax, (name, r) in zip(axes[0], robust.items()):
        plot_robust_usefulness(ax, r, "sigmoid", f"{name}: features < 0: {int((r[('paper', 'sigmoid')] < 0).sum())} "
                               f"under PGD-{paper_steps}, {int((r[('strong', 'sigmoid')] < 0).sum())} under "
                               f"PGD-{strong_steps}", shown=("paper", "strong"))
    fig.tight_layout()
    plt.show()


def plot_feature_pruning(table: pd.DataFrame, model_name: str, attack: Attack) -> None:
    """Clean and robust accuracy against the features kept, one line per (head, ranking) of
    :func:`helpers.features.pruning_curves` ``table`` (Paper 1's proposed pruning; ``attack``: its robust column)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), sharex=True)
    colours = dict(zip(RANKINGS, ["tab:blue", "tab:orange"]))
    for ax, metric in zip(axes, ["clean", "robust"]):
        for (head, name), part in table.groupby(["head", "ranking"]):
            ax.plot(part.kept, part[metric], "o-" if head == "refit" else "s--", c=colours[name],
                    label=f"keep highest {name}, head {head}")
        ax.set(xscale="log", xlabel="features kept", ylabel=f"{metric} accuracy", ylim=(0, 1.02),
               title=f"{model_name}: {metric} accuracy" + (f" ({attack.describe()})" if metric == "robust" else ""))
        ax.legend(fontsize=8)
    fig.tight_layout()
    plt.show()


def share_interval(per_seed: Sequence, positive: bool, level: float = 0.95, resamples: int = 2000,
                   seed: int = 0):
    """A :class:`helpers.claims.Interval` for the share of features whose mean score is > 0 (``positive``) or < 0,
    averaged over seeds. ``per_seed``: one array (images, features) per seed (each seed its own model and features,
    the same images for all). The bootstrap of :func:`helpers.claims.bootstrap`: each resample draws seeds with
    replacement, then images with replacement, the same images for every seed and feature."""
    data = [np.asarray(a, dtype=float) for a in per_seed]
    if not data or any(a.ndim != 2 or a.shape[1] == 0 for a in data):
        raise ValueError("per_seed must hold one (images, features) array per seed, each with at least one feature")
    n = {a.shape[0] for a in data}
    if len(n) != 1:
        raise ValueError(f"every seed must be scored on the same images; got {sorted(n)} images")
    n = n.pop()

    def share(means):
        return ((means > 0) if positive else (means < 0)).mean(-1)

    estimate = float(np.mean([share(a.mean(0)) for a in data]))
    rng = np.random.default_rng(seed)
    s = len(data)
    seed_draw = rng.integers(0, s, size=(resamples, s))
    counts = np.zeros((resamples, n))
    np.add.at(counts, (np.arange(resamples)[:, None], rng.integers(0, n, size=(resamples, n))), 1.0)
    shares = np.stack([share(counts @ a / n) for a in data])  # [seeds, resamples]
    values = shares[seed_draw, np.arange(resamples)[:, None]].mean(1)
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return claims.Interval(estimate, float(low), float(high), level, s, n, resamples)


def feature_judgements(runs: Sequence[dict], *, clean_guard: float = 0.9, min_live: int = 10,
                       positive_share: float = 0.5, logit_tol: float = 0.10, flip_tol: float = 0.01,
                       min_low_live: int = 3, nonrobust_share: float = 0.9, level: float = 0.95) -> dict:
    """The two claims of Paper 1, Sec. IV, judged over **live** features from :func:`seed_measures` of each seed's
    standard model (``runs``); returns ``{claim id: Judgement}``.

    * ``usefulness_mostly_positive``: (i) the share of live features with actual usefulness > 0 exceeds
      ``positive_share``; (ii) setting the live features of low usefulness to their mean moves the logit by less
      than ``logit_tol`` of its typical distance from its mean (the ratio of means over seeds x images) and (iii)
      changes fewer than ``flip_tol`` of the predictions. Not run when a seed's model has fewer than
      ``min_low_live`` live features of low usefulness (nothing to ablate: part (ii) would hold by construction).
    * ``standard_features_nonrobust``: the share of live features with robust usefulness < 0 exceeds
      ``nonrobust_share`` (the paper: 100 of 100).

    Guards: each seed's clean test accuracy >= ``clean_guard`` (a well-trained binary model; chance is 50%) and
    >= ``min_live`` live features.
    """
    if not runs:
        raise ValueError("runs must hold at least one seed's measures")
    guards = [claims.Guard("clean test accuracy, worst seed", min(r["clean"] for r in runs), at_least=clean_guard,
                           fmt="{:.1%}"),
              claims.Guard("live features, fewest of any seed", min(r["n_live"] for r in runs), at_least=min_live,
                           fmt="{:.0f}")]
    out = {}
    if min(r["n_live"] for r in runs) == 0:
        return {c: claims.not_run("no live feature") for c in ("usefulness_mostly_positive", "standard_features_nonrobust")}
    part_i = claims.Part("share of live features with actual usefulness > 0",
                         share_interval([r["actual"] for r in runs], positive=True, level=level), positive_share,
                         fmt="{:.0%}")
    fewest_low = min(r["n_low_live"] for r in runs)
    if fewest_low < min_low_live:
        # part (ii) cannot be tested; part (i) and the guards are kept in the record (a failed guard says so first)
        out["usefulness_mostly_positive"] = claims.judge([part_i], guards) if not all(g.passed for g in guards) else \
            claims.Judgement("empirical", claims.NOT_RUN, (part_i,), tuple(guards), reason=(
                f"parts (ii)-(iii) cannot be tested: a model has only {fewest_low} live feature(s) of low usefulness "
                f"(needs {min_low_live}; its other features of low usefulness are dead); part (i) alone is "
                f"{part_i.verdict}"))
    else:
        shift, spread, flips = (claims.scores([r[k] for r in runs]) for k in ("logit_shift", "logit_spread", "flips"))
        out["usefulness_mostly_positive"] = claims.judge([
            part_i,
            claims.Part("relative logit change, live low-usefulness features set to their mean",
                        claims.bootstrap(claims.ratio, shift, spread, level=level), logit_tol, side="below",
                        fmt="{:.1%}"),
            claims.Part("predictions changed by that ablation", claims.bootstrap(claims.mean, flips, level=level),
                        flip_tol, side="below", fmt="{:.2%}")], guards)
    out["standard_features_nonrobust"] = claims.judge([claims.Part(
        "share of live features with robust usefulness < 0 (paper's PGD)",
        share_interval([r["robust"] for r in runs], positive=False, level=level), nonrobust_share, fmt="{:.0%}")],
        guards)
    return out
