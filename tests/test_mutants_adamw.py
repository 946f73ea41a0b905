"""Mutation-run gaps in theory/adamw.py (README "Mutation and soak"): every parameter away from its default.

F9's closed forms are recomputed here by an independent route: C_t from its definition as a plain Python sum
Σ_{i<t} q^i (never the geometric closed form the module uses), S_t from the termwise sum Σ_s η_sC_sP_t/P_s (the
module runs the recursion), and the witness property by running Adam's m/v recursion in plain floats. Defaults
(β₁ = 0.9, β₂ = 0.95, scale = 1, decay exponent 1) are checked against the same hand formulas, and the domain
edges (β₂ = 1, β₂ = 0 with β₁ = 0, η·λ ≥ 1, n_steps = 1) against the error naming the parameter.
Tolerances: every reference is a few dozen float64 operations, so rel 1e-12 is ~1e4 ulp of round-off.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theory import adamw as th

REL = 1e-12  # float64 round-off of sums of <= a few hundred terms, with a wide margin


def c_ref(t: int, b1: float, b2: float, exponent: float = 0.5) -> float:
    """C_t by the docstring's definition, with Σ_{i<t} q^i summed term by term."""
    q = b1 * b1 / b2 if b1 > 0 else 0.0
    geo = sum(q ** i for i in range(t))
    return (1 - b1) / (1 - b1 ** t) * math.sqrt((1 - b2 ** t) / (1 - b2)) * geo ** exponent


def s_ref(lrs, lam, b1, b2, e=1.0):
    """S_t = Σ_{s≤t} η_s C_s Π_{s<r≤t}(1−η_rλ)^e, each term built from its own product (no recursion)."""
    out = [0.0]
    for t in range(1, len(lrs) + 1):
        total = 0.0
        for s in range(1, t + 1):
            factor = 1.0
            for r in range(s + 1, t + 1):
                factor *= (1 - lrs[r - 1] * lam) ** e
            total += lrs[s - 1] * c_ref(s, b1, b2) * factor
        out.append(total)
    return np.array(out)


def test_update_bound_default_betas_are_09_095():
    t = np.arange(1, 30)
    want = [c_ref(int(k), 0.9, 0.95) for k in t]
    np.testing.assert_allclose(th.adam_update_bound(t), want, rtol=REL)
    assert th.adam_update_bound_limit() == pytest.approx(0.1 / math.sqrt(0.05 * (1 - 0.81 / 0.95)), rel=REL)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(b1=st.floats(0.05, 0.97), b2=st.floats(0.05, 0.999), t=st.integers(1, 60))
def test_update_bound_matches_termwise_sum_away_from_defaults(b1, b2, t):
    assert th.adam_update_bound(t, b1, b2) == pytest.approx(c_ref(t, b1, b2), rel=1e-10)


def test_update_bound_at_q_equal_one():
    """β₁² = β₂ exactly (0.5² = 0.25): Σ_{i<t} 1 = t, the branch the geometric formula cannot take (0/0)."""
    t = np.arange(1, 12)
    got = th.adam_update_bound(t, 0.5, 0.25)
    want = [0.5 / (1 - 0.5 ** k) * math.sqrt((1 - 0.25 ** k) / 0.75) * math.sqrt(k) for k in t]
    np.testing.assert_allclose(got, want, rtol=REL)
    assert np.all(np.isfinite(got))
    assert th.adam_update_bound_limit(0.5, 0.25) == math.inf


def _adam_updates(g, b1, b2):
    m = v = 0.0
    out = []
    for t, gt in enumerate(g, start=1):
        m = b1 * m + (1 - b1) * gt
        v = b2 * v + (1 - b2) * gt * gt
        out.append((m / (1 - b1 ** t)) / math.sqrt(v / (1 - b2 ** t)))
    return np.array(out)


@pytest.mark.parametrize("n, b1, b2, scale", [(1, 0.9, 0.95, 1.0), (25, 0.8, 0.9, 2.5), (25, 0.6, 0.99, 1e-3)])
def test_witness_stream_values_and_attainment(n, b1, b2, scale):
    g = th.adam_witness_stream(n, b1, b2, scale)
    np.testing.assert_allclose(g, [scale * (b2 / b1) ** s for s in range(n)], rtol=REL)
    # the witness: plain-float Adam (ε = 0) on this stream makes every update equal to C_t
    np.testing.assert_allclose(_adam_updates(g, b1, b2), [c_ref(t, b1, b2) for t in range(1, n + 1)], rtol=1e-10)


def test_witness_stream_defaults():
    np.testing.assert_allclose(th.adam_witness_stream(6), [(0.95 / 0.9) ** s for s in range(6)], rtol=REL)


@pytest.mark.parametrize("b1, b2, e", [(0.9, 0.95, 1.0), (0.7, 0.9, 1.0), (0.7, 0.9, 0.5), (0.85, 0.99, 2.0)])
def test_deviation_bound_matches_termwise_sum(b1, b2, e):
    lrs = [0.3, 0.05, 0.2, 0.1, 0.25, 0.15]
    lam = 1.5
    got = th.adamw_deviation_bound(lrs, lam, b1, b2, decay_exponent=e)
    np.testing.assert_allclose(got, s_ref(lrs, lam, b1, b2, e), rtol=REL)
    assert got[1] == pytest.approx(lrs[0], rel=REL)  # C_1 = 1: the first Adam step is sign(g)


def test_deviation_bound_defaults():
    lrs = [0.3, 0.05, 0.2]
    np.testing.assert_allclose(th.adamw_deviation_bound(lrs, 0.7), s_ref(lrs, 0.7, 0.9, 0.95), rtol=REL)


