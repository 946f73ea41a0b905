"""theory/criterion.py (S1, S2) against independent values, where the mutation run (.ci/mutation.py) found a gap.

What the survivors showed untested, and what pins it here:
- the attention Jacobian lemma at n ≥ 2 with r ≠ 1, ‖A_h‖ ≠ 1, d_h ≠ 1 and per-head norms (κ_n = 1 + √n, the
  r²‖A‖/√d_h term), its default d_h = 1, and a scalar ‖A‖ broadcast over heads — the lemma's formula evaluated
  in mpmath;
- the peri/pre/post bounds at their default gains and ε (rates = J·γ/(s_F s_k) by hand), with a positive input
  scale σ_0 so that the propagated floors depend on Δt and on the increments (the floor lemma iterated here);
- post with γ = 0 (a zero gain kills every gradient: Λ = 0), none with an infinite bias but finite weights (the
  MLP stays globally Lipschitz), ``stable`` at and around its edges;
- the root search's documented bracket [10⁻¹², 10¹²] (a root just inside each end is found, just outside is 0 or
  inf — the upper end was wrong, see below) and its precision (the sup to 32 ulp);
- the closed forms at K = 1, two-sided uniform ℓ, and non-uniform ℓ < 1 (two steps: a quadratic, solved here);
- S2: a one-step water level, the fill at level_factor ≠ 1, c with a zero entry under a binding budget (against a
  1-D search of the same problem), the forward-only case with and without ties, the dual at λ = 0, and the input
  checks of c and forward_budget (each naming its parameter).

A bug found on the way (fixed in theory/criterion.py): ``_sup_feasible`` returned inf for every sup in
(16⁹, 10¹²) ≈ (6.9e10, 1e12), because it tested the cap on the next bracket end before evaluating it; the
docstring of ``max_uniform_dt`` promises inf only above 10¹². The last bracket now ends at the cap. And a second
(found reading a bracket-end survivor): ``max_uniform_dt_closed_form`` two-sided with distinct ℓ_k raised a brentq
sign error for τ ≳ 36, where the root is within float64 resolution of 1/max ℓ; it now returns the last finite step.
Tolerances: rel 1e-12 for closed forms of a few float64 operations; roots from brentq at rtol 4 eps are compared at
rel 1e-13 (or by the feasibility of the returned point and the infeasibility of the point 32 ulp above it).
"""
from __future__ import annotations

import dataclasses
import math

import mpmath
import numpy as np
import pytest
from scipy import optimize

from theory import criterion as C
from theory.criterion import GELU_LIPSCHITZ, StabilityBounds, SublayerNorms

RTOL = 1e-12
EPS = float(np.finfo(float).eps)


def _attn_lemma(r, n, wv, wo, qk, dh) -> float:
    """‖W_O‖·√(Σ_h ‖W_V^h‖²(√n + κ_n r²‖A_h‖/√d_h)²), κ_1 = 0, κ_n = 1 + √n — the lemma's statement, in mpmath."""
    r, n, wo, dh = (mpmath.mpf(v) for v in (r, n, wo, dh))
    kappa = 0 if n == 1 else 1 + mpmath.sqrt(n)
    total = sum(mpmath.mpf(v) ** 2 * (mpmath.sqrt(n) + kappa * r ** 2 * mpmath.mpf(a) / mpmath.sqrt(dh)) ** 2
                for v, a in zip(wv, qk))
    return float(wo * mpmath.sqrt(total))


# ---- S1 lemmas -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("r, n, wv, wo, qk, dh", [
    (1.5, 4, (0.7, 1.3), 1.7, (0.4, 2.0), 3),
    (0.6, 2, (2.0,), 0.9, (1.5,), 8),
    (2.0, 9, (0.5, 1.0, 0.0), 1.1, (3.0, 0.25, 7.0), 2),
    (3.0, 1, (0.7, 1.3), 1.7, (0.4, 2.0), 3),  # one token: affine, no r or ‖A‖ dependence
])
def test_attention_jacobian_sup_is_the_lemma_formula(r, n, wv, wo, qk, dh):
    expected = _attn_lemma(r, n, wv, wo, qk, dh)
    assert C.attention_jacobian_sup(r, n, wv, wo, qk, dh) == pytest.approx(expected, rel=RTOL)
    s = SublayerNorms("attn", wv_head_norms=wv, wo_norm=wo, qk_head_norms=qk, head_dim=dh)
    assert s.jacobian_sup(r, n) == pytest.approx(expected, rel=RTOL)


