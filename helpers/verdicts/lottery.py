"""The verdicts on Paper 1's lottery-ticket claims (Sec. V, Figs 9-12), from the curves of
:func:`helpers.train.lottery_seed_runs`."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import claims
from ..pruning import RESETS
from ..train.adversarial import MASK_REINIT, RESET_LABELS, TRAINING_LABELS, TRAININGS, lottery_scores

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["lottery_judgements", "mask_control_intervals"]


def _level_arms(curves: pd.DataFrame, training: str, reset: str, metric: str, window: float):
    density, scores = lottery_scores(curves, training, reset, metric)
    keep = density >= window * (1 - 1e-9)
    return density[keep], scores[keep]


def lottery_judgements(curves: pd.DataFrame, num_classes: int, *, window: float = 0.0, hold_level: float = 0.015,
                       hold_tol: float = 0.015, reinit_range: tuple[float, float] = (0.015, 0.119),
                       decline: float = 0.02, stable_tol: float = 0.03, sparse: float = 0.02,
                       dense_guard: float = 5.0, level: float = 0.95) -> dict:
    """The four claims of Paper 1, Sec. V, judged (:mod:`helpers.claims`) from :func:`lottery_seed_runs` records
    ``curves`` over the levels with at least ``window`` of the weights remaining; returns ``{claim id: Judgement}``.

    * ``lottery_keeps_accuracy``: the standard ticket's (rewind) clean accuracy minus its dense accuracy, the worst
      level with >= ``hold_level`` remaining, > -``hold_tol`` (the paper: held down to 1.5%).
    * ``reinit_declines_earlier``: rewind minus random re-initialisation clean accuracy (standard training), mean
      over the levels in ``reinit_range`` (the paper: random declines from 11.9%, the ticket holds to 1.5%),
      > ``decline``.
    * ``adv_training_raises_fgsm_accuracy``: FGSM accuracy, FGSM-AT minus standard training, the worst level,
      > 0, for the rewind and for the random re-initialisation runs.
    * ``adv_tickets_stable``: (a) the FGSM-AT ticket's clean accuracy minus its dense accuracy, the worst level,
      > -``stable_tol``; (b) the standard ticket's mean drop from dense over the levels with <= ``sparse``
      remaining minus the FGSM-AT ticket's, > 0 (more stable beyond 98% pruned).
    * ``adv_ticket_higher_clean_beyond_98``: the FGSM-AT ticket's clean accuracy minus the standard ticket's, mean
      over the levels with <= ``sparse`` remaining, > 0 (the paper's "higher test standard accuracy after pruning
      more than 98%").
    * ``ticket_same_robustness``, FGSM-AT training under FGSM: (a) the ticket's FGSM accuracy minus its dense
      net's, the worst level with >= ``hold_level`` remaining, > -``stable_tol`` (the same robustness, smaller);
      (b) rewind minus random re-initialisation FGSM accuracy, mean over the levels in ``reinit_range``, > 0 (the
      better choice of the two).

    Each interval is a paired bootstrap over seeds x test images (every run of a seed is scored on the same test
    images). Guard: each training's dense clean accuracy (mean over seeds) >= ``dense_guard`` x chance.
    """
    arms = {(t, r, k): _level_arms(curves, t, r, k, window) for t in TRAININGS for r in RESETS for k in ("clean", "fgsm")}
    density = arms[("standard", "rewind", "clean")][0]
    chance = 1.0 / num_classes
    dense = {t: float(arms[(t, "rewind", "clean")][1][0].mean()) for t in TRAININGS}
    guards = [claims.Guard(f"dense clean accuracy, {TRAINING_LABELS[t]}", dense[t],
                           at_least=dense_guard * chance, fmt="{:.1%}") for t in TRAININGS]
    pts = "{:+.1%}"
    out = {}

    # every statistic below is a mean (or the worst of several means) of per-example differences between runs of
    # the same seed scored on the same test images, so each arm is one such difference: paired by construction
    std_rw, at_rw = arms[("standard", "rewind", "clean")][1], arms[("fgsm_at", "rewind", "clean")][1]
    reached = bool(density.min() <= hold_level)
    if reached:
        held = std_rw[density >= hold_level]
        out["lottery_keeps_accuracy"] = claims.judge([claims.Part(
            f"standard ticket clean accuracy minus dense, worst level >= {hold_level:.1%} remaining",
            claims.bootstrap(claims.worst_mean, *(held[1:] - held[:1]), level=level), -hold_tol, fmt=pts)], guards)
        inside = (density >= reinit_range[0]) & (density <= reinit_range[1])
        std_rd = arms[("standard", "random", "clean")][1]
        if inside.any():
            gap = (std_rw[inside] - std_rd[inside]).mean(0)  # per seed and image: the mean over the levels
            out["reinit_declines_earlier"] = claims.judge([claims.Part(
                f"rewind minus random re-init clean accuracy, mean over {int(inside.sum())} levels "
                f"{reinit_range[0]:.1%}-{reinit_range[1]:.1%} remaining",
                claims.bootstrap(claims.mean, gap, level=level), decline, fmt=pts)], guards)
        else:
            out["reinit_declines_earlier"] = claims.not_run(
                f"no level between {reinit_range[0]:.1%} and {reinit_range[1]:.1%} remaining")
    else:
        why = f"the run stops at {density.min():.1%} remaining, above {hold_level:.1%}"
        out["lottery_keeps_accuracy"] = claims.not_run(why)
        out["reinit_declines_earlier"] = claims.not_run(why)
    parts = [claims.Part(f"FGSM accuracy, FGSM-AT minus standard ({RESET_LABELS[reset]}), worst level",
                         claims.bootstrap(claims.worst_mean, *(arms[("fgsm_at", reset, "fgsm")][1]
                                                        - arms[("standard", reset, "fgsm")][1]), level=level),
                         0.0, fmt=pts) for reset in RESETS]
    out["adv_training_raises_fgsm_accuracy"] = claims.judge(parts, guards)
    sparse_levels = density <= sparse
    if sparse_levels.any():
        # (standard dense - standard sparse mean) - (AT dense - AT sparse mean), per seed and image
        drop_gap = (std_rw[0] - std_rw[sparse_levels].mean(0)) - (at_rw[0] - at_rw[sparse_levels].mean(0))
        out["adv_tickets_stable"] = claims.judge([
            claims.Part("FGSM-AT ticket clean accuracy minus dense, worst level",
                        claims.bootstrap(claims.worst_mean, *(at_rw[1:] - at_rw[:1]), level=level), -stable_tol, fmt=pts),
            claims.Part(f"mean drop from dense at <= {sparse:.0%} remaining, standard minus FGSM-AT ticket",
                        claims.bootstrap(claims.mean, drop_gap, level=level), 0.0, fmt=pts)], guards)
        out["adv_ticket_higher_clean_beyond_98"] = claims.judge([claims.Part(
            f"FGSM-AT minus standard ticket clean accuracy, mean over the levels <= {sparse:.0%} remaining",
            claims.bootstrap(claims.mean, (at_rw[sparse_levels] - std_rw[sparse_levels]).mean(0), level=level), 0.0,
            fmt=pts)], guards)
    else:
        out["adv_tickets_stable"] = claims.not_run(f"no level with <= {sparse:.0%} of the weights remaining")
        out["adv_ticket_higher_clean_beyond_98"] = claims.not_run(f"no level with <= {sparse:.0%} of the weights remaining")
    at_fgsm_rw, at_fgsm_rd = arms[("fgsm_at", "rewind", "fgsm")][1], arms[("fgsm_at", "random", "fgsm")][1]
    inside = (density >= reinit_range[0]) & (density <= reinit_range[1])
    if reached and inside.any():
        held = at_fgsm_rw[density >= hold_level]
        out["ticket_same_robustness"] = claims.judge([
            claims.Part(f"FGSM-AT ticket FGSM accuracy minus dense, worst level >= {hold_level:.1%} remaining",
                        claims.bootstrap(claims.worst_mean, *(held[1:] - held[:1]), level=level), -stable_tol, fmt=pts),
            claims.Part(f"FGSM-AT rewind minus random re-init FGSM accuracy, mean over {int(inside.sum())} levels "
                        f"{reinit_range[0]:.1%}-{reinit_range[1]:.1%} remaining",
                        claims.bootstrap(claims.mean, (at_fgsm_rw[inside] - at_fgsm_rd[inside]).mean(0), level=level),
                        0.0, fmt=pts)], guards)
    else:
        out["ticket_same_robustness"] = claims.not_run(
            f"the run does not reach {hold_level:.1%} remaining or has no level in {reinit_range[0]:.1%}-{reinit_range[1]:.1%}")
    return out


def mask_control_intervals(curves: pd.DataFrame, *, window: float = 0.0, reinit_range: tuple[float, float] = (0.015, 0.119),
                           level: float = 0.95) -> dict[str, claims.Interval]:
    """Frankle & Carbin's control beside the paper's baseline, per training of :data:`TRAININGS`: the rewound
    ticket's clean accuracy minus its own mask re-initialised (:data:`MASK_REINIT`), mean over the levels in
    ``reinit_range``, with a paired interval over seeds x test images; ``{}`` when the control was not run."""
    if MASK_REINIT not in set(curves["reset"]):
        return {}
    out = {}
    for t in TRAININGS:
        density, rewound = _level_arms(curves, t, "rewind", "clean", window)
        _, control = _level_arms(curves, t, MASK_REINIT, "clean", window)
        inside = (density >= reinit_range[0]) & (density <= reinit_range[1])
        if inside.any():
            out[t] = claims.bootstrap(claims.mean, (rewound[inside] - control[inside]).mean(0), level=level)
    return out
