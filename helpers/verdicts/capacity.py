"""The verdicts on Paper 1's capacity claims (Sec. III, Figs 2-3), from :func:`helpers.train.capacity_seed_runs`."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from .. import claims
from ..train.adversarial import CAPACITY_METHODS, capacity_scores

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["capacity_judgements"]


def capacity_judgements(measured: pd.DataFrame, eps: float, scales: Sequence[int], num_classes: int, *,
                        clean_guard: float = 3.0, near_chance: float = 0.20, jump: float = 0.30,
                        level: float = 0.95) -> dict:
    """The three claims of Paper 1, Sec. III, judged (:mod:`helpers.claims`) from :func:`capacity_seed_runs`
    ``measured`` at ``eps`` over the capacity ``scales`` run; returns ``{claim id: Judgement}``.

    * ``clean_grows_with_capacity``, per method: clean accuracy of the largest minus the smallest scale > 0, and
      the least-squares slope of clean accuracy per scale > 0 (paired over seeds x test images).
    * ``robust_near_chance_small``, per method: the highest adversarial accuracy among scales 0-2 < ``near_chance``.
    * ``robust_jumps_at_scale3``, per method: adversarial accuracy at scale 3 minus scale 2 >= ``jump``.

    Guards: the clean accuracy (mean over seeds) of every net a claim rests on >= ``clean_guard`` x chance (the nets
    learned the clean task; for near-chance robust accuracy otherwise trivial); for the near-chance claim also a
    positive control: some run net (any method, scale) reaches adversarial accuracy >= ``near_chance``, so that the
    pipeline can produce the robustness whose absence is claimed.
    """
    scales = sorted(int(s) for s in scales)
    chance = 1.0 / num_classes
    floor = clean_guard * chance
    arms = {(m, k, s): capacity_scores(measured, m, k, eps, s) for m in CAPACITY_METHODS for k in ("clean", "adversarial")
            for s in scales}
    acc = {key: float(a.mean()) for key, a in arms.items()}

    def clean_guards(chosen):
        return [claims.Guard(f"clean accuracy, {CAPACITY_METHODS[m]} scale {s}",
                             acc[(m, "clean", s)], at_least=floor, fmt="{:.1%}") for m in CAPACITY_METHODS for s in chosen]

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
    return out