def test_attention_defaults_head_dim_one_and_a_scalar_qk_norm_is_every_head_s():
    expected = _attn_lemma(1.5, 4, (0.7, 1.3), 1.7, (0.4, 0.4), 1)
    assert C.attention_jacobian_sup(1.5, 4, (0.7, 1.3), 1.7, 0.4) == pytest.approx(expected, rel=RTOL)
    s = SublayerNorms("attn", wv_head_norms=(0.7, 1.3), wo_norm=1.7, qk_head_norms=0.4)
    assert s.head_dim == 1 and s.qk_head_norms == (0.4, 0.4)
    assert s.jacobian_sup(1.5, 4) == pytest.approx(expected, rel=RTOL)
    assert SublayerNorms("attn", wv_head_norms=(0.7, 1.3, 2.0), qk_head_norms=(0.5,)).qk_head_norms == (0.5,) * 3
    assert SublayerNorms("attn", wv_head_norms=(0.7,), qk_head_norms=(0.5,)).qk_head_norms == (0.5,)
    with pytest.raises(ValueError, match="^qk_head_norms must have one entry per head"):
        SublayerNorms("attn", wv_head_norms=(0.7, 1.3, 2.0), qk_head_norms=(0.5, 0.5))


def test_norm_values_refuse_strings_even_numeric_ones():
    for call in (lambda: C.attention_jacobian_sup(1.0, 2, "1.5", 1.0),
                 lambda: SublayerNorms("attn", wv_head_norms="1.5")):
        with pytest.raises(ValueError, match="^wv_head_norms"):
            call()


def test_mlp_jacobian_sup_is_zero_when_either_norm_is_zero_even_against_inf():
    assert C.mlp_jacobian_sup(0.0, math.inf) == 0.0 and C.mlp_jacobian_sup(math.inf, 0.0) == 0.0
    assert C.mlp_jacobian_sup(2.0, 3.0, "relu") == 6.0
    assert C.mlp_jacobian_sup(2.0, 3.0) == pytest.approx(6.0 * GELU_LIPSCHITZ, rel=1e-15)


def test_mlp_gain_offset_is_the_F3_bound_split_into_slope_and_intercept():
    """sup‖F(u)‖ ≤ ‖W₂‖(‖W₁‖r + ‖b₁‖) + ‖b₂‖ = a r + b with a = ‖W₁‖‖W₂‖ = 6, b = 3·0.5 + 0.25 = 1.75."""
    s = SublayerNorms("mlp", w1_norm=2.0, w2_norm=3.0, b1_norm=0.5, b2_norm=0.25)
    assert s.gain_offset() == (6.0, 1.75)
    assert s.output_sup(2.0) == 13.75


def test_globally_lipschitz_mlp_always_attention_only_for_one_token():
    mlp, attn = SublayerNorms("mlp", w1_norm=1.0, w2_norm=1.0), SublayerNorms("attn", wv_head_norms=1.0)
    assert mlp.globally_lipschitz(1) and mlp.globally_lipschitz(5)
    assert attn.globally_lipschitz(1) and not attn.globally_lipschitz(2)


def test_stable_is_both_bounds_within_budget_edges_included():
    b = StabilityBounds("pre", np.ones(1), 1.5, 0.3, np.ones(2), np.zeros(1), np.zeros(1), np.zeros(1), np.ones(1))
    assert b.stable(1.5, 0.3) and b.stable(2.0, 0.5)
    assert not b.stable(1.4, 0.5) and not b.stable(2.0, 0.2) and not b.stable(1.4, 0.2)


# ---- S1 generic bounds ---------------------------------------------------------------------------------------------
def test_forward_gain_bound_shapes_and_infinite_constants():
    with pytest.raises(ValueError, match="^c and a must be scalars or have one entry per step"):
        C.forward_gain_bound(0.1, [1.0, 2.0, 3.0], 1.0, a=[0.5, 0.5])
    with pytest.raises(ValueError, match="^c and a must be scalars or have one entry per step"):
        C.forward_gain_bound(0.1, [1.0, 2.0], 1.0, a=[0.5, 0.5, 0.5])
    assert C.forward_gain_bound([0.1, 0.2], [0.0, 0.0], 1.0, a=[math.inf, 0.0]) == math.inf
    assert C.forward_gain_bound([0.1, 0.2], [math.inf, 0.0], 1.0, a=[0.5, 0.0]) == math.inf


