"""theory.neighbours — the gaps the mutation run found (issue 11 §1), each closed against an independent value.

Independent values used here (never a number computed by theory.neighbours itself):
- exact rational arithmetic (``fractions.Fraction``) of the derivations in the docstrings, written in a different
  form: X1(c) with *raw* moments E r², E r⁴ of the centred norm² instead of the module's (mean, variance)
  recursion; X2 by walking the residual energies q_k step by step instead of the closed summand;
- mpmath quadrature at 30 digits (a different integrator and erf from scipy's) for the Gaussian moments;
- hand-derived special cases (X1b bracket, X4 harmonic law for ReLU, X5 at β = 0), explicit-loop softmax
  Jacobians, and the documented domain boundaries (smallest admitted value works, the wrong side names the
  parameter).
Tolerances: rel 1e-13 against a rational reference evaluated in float64 (a few dozen float operations on O(1)
numbers, ≲ 50 ulp); 1e-12 against a 30-digit quadrature where theory uses scipy's quad at epsrel 1e-12.
"""
from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction as Fr

import mpmath
import numpy as np
import pytest

from theory import neighbours as nb

REL = 1e-13


# ---- X1 -------------------------------------------------------------------------------------------------------------
def test_relu_moments_match_quadrature():
    """E[ReLU(Z)²] = 1/2, E[ReLU(Z)⁴] = 3/2 by 30-digit quadrature of z^k φ(z) over z > 0."""
    with mpmath.workdps(30):
        phi = lambda z: mpmath.exp(-z * z / 2) / mpmath.sqrt(2 * mpmath.pi)  # noqa: E731
        m2 = mpmath.quad(lambda z: z**2 * phi(z), [0, mpmath.inf])
        m4 = mpmath.quad(lambda z: z**4 * phi(z), [0, mpmath.inf])
    assert nb.RELU_SECOND_MOMENT == pytest.approx(float(m2), rel=1e-15)
    assert nb.RELU_FOURTH_MOMENT == pytest.approx(float(m4), rel=1e-15)


@pytest.mark.parametrize("d, blocks, e0", [(8, 3, None), (6, 4, 2.5), (16, 1, 0.0), (2, 0, 7.0)])
def test_xiong_pre_bracket_by_hand(d, blocks, e0):
    """X1b: (E‖x_0‖² + l·d/2, E‖x_0‖² + 3l·d/2), E‖x_0‖² = d by default."""
    e = d if e0 is None else e0
    lo, hi = nb.xiong_pre_energy_bounds(d, blocks, e0)
    assert (lo, hi) == (pytest.approx(e + blocks * d / 2, rel=REL, abs=0), pytest.approx(e + 3 * blocks * d / 2,
                                                                                          rel=REL, abs=0))


def _grad_ratio_reference(d: int, blocks: int, m: int):
    """X1(c) from the docstring's derivation, in raw moments and exact rationals.

    r² = ‖c‖² (d' = d − 1 centred directions); an isotropic update with scale s adds 2r√s ξ + sZ, Z ~ χ²_{d'},
    ξ the component of the update along c (E ξ = E ξ³ = 0, E ξ² = 1, E[ξZ] = 0). Raw moments:
    E r'² = E r² + E s·d',  E r'⁴ = E r⁴ + 4 E r² E s + E s² E Z² + 2 E r² E s d'.
    s laws: attention s = χ²_d/d (E s = 1, E s² = (d² + 2d)/d²); MLP s = Σ_{i≤m} ReLU(Z_i)²/m
    (E s = 1/2, E s² = (m·3/2 + m(m−1)/4)/m²).
    """
    dc = d - 1
    ez, ez2 = Fr(dc), Fr(dc * dc + 2 * dc)
    attn = (Fr(1), Fr(d * d + 2 * d, d * d))
    mlp = (Fr(1, 2), (Fr(3, 2) * m + Fr(1, 4) * m * (m - 1)) / (m * m))

    def step(m1, m2, s):
        es, es2 = s
        return m1 + es * ez, m2 + 4 * m1 * es + es2 * ez2 + 2 * m1 * es * ez

    def last(m1, m2):
        es, es2 = mlp
        qbar, eq2 = step(m1, m2, mlp)
        var_q = eq2 - qbar * qbar
        cov_sq = es * m1 + es2 * ez - es * qbar  # E[s Q] − E s E Q, E[s r²] = E s E r², E[s·sZ] = E s² d'
        return qbar, -cov_sq / (es * qbar) + var_q / (qbar * qbar)

    q_post, delta_post = last(Fr(d), Fr(d * d))  # post: r² = d exactly
    m1, m2 = Fr(dc), ez2  # pre: r² = ‖c(x_0)‖² ~ χ²_{d'}
    for s in [attn] + [mlp, attn] * (blocks - 1):
        m1, m2 = step(m1, m2, s)
    q_pre, delta_pre = last(m1, m2)
    return dict(value=math.sqrt(q_post / q_pre * (1 + delta_pre) / (1 + delta_post)),
                limit=math.sqrt(1.5 / (1 + 1.5 * blocks)), scale_ratio=math.sqrt(q_post / q_pre),
                correction_pre=float(delta_pre), correction_post=float(delta_post),
                next_term=float((delta_pre**2 + delta_post**2) / 2))


