"""The verdicts on the thesis's defence claims (Paper 5, Tables 3.2-3.3, Secs 3.3.2-3.3.3), from per-image 1/0
scores over seeds (:func:`helpers.train.defences.fgsm_accuracies`, :func:`~helpers.train.defences.pgd_accuracies`),
the first seed's obfuscation checklists and the measured input gradients (:func:`~helpers.train.defences.mechanisms`)."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .. import claims
from ..train.defences import lead_over_best

__all__ = ["PGD_CHECKS", "defence_judgements"]

#: The checklist's checks that speak to the judged PGD itself: (i) stronger than FGSM, (iv) unbounded reaches ~0%,
#: (v) more steps reach an asymptote.
PGD_CHECKS = ("fgsm_weaker_than_pgd", "unbounded_reaches_zero", "more_steps_reach_asymptote")


def _part(name: str, statistic, arms, threshold: float, side: str = "above", fmt: str = "{:+.1%}") -> claims.Part:
    return claims.Part(name, claims.bootstrap(statistic, *arms), threshold, side, fmt)


def _judge(parts: Sequence[claims.Part], guards: Sequence[claims.Guard],
           **named: Sequence[claims.Guard]) -> claims.Judgement:
    """:func:`helpers.claims.judge` with the training ``guards``, then the ``named`` groups of guards (``attack``: the
    judged PGD passes the checklist; ``acted``: GMR's penalty shrank the input gradient), whose failures are named
    for what they are, not "undertrained"."""
    judged = claims.judge(parts, guards)
    labels = {"attack": "the judged PGD fails the checklist", "acted": "the GMR penalty did not act"}
    extra = tuple(g for group in named.values() for g in group)
    reasons = [f"{labels[k]}: " + "; ".join(g.text() for g in group if not g.passed)
               for k, group in named.items() if any(not g.passed for g in group)]
    if not reasons:
        return claims.Judgement(judged.kind, judged.verdict, judged.parts, tuple(guards) + extra,
                                reason=judged.reason, detail=judged.detail)
    return claims.Judgement(judged.kind, claims.NOT_RUN, judged.parts, tuple(guards) + extra,
                            reason="; ".join(filter(None, [judged.reason, *reasons])), detail=judged.detail)


def _fall_gap(pc, pw, sc, sw):  # PD's fall (clean minus attacked) minus S's fall
    return (claims.mean(pc) - claims.mean(pw)) - (claims.mean(sc) - claims.mean(sw))


def defence_judgements(correct: Mapping[tuple[str, str], np.ndarray], clean: Mapping[str, float],
                       checklists: Mapping[str, Sequence[dict]], grad_norm: Mapping[str, float], *,
                       pgd_label: str, clean_guard: float = 0.70, parity: float = 0.05, margin: float = 0.05,
                       grad_ratio: float = 0.9) -> dict[str, claims.Judgement]:
    """The four defence claims judged (:mod:`helpers.claims`); returns ``{claim id: Judgement}``.

    ``correct[name, key]``: (seeds, images) 1/0 scores, keys ``clean, white, black, white_small`` (FGSM) and
    ``pgd_both`` (the judged PGD); ``clean``: seed-mean clean accuracy per network and of the source ``"S′"``.
    Guards: every compared network's clean accuracy >= ``clean_guard``; for the null claims the compared networks'
    clean spread <= ``parity``; the judged PGD passes :data:`PGD_CHECKS` on every compared network in ``checklists``;
    for ``gmr_no_help`` GMR's and GMRES's ``grad_norm`` <= ``grad_ratio`` times S's (the penalty acted). Parts:
    ``angular_whitebox_collapse`` A white-box FGSM and PGD < 10%, A black-box minus the best other > -1 point;
    ``renorm_no_help`` RS - S < ``margin`` under white- and black-box FGSM and PGD; ``gmr_no_help`` GMR - S and
    GMRES - S < ``margin`` under FGSM and PGD; ``pd_falls_small_eps`` PD clean minus FGSM at 10/255 > 20 points and
    PD's fall > S's."""
    failed = {n: [c for c in cs if c["test"] in PGD_CHECKS and c["passed"] is not True] for n, cs in checklists.items()}

    def guards(*names: str, spread: bool = False) -> list[claims.Guard]:
        out = [claims.Guard(f"clean accuracy of {n}", clean[n], at_least=clean_guard, fmt="{:.1%}") for n in names]
        if spread:
            out.append(claims.Guard(f"clean accuracy spread of {', '.join(names)}",
                                    max(clean[n] for n in names) - min(clean[n] for n in names), at_most=parity,
                                    fmt="{:.1%}"))
        return out

    def attack(*names: str) -> list[claims.Guard]:
        checked = [n for n in names if n in failed]
        return [claims.Guard(f"checks (i), (iv), (v) failed on {', '.join(checked)}: "
                             + (", ".join(f"{n} {c['question'].split(')')[0]})" for n in checked for c in failed[n]) or "none"),
                             sum(len(failed[n]) for n in checked), at_most=0, fmt="{:.0f}")]

    def benefit(a: str, key: str) -> claims.Part:
        label = {"white": "white-box FGSM", "black": "black-box FGSM", "pgd_both": f"white-box {pgd_label}"}[key]
        return _part(f"{a} minus S, {label}", claims.difference, (correct[a, key], correct["S", key]), margin, "below")

    networks = [n for n in clean if n != "S′"]
    others = [n for n in networks if n != "A"]
    acted = [claims.Guard(f"{n}'s input gradient over S's", grad_norm[n] / grad_norm["S"], at_most=grad_ratio,
                          fmt="{:.2f}x") for n in ("GMR", "GMRES")]
    source = [claims.Guard("clean accuracy of S′", clean["S′"], at_least=clean_guard, fmt="{:.1%}")]
    return {
        "angular_whitebox_collapse": _judge([
            _part("A white-box FGSM accuracy", claims.mean, [correct["A", "white"]], 0.10, "below", "{:.1%}"),
            _part(f"A white-box {pgd_label} accuracy", claims.mean, [correct["A", "pgd_both"]], 0.10, "below", "{:.1%}"),
            _part("A black-box minus the best other", lead_over_best, [correct[n, "black"] for n in ["A"] + others],
                  -0.01),
        ], guards(*networks) + source, attack=attack(*networks)),
        "renorm_no_help": _judge([benefit("RS", k) for k in ("white", "black", "pgd_both")],
                                 guards("S", "RS", spread=True) + source, attack=attack("S", "RS")),
        "gmr_no_help": _judge([benefit(n, k) for k in ("white", "pgd_both") for n in ("GMR", "GMRES")],
                              guards("S", "GMR", "GMRES", spread=True), attack=attack("S", "GMR", "GMRES"), acted=acted),
        "pd_falls_small_eps": _judge([
            _part("PD clean minus FGSM at 10/255", claims.difference, (correct["PD", "clean"], correct["PD", "white_small"]),
                  0.20),
            _part("PD's fall minus S's fall", _fall_gap,
                  [correct[n, k] for n in ("PD", "S") for k in ("clean", "white_small")], 0.0),
        ], guards("PD", "S"), attack=attack("PD", "S")),
    }