def _suffix_max_by_hand(logs):
    return max(0.0, max(sum(logs[k:]) for k in range(len(logs))))


@pytest.mark.parametrize("pre", [[0.2, 0.2, 0.2], [0.0, -1.0, 0.3], [-2.0, 0.1, -0.5]])
def test_backward_log_gain_bound_with_a_prefactor_is_the_largest_suffix_sum(pre):
    dt, ell = [0.1, 0.4, 0.2], [2.0, 0.5, 3.0]
    logs = [math.log1p(h * e) + p for h, e, p in zip(dt, ell, pre)]
    assert C.backward_log_gain_bound(dt, ell, log_prefactor=pre) == pytest.approx(_suffix_max_by_hand(logs),
                                                                                 rel=RTOL, abs=1e-15)


def test_two_sided_log_gain_is_inf_at_and_beyond_one():
    assert C.backward_log_gain_bound(1.0, [1.0, 0.5], sided="two") == math.inf
    assert C.backward_log_gain_bound(0.5, [3.0, 0.5], sided="two") == math.inf
    assert C.backward_log_gain_bound(0.5, [1.0, 0.5], sided="two") == pytest.approx(
        -math.log(0.5) - math.log(0.75), rel=RTOL)


# ---- S1 placements at their defaults, with a positive input scale --------------------------------------------------
DT = [0.1, 0.2, 0.05]
MLP = SublayerNorms("mlp", w1_norm=2.0, w2_norm=3.0)  # J = L_gelu·6 on every input; output sup 6 r
J = GELU_LIPSCHITZ * 6.0


def _floors(sigma0, increments, d, eps):
    """The floor lemma iterated: s_k = √(((σ_0 − Σ_{j<k} inc_j/√d)₊)² + ε)."""
    out, spent = [], 0.0
    for inc in increments:
        out.append(math.sqrt(max(sigma0 - spent / math.sqrt(d), 0.0) ** 2 + eps))
        spent += inc
    return np.array(out)


def test_peri_defaults_rates_floors_and_gain_by_hand():
    """Defaults γ_in = γ_out = 1, ε_in = ε_out = 1e-5, β = 0: C_out = √d = 2, s_F = √1e-5, increments Δt_k·2."""
    b = C.peri_stability_bounds(DT, [MLP] * 3, d=4, n_tokens=3, x0_max_norm=2.0, x0_min_scale=0.9)
    floors = _floors(0.9, [h * 2.0 for h in DT], 4, 1e-5)
    np.testing.assert_allclose(b.scale_floors, floors, rtol=RTOL)
    np.testing.assert_allclose(b.rates, J / (math.sqrt(1e-5) * floors), rtol=RTOL)
    assert b.forward_gain == pytest.approx(1 + sum(DT) * 2.0 / 2.0, rel=RTOL)
    with_gains = C.peri_stability_bounds(DT, [MLP] * 3, d=4, n_tokens=3, x0_max_norm=2.0, x0_min_scale=0.9,
                                         gamma_in=1.3, gamma_out=0.7, eps_in=2e-4, eps_out=3e-6)
    floors = _floors(0.9, [h * 0.7 * 2.0 for h in DT], 4, 2e-4)
    np.testing.assert_allclose(with_gains.rates, 0.7 / math.sqrt(3e-6) * J * 1.3 / floors, rtol=RTOL)


