"""Monte-Carlo bands: is a sample mean consistent with a theoretical value, at a stated false-alarm rate?

A band is ``|mean − theory| ≤ halfwidth`` with

    halfwidth = z·SE + bias + roundoff,

- ``SE = s/√n`` the standard error of the mean of n independent samples (s the sample standard deviation);
- ``z`` the two-sided Student-t quantile (n − 1 degrees of freedom; exact for Gaussian samples, the normal
  quantile for large n) at the *per-comparison* rate ``false_alarm / n_checks`` (Bonferroni: with n_checks
  comparisons in one check, the chance that any of them fails when the theory is right is ≤ false_alarm);
- ``bias`` an explicit, documented upper bound on |E[estimator] − theory| where the theory is asymptotic (a
  finite-width term, a delta-method remainder). It is added linearly, not in quadrature, so the false-alarm
  rate stays ≤ the nominal one whenever the bound holds;
- ``roundoff`` a floating-point allowance (normally ~1e-12 relative; it matters only when SE is ~0).

Every band therefore comes with its false-alarm rate, and a wrong theory fails it as soon as its error exceeds
the halfwidth (the meta-tests show that). What this module is not: a test of distributional shape; the normal
approximation behind z is the central limit theorem for the mean, so samples with very heavy tails (infinite
variance) are out of scope.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import numpy as np
from scipy import stats

from verify.checks.record import Tally

# The suite's default: a check (one Tally) raises a false alarm with probability ≤ 1e-4 when the theory is
# right; with ~10 band tallies in the whole run that is ≤ 1e-3 per run.
DEFAULT_FALSE_ALARM = 1e-4


class Band(NamedTuple):
    """A Monte-Carlo band: ``estimate ± halfwidth`` holds the true mean except with probability ``false_alarm``.

    ``false_alarm`` is the per-comparison two-sided rate actually used (the family rate / n_checks).
    Fields may be arrays (one band per entry) when the samples were.
    """

    estimate: Any
    halfwidth: Any
    false_alarm: float


def _check_rate(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 < float(value) < 1.0):
        raise ValueError(f"{name} must be a probability in (0, 1), got {value!r}")
    return float(value)


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def bonferroni(false_alarm: float, n_checks: int) -> float:
    """Per-comparison rate so that n_checks comparisons together false-alarm with probability ≤ false_alarm."""
    return _check_rate("false_alarm", false_alarm) / _check_count("n_checks", n_checks)


def z_two_sided(false_alarm: float, n_checks: int = 1, dof: float | None = None) -> float:
    """Two-sided critical value: P(|T| > z) = false_alarm/n_checks for T ~ t_dof (dof=None: standard normal)."""
    per = bonferroni(false_alarm, n_checks)
    if dof is None:
        return float(stats.norm.isf(per / 2))
    if not dof > 0:
        raise ValueError(f"dof must be > 0, got {dof!r}")
    return float(stats.t.isf(per / 2, dof))


def mean_and_se(samples, axis: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """Sample mean, standard error s/√n (s with the n − 1 divisor) and n along ``axis``."""
    x = np.asarray(samples, dtype=float)
    if x.ndim == 0 or x.shape[axis] < 2:
        raise ValueError(f"samples must hold at least 2 values along axis {axis}, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("samples contains NaN or inf")
    n = x.shape[axis]
    return x.mean(axis=axis), x.std(axis=axis, ddof=1) / math.sqrt(n), n


def mean_band(samples, *, false_alarm: float = DEFAULT_FALSE_ALARM, n_checks: int = 1, bias=0.0,
              roundoff=0.0, axis: int = 0) -> Band:
    """(estimate, halfwidth, false_alarm) for the mean of iid ``samples`` along ``axis``.

    halfwidth = z·SE + bias + roundoff with z the Student-t (n − 1 dof) two-sided quantile at
    false_alarm/n_checks. ``bias`` and ``roundoff`` are non-negative (scalars or arrays broadcasting with the
    mean); see the module docstring for what each stands for.
    """
    mean, se, n = mean_and_se(samples, axis)
    return band_from_summary(mean, se, n, false_alarm=false_alarm, n_checks=n_checks, bias=bias, roundoff=roundoff)


def band_from_summary(mean, se, n: int, *, false_alarm: float = DEFAULT_FALSE_ALARM, n_checks: int = 1, bias=0.0,
                      roundoff=0.0) -> Band:
    """A :class:`Band` from a precomputed mean, standard error and sample count."""
    n = _check_count("n", n)
    for name, v in (("bias", bias), ("roundoff", roundoff), ("se", se)):
        arr = np.asarray(v, dtype=float)
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise ValueError(f"{name} must be finite and >= 0, got {v!r}")
    z = z_two_sided(false_alarm, n_checks, dof=n - 1 if n > 1 else None)
    half = z * np.asarray(se, dtype=float) + np.asarray(bias, dtype=float) + np.asarray(roundoff, dtype=float)
    if np.ndim(half) == 0:
        half = float(half)
    return Band(mean if np.ndim(mean) else float(mean), half, bonferroni(false_alarm, n_checks))


def binomial_interval(successes: int, trials: int, confidence: float = 1 - 1e-4) -> tuple[float, float]:
    """Exact (Clopper–Pearson) interval for a binomial proportion, via scipy.stats.binomtest."""
    _check_count("trials", trials)
    if isinstance(successes, bool) or not 0 <= successes <= trials:
        raise ValueError(f"successes must be an integer in [0, trials], got {successes!r}")
    ci = stats.binomtest(int(successes), int(trials)).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


@dataclasses.dataclass
class BandSet:
    """Collects the comparisons of one check, then records them with one Bonferroni correction over all of them.

    ``add(samples, theory, ...)`` takes per-instance samples of shape (I,) or (I, K) (K comparisons at once,
    e.g. one per depth); ``record(tally)`` computes z for the total number of comparisons added and calls
    ``tally.band`` for each, noting the false-alarm rates. Deferring the record is what lets the correction
    use the real count, which depends on the drawn examples.
    """

    false_alarm: float = DEFAULT_FALSE_ALARM
    entries: list = dataclasses.field(default_factory=list)

    def add(self, samples, theory, *, estimate=None, bias=0.0, roundoff=0.0, case: dict | None = None,
            effect=None) -> None:
        """Queue ``mean(samples) ≈ theory``; ``estimate`` (default: that mean) is what the tally reports.

        When ``samples`` are paired differences (measurement − conditional theory), pass the measured mean as
        ``estimate`` and its conditional prediction as ``theory``: the band's width comes from the differences.
        ``effect`` (default: ``theory``) is the predicted effect the band must resolve (``Tally.band``).
        """
        mean, se, n = mean_and_se(samples, axis=0)
        theory = np.broadcast_to(np.asarray(theory, dtype=float), np.shape(mean))
        # Paired form: samples = measured − predicted per instance, estimate = mean(measured) and theory =
        # mean(predicted) over the same instances, so estimate − theory = mean(samples) exactly.
        est = mean if estimate is None else np.broadcast_to(np.asarray(estimate, dtype=float), np.shape(mean))
        eff = theory if effect is None else np.broadcast_to(np.asarray(effect, dtype=float), np.shape(mean))
        self.entries.append(dict(est=np.atleast_1d(est), theory=np.atleast_1d(theory), se=np.atleast_1d(se), n=n,
                                 bias=bias, roundoff=roundoff, case=case or {}, effect=np.atleast_1d(eff)))

    @property
    def n_comparisons(self) -> int:
        return int(sum(e["est"].size for e in self.entries))

    def record(self, tally: Tally) -> Tally:
        total = max(1, self.n_comparisons)
        worst = 0.0
        for e in self.entries:
            band = band_from_summary(e["est"], e["se"], e["n"], false_alarm=self.false_alarm, n_checks=total,
                                     bias=np.broadcast_to(e["bias"], e["est"].shape),
                                     roundoff=np.broadcast_to(e["roundoff"], e["est"].shape))
            tally.band(band.estimate, e["theory"], band.halfwidth, case=e["case"], effect=e["effect"])
            worst = max(worst, float(np.max(np.abs(band.estimate - e["theory"]) / band.halfwidth)))
        tally.note(false_alarm_per_check=self.false_alarm, comparisons=total,
                   false_alarm_per_comparison=bonferroni(self.false_alarm, total),
                   z=z_two_sided(self.false_alarm, total), worst_abs_dev_over_halfwidth=worst)
        return tally
