"""verify.engine.stats — Monte-Carlo bands hold their stated false-alarm rate, and a wrong mean fails them.

Coverage is measured, not assumed: thousands of independent bands on distributions with a known mean, and the
number that miss must be consistent with the nominal rate (an exact binomial interval at 1 − 1e-4). Every random
draw is seeded.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from verify.checks.record import Tally
from verify.engine.stats import (
    DEFAULT_FALSE_ALARM,
    Band,
    BandSet,
    band_from_summary,
    binomial_interval,
    bonferroni,
    mean_band,
    z_two_sided,
)

REPS = 4000  # independent bands per coverage experiment: a binomial SE of 0.0034 at a 5 % rate
RATE = 0.05  # a nominal rate large enough to be measured with REPS bands
CONFIDENCE = 1 - 1e-4  # the binomial interval the empirical rate must fall in (false alarm of this test: 1e-4)


def _miss_rate(samples: np.ndarray, truth: float, **kw) -> tuple[int, int]:
    band = mean_band(samples, axis=1, false_alarm=RATE, **kw)
    misses = int(np.sum(np.abs(band.estimate - truth) > band.halfwidth))
    return misses, samples.shape[0]


def test_z_is_the_two_sided_quantile_with_bonferroni():
    """z(α) = Φ⁻¹(1 − α/2); n checks at family rate α use α/n each; Student-t is wider for few samples."""
    assert z_two_sided(0.05) == pytest.approx(1.959963984540054, rel=1e-12)
    assert z_two_sided(1e-4, n_checks=10) == pytest.approx(z_two_sided(1e-5), rel=1e-14)
    assert bonferroni(1e-4, 8) == pytest.approx(1.25e-5)
    assert z_two_sided(0.05, dof=5) > z_two_sided(0.05, dof=500) > z_two_sided(0.05)


def test_band_is_estimate_halfwidth_false_alarm():
    """mean_band returns (estimate, halfwidth, false_alarm) with halfwidth = t·SE + bias + roundoff exactly."""
    x = np.array([1.0, 2.0, 4.0, 7.0])
    est, half, fa = mean_band(x, false_alarm=0.01, n_checks=2, bias=0.25, roundoff=1e-12)
    se = np.std(x, ddof=1) / 2
    assert est == pytest.approx(3.5)
    assert half == pytest.approx(stats.t.isf(0.005 / 2, 3) * se + 0.25 + 1e-12, rel=1e-14)
    assert fa == pytest.approx(0.005)
    assert isinstance(mean_band(x), Band) and mean_band(x).false_alarm == DEFAULT_FALSE_ALARM


@pytest.mark.parametrize("name, draw, truth, n", [
    ("normal", lambda g, s: g.normal(3.0, 2.0, s), 3.0, 20),  # Student-t is exact here
    ("uniform", lambda g, s: g.uniform(-1.0, 1.0, s), 0.0, 50),
    ("exponential", lambda g, s: g.exponential(1.0, s), 1.0, 400),  # skewed: needs n large for the CLT
    ("bernoulli", lambda g, s: g.binomial(1, 0.3, s).astype(float), 0.3, 200),
])
def test_empirical_false_alarm_matches_nominal(name, draw, truth, n):
    """Over 4000 bands at a nominal 5 % rate, the fraction that miss the true mean lies in the exact binomial
    interval (confidence 1 − 1e-4) around it."""
    gen = np.random.default_rng({"normal": 1, "uniform": 2, "exponential": 3, "bernoulli": 4}[name])
    misses, reps = _miss_rate(draw(gen, (REPS, n)), truth)
    lo, hi = binomial_interval(misses, reps, CONFIDENCE)
    assert lo <= RATE <= hi, f"{name}: {misses}/{reps} missed, interval [{lo:.4f}, {hi:.4f}]"


def test_bonferroni_holds_the_family_rate():
    """10 comparisons per check at a family rate of 5 %: the fraction of checks with any miss is ≤ 5 %
    (≈ 1 − 0.995¹⁰ = 4.9 %), inside the binomial interval."""
    gen = np.random.default_rng(5)
    x = gen.normal(0.0, 1.0, (REPS, 30, 10))  # REPS checks × 30 samples × 10 comparisons
    band = mean_band(x, axis=1, false_alarm=RATE, n_checks=10)
    any_miss = int(np.sum(np.any(np.abs(band.estimate) > band.halfwidth, axis=1)))
    lo, hi = binomial_interval(any_miss, REPS, CONFIDENCE)
    assert lo <= 1 - (1 - RATE / 10) ** 10 <= hi and lo <= RATE


def test_bias_term_restores_coverage_of_a_biased_estimator():
    """A known finite-size bias b: with bias=|b| in the halfwidth the miss rate is ≤ nominal; without it the
    band misses far more often (the bias term is what an asymptotic theory needs)."""
    gen = np.random.default_rng(6)
    b = 0.3
    x = gen.normal(b, 1.0, (REPS, 40))
    with_bias, _ = _miss_rate(x, 0.0, bias=b)
    without, _ = _miss_rate(x, 0.0)
    assert binomial_interval(with_bias, REPS, CONFIDENCE)[0] <= RATE
    assert binomial_interval(without, REPS, CONFIDENCE)[0] > 4 * RATE


def test_meta_band_of_a_wrong_mean_fails():
    """A band that contains the true mean excludes a mean 5 % off once the sample is large enough, and the
    Tally records that as a failure."""
    x = np.random.default_rng(7).normal(1.0, 1.0, 20000)
    band = mean_band(x)
    ok = Tally("S", "right mean", "band").band(band.estimate, 1.0, band.halfwidth)
    wrong = Tally("S", "wrong mean", "band").band(band.estimate, 1.05, band.halfwidth)
    assert ok.passed and not wrong.passed


def test_bandset_uses_one_bonferroni_correction_and_paired_estimates():
    """BandSet counts every comparison before choosing z; the paired form reports estimate/theory whose
    difference is the mean of the paired samples; a wrong theory fails the tally."""
    gen = np.random.default_rng(8)
    measured = gen.normal(5.0, 1.0, (500, 3))
    predicted = measured - gen.normal(0.0, 0.1, (500, 3))
    bs = BandSet(false_alarm=1e-3)
    bs.add(measured - predicted, predicted.mean(0), estimate=measured.mean(0))
    bs.add(gen.normal(2.0, 1.0, 500), 2.0)
    t = bs.record(Tally("S", "paired", "band"))
    assert t.passed and bs.n_comparisons == 4
    assert t.numbers["z"] == pytest.approx(z_two_sided(1e-3, 4))
    bad = BandSet()
    bad.add(measured - predicted, predicted.mean(0) * 1.02, estimate=measured.mean(0))
    assert not bad.record(Tally("S", "paired wrong", "band")).passed


def test_band_wider_than_the_effect_has_no_power_and_is_not_verification():
    """A band whose half-width is ≥ |predicted effect| would accept the theory and its absence alike: its
    comparisons count in ``no_power``, the tally reads NO POWER (not PASS) and does not verify; one powered
    comparison makes it PASS with the others still counted; a failing comparison still fails."""
    wide = Tally("S", "wide", "band").band([1.2, 0.9], [1.0, 1.0], [3.0, 1.0])
    assert wide.passed and wide.no_power == 2 and wide.verdict == "NO POWER" and not wide.verifies
    assert wide.max_relative_halfwidth == pytest.approx(3.0)
    mixed = Tally("S", "mixed", "band").band([1.2, 1.01], [1.0, 1.0], [3.0, 0.05])
    assert mixed.verdict == "PASS" and mixed.no_power == 1 and mixed.verifies
    # the effect can be named: a ratio (1 + β²)^L whose null value is 1 must resolve the growth, not the level
    growth = Tally("S", "growth", "band").band(1.05, 1.04, 0.2, effect=0.04)
    assert growth.no_power == 1 and growth.verdict == "NO POWER"
    failing = Tally("S", "failing", "band").band(5.0, 1.0, 2.0)
    assert failing.verdict == "FAIL" and failing.no_power == 1
    bs = BandSet()
    bs.add(np.random.default_rng(10).normal(1.0, 1.0, 400), 1.0, effect=1e-3)
    assert bs.record(Tally("S", "bandset effect", "band")).verdict == "NO POWER"


def test_only_independent_passing_tallies_verify():
    """evidence: code identities and calibrated allowances pass or fail like any tally, but do not verify."""
    for evidence, verifies in (("independent", True), ("code-identity", False), ("calibrated", False)):
        t = Tally("S", "t", "identity", evidence=evidence, instances="random").identity(1.0, 1.0, rtol=1e-12)
        assert t.passed and t.verifies is verifies
    with pytest.raises(ValueError, match="^evidence"):
        Tally("S", "t", "identity", evidence="proof")
    with pytest.raises(ValueError, match="^instances"):
        Tally("S", "t", "identity", instances="synthetic")


def test_inequality_offset_reports_tightness_of_the_growth_term():
    """‖x_k‖ ≤ ‖x_0‖ + G: with offset ‖x_0‖ the tightness is (‖x_k‖ − ‖x_0‖)/G, not ≈ 1 because ‖x_0‖ ≫ G;
    the verdict is the same; a bound with no growth term left reports no ratio rather than ∞."""
    plain = Tally("S", "plain", "inequality").inequality(100.5, 101.0, rtol=1e-12)
    off = Tally("S", "offset", "inequality").inequality(100.5, 101.0, rtol=1e-12, offset=100.0)
    assert plain.worst_ratio == pytest.approx(100.5 / 101.0) and off.worst_ratio == pytest.approx(0.5)
    assert plain.passed and off.passed
    bad = Tally("S", "bad", "inequality").inequality(101.5, 101.0, rtol=1e-12, offset=100.0)
    assert not bad.passed and bad.worst_ratio == pytest.approx(1.5)
    flat = Tally("S", "flat", "inequality").inequality(1.0 + 1e-16, 1.0, rtol=1e-12, offset=1.0)
    assert flat.passed and math.isnan(flat.worst_ratio)
    typical = Tally("S", "typ", "inequality").inequality([1e-4, 1e-2], [1.0, 1.0], rtol=0.0)
    assert typical.typical_ratio == pytest.approx(1e-3) and typical.worst_ratio == pytest.approx(1e-2)


def test_binomial_interval_is_clopper_pearson():
    """0 of n: the exact upper limit is 1 − (α/2)^{1/n}."""
    lo, hi = binomial_interval(0, 10, 0.95)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** 0.1, rel=1e-10)


def test_band_from_summary_matches_mean_band():
    x = np.random.default_rng(9).normal(0.0, 2.0, 64)
    a = mean_band(x, bias=0.1)
    b = band_from_summary(x.mean(), x.std(ddof=1) / math.sqrt(64), 64, bias=0.1)
    assert a == pytest.approx(b)


@pytest.mark.parametrize("call, name", [
    (lambda: z_two_sided(0.0), "false_alarm"),
    (lambda: z_two_sided(1.0), "false_alarm"),
    (lambda: z_two_sided(0.1, n_checks=0), "n_checks"),
    (lambda: z_two_sided(0.1, dof=0), "dof"),
    (lambda: mean_band([1.0]), "samples"),
    (lambda: mean_band([1.0, float("nan")]), "samples"),
    (lambda: mean_band([1.0, 2.0], bias=-1.0), "bias"),
    (lambda: binomial_interval(11, 10), "successes"),
])
def test_bad_inputs_raise_value_error_naming_the_parameter(call, name):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value).startswith(name), str(info.value)
