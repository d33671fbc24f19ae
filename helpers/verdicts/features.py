"""The verdicts on Paper 1's feature-usefulness claims (Sec. IV), over live features only, from
:func:`helpers.features.standard_seed_runs`."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import claims

__all__ = ["fig8_reading_intervals", "share_interval", "feature_judgements"]


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


def fig8_reading_intervals(runs: Sequence[dict], level: float = 0.95) -> dict:
    """The share of live features with robust usefulness < 0 under each reading of Fig 8
    (:data:`helpers.features.FIG8_READINGS`: random start or not, sign-aligned +-1 or the head's w_i), each with the
    interval of :func:`share_interval` over seeds x images: ``{reading: Interval}``; the first reading is the one
    ``standard_features_nonrobust`` is judged on."""
    names = list(runs[0]["readings"])
    return {name: share_interval([r["readings"][name] for r in runs], positive=False, level=level) for name in names}
