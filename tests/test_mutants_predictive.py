"""theory/predictive.py against independent values, where the mutation run (.ci/mutation.py) found a gap.

What the survivors showed untested: the candidates of ``fit_threshold`` (the two ends u_min − 1, u_max + 1, the
midpoints, the median tie-break), the censored-below branch and the exact edges of ``within_factor``, the last grid
point of an uncensored-above bracket, the 0/1-number form of the labels, the shape checks of labels and scores
(each must name its own parameter), and the score/boundary formulas at a speed ≠ 1. Expected values are worked by
hand in the comments (or by ``math`` on the defining formula); exact equality where the value is a float64
constant of one or two operations, rel 1e-12 otherwise.
"""
from __future__ import annotations

import hashlib
import math

import mpmath
import numpy as np
import pytest

from theory import predictive as pr


# ---- labels and scores: the shape checks name their parameter --------------------------------------------------
@pytest.mark.parametrize("bad", [[], [[True, False]]])
def test_labels_must_be_a_non_empty_1d_sequence(bad):
    with pytest.raises(ValueError, match="^positive must be a non-empty 1-D"):
        pr.roc_auc([0.5, 1.5], bad)
    with pytest.raises(ValueError, match="^predicted must be a non-empty 1-D"):
        pr.accuracy(bad, [True, False])


@pytest.mark.parametrize("bad", [[], [[0.5, 1.5]]])
def test_scores_must_be_a_non_empty_1d_sequence(bad):
    with pytest.raises(ValueError, match="^scores must be a non-empty 1-D"):
        pr.roc_auc(bad, [True, False])
    with pytest.raises(ValueError, match="^scores must be a non-empty 1-D"):
        pr.fit_threshold(bad, [True, False])


def test_labels_accept_the_numbers_0_and_1_and_refuse_2():
    assert pr.accuracy([0, 1, 1], [0, 1, 0]) == 2 / 3
    assert pr.accuracy(np.array([1.0, 0.0]), [True, False]) == 1.0
    with pytest.raises(ValueError, match="^actual must hold booleans"):
        pr.accuracy([0, 1], [0, 2])


# ---- fit_threshold: its candidates --------------------------------------------------------------------------------
def test_fit_threshold_ends_are_one_outside_the_scores():
    # every run positive: only θ below every score is error-free; the lower end is u_min − 1 = 0
    assert pr.fit_threshold([1.0, 2.0, 3.0], [True, True, True]) == 0.0
    # every run negative: only θ ≥ u_max is error-free; the upper end is u_max + 1 = 4
    assert pr.fit_threshold([1.0, 2.0, 3.0], [False, False, False]) == 4.0
    assert pr.fit_threshold([3.0, 1.0, 2.0], [False, False, False]) == 4.0


def test_fit_threshold_is_the_midpoint_of_the_separating_gap():
    # (1, 2, 4) with only 4 positive: θ ∈ [2, 4) is error-free; the only candidate there is (2 + 4)/2 = 3
    assert pr.fit_threshold([1.0, 2.0, 4.0], [False, False, True]) == 3.0
    assert pr.fit_threshold([4.0, 1.0, 2.0, 4.0], [True, False, False, True]) == 3.0
    # two distinct scores: the midpoint of (1, 3) is 2
    assert pr.fit_threshold([1.0, 3.0], [False, True]) == 2.0


def test_fit_threshold_breaks_ties_at_the_median_of_the_tied_candidates():
    """Scores 1..10 with outcomes F, T, F, T, …: "score > θ" with θ after the k smallest scores makes (#T among the
    first k) + (#F among the rest) errors: 4 for k = 1, 3, 5, 7, 9 (five tied candidates 1.5, 3.5, 5.5, 7.5, 9.5)
    and 5 for every even k; the median of the five is 5.5."""
    s = np.arange(1.0, 11.0)
    y = np.arange(10) % 2 == 1
    errors = {k: int(np.sum(y[:k])) + int(np.sum(~y[k:])) for k in range(11)}  # by hand above, checked here
    assert [k for k, e in errors.items() if e == min(errors.values())] == [1, 3, 5, 7, 9]
    assert pr.fit_threshold(s, y) == 5.5


# ---- the score, the boundary, the bracket ---------------------------------------------------------------------
def test_sensitivity_score_is_log_of_lr_times_speed():
    np.testing.assert_allclose(pr.sensitivity_score([0.01, 0.3], [40.0, 2.5]), [math.log(0.4), math.log(0.75)],
                               rtol=1e-12)


def test_predicted_max_lr_is_c_over_speed():
    assert pr.predicted_max_lr(4.0, math.log(2.0)) == pytest.approx(0.5, rel=1e-15)
    assert pr.predicted_max_lr(0.25, 0.0) == 4.0


