"""theory/predictive.py against independent values, where the mutation run (.ci/mutation.py) found a gap.

What the survivors showed untested: the candidates of ``fit_threshold`` (the two ends u_min − 1, u_max + 1, the
midpoints, the median tie-break), the censored-below branch and the exact edges of ``within_factor``, the last grid
point of an uncensored-above bracket, the 0/1-number form of the labels, the shape checks of labels and scores
(each must name its own parameter), and the score/boundary formulas at a speed ≠ 1. Expected values are worked by
hand in the comments (or by ``math`` on the defining formula); exact equality where the value is a float64
constant of one or two operations, rel 1e-12 otherwise.
"""
from __future__ import annotations

import math

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
