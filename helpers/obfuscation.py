"""Gradient-obfuscation checklist: five warning signs that a defence masks gradients instead of being robust.

Athalye, Carlini and Wagner (2018, Sec. 3.1) list the signs that white-box gradient attacks are failing
for the wrong reason. :func:`obfuscation_checklist` runs five of them on any classifier and says, for each,
whether the model passes (no warning sign) with the numbers behind the verdict:

(i) ``fgsm_weaker_than_pgd``: a one-step attack (FGSM) should not beat the iterative one (PGD).
(ii) ``transfer_weaker_than_white_box``: attacks crafted on a separately trained model should not beat
     white-box attacks on the model itself.
(iii) ``accuracy_falls_with_eps``: accuracy should fall (never rise) as eps grows.
(iv) ``unbounded_reaches_zero``: with an unbounded budget (eps = 1 covers all of [0, 1]) accuracy should reach ~0%.
(v) ``more_steps_reach_asymptote``: more PGD iterations should stop helping the attacker (a plateau).
(vi) ``other_loss_no_stronger`` (only with ``second_loss_fn``): PGD on another loss (e.g. a margin of the
     pre-sigmoid outputs, :func:`helpers.train.defences.margin_loss`) should not beat PGD on the training loss; if it does, the training loss
     hides the way (saturated outputs) and its white-box numbers overstate robustness.

Attacks ascend ``loss_fn`` (pass the loss the model was trained with). Every accuracy comes from
:func:`helpers.train.evaluate` with the same ``batch_size`` and ``seed``, so results are deterministic and
models that normalise by batch statistics at test time are attacked as they are evaluated.
"""
from __future__ import annotations

from typing import Sequence

import torch.nn as nn

from . import checks
from .attacks import Attack, classification_loss, pgd_attack  # pgd_attack: re-exported, its old home
from .attacks.gradient import LossFn
from .train import evaluate

__all__ = ["CHECKS", "EXTRA_CHECKS", "obfuscation_checklist", "checklist_table", "attack_strengths", "warning_signs", "pgd_attack"]


#: The five checks, in order: (name, the question it answers).
CHECKS: tuple[tuple[str, str], ...] = (
    ("fgsm_weaker_than_pgd", "(i) FGSM weaker than PGD"),
    ("transfer_weaker_than_white_box", "(ii) transfer weaker than white-box"),
    ("accuracy_falls_with_eps", "(iii) accuracy falls as eps grows"),
    ("unbounded_reaches_zero", "(iv) unbounded eps reaches ~0%"),
    ("more_steps_reach_asymptote", "(v) more PGD steps reach an asymptote"),
)
#: The checks run only when asked: (vi) with ``second_loss_fn``.
EXTRA_CHECKS: tuple[tuple[str, str], ...] = (
    ("other_loss_no_stronger", "(vi) another loss finds no more"),
)



def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def _curve(points: Sequence[tuple[float, float]], fmt: str) -> str:
    return ", ".join(f"{fmt.format(x)}: {_percent(a)}" for x, a in points)