def test_measured_max_lr_uncensored_above_is_the_last_grid_point():
    b = pr.measured_max_lr([0.1, 0.2, 0.4, 0.8], [False] * 4)
    assert b == {"low": 0.8, "high": None, "estimate": 0.8, "censored": "above"}
    b = pr.measured_max_lr([0.1, 0.2, 0.4, 0.8], [True] * 4)
    assert b == {"low": None, "high": 0.1, "estimate": 0.1, "censored": "below"}


def test_within_factor_censored_below_is_at_most_high_times_factor():
    below = pr.measured_max_lr([2.0, 4.0], [True, True])  # high = 2
    assert pr.within_factor(3.0, below) and pr.within_factor(4.0, below)  # 4 = 2·2: the edge is inside
    assert not pr.within_factor(4.5, below)
    assert pr.within_factor(2.9, below, factor=1.5) and not pr.within_factor(3.1, below, factor=1.5)


def test_within_factor_uncensored_edges_and_factors_between_one_and_two():
    b = pr.measured_max_lr([0.5, 2.0], [False, True])  # estimate √(0.5·2) = 1
    assert b["estimate"] == 1.0
    assert pr.within_factor(0.52, b) and pr.within_factor(0.5, b) and not pr.within_factor(0.49, b)
    assert pr.within_factor(2.0, b) and not pr.within_factor(2.01, b)
    assert pr.within_factor(1.4, b, factor=1.5) and not pr.within_factor(1.6, b, factor=1.5)
    assert pr.within_factor(1.0, b, factor=1.0) and not pr.within_factor(1.01, b, factor=1.0)


# ---- the protocol's hashes, pinned by their documented recipe ---------------------------------------------------
KEYS = [f"pre|L={L}|dt={dt}|lr=0.003|seed=0" for L in (2, 4, 8) for dt in (0.25, 0.5, 1.0)]


def test_split_half_is_the_lowest_bit_of_the_first_sha256_byte():
    """"fit" iff the first byte of SHA-256(salt + "|" + key) is even (the docstring's recipe)."""
    for key in KEYS:
        h = hashlib.sha256(("atlas-split-v1|" + key).encode()).digest()
        assert pr.split_half(key) == ("fit" if h[0] % 2 == 0 else "held_out")
    assert {pr.split_half(k) for k in KEYS} == {"fit", "held_out"}  # the keys above reach both halves


def test_fold_of_is_the_first_eight_sha256_bytes_mod_k_default_five():
    for key in KEYS:
        h = hashlib.sha256(("atlas-cv-v1|" + key).encode()).digest()
        assert pr.fold_of(key) == int.from_bytes(h[:8], "big") % 5
        assert pr.fold_of(key, 2) == int.from_bytes(h[:8], "big") % 2
    assert max(pr.fold_of(f"k{i}") for i in range(200)) == 4  # five folds, 0..4, by default


@pytest.mark.parametrize("bad", ["", 5, None])
def test_fold_and_split_keys_must_be_non_empty_strings(bad):
    with pytest.raises(ValueError, match="^key must be a non-empty string"):
        pr.fold_of(bad)
    with pytest.raises(ValueError, match="^key must be a non-empty string"):
        pr.split_half(bad)


# ---- the growth-aware criterion ---------------------------------------------------------------------------------
def test_weight_growth_does_not_overflow_its_square():
    assert pr.weight_growth(1.0, 1e-3, 1e200)[0] == pytest.approx(1e203, rel=1e-15)
    assert pr.growth_score(1.0, 2.0, 1e-3, 1e200)[0] == pytest.approx(4 * math.log(1e203), rel=1e-14)


def test_weight_growth_and_score_refuse_a_non_positive_lr():
    for bad in (-1.0, 0.0, [0.1, -0.2]):
        with pytest.raises(ValueError, match="^lr must be finite and > 0"):
            pr.weight_growth(bad, 0.18, 30.0)
        with pytest.raises(ValueError, match="^lr must be finite and > 0"):
            pr.growth_score(bad, 0.5, 0.18, 30.0)


def test_growth_score_is_log_lr_plus_kappa_log_of_one_plus_the_squared_drift():
    lr, k, sig, n = np.array([1e-3, 0.02, 0.5]), 0.7, 0.18, 30.0
    expected = [math.log(x) + k * math.log(1 + (n * x / sig) ** 2) for x in lr]
    np.testing.assert_allclose(pr.growth_score(lr, k, sig, n), expected, rtol=1e-12)
    np.testing.assert_allclose(pr.growth_score(lr, [0.0, 1.0, 2.0], sig, n),
                               [math.log(x) + kk * math.log(1 + (n * x / sig) ** 2) for x, kk in zip(lr, (0, 1, 2))],
                               rtol=1e-12)


