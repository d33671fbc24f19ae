"""The verdicts on Paper 1's capacity claims (Sec. III, Figs 2-3), from :func:`helpers.train.capacity_seed_runs`."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from .. import claims
from ..train.adversarial import CAPACITY_METHODS, CAPACITY_TRAININGS, capacity_scores

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["capacity_judgements", "reach_statistic"]


def reach_statistic(scales: Sequence[int], fraction: float) -> Callable[..., np.ndarray]:
    """A statistic of ``2 * len(scales)`` arms, the clean scores of a training at each of ``scales`` then a baseline's:
    the first scale at which the training's clean accuracy reaches ``fraction`` of its best over ``scales``, minus
    the same for the baseline (in capacity scales; > 0: the training needs more capacity than the baseline)."""
    scales = np.asarray(sorted(scales), dtype=float)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")

    def reach(means: np.ndarray) -> np.ndarray:  # means [scales, resamples] -> the first scale reaching the fraction
        return scales[np.argmax(means >= fraction * means.max(0), axis=0)]

    def statistic(*arms):
        if len(arms) != 2 * len(scales):
            raise ValueError(f"reach_statistic needs {2 * len(scales)} arms, got {len(arms)}")
        means = np.stack([claims.mean(a) for a in arms])
        return reach(means[:len(scales)]) - reach(means[len(scales):])

    return statistic


def capacity_judgements(measured: pd.DataFrame, eps: float, scales: Sequence[int], num_classes: int, *,
                        clean_guard: float = 3.0, near_chance: float = 0.20, jump: float = 0.30,
                        reach_fraction: float = 0.98, level: float = 0.95) -> dict:
    """The three claims of Paper 1, Sec. III, judged (:mod:`helpers.claims`) from :func:`capacity_seed_runs`
    ``measured`` at ``eps`` over the capacity ``scales`` run; returns ``{claim id: Judgement}``.

    * ``clean_grows_with_capacity``, per method: clean accuracy of the largest minus the smallest scale > 0, and
      the least-squares slope of clean accuracy per scale > 0 (paired over seeds x test images).
    * ``robust_near_chance_small``, per method: the highest adversarial accuracy among scales 0-2 < ``near_chance``.
    * ``robust_jumps_at_scale3``, per method: adversarial accuracy at scale 3 minus scale 2 >= ``jump``.
    * ``at_needs_more_capacity``, per adversarial training: the first scale at which its clean accuracy reaches
      ``reach_fraction`` of its best over the run scales, minus the same for standard training, > 0
      (:func:`reach_statistic`); needs the standard rows and three scales.

    Guards: the clean accuracy (mean over seeds) of every net a claim rests on >= ``clean_guard`` x chance (the nets
    learned the clean task; for near-chance robust accuracy otherwise trivial); for the near-chance claim also a
    positive control: some run net (any method, scale) reaches adversarial accuracy >= ``near_chance``, so that the
    pipeline can produce the robustness whose absence is claimed.
    """
    scales = sorted(int(s) for s in scales)
    chance = 1.0 / num_classes
    floor = clean_guard * chance
    trainings = [m for m in CAPACITY_TRAININGS if m in set(measured["method"])]
    arms = {(m, k, s): capacity_scores(measured, m, k, eps, s) for m in trainings for k in ("clean", "adversarial")
            for s in scales}
    acc = {key: float(a.mean()) for key, a in arms.items()}

    def clean_guards(chosen, methods=tuple(CAPACITY_METHODS)):
        return [claims.Guard(f"clean accuracy, {CAPACITY_TRAININGS[m]} scale {s}",
                             acc[(m, "clean", s)], at_least=floor, fmt="{:.1%}") for m in methods for s in chosen]

    out = {}
    if len(scales) >= 3:
        parts = []
        for m, label in CAPACITY_METHODS.items():
            first, last = arms[(m, "clean", scales[0])], arms[(m, "clean", scales[-1])]
            parts.append(claims.Part(f"{label} clean accuracy, scale {scales[-1]} minus {scales[0]}",
                                     claims.bootstrap(claims.difference, last, first, level=level), 0.0,
                                     fmt="{:+.1%}"))
            parts.append(claims.Part(f"{label} clean accuracy, slope per scale",
                                     claims.bootstrap(claims.slope_statistic(scales), *(arms[(m, "clean", s)] for s in scales),
                                                      level=level), 0.0, fmt="{:+.1%}"))
        out["clean_grows_with_capacity"] = claims.judge(parts, clean_guards(scales))
    else:
        out["clean_grows_with_capacity"] = claims.not_run(f"scales {', '.join(map(str, scales))} run: a trend needs three")
    small = [s for s in scales if s <= 2]
    if small:
        parts = [claims.Part(f"{label} highest adversarial accuracy, scales {', '.join(map(str, small))}",
                             claims.bootstrap(claims.max_statistic, *(arms[(m, "adversarial", s)] for s in small), level=level),
                             near_chance, side="below", fmt="{:.1%}") for m, label in CAPACITY_METHODS.items()]
        control = max(acc[(m, "adversarial", s)] for m in CAPACITY_METHODS for s in scales)
        guards = clean_guards(small) + [claims.Guard("positive control: highest adversarial accuracy of any run net",
                                                     control, at_least=near_chance, fmt="{:.1%}")]
        out["robust_near_chance_small"] = claims.judge(parts, guards)
    else:
        out["robust_near_chance_small"] = claims.not_run("no scale among 0-2 run")
    if 2 in scales and 3 in scales:
        parts = [claims.Part(f"{label} adversarial accuracy, scale 3 minus 2",
                             claims.bootstrap(claims.difference, arms[(m, "adversarial", 3)], arms[(m, "adversarial", 2)],
                                              level=level), jump, fmt="{:+.1%}") for m, label in CAPACITY_METHODS.items()]
        out["robust_jumps_at_scale3"] = claims.judge(parts, clean_guards([2, 3]))
    else:
        out["robust_jumps_at_scale3"] = claims.not_run(f"scales 2 and 3 not both run (ran {', '.join(map(str, scales))})")
    if "standard" not in trainings:
        out["at_needs_more_capacity"] = claims.not_run("standard training not run")
    elif len(scales) < 3:
        out["at_needs_more_capacity"] = claims.not_run(f"scales {', '.join(map(str, scales))} run: needs three")
    else:
        reach = reach_statistic(scales, reach_fraction)
        baseline = [arms[("standard", "clean", s)] for s in scales]
        parts = [claims.Part(f"first scale at {reach_fraction:.0%} of best clean accuracy, {label} minus standard",
                             claims.bootstrap(reach, *(arms[(m, "clean", s)] for s in scales), *baseline, level=level),
                             0.0, fmt="{:+.2g} scales") for m, label in CAPACITY_METHODS.items()]
        out["at_needs_more_capacity"] = claims.judge(parts, clean_guards(scales, tuple(trainings)))
    return out
