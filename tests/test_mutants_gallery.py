"""theory/gallery.py against independent values, where the mutation run (.ci/mutation.py) found a gap.

Each test pins what a survivor of the mutation run showed untested: a parameter used only at its default (λ² = 1.1,
two steps per block, 60 Sinkhorn sweeps), the length and every entry of the expected curves (compared with the
moment recursion m_{l+1} = f(m_l) iterated here, not with the closed form), the smallest admitted value of an
integer parameter (depth = 1, iters = 1, stream width 1), the exact edges of the input checks (α ∈ [0, 1], the
1e-9 doubly-stochastic tolerance, the ``or`` of "square and non-negative"), and the overflow guard of Sinkhorn.
Expected values are hand recursions, mpmath, or a differently written Sinkhorn (scaling vectors, not matrix
sweeps); tolerances are float64 round-off of a few operations (rel 1e-12) unless stated.
"""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from theory import gallery as G

RTOL = 1e-12  # a handful of float64 operations per entry; the mutants move entries by >= 1e-3 relative


def _recursion(m0: float, step, n: int) -> np.ndarray:
    """√m_l, l = 0..n, for m_{l+1} = step(m_l) (the per-layer moment map of G.md), iterated in mpmath."""
    m = [mpmath.mpf(m0)]
    for _ in range(n):
        m.append(step(m[-1]))
    return np.array([float(mpmath.sqrt(v)) for v in m])


# ---- the curves: length depth + 1, every entry, depth = 1 admitted -------------------------------------------
@pytest.mark.parametrize("depth", [1, 2, 5])
def test_rms_curves_equal_the_iterated_moment_recursion(depth):
    d = 6
    alpha = 0.7
    np.testing.assert_allclose(G.rezero_rms(depth, alpha, d),
                               _recursion(d, lambda m: m * (1 + mpmath.mpf(alpha) ** 2 / 2), depth), rtol=RTOL)
    # default λ² = 1.1 (modded-nanogpt's √1.1 per sublayer): m⁺ = 1.1 m + d/2
    np.testing.assert_allclose(G.residual_multiplier_rms(depth, d),
                               _recursion(d, lambda m: mpmath.mpf("1.1") * m + mpmath.mpf(d) / 2, depth), rtol=RTOL)
    np.testing.assert_allclose(G.residual_multiplier_rms(depth, d, 0.8),
                               _recursion(d, lambda m: mpmath.mpf("0.8") * m + mpmath.mpf(d) / 2, depth), rtol=RTOL)
    np.testing.assert_allclose(G.completep_rms(depth, alpha, d),
                               _recursion(d, lambda m: m + mpmath.mpf(depth) ** (-2 * mpmath.mpf(alpha)) * d / 2,
                                          depth), rtol=RTOL)
    lam = 1 - mpmath.mpf(alpha) / (1 + mpmath.exp(-mpmath.mpf(alpha)))
    np.testing.assert_allclose(G.gpas_rms(depth, alpha, d),
                               _recursion(d, lambda m: lam ** 2 * (m + mpmath.mpf(d) / 2), depth), rtol=RTOL)
    # default two residual steps per block, each adding ‖N_out(·)‖² = d
    np.testing.assert_allclose(G.sandwich_rms(depth, d), _recursion(d, lambda m: m + 2 * d, depth), rtol=RTOL)
    np.testing.assert_allclose(G.sandwich_rms(depth, d, 3), _recursion(d, lambda m: m + 3 * d, depth), rtol=RTOL)
    np.testing.assert_array_equal(G.ngpt_rms(depth, d, 4.0), [2.0] + [1.0] * depth)
    np.testing.assert_allclose(G.hybridnorm_rms(depth, d, 9.0), [3.0] + [math.sqrt(d)] * depth, rtol=RTOL)


def test_residual_multiplier_at_lambda_one_is_pre_ln_additive_and_defaults_to_1_1():
    """λ² = 1 takes its own branch: m_l = m_0 + l·d/2 (Pre-LN); the default λ² is 1.1 (issue 10's √1.1)."""
    assert G.residual_multiplier_energy(3, 8, 1.0, x0_energy=5.0) == 5.0 + 3 * 4.0
    assert G.residual_multiplier_energy(0, 8, 1.0, x0_energy=5.0) == 5.0
    expected = float(_recursion(8, lambda m: mpmath.mpf("1.1") * m + 4, 4)[-1] ** 2)
    assert G.residual_multiplier_energy(4, 8) == pytest.approx(expected, rel=RTOL)


