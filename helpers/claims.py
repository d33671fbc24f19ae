"""Judging the papers' claims: intervals over seeds and test examples, guards, verdicts.

Every claim of ``book/<chapter>/claims.yml`` is one of two kinds:

- **empirical**: a statistic of what the notebook measured (a difference, a ratio, a trend, a share) gets a
  confidence interval from a paired, hierarchical bootstrap over seeds and test examples (:func:`bootstrap`).
  A :class:`Part` compares that interval with a threshold stated before the run; :func:`judge` combines the
  parts, after the :class:`Guard` s (what the models must reach before the claim can be judged) have passed:

  ============================  ===============================================================
  ``reproduced``                every part's interval clears its threshold on the claim's side
  ``not reproduced``            every part's interval clears it on the other side
  ``partly``                    parts split: some reproduced, the others not reproduced
  ``inconclusive``              otherwise: some interval straddles its threshold (an interval of no width
                                exactly on its threshold, e.g. an ablation that changes nothing, is
                                *not reproduced*: it is resolved and not on the claim's side)
  ``not run at this scale``     a guard failed (``undertrained: ...``) or the run cannot test the claim
  ============================  ===============================================================

- **arithmetic**: a check of the paper's own arithmetic, a parameter count, a definition, a property that holds
  by construction (:func:`check`): ``checked`` or ``does not check``, shown apart and never counted as a
  reproduction.

In a notebook::

    clean = claims.scores(per_seed_correct)            # [seeds, test examples] of 0/1
    part = claims.Part("scale 5 minus scale 0", claims.bootstrap(claims.difference, clean[5], clean[0]),
                       threshold=0.0, side="above", fmt="{:+.1%}")
    run.judge("clean_grows_with_capacity",
              claims.judge([part], guards=[claims.Guard("clean accuracy, scale 0", acc0, at_least=0.2)]))
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

__all__ = [
    "REPRODUCED", "PARTLY", "INCONCLUSIVE", "NOT_REPRODUCED", "NOT_RUN", "CHECKED", "DOES_NOT_CHECK",
    "EMPIRICAL_VERDICTS", "ARITHMETIC_VERDICTS", "VERDICTS", "KINDS", "Interval", "Part", "Guard", "Judgement",
    "scores", "bootstrap", "mean", "difference", "ratio", "slope_statistic", "max_statistic", "worst_mean", "judge", "check", "not_run", "parts_rows",
]

REPRODUCED, PARTLY, INCONCLUSIVE, NOT_REPRODUCED = "reproduced", "partly", "inconclusive", "not reproduced"
NOT_RUN = "not run at this scale"
CHECKED, DOES_NOT_CHECK = "checked", "does not check"
EMPIRICAL_VERDICTS = (REPRODUCED, PARTLY, INCONCLUSIVE, NOT_REPRODUCED, NOT_RUN)
ARITHMETIC_VERDICTS = (CHECKED, DOES_NOT_CHECK)
VERDICTS = EMPIRICAL_VERDICTS + ARITHMETIC_VERDICTS
KINDS = ("empirical", "arithmetic")
SIDES = ("above", "below")
#: Resampled arrays held at once, per arm (resamples x seeds x examples): bounds the bootstrap's memory.
_CHUNK_CELLS = 4_000_000
#: Relative distance below which an interval's bound counts as touching its threshold (float round-off).
_ROUND_OFF = 1e-9


# --------------------------------------------------------------------------------------------
# Intervals
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Interval:
    """A statistic's point estimate and its ``level`` confidence interval ``[low, high]``, with the replication
    it rests on (``seeds`` x ``examples``) and the number of bootstrap ``resamples``."""

    estimate: float
    low: float
    high: float
    level: float
    seeds: int
    examples: int
    resamples: int = 0

    def __post_init__(self) -> None:
        if not (self.low <= self.estimate <= self.high) and all(map(math.isfinite, (self.low, self.high,
                                                                                    self.estimate))):
            # a percentile interval can miss a non-linear statistic's plug-in estimate; widen to hold it
            object.__setattr__(self, "low", min(self.low, self.estimate))
            object.__setattr__(self, "high", max(self.high, self.estimate))

    @property
    def half_width(self) -> float:
        """Half the interval's width: about the smallest effect this run can resolve."""
        return (self.high - self.low) / 2

    def to_dict(self) -> dict[str, Any]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "level": self.level,
                "seeds": self.seeds, "examples": self.examples, "resamples": self.resamples}


