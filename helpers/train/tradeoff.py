"""Clean and robust accuracy of Chapter 4's lambda-conditioned networks, and their CA-RA trade-off curves.

FLOAT (Kundu et al. 2023) and OAT (Wang et al. 2020) switch one network between clean accuracy (CA) and robust
accuracy (RA) at inference: :func:`clean_and_robust_accuracy` evaluates a model conditioned on (lambda_n,
lambda_th) (Eqs. 4 and 6 of FLOAT), with FLOAT's weight noise drawn from a seeded generator so that a run
repeats; :func:`tradeoff_rows` sweeps FLOAT, OAT and one PGD-AT model per lambda over the lambdas (Figs 5, 6, 9).
:func:`per_seed_scores` stacks the rows of several seeds for the claims' intervals (:mod:`helpers.claims`),
:func:`seed_means` averages them for the figures. :func:`parameter_table`, :func:`training_time_table` and
:func:`interleaved_latency` compare their costs (Sec. 4.3).
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from torch import Tensor

from .. import checks
from ..metrics import median_seconds
from ..models.conditioned import WeightNoise, conditioned_on, noise_rescale, parameter_breakdown, seeded_noise
from .loop import evaluate

__all__ = ["has_weight_noise", "clean_and_robust_accuracy", "tradeoff_rows", "per_seed_scores", "seed_means",
           "parameter_table", "training_time_table", "interleaved_latency"]

Attack = Callable[..., Tensor]


def has_weight_noise(model: nn.Module) -> bool:
    """Whether ``model`` has FLOAT's noisy layers (theta + lambda alpha eta, Eq. 4 of FLOAT)."""
    return any(isinstance(m, WeightNoise) for m in model.modules())


def clean_and_robust_accuracy(model: nn.Module, data, attack: Attack, lam: float | None = None,
                              lam_th: float = 0.0, seed: int = 0, per_example: bool = False) -> dict:
    """CA and RA under ``attack`` of ``model`` conditioned on (``lam``, ``lam_th``) (Eqs. 4 and 6 of FLOAT).

    ``lam=None`` evaluates the model as it is (a plain PGD-AT network). A FLOAT model draws its weight noise from
    a generator seeded with ``seed`` afresh at every call (:func:`helpers.models.seeded_noise`); the attack's
    random start is seeded with ``seed`` too. Returns :func:`helpers.train.evaluate`'s ``{clean, robust, n}``
    (with ``per_example=True`` also its 1/0 per image ``clean_correct`` and ``robust_correct``).
    """
    if not callable(attack):
        raise ValueError(f"attack must be callable (model, x, y, generator=...) -> x_adv, got {attack!r}")
    seed = checks.integer("seed", seed, low=0)
    if lam is None:
        return evaluate(model, data, attack=attack, seed=seed, per_example=per_example)
    lam = checks.number("lam", lam, 0, 1)
    lam_th = checks.number("lam_th", lam_th, 0, 1, high_open=True)
    noise = seeded_noise(model, seed) if has_weight_noise(model) else contextlib.nullcontext()
    with noise, conditioned_on(model, lam, lam_th):
        return evaluate(model, data, attack=attack, seed=seed, per_example=per_example)