def test_pre_defaults_rates_floors_and_gain_by_hand():
    """Defaults γ = 1, ε = 1e-5: ρ = √d = 2, M = 6ρ = 12, increments Δt_k·12 (the floor hits 0 at the third step)."""
    b = C.pre_stability_bounds(DT, [MLP] * 3, d=4, n_tokens=3, x0_max_norm=2.0, x0_min_scale=0.9)
    floors = _floors(0.9, [h * 12.0 for h in DT], 4, 1e-5)
    assert floors[2] == math.sqrt(1e-5)
    np.testing.assert_allclose(b.scale_floors, floors, rtol=RTOL)
    np.testing.assert_allclose(b.rates, J / floors, rtol=RTOL)
    assert b.forward_gain == pytest.approx(1 + sum(DT) * 12.0 / 2.0, rel=RTOL)
    g = C.pre_stability_bounds(DT, [MLP] * 3, d=4, n_tokens=3, x0_max_norm=2.0, x0_min_scale=0.9, gamma=0.5,
                               eps=4e-4)
    floors = _floors(0.9, [h * 6.0 for h in DT], 4, 4e-4)
    np.testing.assert_allclose(g.rates, J * 0.5 / floors, rtol=RTOL)


def test_post_default_eps_is_the_floor_from_a_zero_input_scale():
    b = C.post_stability_bounds(DT, [MLP] * 3, d=4, n_tokens=3, x0_max_norm=2.0, x0_min_scale=0.0)
    np.testing.assert_allclose(b.scale_floors, math.sqrt(1e-5), rtol=1e-15)
    np.testing.assert_allclose(b.step_log_gains, [math.log(1 / math.sqrt(1e-5) * (1 + h * J)) for h in DT],
                               rtol=RTOL)


@pytest.mark.parametrize("eps, weights", [(1e-5, MLP), (0.0, MLP), (1e-5, SublayerNorms("mlp", w1_norm=math.inf,
                                                                                          w2_norm=1.0))])
def test_post_with_zero_gain_has_zero_backward_log_gain(eps, weights):
    """γ = 0: every post step maps to β, its Jacobian is 0, so log‖A_k‖ = −inf and Λ = max(0, ·) = 0 — whether the
    floor is positive (ε > 0), zero (ε = 0) or the Jacobian sup infinite."""
    b = C.post_stability_bounds(DT, [weights] * 3, d=4, n_tokens=3, x0_max_norm=2.0, x0_min_scale=0.0, gamma=0.0,
                                eps=eps)
    assert np.all(b.step_log_gains == -math.inf) and b.backward_log_gain == 0.0


def test_none_with_an_infinite_bias_keeps_the_mlp_jacobian_finite():
    """An infinite ‖b₂‖ makes the forward bound inf but not the Jacobian: an MLP is globally Lipschitz."""
    s = SublayerNorms("mlp", w1_norm=2.0, w2_norm=3.0, b2_norm=math.inf)
    b = C.none_stability_bounds(DT, [s] * 3, n_tokens=4, x0_max_norm=1.0)
    assert b.forward_gain == math.inf
    np.testing.assert_allclose(b.jacobian_sups, J, rtol=1e-15)
    attn = SublayerNorms("attn", wv_head_norms=1.0, wo_norm=1.0, bo_norm=math.inf, qk_head_norms=1.0)
    # attention over 4 tokens is not: finite at the first step (rows ≤ M_0 = 1), inf once the radius bound is inf
    jf = C.none_stability_bounds(DT, [attn] * 3, n_tokens=4, x0_max_norm=1.0).jacobian_sups
    assert jf[0] == pytest.approx(_attn_lemma(1.0, 4, (1.0,), 1.0, (1.0,), 1), rel=RTOL)
    assert np.all(jf[1:] == math.inf)


# ---- S1 root search: the bracket [1e-12, 1e12] and the precision ---------------------------------------------------
@dataclasses.dataclass
class _Fake:
    forward_gain: float
    backward_log_gain: float


def _linear(h0):
    """A bounds function with G = 1 + Δt/h0 (so Δt_f = (B − 1)h0) and Λ = 0 (Δt_b = inf)."""
    return lambda h, subl, **kw: _Fake(1.0 + h / h0, 0.0)


@pytest.mark.parametrize("root, expected", [
    (5e11, 5e11), (0.99e12, 0.99e12), (7e10, 7e10),  # inside the bracket's last (capped) segment: found
    (1.05e12, math.inf),  # above 10¹²: inf, as documented
    (1.05e-12, 1.05e-12), (0.95e-12, 0.0),  # the lower end: found just above 10⁻¹², 0 below it
])
def test_max_uniform_dt_bracket_is_1e_minus_12_to_1e12(root, expected):
    step = C.max_uniform_dt("pre", 2.0, 1.0, [MLP], bounds=_linear(root))
    assert step.dt_backward == math.inf
    if math.isfinite(expected) and expected > 0:
        assert step.dt_forward == pytest.approx(expected, rel=1e-13)
    else:
        assert step.dt_forward == expected