def obfuscation_checklist(
    model: nn.Module,
    data,
    *,
    eps: float,
    source: nn.Module | None = None,
    loss_fn: LossFn = classification_loss,
    pgd_steps: int = 40,
    step_fraction: float | None = None,
    eps_grid: Sequence[float] | None = None,
    unbounded_eps: float = 1.0,
    steps_grid: Sequence[int] | None = None,
    tolerance: float = 0.02,
    unbounded_max_accuracy: float = 0.05,
    batch_size: int = 500,
    seed: int = 0,
    progress: bool = False,
    per_example: bool = False,
    second_loss_fn: LossFn | None = None,
    second_loss_model: nn.Module | None = None,
) -> list[dict]:
    """Run the five warning-sign checks of Athalye et al. (2018, Sec. 3.1) on ``model`` at ``eps``.

    Returns one dict per check: ``test`` (a name of :data:`CHECKS`), ``question``, ``passed`` (True: no sign of
    obfuscation; False: a warning sign; None: not run), ``detail`` (the numbers, one line) and ``values``.

    ``data``: an ImageData or (x, y) in [0, 1]. ``source``: a separately trained model for the transfer check
    (None skips it). PGD takes ``pgd_steps`` steps of ``step_fraction * eps`` (None: 2.5 / steps) from a
    random start. ``eps_grid`` (default eps/4, eps/2, eps, min(2 eps, 1)) is the sweep of check (iii);
    ``steps_grid`` (default pgd_steps/4, pgd_steps, 4 pgd_steps) the iterations of check (v). ``tolerance``
    is the accuracy margin (absolute, default 2 points) inside which two accuracies count as equal;
    ``unbounded_max_accuracy`` is "~0%" for check (iv).

    ``per_example=True`` adds to every check ``correct``: the 1/0 per image (in the data's order) behind each
    accuracy it compares, keyed as in its ``values`` ("fgsm", "pgd"; "white_box" (PGD), "transfer_fgsm",
    "transfer_pgd"; "eps=<e>" with "eps=0" clean; "accuracy"; "steps=<k>"), for :func:`helpers.claims.bootstrap`
    over seeds and images.

    ``second_loss_fn`` adds check (vi): PGD-``pgd_steps`` ascending it, through ``second_loss_model`` (None: the
    model; e.g. the model without its output sigmoid, which classifies alike) must leave at least the accuracy of
    PGD on ``loss_fn`` minus ``tolerance`` (values and ``correct`` keys "pgd", "pgd_second").
    """
    checks.number("eps", eps, 0, 1)
    checks.number("unbounded_eps", unbounded_eps, 0, 1)
    checks.number("tolerance", tolerance, 0, 1)
    checks.number("unbounded_max_accuracy", unbounded_max_accuracy, 0, 1)
    if eps == 0:
        raise ValueError("eps must be > 0 for the checklist, got 0")
    if not (isinstance(pgd_steps, int) and not isinstance(pgd_steps, bool) and pgd_steps >= 1):
        raise ValueError(f"pgd_steps must be an int >= 1, got {pgd_steps!r}")
    eps_grid = sorted(set(eps_grid)) if eps_grid is not None else sorted({eps / 4, eps / 2, eps, min(2 * eps, 1.0)})
    if not eps_grid or any(not (isinstance(e, (int, float)) and 0 < e <= 1) for e in eps_grid):
        raise ValueError(f"eps_grid must be numbers in (0, 1], got {eps_grid!r}")
    steps_grid = sorted(set(steps_grid)) if steps_grid is not None else sorted({max(1, pgd_steps // 4), pgd_steps, 4 * pgd_steps})
    if len(steps_grid) < 2 or any(not (isinstance(s, int) and not isinstance(s, bool) and s >= 1) for s in steps_grid):
        raise ValueError(f"steps_grid must hold at least two distinct ints >= 1, got {steps_grid!r}")

    cache: dict[tuple, float] = {}
    correct: dict[tuple, object] = {}
    clean_accuracy: list[float] = []
    clean_correct: list = []

    def accuracy(attack: Attack, attacker: nn.Module | None = None, loss: LossFn | None = None) -> float:
        key = (attack, id(attacker)) if loss is None else (attack, id(attacker), id(loss))
        if key not in cache:
            result = evaluate(model, data, attack, batch_size=batch_size, seed=seed, loss_fn=loss or loss_fn,
                              source=attacker, progress=progress, desc=attack.describe(), per_example=True)
            cache[key], correct[key] = result["robust"], result["robust_correct"]
            if not clean_accuracy:
                clean_accuracy.append(result["clean"])
                clean_correct.append(result["clean_correct"])
        return cache[key]

    found: list[dict] = []

    def add(index: int, passed: bool | None, detail: str, scores: dict | None = None, **values) -> None:
        name, question = CHECKS[index]
        found.append({"test": name, "question": question, "passed": passed, "detail": detail, "values": values})
        if per_example:
            found[-1]["correct"] = {k: correct[v] if isinstance(v, tuple) else v for k, v in (scores or {}).items()}

    fgsm_eps, pgd_eps = Attack("fgsm", eps=eps), pgd_attack(eps, pgd_steps, step_fraction)
    fgsm_acc, pgd_acc = accuracy(fgsm_eps), accuracy(pgd_eps)
    add(0, pgd_acc <= fgsm_acc + tolerance,
        f"FGSM {_percent(fgsm_acc)} vs PGD-{pgd_steps} {_percent(pgd_acc)} (eps {eps:.3g})",
        dict(fgsm=(fgsm_eps, id(None)), pgd=(pgd_eps, id(None))), fgsm=fgsm_acc, pgd=pgd_acc)

    white_box = min(fgsm_acc, pgd_acc)
    if source is None:
        add(1, None, "not run: no separately trained source model given", dict(white_box=(pgd_eps, id(None))),
            white_box=white_box)
    else:
        transfer_fgsm, transfer_pgd = accuracy(fgsm_eps, source), accuracy(pgd_eps, source)
        transfer = min(transfer_fgsm, transfer_pgd)
        add(1, white_box <= transfer + tolerance,
            f"white-box {_percent(white_box)} vs transfer {_percent(transfer)} "
            f"(transfer FGSM {_percent(transfer_fgsm)}, PGD-{pgd_steps} {_percent(transfer_pgd)})",
            dict(white_box=(pgd_eps, id(None)), transfer_fgsm=(fgsm_eps, id(source)),
                 transfer_pgd=(pgd_eps, id(source))),
            white_box=white_box, transfer=transfer, transfer_fgsm=transfer_fgsm, transfer_pgd=transfer_pgd)

    sweep = [(0.0, clean_accuracy[0])] + [(e, accuracy(pgd_attack(e, pgd_steps, step_fraction))) for e in eps_grid]
    rises = [(a, b) for (_, a), (_, b) in zip(sweep, sweep[1:]) if b > a + tolerance]
    falls = sweep[-1][1] < sweep[0][1] - tolerance
    add(2, not rises and falls,
        f"PGD-{pgd_steps} by eps: {_curve(sweep, '{:.3g}')}" + ("" if falls else "; never falls below clean")
        + (f"; rises {len(rises)} time(s)" if rises else ""),
        {"eps=0": clean_correct[0], **{f"eps={e:g}": (pgd_attack(e, pgd_steps, step_fraction), id(None))
                                       for e in eps_grid}},
        eps=[e for e, _ in sweep], accuracy=[a for _, a in sweep])

    unbounded = accuracy(pgd_attack(unbounded_eps, pgd_steps, step_fraction))
    add(3, unbounded <= unbounded_max_accuracy,
        f"PGD-{pgd_steps} at eps {unbounded_eps:g}: {_percent(unbounded)} (~0% means <= {_percent(unbounded_max_accuracy)})",
        dict(accuracy=(pgd_attack(unbounded_eps, pgd_steps, step_fraction), id(None))), accuracy=unbounded)

    by_steps = [(s, accuracy(pgd_attack(eps, s, step_fraction))) for s in steps_grid]
    last_change = by_steps[-1][1] - by_steps[-2][1]
    rises = [(a, b) for (_, a), (_, b) in zip(by_steps, by_steps[1:]) if b > a + tolerance]
    add(4, abs(last_change) <= tolerance and not rises,
        f"PGD at eps {eps:.3g} by steps: {_curve(by_steps, '{}')}; last change {100 * last_change:+.1f} points",
        {f"steps={s}": (pgd_attack(eps, s, step_fraction), id(None)) for s in steps_grid},
        steps=[s for s, _ in by_steps], accuracy=[a for _, a in by_steps])

    if second_loss_fn is not None:
        attacker = second_loss_model if second_loss_model is not None else model
        second = accuracy(pgd_eps, attacker, second_loss_fn)
        name, question = EXTRA_CHECKS[0]
        found.append({"test": name, "question": question, "passed": second >= pgd_acc - tolerance,
                      "detail": f"PGD-{pgd_steps} on the training loss {_percent(pgd_acc)} vs on "
                                f"{getattr(second_loss_fn, '__name__', 'the second loss')} {_percent(second)}",
                      "values": {"pgd": pgd_acc, "pgd_second": second}})
        if per_example:
            found[-1]["correct"] = {"pgd": correct[(pgd_eps, id(None))],
                                    "pgd_second": correct[(pgd_eps, id(attacker), id(second_loss_fn))]}
    return found


def checklist_table(results: dict[str, list[dict]], *, detail: bool = True):
    """A DataFrame with one row per model (keys of ``results``) and one column per check: pass / FAIL / n/a.

    With ``detail`` each cell also carries the numbers, e.g. "pass: FGSM 45.0% vs PGD-40 30.0% (eps 0.3)".
    """
    import pandas as pd

    def cell(check: dict) -> str:
        verdict = {True: "pass", False: "FAIL", None: "n/a"}[check["passed"]]
        return f"{verdict}: {check['detail']}" if detail else verdict

    rows = {model: {check["question"]: cell(check) for check in model_checks} for model, model_checks in results.items()}
    ran = {question for row in rows.values() for question in row}
    columns = [question for _, question in CHECKS] + [question for _, question in EXTRA_CHECKS if question in ran]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns)


def attack_strengths(checklist: list[dict], pgd_label: str = "PGD") -> dict[str, float]:
    """One model's accuracies under each attack the checklist ran (clean, white-box FGSM and PGD, the transfer
    attacks from the source model) and how many of the five checks it passed."""
    values = {c["test"]: c["values"] for c in checklist}
    return {"clean": values["accuracy_falls_with_eps"]["accuracy"][0],
            "FGSM": values["fgsm_weaker_than_pgd"]["fgsm"], pgd_label: values["fgsm_weaker_than_pgd"]["pgd"],
            "transfer FGSM": values["transfer_weaker_than_white_box"]["transfer_fgsm"],
            f"transfer {pgd_label}": values["transfer_weaker_than_white_box"]["transfer_pgd"],
            **({f"{pgd_label} (second loss)": values["other_loss_no_stronger"]["pgd_second"]}
               if "other_loss_no_stronger" in values else {}),
            "checks passed": sum(c["passed"] is True for c in checklist)}


def warning_signs(name: str, checklist: list[dict], strengths: dict[str, float], pgd_label: str = "PGD") -> str:
    """A Markdown bullet: the checks ``name`` fails (or none), and the lowest white-box accuracy any attack found."""
    failed = [c for c in checklist if c["passed"] is False]
    by_test = {c["test"]: c["values"] for c in checklist}
    lowest = min(strengths[pgd_label], strengths["FGSM"], by_test["more_steps_reach_asymptote"]["accuracy"][-1],
                 by_test.get("other_loss_no_stronger", {}).get("pgd_second", 1.0))
    signs = "no warning sign" if not failed else "fails " + "; ".join(f"{c['question']} ({c['detail']})" for c in failed)
    return f"- **{name}**: {signs}. Lowest white-box accuracy found: {lowest:.1%} (clean {strengths['clean']:.1%})."
