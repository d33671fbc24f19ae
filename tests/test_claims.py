"""helpers.claims: intervals over seeds and examples, guards and verdicts."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import claims


def correct(rng: np.random.Generator, p: float, n: int, seeds: int = 1) -> np.ndarray:
    return (rng.random((seeds, n)) < p).astype(float)


def part(a, b, threshold, side="above", **kw):
    return claims.Part("a minus b", claims.bootstrap(claims.difference, a, b, **kw), threshold, side)


def test_far_effect_is_reproduced_and_the_opposite_is_not():
    rng = np.random.default_rng(0)
    a, b = correct(rng, 0.9, 500, 3), correct(rng, 0.5, 500, 3)
    assert claims.judge([part(a, b, 0.1)]).verdict == claims.REPRODUCED
    assert claims.judge([part(b, a, 0.1)]).verdict == claims.NOT_REPRODUCED
    assert claims.judge([part(a, b, 0.1, side="below")]).verdict == claims.NOT_REPRODUCED


def test_an_effect_straddling_its_threshold_is_inconclusive():
    rng = np.random.default_rng(1)
    a, b = correct(rng, 0.62, 200), correct(rng, 0.60, 200)
    p = part(a, b, 0.0)
    assert p.interval.low < 0 < p.interval.high
    assert claims.judge([p]).verdict == claims.INCONCLUSIVE
    # a null claim ("B does not help") with a margin inside the noise cannot pass either
    assert claims.judge([part(a, b, 0.02, side="below")]).verdict == claims.INCONCLUSIVE


def test_a_failed_guard_is_not_run_whatever_the_parts_say():
    rng = np.random.default_rng(2)
    a, b = correct(rng, 0.9, 500), correct(rng, 0.1, 500)
    guard = claims.Guard("clean accuracy of the smallest net", 0.11, at_least=0.2)
    j = claims.judge([part(a, b, 0.0)], guards=[guard])
    assert j.verdict == claims.NOT_RUN and j.reason.startswith("undertrained: clean accuracy")
    assert j.to_dict()["guards"][0]["passed"] is False
    ok = claims.judge([part(a, b, 0.0)], guards=[claims.Guard("clean", 0.5, at_least=0.2)])
    assert ok.verdict == claims.REPRODUCED


def test_parts_that_split_are_partly_and_an_open_part_is_inconclusive():
    rng = np.random.default_rng(3)
    hi, lo, mid = correct(rng, 0.9, 400), correct(rng, 0.3, 400), correct(rng, 0.6, 400)
    yes, no = part(hi, lo, 0.0), part(lo, hi, 0.0)
    maybe = part(mid, correct(rng, 0.6, 400), 0.0)
    assert maybe.verdict == claims.INCONCLUSIVE
    assert claims.judge([yes, no]).verdict == claims.PARTLY
    assert claims.judge([yes, maybe]).verdict == claims.INCONCLUSIVE
    assert claims.judge([yes, yes]).verdict == claims.REPRODUCED


@pytest.mark.parametrize("seeds, seed_sd", [(1, 0.0), (10, 0.04)])
def test_the_interval_covers_the_true_difference_at_the_stated_rate(seeds, seed_sd):
    # Examples only (one seed): coverage near 95%. Seeds and examples (each seed's effect varies around the true
    # mean effect): the two-stage bootstrap counts example noise twice, so it is at least as wide as it should be.
    rng = np.random.default_rng(4)
    true, covered, trials = 0.05, 0, 200
    for _ in range(trials):
        effect = true + rng.normal(0, seed_sd, size=(seeds, 1))
        a = (rng.random((seeds, 300)) < 0.7 + effect).astype(float)
        b = (rng.random((seeds, 300)) < 0.7).astype(float)
        i = claims.bootstrap(claims.difference, a, b, resamples=400, seed=int(rng.integers(1 << 30)))
        covered += i.low <= true <= i.high
    assert 0.90 <= covered / trials <= (0.99 if seeds == 1 else 1.0)


def test_pairing_narrows_the_interval_of_correlated_arms():
    rng = np.random.default_rng(5)
    a = correct(rng, 0.7, 600)
    b = a.copy()
    flip = rng.random(b.shape) < 0.05
    b[flip] = 1 - b[flip]
    paired = claims.bootstrap(claims.difference, a, b)
    unpaired = claims.bootstrap(claims.difference, a, b, paired=False)
    assert paired.half_width < unpaired.half_width / 2


def test_bootstrap_is_deterministic_and_records_its_replication():
    rng = np.random.default_rng(6)
    a, b = correct(rng, 0.8, 100, 3), correct(rng, 0.7, 100, 3)
    i1, i2 = (claims.bootstrap(claims.difference, a, b, seed=7) for _ in range(2))
    assert i1 == i2 and (i1.seeds, i1.examples, i1.resamples) == (3, 100, 2000)
    assert i1.estimate == pytest.approx(a.mean() - b.mean())


def test_a_statistic_that_is_not_vectorized_gets_one_resample_at_a_time():
    rng = np.random.default_rng(8)
    a = correct(rng, 0.8, 50, 2)
    i = claims.bootstrap(lambda x: float(x.mean()), a, vectorized=False, resamples=200)
    j = claims.bootstrap(claims.mean, a, resamples=200)
    assert (i.low, i.high) == pytest.approx((j.low, j.high))


def test_bad_inputs_fail_with_a_message():
    with pytest.raises(ValueError, match="same number of seeds"):
        claims.bootstrap(claims.difference, np.ones((2, 5)), np.ones((3, 5)))
    with pytest.raises(ValueError, match="paired arms need equal"):
        claims.bootstrap(claims.difference, np.ones((1, 5)), np.ones((1, 6)))
    with pytest.raises(ValueError, match="finite"):
        claims.scores([1.0, float("nan")])
    with pytest.raises(ValueError, match="side"):
        claims.Part("x", claims.Interval(0, 0, 0, 0.95, 1, 1), 0.0, side="up")
    with pytest.raises(ValueError, match="at least one Part"):
        claims.judge([])


def test_arithmetic_checks_are_apart_from_reproductions():
    j = claims.check(True, "COO / dense = 4.98x, as Table 1")
    assert (j.kind, j.verdict) == ("arithmetic", claims.CHECKED)
    assert claims.check(False, "x").verdict == claims.DOES_NOT_CHECK
    with pytest.raises(ValueError, match="empirical verdict"):
        claims.Judgement("empirical", claims.CHECKED)
    assert claims.not_run("scales 2 and 3 not both run").verdict == claims.NOT_RUN


def test_summary_and_dict_carry_statistic_interval_threshold_and_replication():
    rng = np.random.default_rng(9)
    a, b = correct(rng, 0.9, 200, 3), correct(rng, 0.5, 200, 3)
    p = claims.Part("FGSM-AT minus standard", claims.bootstrap(claims.difference, a, b), 0.05, fmt="{:+.1%}")
    j = claims.judge([p], guards=[claims.Guard("clean", 0.9, at_least=0.2)])
    d = j.to_dict()
    assert d["seeds"] == 3 and d["examples"] == 200 and d["parts"][0]["threshold"] == 0.05
    assert {"estimate", "low", "high", "level", "resolution", "verdict"} <= set(d["parts"][0])
    assert "FGSM-AT minus standard +" in j.summary() and "3 seeds x 200 examples" in j.summary()


def test_a_bound_equal_to_the_threshold_up_to_round_off_does_not_clear_it():
    touching = claims.Interval(0.0, -0.04999999999999999, 0.1, level=0.95, seeds=3, examples=100)
    assert touching.low > -0.05  # clears it only by round-off
    assert claims.Part("check (ii)", touching, threshold=-0.05).verdict == claims.INCONCLUSIVE
    assert claims.Part("above", claims.Interval(0.0, -0.0499, 0.1, 0.95, 3, 100), -0.05).verdict == claims.REPRODUCED
    assert claims.Part("below", claims.Interval(-0.3, -0.4, -0.0501, 0.95, 3, 100), -0.05,
                       side="below").verdict == claims.REPRODUCED


def test_an_effect_of_exactly_the_threshold_on_every_resample_is_not_reproduced():
    nothing = claims.bootstrap(claims.difference, np.ones((3, 12)), np.ones((3, 12)), seed=0)
    assert (nothing.low, nothing.estimate, nothing.high) == (0.0, 0.0, 0.0)
    assert claims.Part("RD minus baseline", nothing, threshold=0.0).verdict == claims.NOT_REPRODUCED
    assert claims.Part("RD minus baseline", nothing, threshold=0.0, side="below").verdict == claims.NOT_REPRODUCED