def scores(values: Any) -> np.ndarray:
    """Per-example scores as a float array ``[seeds, examples]``: a 1-D sequence is one seed; a 2-D one (a list of
    per-seed lists or arrays, or a tensor) is ``[seeds, examples]``. Per-seed numbers without a per-example
    breakdown (a return averaged over episodes, a time) are ``[[v] for v in per_seed]``: ``[seeds, 1]``."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=float)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"scores must be [examples] or [seeds, examples] with at least one of each; got shape "
                         f"{array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("scores must be finite; got NaN or infinity")
    return array


def mean(a: np.ndarray) -> np.ndarray:
    """The mean over seeds and examples (of arrays ``[..., seeds, examples]``)."""
    return a.mean(axis=(-2, -1))


def difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``mean(a) - mean(b)``: e.g. accuracy of model A minus model B on the same test images."""
    return mean(a) - mean(b)


def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``mean(a) / mean(b)``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return mean(a) / mean(b)


def slope_statistic(xs: Sequence[float]) -> Callable[..., np.ndarray]:
    """A statistic: the least-squares slope of the arms' means against ``xs`` (one arm per x), per unit of x."""
    x = np.asarray(xs, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0:
        raise ValueError(f"a slope needs at least two distinct x values, got {list(xs)}")
    centred = (x - x.mean()) / ((x - x.mean()) ** 2).sum()

    def slope(*arms):
        return (centred[:, None] * np.stack([mean(a) for a in arms])).sum(0)

    return slope


def max_statistic(*arms: np.ndarray) -> np.ndarray:
    """The largest of the arms' means (e.g. the highest adversarial accuracy of scales 0-2)."""
    return np.stack([mean(a) for a in arms]).max(0)


def worst_mean(*arms: np.ndarray) -> np.ndarray:
    """The smallest of the arms' means (e.g. the worst pruning level's accuracy change)."""
    return np.stack([mean(a) for a in arms]).min(0)


def bootstrap(statistic: Callable[..., Any], *arms: Any, level: float = 0.95, resamples: int = 2000,
              seed: int = 0, paired: bool = True, vectorized: bool = True) -> Interval:
    """The percentile-bootstrap interval of ``statistic(*arms)``, resampling seeds, then examples.

    Each arm is a ``[seeds, examples]`` array of per-example scores (see :func:`scores`): e.g. 1/0 for each test
    image a model classifies correctly, seed by seed. Each resample draws seeds with replacement (seed ``s`` of
    every arm is drawn together, so arms trained from the same seed stay paired), then examples with
    replacement; ``paired=True`` (default) draws the *same* examples for every arm and seed, as when all models
    are scored on the same test images (the arms must then have equal shapes). ``paired=False`` draws each arm's
    examples apart (arms of different test sets; the seed counts must still agree).

    ``statistic`` takes one array per arm. ``vectorized=True`` (default): it gets ``[resamples, seeds,
    examples]`` arrays and returns ``[resamples]`` values (:func:`mean`, :func:`difference`, :func:`ratio` do);
    ``vectorized=False``: it gets ``[seeds, examples]`` arrays, once per resample, and returns a float.
    The estimate is the statistic of the data themselves. Deterministic for a fixed ``seed``.

    With few seeds the between-seed spread is under-estimated (the bootstrap of ``S`` values has variance
    ``(S-1)/S`` of theirs, and few distinct resamples): the replication is recorded beside every interval.
    """
    if not arms:
        raise ValueError("bootstrap needs at least one arm of scores")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if not isinstance(resamples, int) or resamples < 100:
        raise ValueError(f"resamples must be an int >= 100, got {resamples!r}")
    data = [scores(a) for a in arms]
    n_seeds = {a.shape[0] for a in data}
    if len(n_seeds) != 1:
        raise ValueError(f"every arm needs the same number of seeds; got {[a.shape[0] for a in data]}")
    if paired and len({a.shape for a in data}) != 1:
        raise ValueError(f"paired arms need equal [seeds, examples] shapes; got {[a.shape for a in data]} "
                         "(pass paired=False for arms scored on different examples)")
    n_s = data[0].shape[0]
    estimate = float(statistic(*(a[None] for a in data))[0] if vectorized else statistic(*data))
    rng = np.random.default_rng(seed)
    values = np.empty(resamples)
    largest = max(a.size for a in data)
    chunk = max(1, min(resamples, _CHUNK_CELLS // largest))
    for start in range(0, resamples, chunk):
        r = min(chunk, resamples - start)
        seed_draw = rng.integers(0, n_s, size=(r, n_s))
        shared = rng.integers(0, data[0].shape[1], size=(r, data[0].shape[1])) if paired else None
        drawn = []
        for a in data:
            examples = shared if paired else rng.integers(0, a.shape[1], size=(r, a.shape[1]))
            drawn.append(a[seed_draw[:, :, None], examples[:, None, :]])  # [r, seeds, examples]
        if vectorized:
            values[start:start + r] = np.asarray(statistic(*drawn), dtype=float).reshape(r)
        else:
            values[start:start + r] = [float(statistic(*(d[i] for d in drawn))) for i in range(r)]
    finite = values[np.isfinite(values)]
    if finite.size < resamples / 2:
        raise ValueError("the statistic is undefined (NaN or infinite) on most resamples; check the scores")
    tail = (1 - level) / 2
    low, high = np.quantile(finite, [tail, 1 - tail])
    return Interval(estimate, float(low), float(high), level, n_s, int(max(a.shape[1] for a in data)), resamples)


# --------------------------------------------------------------------------------------------
# Parts, guards, verdicts
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Part:
    """One comparison of a claim: ``interval`` against ``threshold``; the claim holds when the statistic lies
    ``side`` (``"above"`` or ``"below"``) the threshold. ``name`` says what the statistic is; ``fmt`` formats its
    values for the text (e.g. ``"{:+.1%}"`` for a difference of accuracies)."""

    name: str
    interval: Interval
    threshold: float
    side: str = "above"
    fmt: str = "{:.3g}"

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"side must be one of {', '.join(SIDES)}; got {self.side!r}")
        if not isinstance(self.interval, Interval):
            raise TypeError(f"interval must be a claims.Interval, got {type(self.interval).__name__}")
        if not math.isfinite(float(self.threshold)):
            raise ValueError(f"threshold must be finite, got {self.threshold!r}")

    @property
    def verdict(self) -> str:
        low, high = self.interval.low, self.interval.high
        # a bound within round-off of the threshold (e.g. -0.04999999999999999 against -0.05) does not clear it
        tol = _ROUND_OFF * max(1.0, abs(float(self.threshold)))
        clears_above, clears_below = low > self.threshold + tol, high < self.threshold - tol
        if high - low <= tol and abs(self.interval.estimate - self.threshold) <= tol:
            # no spread at all, exactly on the threshold (e.g. an ablation that changes nothing on any image or
            # seed): the run resolves the statistic exactly and it does not lie on the claim's side
            return NOT_REPRODUCED
        if self.side == "above":
            return REPRODUCED if clears_above else NOT_REPRODUCED if clears_below else INCONCLUSIVE
        return REPRODUCED if clears_below else NOT_REPRODUCED if clears_above else INCONCLUSIVE

    def text(self) -> str:
        f, i = self.fmt.format, self.interval
        sign = ">" if self.side == "above" else "<"
        return (f"{self.name} {f(i.estimate)} [{f(i.low)}, {f(i.high)}] (needs {sign} {f(self.threshold)}): "
                f"{self.verdict}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.interval.to_dict(), "threshold": float(self.threshold),
                "side": self.side, "fmt": self.fmt, "verdict": self.verdict, "resolution": self.interval.half_width}


@dataclass(frozen=True)
class Guard:
    """What the models must reach before a claim is judged: ``value`` (measured) at least ``at_least`` and/or at
    most ``at_most``. ``name`` says what was measured, e.g. ``"clean accuracy of the smallest net"``."""

    name: str
    value: float
    at_least: float | None = None
    at_most: float | None = None
    fmt: str = "{:.3g}"

    def __post_init__(self) -> None:
        if self.at_least is None and self.at_most is None:
            raise ValueError(f"guard {self.name!r} needs at_least or at_most")

    @property
    def passed(self) -> bool:
        v = float(self.value)
        return (math.isfinite(v) and (self.at_least is None or v >= self.at_least)
                and (self.at_most is None or v <= self.at_most))

    def text(self) -> str:
        f = self.fmt.format
        bounds = [f">= {f(self.at_least)}" if self.at_least is not None else "",
                  f"<= {f(self.at_most)}" if self.at_most is not None else ""]
        return f"{self.name} {f(float(self.value))} (needs {' and '.join(b for b in bounds if b)})"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": float(self.value), "at_least": self.at_least, "at_most": self.at_most,
                "passed": self.passed}


@dataclass(frozen=True)
class Judgement:
    """The verdict on one claim and everything it rests on (what :meth:`helpers.results.Run.judge` stores)."""

    kind: str
    verdict: str
    parts: tuple[Part, ...] = ()
    guards: tuple[Guard, ...] = ()
    reason: str = ""
    detail: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {self.kind!r}")
        allowed = EMPIRICAL_VERDICTS if self.kind == "empirical" else ARITHMETIC_VERDICTS
        if self.verdict not in allowed:
            raise ValueError(f"a {self.kind} verdict is one of {', '.join(allowed)}; got {self.verdict!r}")

    @property
    def seeds(self) -> int:
        return max((p.interval.seeds for p in self.parts), default=0)

    @property
    def examples(self) -> int:
        return max((p.interval.examples for p in self.parts), default=0)

    def summary(self) -> str:
        """The judgement in one line: each part's estimate and interval against its threshold, the failed guards
        or the reason it was not run, and any ``detail``."""
        bits = [p.text() for p in self.parts]
        failed = [g.text() for g in self.guards if not g.passed]
        if failed:
            bits = ["undertrained: " + "; ".join(failed)] + bits
        elif self.reason:
            bits = [self.reason] + bits
        if self.detail:
            bits.append(self.detail)
        if self.parts:
            bits.append(f"{self.seeds} seed{'s' * (self.seeds != 1)} x {self.examples} examples")
        return "; ".join(bits)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "verdict": self.verdict, "reason": self.reason, "detail": self.detail,
                "parts": [p.to_dict() for p in self.parts], "guards": [g.to_dict() for g in self.guards],
                "seeds": self.seeds, "examples": self.examples, **({"extra": self.extra} if self.extra else {})}