@pytest.mark.parametrize("d, blocks, d_mlp", [(3, 1, None), (8, 1, None), (8, 3, None), (12, 2, 5), (6, 4, 1),
                                              (64, 6, 256)])
def test_xiong_grad_ratio_every_field_matches_the_raw_moment_derivation(d, blocks, d_mlp):
    """Every field of GradRatio at small widths (where the 1/d terms are large) against the exact rational
    derivation; d = 3 and d_mlp = 1 are the domain's smallest admitted values."""
    got = nb.xiong_grad_ratio(d, blocks, d_mlp)
    ref = _grad_ratio_reference(d, blocks, d if d_mlp is None else d_mlp)
    for field, value in ref.items():
        assert getattr(got, field) == pytest.approx(value, rel=REL, abs=1e-300), field


# ---- X2 -------------------------------------------------------------------------------------------------------------
def _admin_pre_reference(blocks: int) -> Fr:
    """Σ_k e_k/q_{k+1}: q_0 = 1 (units of d), attention adds e = 1, the ReLU MLP adds e = 1/2 (X1b, one token)."""
    q, total = Fr(1), Fr(0)
    for _ in range(blocks):
        for e in (Fr(1), Fr(1, 2)):
            q += e
            total += e / q
    return total


@pytest.mark.parametrize("blocks", [1, 2, 5, 40])
def test_admin_pre_constant_by_walking_the_energies(blocks):
    assert nb.admin_output_change(blocks, "pre") == pytest.approx(float(_admin_pre_reference(blocks)), rel=REL)


@pytest.mark.parametrize("blocks, alpha, beta", [(1, 1.0, 2.0), (3, 2.0, 0.5), (2, 1.5, 1.25)])
def test_admin_deepnorm_constant_by_hand(blocks, alpha, beta):
    """Per block: attention's direct change 2β²d behind a norm of scale d/((α² + β⁴)d), the MLP's β²d behind
    d/((α² + β⁴/2)d) (W_V W_O carries β², the ReLU MLP β²/2 of energy)."""
    a, b = Fr(alpha), Fr(beta)
    e_attn, s_attn = 2 * b**2, a**2 + b**4
    e_mlp, s_mlp = b**2, a**2 + b**4 / 2
    ref = blocks * (e_attn / s_attn + e_mlp / s_mlp)
    assert nb.admin_output_change_deepnorm(blocks, alpha, beta) == pytest.approx(float(ref), rel=REL)


def test_admin_deepnorm_constant_is_three_quarters_at_deepnets_alpha_beta():
    """α = (2N)^{1/4}, β = (8N)^{-1/4}: C(N) = 3/4 − O(1/N), from below (docstring)."""
    for n in (10, 1000, 10**5):
        c = nb.admin_output_change_deepnorm(n, (2 * n) ** 0.25, (8 * n) ** -0.25)
        assert 0 < 0.75 - c < 1.0 / n