def tradeoff_rows(float_model: nn.Module | None, data, attacks: Mapping[str, Attack], *, lambdas: Sequence[float],
                  lam_ths: Sequence[float] = (0.0, 0.5), oat_model: nn.Module | None = None,
                  pgdat_models: Mapping[float, nn.Module] | None = None, seed: int = 0,
                  per_example: bool = False) -> list[dict]:
    """CA-RA points of FLOAT at every ``lambdas`` x ``lam_ths``, OAT at every lambda, PGD-AT per lambda (Figs 5, 6, 9).

    One row per model setting and attack: ``method`` ("FLOAT λth=<t>", "OAT", "PGD-AT"), ``lam``, ``s`` (FLOAT's
    noise factor, Eq. 6; NaN otherwise), ``attack`` (the key of ``attacks``), ``CA``, ``RA``. FLOAT at lambda_n = 0
    and 1 is the same network for every threshold (s = 0 with BN_C, s = 1 with BN_A) and is evaluated once;
    ``float_model=None`` skips FLOAT (only OAT and PGD-AT).
    OAT uses lambda_th = 0 (BN_A iff lambda > 0); ``pgdat_models`` maps a PGD-AT loss weight to its plain model.
    ``per_example=True`` adds ``clean_correct`` and ``robust_correct`` (1/0 per test image, in the data's order) to
    every row, the scores :func:`per_seed_scores` stacks over seeds for :func:`helpers.claims.bootstrap`.
    """
    if not attacks:
        raise ValueError("attacks must name at least one attack, e.g. {'PGD-7': Attack('pgd', ...)}")
    lambdas = [checks.number(f"lambdas[{i}]", lam, 0, 1) for i, lam in enumerate(lambdas)]
    lam_ths = [checks.number(f"lam_ths[{i}]", t, 0, 1, high_open=True) for i, t in enumerate(lam_ths)]
    if not lambdas or not lam_ths:
        raise ValueError(f"lambdas and lam_ths must not be empty, got {lambdas!r} and {lam_ths!r}")
    rows: list[dict] = []

    def add(method: str, model: nn.Module, lam: float, lam_th: float | None, done: dict | None = None) -> None:
        # lam_th None: a plain model, evaluated as it is
        s = math.nan if lam_th is None or method == "OAT" else noise_rescale(lam, lam_th)
        for name, attack in attacks.items():
            r = done[name] if done else clean_and_robust_accuracy(
                model, data, attack, None if lam_th is None else lam, lam_th or 0.0, seed, per_example)
            row = dict(method=method, lam=lam, s=s, attack=name, CA=r["clean"], RA=r["robust"])
            if per_example:
                row.update(clean_correct=r["clean_correct"], robust_correct=r["robust_correct"])
            rows.append(row)

    boundary: dict[float, dict] = {}
    for lam_th in lam_ths if float_model is not None else ():
        for lam in lambdas:
            start = len(rows)
            add(f"FLOAT λth={lam_th:g}", float_model, lam, lam_th, boundary.get(lam))
            if lam in (0.0, 1.0) and lam not in boundary:
                boundary[lam] = {row["attack"]: {"clean": row["CA"], "robust": row["RA"],
                                                 "clean_correct": row.get("clean_correct"),
                                                 "robust_correct": row.get("robust_correct")} for row in rows[start:]}
    for lam in lambdas if oat_model is not None else ():
        add("OAT", oat_model, lam, 0.0)
    for lam, model in (pgdat_models or {}).items():
        add("PGD-AT", model, checks.number("pgdat_models key", lam, 0, 1), None)
    return rows


def per_seed_scores(frame: pd.DataFrame, metric: str, **where) -> np.ndarray:
    """The per-example scores ``[seeds, examples]`` of the rows of ``frame`` that match ``where``, one row per seed.

    ``frame`` holds :func:`tradeoff_rows` rows (``per_example=True``) with a ``seed`` column; ``metric`` is "CA"
    (``clean_correct``) or "RA" (``robust_correct``); ``where`` selects by column, floats compared with a
    tolerance (e.g. ``method="OAT", lam=1.0, attack="PGD-7"``). Rows are ordered by seed; each seed must match once.
    """
    column = {"CA": "clean_correct", "RA": "robust_correct"}[checks.choice("metric", metric, ("CA", "RA"))]
    if "seed" not in frame or column not in frame:
        raise ValueError(f"frame needs a 'seed' and a {column!r} column (tradeoff_rows(per_example=True) rows)")
    keep = np.ones(len(frame), dtype=bool)
    for key, value in where.items():
        if key not in frame:
            raise ValueError(f"frame has no column {key!r}; it has {', '.join(map(str, frame.columns))}")
        keep &= np.isclose(frame[key].astype(float), value) if isinstance(value, float) else (frame[key] == value).to_numpy()
    chosen = frame[keep].sort_values("seed")
    if chosen.empty:
        raise ValueError(f"no row matches {where!r}")
    if chosen["seed"].duplicated().any():
        raise ValueError(f"several rows of one seed match {where!r}: add a selection (e.g. attack=...)")
    return np.stack([np.asarray(v, dtype=float) for v in chosen[column]])