def judge(parts: Sequence[Part], guards: Sequence[Guard] = (), detail: str = "") -> Judgement:
    """The verdict on an empirical claim from its parts, after its guards.

    A failed guard gives *not run at this scale* (``undertrained: <the guard>``), whatever the parts say; so a
    smoke-scale run or an untrained model never reproduces a claim. Otherwise: every part reproduced ->
    *reproduced*; every part not reproduced -> *not reproduced*; some reproduced and the rest not reproduced ->
    *partly*; any part inconclusive (and the parts not split) -> *inconclusive*.
    """
    parts, guards = tuple(parts), tuple(guards)
    if not parts:
        raise ValueError("judge needs at least one Part; use claims.not_run(reason) when the run cannot test it")
    failed = [g for g in guards if not g.passed]
    if failed:
        return Judgement("empirical", NOT_RUN, parts, guards,
                         reason="undertrained: " + "; ".join(g.text() for g in failed), detail=detail)
    verdicts = {p.verdict for p in parts}
    if verdicts == {REPRODUCED}:
        verdict = REPRODUCED
    elif verdicts == {NOT_REPRODUCED}:
        verdict = NOT_REPRODUCED
    elif verdicts == {REPRODUCED, NOT_REPRODUCED}:
        verdict = PARTLY
    else:
        verdict = INCONCLUSIVE
    return Judgement("empirical", verdict, parts, guards, detail=detail)