@pytest.mark.parametrize("e", [1.0, 0.5, 3.0])
def test_norm_bound_by_hand(e):
    """‖W_t‖ ≤ P_t^e‖W_0‖ + √size·S_t with a vector of W_0 norms (shape kept) and size ≠ 1."""
    lrs, lam, size = [0.2, 0.1, 0.4], 0.8, 6
    w0 = np.array([0.0, 1.5, 4.0])
    b1, b2 = 0.75, 0.9
    p = np.array([1.0, 1 - 0.2 * lam, (1 - 0.2 * lam) * (1 - 0.1 * lam),
                  (1 - 0.2 * lam) * (1 - 0.1 * lam) * (1 - 0.4 * lam)]) ** e
    want = p[:, None] * w0[None, :] + math.sqrt(size) * s_ref(lrs, lam, b1, b2, e)[:, None]
    got = th.adamw_norm_bound(w0, lrs, lam, size, b1, b2, decay_exponent=e)
    assert got.shape == (4, 3)
    np.testing.assert_allclose(got, want, rtol=REL)
    # a 2-d array of norms keeps its shape too
    assert th.adamw_norm_bound(np.ones((2, 5)), lrs, lam, size, b1, b2).shape == (4, 2, 5)


def test_norm_bound_defaults():
    lrs, lam = [0.2, 0.1], 0.5
    want = np.array([1.0, 0.9, 0.9 * 0.95]) * 2.0 + math.sqrt(3) * s_ref(lrs, lam, 0.9, 0.95)
    np.testing.assert_allclose(th.adamw_norm_bound(2.0, lrs, lam, 3), want, rtol=REL)


def test_domain_edges():
    with pytest.raises(ValueError, match="beta2"):
        th.adam_update_bound(1, 0.5, 1.0)
    with pytest.raises(ValueError, match="beta2 must be > 0"):
        th.adam_update_bound(1, 0.5, 0.0)
    # β₁ = β₂ = 0 is allowed (q := 0): plain sign descent, C_t = 1 for every t
    np.testing.assert_allclose(th.adam_update_bound(np.arange(1, 5), 0.0, 0.0), 1.0, rtol=REL)
    with pytest.raises(ValueError, match="weight_decay"):
        th.adamw_decay_products([0.5, 1.5], 1.0)  # η·λ = 1.5 ≥ 1
    np.testing.assert_allclose(th.adamw_decay_products([0.5, 0.99], 1.0), [1.0, 0.5, 0.5 * 0.01], rtol=REL)
    assert th.adam_witness_stream(1, 0.9, 0.95, 3.0).tolist() == [3.0]
    with pytest.raises(ValueError, match="n_steps"):
        th.adam_witness_stream(0)


# ---- F9b, the windowed bound, and F9 (d)'s matrix stream (mutation run of 2026-12-04) -----------------------------


def test_window_factors_use_the_global_step_of_each_update_bound():
    """With C_t = t (a custom update bound, so the step index is visible) and t₀ = 1 over η = (.1, .2, .3, .4),
    λ = .5: ρ = (.9, .85, .8) for steps 2..4, P = (1, .9, .765, .612), S = (0, .2·2, .85·.4 + .3·3, .8·1.24 + .4·4)
    = (0, .4, 1.24, 2.592). A window that counted C from its own start (or from t₀ + 2) gets S wrong."""
    p, s = th.adamw_window_factors([0.1, 0.2, 0.3, 0.4], 0.5, 1, update_bound=lambda t, b1, b2: np.asarray(t, float))
    np.testing.assert_allclose(p, [1.0, 0.9, 0.765, 0.612], rtol=REL)
    np.testing.assert_allclose(s, [0.0, 0.4, 1.24, 2.592], rtol=REL)


def test_window_global_decay_variant_is_the_restarted_one_times_the_decay_before_t0():
    """The meta-tests' "global" variant multiplies P by ∏_{s≤t₀}(1 − η_sλ) = (1 − .1·.5)(1 − .2·.5) = .855 at
    t₀ = 2 (and leaves S alone)."""
    lrs, lam = [0.1, 0.2, 0.3, 0.4], 0.5
    p, s = th.adamw_window_factors(lrs, lam, 2)
    pg, sg = th.adamw_window_factors(lrs, lam, 2, decay="global")
    np.testing.assert_allclose(pg, p * 0.95 * 0.9, rtol=REL)
    np.testing.assert_allclose(sg, s, rtol=REL)


def test_window_norm_bound_defaults_and_size_one():
    """Defaults β = (0.9, 0.95) against the explicit call; size = 1 (an ∞-norm) is inside the domain and adds S."""
    lrs, lam = [0.2, 0.1, 0.3], 0.5
    p, s = th.adamw_window_factors(lrs, lam, 1, 0.9, 0.95)
    np.testing.assert_allclose(th.adamw_window_norm_bound(2.0, lrs, lam, 1, 1), p * 2.0 + s, rtol=REL)
    np.testing.assert_allclose(th.adamw_window_norm_bound(2.0, lrs, lam, 4, 1),
                               th.adamw_window_norm_bound(2.0, lrs, lam, 4, 1, 0.9, 0.95), rtol=REL)
    with pytest.raises(ValueError, match="size"):
        th.adamw_window_norm_bound(2.0, lrs, lam, 0, 1)


def test_sign_pattern_stream_defaults():
    """Defaults β = (0.9, 0.95), scale 1: g_s = (0.95/0.9)^{s−1}·s tᵀ, by hand."""
    rs, cs = np.array([1.0, -1.0]), np.array([1.0, 1.0, -1.0])
    g = th.adam_sign_pattern_stream(3, rs, cs)
    want = np.array([(0.95 / 0.9) ** k for k in range(3)])[:, None, None] * np.outer(rs, cs)[None]
    np.testing.assert_allclose(g, want, rtol=REL)