@pytest.mark.parametrize("excess", [
    lambda h: h / 3.7e-9 - 1.0,
    lambda h: math.log(h / 2.5e7),
    lambda h: h * h - 3.0,
    lambda h: math.log(h / 0.3) if h < 0.45 else math.inf,  # inf beyond: brentq sees the 1e300 stand-in
])
def test_sup_feasible_is_the_sup_to_32_ulp(excess):
    """The returned point is feasible and the point 32 ulp above it is not: the sup to round-off (the evidence for
    the root search's numerical settings — bracket start and growth, stand-in for inf, brentq's tolerances, the
    step-down — being equivalent; see .ci/mutation-equivalent.txt)."""
    root = C._sup_feasible(excess)
    assert excess(root) <= 0 < excess(root * (1 + 32 * EPS))


# ---- S1 closed forms -----------------------------------------------------------------------------------------------
def test_closed_form_at_one_step():
    step = C.max_uniform_dt_closed_form(1, 2.0, 3.0, 1.5, 2.0, 0.7)
    assert step.dt_forward == 0.75 and step.dt_backward == pytest.approx(math.expm1(0.7) / 3.0, rel=RTOL)
    assert C.post_max_dt_closed_form(1, 0.5, 0.25, 1.0) == pytest.approx((math.e - 1) / (0.5 + 0.25 * math.e),
                                                                         rel=RTOL)


def test_post_closed_form_with_a_zero_jacobian_is_the_norm_floor_alone():
    assert C.post_max_dt_closed_form(2, 0.0, 0.5, 1.0) == pytest.approx(math.expm1(0.5) / (0.5 * math.exp(0.5)),
                                                                        rel=RTOL)
    with pytest.raises(ValueError, match="^jf and mf_over_row must not both be 0"):
        C.post_max_dt_closed_form(2, 0.0, 0.0, 1.0)


@pytest.mark.parametrize("sided, expected", [("upper", math.expm1(0.2) / 2.5), ("two", -math.expm1(-0.2) / 2.5)])
def test_closed_form_uniform_ell_both_sides(sided, expected):
    step = C.max_uniform_dt_closed_form(3, 1.0, 2.5, 1.0, 2.0, 0.6, sided=sided)
    assert step.dt_backward == pytest.approx(expected, rel=1e-14)


def _quadratic_root(ell, tau, sided):
    """Two steps: (1 + h ℓ₀)(1 + h ℓ₁) = e^τ (upper) or (1 − h ℓ₀)(1 − h ℓ₁) = e^{−τ} (two), the smaller root."""
    l0, l1, t = (mpmath.mpf(v) for v in (*ell, tau))
    if sided == "upper":
        a, b, c = l0 * l1, l0 + l1, 1 - mpmath.exp(t)
        return float((-b + mpmath.sqrt(b * b - 4 * a * c)) / (2 * a))
    a, b, c = l0 * l1, -(l0 + l1), 1 - mpmath.exp(-t)
    return float((-b - mpmath.sqrt(b * b - 4 * a * c)) / (2 * a))


@pytest.mark.parametrize("ell", [(0.2, 0.5), (3.0, 40.0), (0.01, 0.03)])
@pytest.mark.parametrize("sided", ["upper", "two"])
def test_closed_form_two_distinct_rates_is_the_quadratic_root(ell, sided):
    step = C.max_uniform_dt_closed_form(2, 1.0, list(ell), 1.0, 2.0, 1.0, sided=sided)
    assert step.dt_backward == pytest.approx(_quadratic_root(ell, 1.0, sided), rel=1e-13)


# ---- S2 ------------------------------------------------------------------------------------------------------------
def test_water_level_with_a_single_active_step():
    """w = (1, 100), τ = 0.5: with one step active log λ = −τ − log w₀ = −0.5, and λ w₁ = 100 e^{−0.5} ≥ 1."""
    loglam, active = C.water_level([0.0, math.log(100.0)], 0.5)
    assert loglam == -0.5 and active.tolist() == [True, False]