def seed_means(frame: pd.DataFrame, by: Sequence[str] = ("method", "lam", "attack")) -> pd.DataFrame:
    """The mean of ``CA``, ``RA`` (and ``s``, ``CR``, ``CRF`` where present) over the seeds of :func:`tradeoff_rows`
    rows: one row per ``by`` group, in first-seen order, as the figures and tables of one seed expect."""
    by = [c for c in by if c in frame]
    values = [c for c in ("s", "CA", "RA", "CR", "CRF") if c in frame]
    if not by or not values:
        raise ValueError(f"frame needs grouping columns {tuple(by)} and CA/RA columns; it has {list(frame.columns)}")
    return frame.groupby(by, sort=False, as_index=False, dropna=False)[values].mean()


def parameter_table(float_model: nn.Module, oat_model: nn.Module, plain_model: nn.Module, *, copies: int) -> pd.DataFrame:
    """Parameters by role (:func:`~helpers.models.parameter_breakdown`) of FLOAT, OAT, one plain PGD-AT model and
    ``copies`` of it (PGD-AT:4T), with a ``total`` row and the ``weights + FiLM (Fig. 7b)`` row of FLOAT's Fig. 7b."""
    plain = parameter_breakdown(plain_model)
    breakdown = pd.DataFrame({"FLOAT": parameter_breakdown(float_model), "OAT": parameter_breakdown(oat_model),
                              "PGD-AT (one λ)": plain,
                              "PGD-AT:4T": {k: copies * v for k, v in plain.items()}}).fillna(0).astype(int)
    breakdown.loc["total"] = [sum(p.numel() for p in m.parameters()) for m in (float_model, oat_model, plain_model)] + [
        copies * sum(p.numel() for p in plain_model.parameters())]
    breakdown.loc["weights + FiLM (Fig. 7b)"] = breakdown.loc["weights"] + breakdown.loc["film"] if "film" in breakdown.index \
        else breakdown.loc["weights"]
    return breakdown


def training_time_table(histories: Mapping[str, Sequence[Mapping]], reference: str = "FLOAT") -> pd.DataFrame:
    """Mean seconds per training epoch of each model (from :func:`~helpers.train.fit` histories), plus the sum of the
    ``PGD-AT λ=`` models (PGD-AT:4T for four), each also relative to ``reference``'s (FLOAT Sec. 4.3)."""
    times = {name: float(np.mean([h["seconds"] for h in history])) for name, history in histories.items()}
    pgdat = [v for k, v in times.items() if k.startswith("PGD-AT λ=")]
    count = {1: "one", 2: "two", 3: "three", 4: "four"}.get(len(pgdat), str(len(pgdat)))
    times[f"PGD-AT:{len(pgdat)}T (sum of the {count})"] = sum(pgdat)
    table = pd.DataFrame({"seconds per epoch": times})
    table["relative to FLOAT"] = table["seconds per epoch"] / times[reference]
    return table


def interleaved_latency(candidates: Mapping[str, tuple[nn.Module, float | None]], x: Tensor, rounds: int,
                        reference: str, column: str = "ms per batch of 64") -> pd.DataFrame:
    """Inference latency of each (model, lambda or None) on the batch ``x``: one pass per model and round, alternating,
    then the median over ``rounds``; ms per batch (in ``column``) and the ratio to ``reference``'s (FLOAT Sec. 4.3)."""
    checks.integer("rounds", rounds, low=1)
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for model, _ in candidates.values():
        model.eval()
    for _ in range(rounds):
        for name, (model, lam) in candidates.items():
            with torch.no_grad(), (contextlib.nullcontext() if lam is None else conditioned_on(model, lam)):
                samples[name].append(median_seconds(lambda: model(x), repeats=1, warmup=0))
    latency = pd.DataFrame({column: {k: 1000 * float(np.median(v)) for k, v in samples.items()}})
    latency["relative to plain"] = latency[column] / latency.loc[reference, column]
    return latency