# ---- X3 -------------------------------------------------------------------------------------------------------------
def test_published_rounding_is_half_a_unit_in_the_last_digit():
    """0.81 and 0.87 have two decimals: half a unit in the last published digit is 0.005. At N = M = 1 the
    encoder of encoder-decoder has (α, β) = (0.81, 0.87): αβ misses 2^{-1/2} by more than round-off, but the
    interval of the rounded coefficients contains it. (The test calls deepnorm_constants so that the mutation
    runner, which selects tests by the module lines they execute, runs it for a mutated module constant.)"""
    alpha, beta = nb.deepnorm_constants("encoder-decoder", 1, 1)["encoder"]
    r = nb.DEEPNORM_PUBLISHED_ROUNDING
    for coef in (alpha, beta):
        assert r == pytest.approx(0.5 * 10.0 ** Decimal(str(coef)).as_tuple().exponent, rel=1e-15)
    assert abs(alpha * beta - 2**-0.5) > 1e-3
    assert (alpha - r) * (beta - r) < 2**-0.5 < (alpha + r) * (beta + r)


def test_deepnorm_smallest_sizes_are_admitted():
    """n_sublayers = 1 and d_mlp = 1 are in the domain: budget 2β²/α², W₁ std β√(2/(d + 1))."""
    assert nb.deepnorm_update_budget(1, 2.0, 0.5) == pytest.approx(2 * 0.25 / 4.0, rel=REL)
    assert nb.deepnorm_init_std("W1", 8, 1, 0.5) == pytest.approx(0.5 * math.sqrt(2 / 9), rel=REL)
    with pytest.raises(ValueError, match="^n_sublayers"):
        nb.deepnorm_update_budget(0, 2.0, 0.5)
    with pytest.raises(ValueError, match="^d_mlp"):
        nb.deepnorm_init_std("W1", 8, 0, 0.5)


# ---- X4 -------------------------------------------------------------------------------------------------------------
def _gelu_second_moment_mp(variance: float) -> float:
    s = mpmath.sqrt(variance)
    with mpmath.workdps(30):
        f = lambda z: (s * z * mpmath.ncdf(s * z)) ** 2 * mpmath.npdf(z)  # noqa: E731
        return float(mpmath.quad(f, [-mpmath.inf, 0, mpmath.inf]))


@pytest.mark.parametrize("variance", [1.0, 0.25, 1.0 / 7.0, 3.0, 40.0])
def test_gelu_second_moment_matches_mpmath(variance):
    """E[GELU(σZ)²] (exact erf GELU) against 30-digit mpmath quadrature; at σ = 1 it is 0.425221… (F5)."""
    assert nb.activation_second_moment("gelu", variance) == pytest.approx(_gelu_second_moment_mp(variance),
                                                                          rel=1e-12)
    assert nb.activation_second_moment("relu", variance) == pytest.approx(variance / 2, rel=REL)


def test_gelu_second_moment_at_one_is_the_f5_constant():
    assert nb.activation_second_moment("gelu", 1.0) == pytest.approx(0.425221, abs=5e-7)


@pytest.mark.parametrize("blocks, d, dt, e0, attention", [(4, 8, 0.7, None, "one-token"), (3, 6, 1.3, 2.0, "none"),
                                                          (1, 16, 0.25, 0.0, "one-token")])
def test_lns_relu_energy_is_harmonic_by_hand(blocks, d, dt, e0, attention):
    """ReLU: E‖x_L‖² = E‖x_0‖² + Δt² d (a + 1/2) H_L, a = 1 (one token) or 0 ('none')."""
    h = float(sum(Fr(1, k) for k in range(1, blocks + 1)))
    a = 1.0 if attention == "one-token" else 0.0
    ref = (d if e0 is None else e0) + dt * dt * d * (a + 0.5) * h
    assert nb.lns_energy(blocks, d, "relu", dt, e0, attention) == pytest.approx(ref, rel=REL)


def test_lns_gelu_energy_uses_the_quadrature_per_block():
    blocks, d, dt = 3, 8, 0.6
    ref = d + dt * dt * d * sum(1.0 / l + _gelu_second_moment_mp(1.0 / l) for l in range(1, blocks + 1))
    assert nb.lns_energy(blocks, d, "gelu", dt) == pytest.approx(ref, rel=1e-12)


# ---- X5 -------------------------------------------------------------------------------------------------------------
def test_noci_mean_energy_default_is_relative_growth():
    """The default ‖x̄_0‖² = 1 gives the growth factor (1 + β²)^L itself."""
    assert nb.noci_mean_energy(3, 0.5) == pytest.approx(1.25**3, rel=REL)
    assert nb.noci_mean_energy(0, 2.0) == 1.0