def test_level_factor_multiplies_the_water_level():
    """β_F = inf, ℓ = (1.5, 2, 2.5), τ = 1: all three active, λ = exp(−(τ + Σ log ℓ)/3); the deliberately wrong
    fill with factor f is Δt_k = (1 − fλℓ_k)/ℓ_k."""
    ell = np.array([1.5, 2.0, 2.5])
    lam = math.exp(-(1.0 + math.log(1.5 * 2.0 * 2.5)) / 3)
    for f in (1.0, 1.05, 0.9):
        sched = C.optimal_step_sizes(0.0, ell, math.inf, 1.0, level_factor=f)
        np.testing.assert_allclose(sched.dt, (1 - f * lam * ell) / ell, rtol=RTOL)


def _two_step_optimum(c, ell, beta, tau):
    """max Δt₀ + Δt₁ s.t. c·Δt ≤ β, −Σ log(1 − ℓΔt) ≤ τ, for c₀ = 0: Δt₁ ∈ [0, β/c₁] by a bounded 1-D search,
    Δt₀ = (1 − e^{−τ}/(1 − ℓ₁Δt₁))/ℓ₀ (the backward constraint tight)."""
    def t(x1):
        return x1 + (1 - math.exp(-tau) / (1 - ell[1] * x1)) / ell[0]
    hi = min(beta / c[1], (1 - math.exp(-tau)) / ell[1])
    res = optimize.minimize_scalar(lambda x: -t(x), bounds=(0.0, hi), method="bounded",
                                   options={"xatol": 1e-13})
    return -res.fun


def test_schedule_with_a_free_step_and_a_binding_budget_is_the_two_step_optimum():
    c, ell, beta, tau = [0.0, 1.0], [1.0, 2.0], 0.05, 1.0
    sched = C.optimal_step_sizes(c, ell, beta, tau)
    assert sched.binding == "both"
    assert float(np.dot(c, sched.dt)) == pytest.approx(beta, rel=1e-12)
    assert sched.total_time == pytest.approx(_two_step_optimum(c, ell, beta, tau), rel=1e-9)
    # and the dual certificate at the returned multipliers closes the gap
    assert C.schedule_dual_value(c, ell, beta, tau, sched.lam, sched.mu) == pytest.approx(sched.total_time,
                                                                                            rel=1e-9)


def test_forward_only_schedule_spends_the_budget_on_the_cheapest_step():
    """A tiny β_F: only the forward constraint binds, T = β_F/c_min on the step of least c, unique unless c ties
    (ties: within 1e-12 relative)."""
    beta = 1e-9
    sched = C.optimal_step_sizes([1.0, 1.5], [1.0, 1.0], beta, 1.0)
    assert sched.binding == "forward" and sched.unique
    np.testing.assert_allclose(sched.dt, [beta, 0.0], rtol=RTOL, atol=0)
    near = C.optimal_step_sizes([1.0, 1.0 + 1.05e-12], [1.0, 1.0], beta, 1.0)
    assert near.binding == "forward" and near.unique and near.dt[1] == 0.0
    tied = C.optimal_step_sizes([1.0, 1.0 + 0.9e-12], [1.0, 1.0], beta, 1.0)
    assert tied.binding == "forward" and not tied.unique
    assert tied.total_time == pytest.approx(beta, rel=1e-9) and np.all(tied.dt > 0)


def test_dual_at_zero_water_level_by_hand():
    """λ = 0, μ = 0.4: slope 1 − μc = (0.8, 0.6), inner sup = slope/ℓ = (0.4, 0.15); D = μβ + Σ = 1.2 + 0.55."""
    assert C.schedule_dual_value([0.5, 1.0], [2.0, 4.0], 3.0, 1.0, 0.0, 0.4) == pytest.approx(1.75, rel=1e-15)
    # μc ≥ 1 on a step: its sup is 0 (and the where() stand-in for its slope is never used)
    assert C.schedule_dual_value([0.5, 3.0], [2.0, 4.0], 3.0, 1.0, 0.0, 0.4) == pytest.approx(1.2 + 0.4, rel=1e-15)


