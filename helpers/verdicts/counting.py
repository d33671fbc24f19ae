"""The verdicts on the thesis's counting claims (Paper 5, Sec. 2.2), from per-image scores over seeds
(:func:`helpers.train.counting.count_scores`, :func:`helpers.saliency.region_density_by_seed`,
:func:`helpers.saliency.detection_counts_by_seed`) and the second-derivative summary."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .. import claims
from ..saliency import later_to_first_size, second_derivative_check, share_arms

__all__ = ["counting_judgements"]


def _part(name: str, statistic, arms, threshold: float, side: str = "above", fmt: str = "{:+.1%}") -> claims.Part:
    return claims.Part(name, claims.bootstrap(statistic, *arms), threshold, side, fmt)


def counting_judgements(per_image: Sequence[Mapping[str, np.ndarray]], base_scores: Mapping[str, np.ndarray],
                        region_scores: Mapping[str, np.ndarray], detected: Mapping[str, list],
                        second_table: pd.DataFrame, *, types: Sequence[str],
                        sigmoid_density: Mapping[str, np.ndarray], sigmoid_exact_all: np.ndarray,
                        fixed: Mapping[str, np.ndarray] | None = None,
                        learned_margin: float = 0.10) -> dict[str, claims.Judgement]:
    """The counting claims judged (:mod:`helpers.claims`); returns ``{claim id: Judgement}``.

    ``per_image``: the main net's :func:`~helpers.train.counting.count_scores` per seed; ``base_scores``: the
    predict-the-mean baseline's; ``region_scores``: ``{region: [seeds, images]}`` saliency per pixel;
    ``detected``: :func:`~helpers.saliency.detection_counts_by_seed` at the judged thresholds; ``sigmoid_density``:
    the sigmoid net's ``{region: [1, images]}``; ``sigmoid_exact_all``: its 1/0 exact count (both types) per test
    image; ``fixed``: 1/0 exact counts (both types) per test image of ``"fixed"`` (a ReLU net trained and tested on
    shapes of one fixed size), ``"fixed_baseline"`` (the predict-the-mean baseline there) and ``"relu"`` (the ReLU
    net of one scale per image, as many epochs), or None (not run). Guard of every empirical claim: the judged net's exact count (both types) beats the baseline's by at
    least ``learned_margin``. Thresholds (stated before the run, see claims.yml): ``learns_to_count`` exact minus
    baseline > 25 points per type and MAE < 0.5; ``saliency_on_edges_corners`` edge band and corners > 1.5x the
    interior per pixel; ``detection_partial`` mean coverage < 60%; ``detection_between_shapes`` share between
    two shapes > 25%; ``detection_groups_shrink`` later groups' mean size < 0.5x the first group's;
    ``sigmoid_saliency_blank_space`` the sigmoid net's far background > 1x its interior per pixel;
    ``fixed_size_shapes`` the fixed-size net's exact count (both types) > 90% ("extremely accurate") and above the
    one-scale-per-image ReLU net's (unpaired: other test images); ``relu_second_derivative_zero`` an arithmetic
    check."""
    seeds = len(per_image)
    tiled = lambda values: claims.scores([values] * seeds)  # the baseline does not vary by seed
    exact = {k: claims.scores([p[f"exact_{k}"] for p in per_image]) for k in (*types, "all")}
    baseline_all = float(np.mean(base_scores["exact_all"]))
    learned = [claims.Guard("exact count (both types) minus the baseline's", float(exact["all"].mean()) - baseline_all,
                            at_least=learned_margin, fmt="{:+.1%}")]
    sigmoid_learned = [claims.Guard("sigmoid net: exact count (both types) minus the baseline's",
                                    float(np.mean(sigmoid_exact_all)) - baseline_all, at_least=learned_margin,
                                    fmt="{:+.1%}")]
    judgements = {
        "learns_to_count": claims.judge(
            [_part(f"exact {t} minus baseline", claims.difference, (exact[t], tiled(base_scores[f"exact_{t}"])), 0.25)
             for t in types]
            + [_part("MAE (both types)", claims.mean, [claims.scores([p["abs_error"] for p in per_image])], 0.5,
                     "below", "{:.2f}")], learned),
        "saliency_on_edges_corners": claims.judge([_part(f"saliency per pixel, {r} / interior", claims.ratio, (
            region_scores[r], region_scores["interior"]), 1.5, fmt="{:.2f}x") for r in ("edge band", "corners")],
            learned),
        "sigmoid_saliency_blank_space": claims.judge([_part(
            "sigmoid net: saliency per pixel, far background / interior", claims.ratio,
            (sigmoid_density["far background"], sigmoid_density["interior"]), 1.0, fmt="{:.2f}x")], sigmoid_learned),
    }
    for claim_id, (num, den, threshold, side, what) in {
            "detection_partial": ("coverage_sum", "groups_on_shape", 0.6, "below", "mean coverage of a shape"),
            "detection_between_shapes": ("seeds_between", "seeds", 0.25, "above", "seeds between two shapes")}.items():
        arms = share_arms(detected, num, den)
        empty = any(d.sum(1).min() == 0 for _, d in arms.values())  # nothing to divide by on some seed
        judgements[claim_id] = claims.not_run(f"a seed's detection left no {den} to measure {what} on") if empty else \
            claims.judge([_part(f"{what}, {label} threshold", claims.ratio, a, threshold, side, "{:.1%}")
                          for label, a in arms.items()], learned)
    later, first = share_arms(detected, "later_size_sum", "later_groups"), share_arms(detected, "first_size", "first_groups")
    if any(a[1].sum(1).min() == 0 for a in later.values()):
        judgements["detection_groups_shrink"] = claims.not_run("a seed's detection made no second group to compare")
    else:
        judgements["detection_groups_shrink"] = claims.judge(
            [_part(f"later groups' mean size / the first group's, {label} threshold", later_to_first_size,
                   (*later[label], *first[label]), 0.5, "below", "{:.2f}x") for label in later], learned)
    if fixed is None:
        judgements["fixed_size_shapes"] = claims.not_run("no net was trained on shapes of one fixed size")
    else:
        one, other = claims.scores([fixed["fixed"]]), claims.scores([fixed["relu"]])
        judgements["fixed_size_shapes"] = claims.judge([
            _part("fixed-size ReLU net, exact count (both types)", claims.mean, [one], 0.9, "above", "{:.1%}"),
            claims.Part("fixed-size minus one-scale-per-image ReLU net, exact count (both types)",
                        claims.bootstrap(claims.difference, one, other, paired=False), 0.0, "above", "{:+.1%}"),
        ], [claims.Guard("fixed-size ReLU net: exact count (both types) minus its baseline's",
                         float(np.mean(fixed["fixed"]) - np.mean(fixed["fixed_baseline"])), at_least=learned_margin,
                         fmt="{:+.1%}")])
    judgements["relu_second_derivative_zero"] = claims.check(*second_derivative_check(second_table))
    return judgements