def test_noci_cosines_with_equal_mean_and_spread_energy():
    """a_L = b is allowed (only a = b = 0 is not): κ = (1 − 1/(n − 1))/2; n = 2 is the smallest token count."""
    assert nb.noci_token_cosine(0, 0.3, 1.0, 1.0, 5) == pytest.approx((1 - 1 / 4) / 2, rel=REL)
    assert nb.noci_token_cosine(2, 0.0, 2.0, 2.0, 2) == pytest.approx(0.0, abs=1e-15)
    assert nb.noci_cosine_sup(1.0, math.e, 3) == pytest.approx((1 - 1 / 2) / 2, rel=REL)
    assert nb.noci_cosine_sup(1.0, 0.0, 2) == pytest.approx(1.0, rel=REL)
    for call in (lambda: nb.noci_token_cosine(1, 0.5, 0.0, 0.0, 3), lambda: nb.noci_cosine_sup(0.0, 0.0, 3)):
        with pytest.raises(ValueError, match="^spread_energy0 and mean_energy0"):
            call()
    with pytest.raises(ValueError, match="^n_tokens"):
        nb.noci_cosine_sup(1.0, 1.0, 1)


# ---- X6 -------------------------------------------------------------------------------------------------------------
def test_probability_vector_domain():
    assert nb.softmax_theta([1.0]) == pytest.approx(0.0, abs=0)  # n = 1: subsets of mass 0 or 1
    for bad in (1.0, np.zeros((3, 0))):
        with pytest.raises(ValueError, match="^p must have a last axis"):
            nb.softmax_theta(bad)
    # sum within 1e-12 (documented): 0.95e-12 off is accepted, 1.05e-12 off is rejected
    nb.softmax_theta([0.5, 0.5 + 0.95e-12])
    with pytest.raises(ValueError, match="^p must sum to 1"):
        nb.softmax_theta([0.5, 0.5 + 1.05e-12])


def _softmax_jacobian_loops(z, tau):
    z = np.asarray(z, dtype=float)
    out = np.empty(z.shape + (z.shape[-1],))
    for idx in np.ndindex(z.shape[:-1]):
        row = z[idx]
        w = [math.exp((v - max(row)) / tau) for v in row]
        p = [v / sum(w) for v in w]
        for i in range(len(p)):
            for j in range(len(p)):
                out[idx + (i, j)] = p[i] * ((1.0 if i == j else 0.0) - p[j]) / tau
    return out


@pytest.mark.parametrize("shape", [(4,), (3, 5), (2, 3, 4)])
@pytest.mark.parametrize("tau", [0.5, 2.0])
def test_softmax_jacobian_matches_explicit_loops(shape, tau):
    z = np.random.default_rng(11).standard_normal(shape) * 2.0
    jac = nb.softmax_jacobian(z, tau)
    np.testing.assert_allclose(jac, _softmax_jacobian_loops(z, tau), rtol=1e-13, atol=1e-16)


def test_softmax_jacobian_default_tau_is_one():
    z = np.array([0.3, -1.2, 2.0])
    np.testing.assert_allclose(nb.softmax_jacobian(z), _softmax_jacobian_loops(z, 1.0), rtol=1e-13, atol=1e-16)
    with pytest.raises(ValueError, match="^z must have at least one axis"):
        nb.softmax_jacobian(1.0)


def test_softmax_norm_and_lipschitz_defaults_are_tau_one():
    """θ((1/2, 1/2)) = 1, so ‖J‖_{∞→1} = 1/τ; the constants at τ = 1 are ½, ½, ½, 1, ¼."""
    assert nb.softmax_jacobian_inf_to_one([0.5, 0.5]) == pytest.approx(1.0, rel=REL)
    assert nb.softmax_jacobian_inf_to_one([0.5, 0.5], tau=0.25) == pytest.approx(4.0, rel=REL)
    expected = {"l1": 0.5, "l2": 0.5, "linf": 0.5, "linf->l1": 1.0, "l1->linf": 0.25}
    for norm, value in expected.items():
        assert nb.softmax_lipschitz_constant(norm) == value
        assert nb.softmax_lipschitz_constant(norm, tau=4.0) == value / 4