def not_run(reason: str, detail: str = "") -> Judgement:
    """*Not run at this scale* for a claim this run cannot test, with the ``reason`` (e.g. ``"scales 2 and 3 not
    both run"``)."""
    if not reason:
        raise ValueError("not_run needs a reason")
    return Judgement("empirical", NOT_RUN, reason=reason, detail=detail)


def check(passed: bool, detail: str) -> Judgement:
    """An arithmetic claim: *checked* when ``passed``, else *does not check*; ``detail`` says what was checked
    (the numbers compared)."""
    if not detail:
        raise ValueError("check needs a detail: what was compared")
    return Judgement("arithmetic", CHECKED if bool(passed) else DOES_NOT_CHECK, detail=detail)


def parts_rows(judgements: dict[str, Judgement]) -> list[dict[str, str]]:
    """One row per part of ``{claim id: Judgement}`` for a table: claim, part, estimate, 95% interval, threshold,
    part verdict and the claim's verdict; a claim without parts (not run) gets one row with its reason."""
    rows = []
    for claim_id, j in judgements.items():
        for p in j.parts:
            f = p.fmt.format
            rows.append({"claim": claim_id, "part": p.name, "estimate": f(p.interval.estimate),
                         f"{p.interval.level:.0%} interval": f"[{f(p.interval.low)}, {f(p.interval.high)}]",
                         "threshold": ("> " if p.side == "above" else "< ") + f(p.threshold),
                         "part verdict": p.verdict, "claim verdict": j.verdict})
        if not j.parts:
            rows.append({"claim": claim_id, "part": j.reason, "claim verdict": j.verdict})
    return rows