def _lr_star_mpmath(k, log_c, sigma_w, n_bar):
    """The root x of x + κ log(1 + (a eˣ)²) = log c, a = n̄/σ_w, in 50-digit mpmath (bisection on a wide bracket)."""
    with mpmath.workdps(50):
        a, k, lc = mpmath.mpf(n_bar) / mpmath.mpf(sigma_w), mpmath.mpf(k), mpmath.mpf(log_c)
        f = lambda x: x + k * mpmath.log(1 + (a * mpmath.exp(x)) ** 2) - lc  # noqa: E731
        lo, hi = lc - 2000, lc
        for _ in range(400):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if f(mid) > 0 else (mid, hi)
        return float(mpmath.exp((lo + hi) / 2))


@pytest.mark.parametrize("k, log_c, sigma_w, n_bar", [
    (0.5, 1.0, 0.18, 30.0), (2.0, -3.0, 0.05, 1.0), (1.3, 2.5, 0.7, 60.0),
    (0.0, 0.4, 0.18, 30.0),
    (5.0, 500.0, 1.0, 1e282),  # a·c ≈ e^1149: (a·lr)² raised OverflowError before the softplus form (fixed)
    (3.0, 2.0, 1e-3, 1e150),
    (1e60, 1.0, 0.18, 30.0),  # a bracket ~1e62 wide: 200 fixed halvings left it ~1e2 wide (fixed: to resolution)
])
def test_growth_max_lr_is_the_root_to_round_off(k, log_c, sigma_w, n_bar):
    """lr* against an mpmath bisection at 50 digits, rel 1e-13 (x = log lr* to float64 resolution, ~1e-16·|x|; for
    |x| ≈ 545 that is 1e-13 in lr, so the extreme case gets 1e-12): the evidence that the bracket's start is
    equivalent up to round-off."""
    rel = 1e-13 if abs(log_c) < 100 else 1e-12
    assert pr.growth_max_lr(k, log_c, sigma_w, n_bar) == pytest.approx(_lr_star_mpmath(k, log_c, sigma_w, n_bar),
                                                                        rel=rel)


# ---- k-fold and McNemar ------------------------------------------------------------------------------------------
def test_kfold_accuracy_by_hand_with_two_and_three_folds():
    """Two folds: s = 1..4, y = (F, F, T, T), folds (0, 1, 0, 1). Fold 0 is fitted on {2: F, 4: T} → θ = 3, which
    gets 1 right, F at 1, and misses T at 3 (3 > 3 is false); fold 1 on {1: F, 3: T} → θ = 2, right at 2 and 4:
    3 of 4. Three folds over s = (1, 2, 3, 10, 11, 12), y = s > 5: every training set keeps two scores of each class,
    so θ ∈ [6, 7] (the midpoint of the gap) and every held-out score lies on its side: all right."""
    assert pr.kfold_accuracy([1.0, 2.0, 3.0, 4.0], [False, False, True, True], [0, 1, 0, 1]) == 0.75
    s = np.array([1.0, 2.0, 3.0, 10.0, 11.0, 12.0])
    assert pr.kfold_accuracy(s, s > 5, [0, 1, 2, 0, 1, 2]) == 1.0
    assert pr.kfold_accuracy(s, s > 5, np.array([0.0, 1.0, 2.0, 0.0, 1.0, 2.0])) == 1.0  # integral floats


@pytest.mark.parametrize("folds", [[0.5, 1, 0, 1, 0, 1], [np.nan, 1, 0, 1, 0, 1], [True, False] * 3])
def test_kfold_folds_must_be_integer_labels(folds):
    with pytest.raises(ValueError, match="^folds must hold integer fold labels"):
        pr.kfold_accuracy(np.arange(6.0), np.arange(6) > 2, folds)


def test_kfold_lengths_must_agree():
    with pytest.raises(ValueError, match="^scores, positive and folds must have the same length"):
        pr.kfold_accuracy(np.arange(6.0), np.arange(6) > 2, [0, 1, 0, 1, 0])
    with pytest.raises(ValueError, match="^scores, positive and folds must have the same length"):
        pr.kfold_accuracy(np.arange(6.0), np.arange(5) > 2, [0, 1, 0, 1, 0, 1])


def test_mcnemar_p_is_capped_at_one_for_balanced_discordance():
    """a_only = b_only = 1: P(Bin(2, ½) ≤ 1) = 3/4, twice that is 1.5, capped: p = 1."""
    assert pr.mcnemar_exact([True, False, True], [False, True, True]) == {"a_only": 1, "b_only": 1, "p": 1.0}
    # a_only = 3, b_only = 1: 2·P(Bin(4, ½) ≤ 1) = 2·5/16
    assert pr.mcnemar_exact([True, True, True, False], [False, False, False, True])["p"] == 10 / 16