def test_schedule_inputs_c_shape_and_forward_budget_type():
    ell = [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="^c must be a scalar or one value per step"):
        C.optimal_step_sizes([[1.0, 2.0, 3.0]], ell, 1.0, 1.0)
    with pytest.raises(ValueError, match="^c must be a scalar or one value per step"):
        C.optimal_step_sizes([1.0, 2.0], ell, 1.0, 1.0)
    one = C.optimal_step_sizes([0.5], ell, 0.1, 1.0)
    np.testing.assert_array_equal(one.dt, C.optimal_step_sizes(0.5, ell, 0.1, 1.0).dt)
    assert one.total_time == pytest.approx(0.1 / 0.5, rel=1e-12)  # uniform c: the budget caps T = β/c
    for bad in (True, "1.5", b"1.5"):
        with pytest.raises(ValueError, match="^forward_budget"):
            C.optimal_step_sizes(0.5, ell, bad, 1.0)


@pytest.mark.parametrize("ell", [(1.0, 2.0), (1.0, 3.0), (0.5, 7.0)])
def test_closed_form_two_sided_beyond_float_resolution_is_the_last_finite_step(ell):
    """τ = 40 two-sided: the root h satisfies 1 − h·max ℓ ≈ e^{−40}·(…) < 2^{−53}, so in float64 it is the largest h
    with h·max ℓ < 1 (found by hand with nextafter here). Before the fix brentq raised "f(a) and f(b) must have
    different signs" (the capped log stays below τ on the whole bracket). With max ℓ = 3, (1 − 1e−16)/3·3 rounds to
    1.0: the step there would be infinite, so the bracket end itself must be stepped down."""
    lmax = max(ell)
    h = 1.0 / lmax
    while h * lmax >= 1:
        h = math.nextafter(h, 0.0)
    step = C.max_uniform_dt_closed_form(2, 1.0, list(ell), 1.0, 2.0, 40.0, sided="two")
    assert step.dt_backward == h
    assert math.isfinite(C.backward_log_gain_bound(step.dt_backward, list(ell), sided="two"))


def test_forward_only_and_both_fills_meet_continuously_at_their_switch():
    """The edge μ_hi(1 − 1e-13) only chooses which fill computes the optimum near the switch from "forward" to
    "both": bisecting β to the switch, T on its two sides agrees to round-off (both: all of β on the cheapest step,
    T = 1 − e^{−τ} there) — the evidence for listing the edge's 10 % mutant as equivalent."""
    c, ell, tau = [1.0, 1.5], [1.0, 1.0], 1.0
    lo, hi = 0.5, 0.7
    assert C.optimal_step_sizes(c, ell, lo, tau).binding == "forward"
    assert C.optimal_step_sizes(c, ell, hi, tau).binding == "both"
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if C.optimal_step_sizes(c, ell, mid, tau).binding == "forward":
            lo = mid
        else:
            hi = mid
    t_lo, t_hi = (C.optimal_step_sizes(c, ell, b, tau).total_time for b in (lo, hi))
    assert t_lo == pytest.approx(-math.expm1(-tau), rel=1e-12) and t_hi == pytest.approx(t_lo, rel=1e-12)


def test_step_deviation_is_zero_without_jacobian_and_inf_without_a_bound():
    """S1's per-step ‖A_k − I‖ (``_deviation``): a branch with J = 0 deviates by exactly 0 (A = I), one with J = ∞ or
    a zero scale floor has no a priori bound (∞); the rest comes from the step bound, here Δt·J/s by hand."""
    from theory import criterion as cr

    out = cr._deviation(lambda h, j, s: h * j / s, np.array([0.5, 0.5, 0.5, 0.5]), [0.0, np.inf, 2.0, 2.0],
                        [1.0, 1.0, 0.0, 4.0])
    assert out.tolist() == [0.0, math.inf, math.inf, 0.25]


def test_feasible_mu_steps_at_most_4096_ulps():
    """S2's feasibility nudge (``_feasible_mu``): a multiplier 4095 ulps above μ is found; one 4096 ulps above is
    outside the documented window and raises (a larger window would silently move the optimum further)."""
    from theory import criterion as cr

    mu0 = 1.0
    target = mu0
    for _ in range(4095):
        target = float(np.nextafter(target, math.inf))
    assert cr._feasible_mu(lambda m: 0.0 if m >= target else 1.0, mu0, 2.0) == target
    far = float(np.nextafter(target, math.inf))
    with pytest.raises(ArithmeticError, match="4096 ulps"):
        cr._feasible_mu(lambda m: 0.0 if m >= far else 1.0, mu0, 2.0)