@pytest.mark.parametrize("alpha", [-800.0, -3.0, -0.5, 0.25, 3.0, 800.0])
def test_gpas_gain_equals_one_minus_silu_in_mpmath_on_both_sides(alpha):
    a = mpmath.mpf(alpha)
    assert G.gpas_gain(alpha) == pytest.approx(float(1 - a / (1 + mpmath.exp(-a))), rel=1e-14)


# ---- input edges -------------------------------------------------------------------------------------------------
def test_alpha_unit_interval_is_closed_at_one_and_refuses_just_above():
    assert G.ngpt_unnormalised_bounds(1.0) == (1.0, 1.0)
    assert G.ngpt_unnormalised_energy(1.0) == 1.0
    for bad in (1.05, -0.05):
        with pytest.raises(ValueError, match="^alpha"):
            G.ngpt_unnormalised_bounds(bad)


def test_smallest_admitted_integer_parameters():
    assert G.hyperconnection_energy(2.0, [0.5, 1.0], 1) == 2.0 + 1.25 * 0.5 * 1
    assert G.completep_energy(1, 0.5, 8) == 8.0 + 4.0  # depth 1: the whole budget in one step
    h = G.sinkhorn(np.array([[0.0, math.log(3.0)], [0.0, 0.0]]), iters=1)
    # one sweep by hand: rows of [[1, 3], [1, 1]] -> [[1/4, 3/4], [1/2, 1/2]]; columns -> divide by (3/4, 5/4)
    np.testing.assert_allclose(h, [[1 / 3, 3 / 5], [2 / 3, 2 / 5]], rtol=RTOL)


def _sinkhorn_by_scaling(logits, iters):
    """Sinkhorn as diag(r) K diag(c): r ← 1/(K c), c ← 1/(Kᵀ r), in mpmath (a different algorithm from G's)."""
    n = len(logits)
    K = [[mpmath.exp(mpmath.mpf(v)) for v in row] for row in logits]
    c = [mpmath.mpf(1)] * n
    for _ in range(iters):
        r = [1 / sum(K[i][j] * c[j] for j in range(n)) for i in range(n)]
        c = [1 / sum(K[i][j] * r[i] for i in range(n)) for j in range(n)]
    return np.array([[float(r[i] * K[i][j] * c[j]) for j in range(n)] for i in range(n)])


def test_sinkhorn_default_is_sixty_sweeps_on_a_slowly_converging_matrix():
    """[[1, 1], [e^-10, 1]] converges like 1/n (its pattern is nearly triangular): the 60th and 61st sweeps differ
    by 1e-4, so the default sweep count is visible; the value is the scaling-vector form after 60 sweeps."""
    logits = [[0.0, 0.0], [-10.0, 0.0]]
    np.testing.assert_allclose(G.sinkhorn(np.array(logits)), _sinkhorn_by_scaling(logits, 60), rtol=1e-10)
    np.testing.assert_allclose(G.sinkhorn(np.array(logits), iters=7), _sinkhorn_by_scaling(logits, 7), rtol=1e-10)


def test_sinkhorn_does_not_overflow_on_large_logits():
    """exp(800) overflows float64; Sinkhorn is invariant to a constant shift, so logits + 800 give the same matrix."""
    base = np.array([[0.0, 1.0], [2.0, -1.0]])
    np.testing.assert_allclose(G.sinkhorn(base + 800.0), G.sinkhorn(base), rtol=1e-12)
    np.testing.assert_allclose(G.sinkhorn(base + 800.0), _sinkhorn_by_scaling(base.tolist(), 60), rtol=1e-10)


def test_doubly_stochastic_gain_refuses_negative_or_non_square_matrices():
    with pytest.raises(ValueError, match=r"^matrices\[0\] must be a non-negative square"):
        G.doubly_stochastic_gain([np.array([[1.5, -0.5], [-0.5, 1.5]])])  # sums are 1, an entry is < 0
    with pytest.raises(ValueError, match=r"^matrices\[1\] must be a non-negative square"):
        G.doubly_stochastic_gain([np.eye(2), np.full((2, 3), 0.5)])


@pytest.mark.parametrize("delta, ok", [(0.9e-9, True), (1.05e-9, False)])
def test_doubly_stochastic_tolerance_is_1e_9_on_rows_and_on_columns_separately(delta, ok):
    rows_off = np.array([[0.5 + delta, 0.5], [0.5 - delta, 0.5]])  # columns sum to 1, rows to 1 ± δ
    for m in (rows_off, rows_off.T):
        if ok:
            assert G.doubly_stochastic_gain([m]) == 1.0
        else:
            with pytest.raises(ValueError, match=r"^matrices\[0\] must be doubly stochastic"):
                G.doubly_stochastic_gain([m])
