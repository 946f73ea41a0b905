"""F5 — second moments at initialisation (pre / peri / post), one place for the whole theorem.

Read top to bottom: the one-dimensional ingredients (E φ², the chi-square ρ) certified against mpmath; the
recursions as algebra; the registered Monte-Carlo check, tally by tally; the meta-tests (a wrong theory —
constant off by 10 %, Δt instead of Δt², a weight-dependent peri increment, a ρ-free post value — must fail the
same check on the same data); bad inputs; the device run.
"""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from theory.init_moments import (
    attention_output_rho_single_token,
    attention_output_second_moment,
    chi2_rho,
    gaussian_phi2,
    gaussian_phi4,
    gaussian_row_norm_expect,
    gelu_phi2_closed_form,
    mlp_output_rho,
    mlp_output_rho_allowance,
    mlp_output_second_moment,
    noncentral_chi2_rho,
    peri_second_moments,
    post_second_moment,
    pre_second_moments,
    uniform_attention_mixed_sq,
)
from verify.checks import init_moments as f5
from verify.checks.registry import REGISTRY, Context

GELU_PHI2_AT_1 = "0.42522148257029867491855441638549490689956"  # 1/3 + √3/(6π), 41 digits (mpmath, 60 dps)


# ---- E[φ(z)²]: the one-dimensional Gaussian expectation ----------------------------------------------------------
def test_relu_phi2_is_half_the_variance_and_phi4_three_halves_squared():
    """ReLU: E[max(z,0)²] = q/2 and E[max(z,0)⁴] = 3q²/2 for z ~ N(0, q) (half of the Gaussian moments)."""
    for q in (1e-3, 0.7, 1.0, 250.0):
        assert gaussian_phi2(q, "relu") == q / 2
        assert gaussian_phi4(q, "relu") == 1.5 * q * q
    mpmath.mp.dps = 30
    q = mpmath.mpf("0.7")
    direct = mpmath.quad(lambda z: max(z, 0) ** 2 * mpmath.npdf(z, 0, mpmath.sqrt(q)), [-mpmath.inf, 0, mpmath.inf])
    assert abs(direct - gaussian_phi2(q, "relu")) < mpmath.mpf(10) ** -27  # 30-digit quad, 3 digits of slack


def test_gelu_phi2_quadrature_equals_closed_form_over_six_decades():
    """GELU: scipy quad = closed form q/4 + q·asin(q/(1+q))/(2π) + q²/(π(1+q)√(1+2q)) to 1e-13 relative."""
    qs = np.logspace(-3, 3, 25)
    quad = np.array([gaussian_phi2(float(q), "gelu") for q in qs])
    # quad is asked for 2e-14 relative; the closed form has a few ulps of round-off
    np.testing.assert_allclose(quad, gelu_phi2_closed_form(qs), rtol=1e-13, atol=0)
    # arrays use the closed form, scalars the quadrature: they must agree entry by entry
    np.testing.assert_allclose(gaussian_phi2(qs, "gelu"), quad, rtol=1e-13, atol=0)


def test_gelu_phi2_at_unit_variance_precision_ladder():
    """E[GELU(z)²] at q = 1 is 1/3 + √3/(6π) = 0.4252214825702986749…: mpmath quad at 30 and at 60 digits
    agree with each other and with the closed form to their precision (the digits we trust: all 41 quoted)."""
    mpmath.mp.dps = 30
    at30 = gaussian_phi2(mpmath.mpf(1), "gelu")
    mpmath.mp.dps = 60
    at60 = gaussian_phi2(mpmath.mpf(1), "gelu")
    exact = mpmath.mpf(1) / 3 + mpmath.sqrt(3) / (6 * mpmath.pi)
    assert abs(at60 - exact) < mpmath.mpf(10) ** -57  # 60-digit quadrature, 3 digits of slack
    assert abs(at30 - at60) < mpmath.mpf(10) ** -27  # the 30-digit rung is right to its precision
    assert abs(gelu_phi2_closed_form(mpmath.mpf(1)) - exact) < mpmath.mpf(10) ** -58
    assert mpmath.nstr(at60, 41) == GELU_PHI2_AT_1
    for q in ("0.01", "3", "100"):  # away from q = 1 as well, at 50 digits
        mpmath.mp.dps = 50
        qq = mpmath.mpf(q)
        assert abs(gaussian_phi2(qq, "gelu") - gelu_phi2_closed_form(qq)) < mpmath.mpf(10) ** -45 * max(1, qq)


def test_gelu_phi4_float_quadrature_matches_mpmath():
    """E[GELU(z)⁴] (the spread of ‖h‖²): float quad agrees with 30-digit mpmath to 1e-13 relative."""
    mpmath.mp.dps = 30
    for q in (0.05, 1.0, 20.0):
        ref = float(gaussian_phi4(mpmath.mpf(q), "gelu"))
        assert gaussian_phi4(q, "gelu") == pytest.approx(ref, rel=1e-13)  # quad asked for 2e-14


# ---- ρ = E[σ²/(σ²+ε)]: the chi-square factor of peri and post ---------------------------------------------------
def test_chi2_rho_is_one_at_zero_eps_whatever_the_scale():
    """ε = 0: ‖N(F)‖² = γ²d for every nonzero row, so ρ = 1 for every output variance a (weight-free)."""
    a = np.logspace(-8, 8, 17)
    assert np.all(chi2_rho(a, 16, 0.0) == 1.0)
    assert np.all(noncentral_chi2_rho(a, 3.0 * a, 16, 0.0) == 1.0)


def test_chi2_rho_float_rule_matches_mpmath_closed_form():
    """The log-trapezoid rule for E[aX/(aX+dε)], X ~ χ²_ν, equals 1 − x eˣ E_{ν/2}(x) (mpmath, precision ladder)
    to 1e-14 over widths 2…257, a/ε over 14 decades, both norms."""
    mpmath.mp.dps = 30
    worst = 0.0
    for d in (2, 8, 17, 64, 257):
        for norm in ("layer", "rms"):
            for a, eps in ((1e-6, 1e-5), (1e-3, 1.0), (0.1, 1e-2), (1.0, 1.0), (1e4, 1e-2)):
                ref = float(chi2_rho(mpmath.mpf(a), d, mpmath.mpf(eps), norm))
                worst = max(worst, abs(chi2_rho(a, d, eps, norm) - ref))
    assert worst < 1e-14  # trapezoid error ~exp(-π²/h) ≈ 1e-21; 1e-14 is float64 accumulation over ~300 nodes


def test_chi2_rho_closed_form_needs_its_precision_ladder():
    """At ν = 256 the closed form cancels ~15 digits inside mpmath; the ladder makes it agree with an independent
    evaluation (the Laplace integral of noncentral_chi2_rho with zero signal) at 40 digits."""
    mpmath.mp.dps = 40
    a, eps, d = mpmath.mpf(1), mpmath.mpf(1), 257
    closed = chi2_rho(a, d, eps)
    laplace = noncentral_chi2_rho(a, 0, d, eps)
    assert abs(closed - laplace) < mpmath.mpf(10) ** -37
    x, s = d * eps / 2, mpmath.mpf(d - 1) / 2
    with mpmath.workdps(30):  # the naive evaluation at 30 digits is wrong by orders of magnitude
        naive = 1 - x * mpmath.exp(x) * mpmath.expint(s, x)
    assert abs(naive - closed) > 1


def test_chi2_rho_small_outputs_are_linear_in_the_output_variance():
    """a ≪ dε: ρ ≈ ν·a/(d·ε) (the norm barely rescales a tiny row) — the regime where a ρ-free theory fails."""
    d, eps = 32, 1.0
    for a in (1e-6, 1e-7):
        assert chi2_rho(a, d, eps) == pytest.approx((d - 1) * a / (d * eps), rel=1e-4)


def test_noncentral_rho_float_rule_matches_mpmath():
    """Post's factor with a fixed residual row (signal) plus Gaussian noise: float rule = 30-digit mpmath
    integral to 1e-14, from zero signal to signal/noise = 10⁶."""
    mpmath.mp.dps = 30
    for d, norm in ((8, "layer"), (33, "rms")):
        for a, eps in ((1e-3, 1e-2), (1.0, 1.0)):
            for snr in (0.0, 0.5, 50.0, 1e6):
                ref = float(noncentral_chi2_rho(mpmath.mpf(a), mpmath.mpf(snr * a), d, mpmath.mpf(eps), norm))
                assert noncentral_chi2_rho(a, snr * a, d, eps, norm) == pytest.approx(ref, abs=1e-14)
    a = np.array([1e-3, 0.2, 4.0])
    np.testing.assert_allclose(noncentral_chi2_rho(a, 0.0, 16, 0.1), chi2_rho(a, 16, 0.1), rtol=0, atol=1e-14)


def test_mlp_rho_relu_mixture_and_gelu_delta_method():
    """Peri's ρ for a Gaussian MLP: ReLU exact (binomial mixture over active units) → 1 − 2^{-m} at ε = 0;
    the delta method (used for GELU) stays within its allowance of the exact ReLU value, with room to spare."""
    d, m = 16, 32
    args = (d, m, 1 / d, 1 / m, float(d))
    assert mlp_output_rho(*args, 0.0, "relu") == pytest.approx(1 - 0.5**m, abs=1e-15)
    assert mlp_output_rho(*args, 0.0, "gelu") == 1.0
    for eps in (0.01, 0.1, 1.0):
        exact = mlp_output_rho(*args, eps, "relu")
        delta = mlp_output_rho(*args, eps, "relu", method="delta")
        allowance = mlp_output_rho_allowance(*args, eps, "relu", method="delta")
        assert abs(exact - delta) <= 0.5 * allowance  # measured ≤ 0.15 of it down to m = 16
    assert 0 < mlp_output_rho(*args, 0.1, "gelu") < 1


def test_single_token_attention_rho_and_branch_moment():
    """One token: F = u W_V W_O, so E‖F‖² = d²·wv·wo·‖u‖² and ρ = E_Y ρ_χ²(wo·wv·‖u‖²·Y), Y ~ χ²_d."""
    d = 12
    assert attention_output_second_moment(d, 1 / d, 1 / d, 12.0) == pytest.approx(12.0, rel=1e-15)
    rho = attention_output_rho_single_token(d, 1 / d, 1 / d, 12.0, 0.1)
    assert 0.5 < rho < chi2_rho(12.0 / d, d, 0.1)  # Jensen: the fluctuating scale lowers ρ (ρ_χ² is concave)
    assert attention_output_rho_single_token(d, 1 / d, 1 / d, 12.0, 0.0) == pytest.approx(1.0, abs=1e-15)


def test_uniform_attention_mixture_and_first_step_input_law():
    """Uniform attention over n independent mean-zero rows: E‖ū‖² = E‖u‖²/n; the input law ‖N(x_0)‖² for
    x_0 ~ N(μ, s²) has mean γ²d·ρ_in with ρ_in from the (non)central chi-square (LayerNorm ignores μ)."""
    assert uniform_attention_mixed_sq(12.0, 4) == 3.0
    d, gamma, eps, s2 = 16, 1.5, 0.1, 0.3
    mean_sq = gaussian_row_norm_expect(lambda v: v, d, gamma, eps, s2, input_mean=2.0, norm="layer")
    assert mean_sq == pytest.approx(gamma**2 * d * chi2_rho(s2, d, eps, "layer"), rel=1e-12)
    mean_rms = gaussian_row_norm_expect(lambda v: v, d, gamma, eps, s2, input_mean=2.0, norm="rms")
    assert mean_rms == pytest.approx(gamma**2 * d * noncentral_chi2_rho(s2, d * 4.0, d, eps, "rms"), rel=1e-12)


def test_example_branch_moment_is_27_214():
    """THEORY.md: d = 64, m = 256, W₁ ~ N(0,1/d), W₂ ~ N(0,1/(4d)), GELU, ε = 0 ⇒ E‖F‖² = 64·0.42522 = 27.214."""
    value = mlp_output_second_moment(64, 256, 1 / 64, 1 / 256, 64.0, "gelu")
    assert value == pytest.approx(64 * (1 / 3 + math.sqrt(3) / (6 * math.pi)), rel=1e-14)
    assert round(value, 3) == 27.214


# ---- the recursions as algebra ------------------------------------------------------------------------------------
def test_recursions_accumulate_per_step_dt_squared():
    """pre m_{k+1} = m_k + Δt_k²B_k, peri m_{k+1} = m_k + Δt_k²γ²dρ_k, post γ²dρ; per-step Δt, broadcast rows."""
    dt = (0.5, 1.0, 2.0)
    np.testing.assert_allclose(pre_second_moments(1.0, dt, [4.0, 1.0, 0.5]), [1.0, 2.0, 3.0, 5.0], rtol=1e-15)
    np.testing.assert_allclose(pre_second_moments(0.0, dt, 2.0), [0.0, 0.5, 2.5, 10.5], rtol=1e-15)
    rows = pre_second_moments(np.array([1.0, 2.0]), dt, np.ones((2, 3)))
    assert rows.shape == (2, 4) and rows[1, -1] == pytest.approx(2.0 + 5.25)
    np.testing.assert_allclose(peri_second_moments(3.0, dt, -2.0, 8, 1.0), 3.0 + 32 * np.array([0, .25, 1.25, 5.25]))
    assert post_second_moment(-0.5, 8, 0.5) == pytest.approx(1.0)


# ---- the registered Monte-Carlo check ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def f5_tallies(ctx):
    """check_f5 run once at the session's level; each test below asserts one group of its tallies."""
    return {t.check: t for t in f5.check_f5(ctx)}


def _passed(tallies, *names):
    for name in names:
        t = tallies[name]
        assert t.passed, t.summary() + f" worst case: {t.worst_case}"


def test_f5_is_registered_with_its_statement():
    assert REGISTRY["F5"].run is f5.check_f5
    assert "γ²dρ" in REGISTRY["F5"].statement


def test_check_phi2_identities(f5_tallies):
    """The check's own E φ² certificates: quad = closed form, 30/60-digit ladder, THEORY.md's 0.42522."""
    _passed(f5_tallies, "GELU E φ² quadrature = closed form (float)",
            "GELU E φ² at q = 1: mpmath 30 vs 60 digits vs closed form")


def test_check_example_27_214_in_band(f5_tallies):
    """Monte Carlo over independent d = 64 GELU MLPs: mean ‖F(N(x))‖² within its band of 27.214; THEORY.md's
    quoted 27.20 ± 0.05 is consistent with it too (within 2 SE)."""
    t = f5_tallies["pre example d=64 GELU: E‖F‖² = 27.214"]
    _passed(f5_tallies, t.check)
    assert t.numbers["quoted_within_2se"] is True
    assert abs(t.numbers["estimate"] - 27.214) < 0.02 * 27.214


def test_check_pre_recursion(f5_tallies):
    """pre: E‖x_{k+1}‖² = E‖x_k‖² + Δt_k²E‖F_k(N(x_k))‖², closed form (ε = 0, every depth; first step at ε > 0)
    and conditional on the measured N(x_k) (every ε, depth, MLP and attention)."""
    _passed(f5_tallies, "pre recursion, closed form (ε=0; first step ε>0)",
            "pre recursion, conditional on N(x_k) (all ε)")


def test_check_peri_recursion(f5_tallies):
    """peri: E‖x_{k+1}‖² = E‖x_k‖² + Δt_k²γ²dρ_k with ρ = 1 at ε_out = 0 for weight scales 0.03…30, and the
    computable ρ (ReLU exact, GELU delta method, one-token attention exact) at ε_out > 0."""
    _passed(f5_tallies, "peri recursion, closed-form ρ (ε_in=0)", "peri recursion, ρ conditional on h (all ε)")


def test_check_post_second_moment(f5_tallies):
    """post: ‖x_k‖² = γ²d on every row at ε = 0; E‖x_k‖² = γ²d·E[ρ] at ε > 0 with ρ from the noncentral law,
    including small outputs where ρ ≪ 1."""
    _passed(f5_tallies, "post ε=0: ‖x_k‖² = γ²d on every row", "post ε>0: E‖x_k‖² = γ²d·E[ρ], ρ conditional")
    assert f5_tallies["post ε>0: E‖x_k‖² = γ²d·E[ρ], ρ conditional"].numbers["min_rho"] < 0.5  # ρ ≪ 1 was exercised


def test_check_recomputed_internals_match_the_zoo(f5_tallies):
    """The ‖h‖² the conditional theory uses comes from h with h·W + b equal to the zoo's own F (round-off)."""
    assert f5_tallies["recomputed h·W + b equals the zoo's F"].passed


# ---- meta-tests: a wrong theory fails the same check on the same data ------------------------------------------
def _failed(tallies, name_part: str) -> bool:
    hit = [t for t in tallies if name_part in t.check]
    assert hit, f"no tally named like {name_part!r}"
    return any(not t.passed for t in hit)


def test_meta_phi2_off_by_ten_percent_fails_the_example(ctx):
    """E φ² × 1.1, or the constant 0.468 instead of 0.4252, cannot pass the d = 64 example's band."""
    wrong_scaled = lambda q, act="gelu": 1.1 * gaussian_phi2(q, act)  # noqa: E731
    wrong_const = lambda q, act="gelu": 0.468 * np.asarray(q, dtype=float)  # noqa: E731
    assert _failed(f5.check_f5_example(ctx, phi2=wrong_scaled), "example")
    assert _failed(f5.check_f5_example(ctx, phi2=wrong_const), "example")
    assert _failed(f5.check_f5_phi2(ctx, phi2=wrong_scaled), "quadrature")


def test_meta_pre_with_dt_instead_of_dt_squared_fails(ctx):
    """A pre recursion that adds Δt_k·E‖F‖² (dropped square) fails with per-step Δt ∈ [0.05, 2]."""
    def wrong(m0, dt, branch):
        dts = np.asarray(dt, dtype=float) if np.ndim(dt) else np.full(np.shape(branch)[-1], float(dt))
        return pre_second_moments(m0, tuple(np.sqrt(dts)), branch)

    tallies = f5.check_f5_pre(ctx, pre_moments=wrong)
    assert _failed(tallies, "pre recursion, closed form") and _failed(tallies, "pre recursion, conditional")


def test_meta_pre_with_wrong_phi2_fails(ctx):
    """The recursion check (not only the example) sees a 10 % error in E φ²."""
    assert _failed(f5.check_f5_pre(ctx, phi2=lambda q, act="gelu": 1.1 * gaussian_phi2(q, act)), "closed form")


def test_meta_peri_with_weight_scale_entering_fails(ctx):
    """A peri increment that grows with the weights (ρ := E σ_F², i.e. the output norm forgotten) fails once the
    weight scale is varied (0.03 … 30) — the correct one is weight-free at ε_out = 0."""
    wrong = lambda a, d, eps, norm="layer": np.minimum(np.asarray(a, dtype=float) * (d - 1) / d, 1.0)  # noqa: E731
    tallies = f5.check_f5_peri(ctx, rho=wrong)
    assert _failed(tallies, "closed-form ρ") and _failed(tallies, "ρ conditional")


def test_meta_peri_rho_free_fails_with_small_outputs(ctx):
    """ρ := 1 at ε_out > 0 fails when the branch outputs are small (σ_F² comparable to ε_out)."""
    wrong = lambda a, d, eps, norm="layer": np.ones_like(np.asarray(a, dtype=float))  # noqa: E731
    tallies = f5.check_f5_peri(ctx, rho=wrong)
    assert _failed(tallies, "ρ conditional")


def test_meta_post_rho_free_fails_at_positive_eps_only(ctx):
    """post with E‖x_k‖² = γ²d (ρ dropped) still passes at ε = 0 but fails at ε > 0 with small outputs."""
    wrong = lambda gamma, d, rho: gamma**2 * d * np.ones_like(np.asarray(rho, dtype=float))  # noqa: E731
    tallies = {t.check: t for t in f5.check_f5_post(ctx, post_moment=wrong)}
    assert tallies["post ε=0: ‖x_k‖² = γ²d on every row"].passed
    assert not tallies["post ε>0: E‖x_k‖² = γ²d·E[ρ], ρ conditional"].passed


# ---- bad inputs ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, name", [
    (lambda: gaussian_phi2(-1.0), "q"),
    (lambda: gaussian_phi2(1.0, "tanh"), "activation"),
    (lambda: mlp_output_second_moment(1, 4, 1.0, 1.0, 1.0), "d"),
    (lambda: mlp_output_second_moment(8, 0, 1.0, 1.0, 1.0), "hidden"),
    (lambda: mlp_output_second_moment(8, 4, -1.0, 1.0, 1.0), "w1_var"),
    (lambda: chi2_rho(0.0, 8, 0.0), "a"),
    (lambda: chi2_rho(1.0, 8, -1e-3), "eps"),
    (lambda: chi2_rho(1.0, 8, 1e-3, "batch"), "norm"),
    (lambda: noncentral_chi2_rho(1.0, -1.0, 8, 1e-3), "signal"),
    (lambda: pre_second_moments(1.0, (0.1, 0.2), [1.0, 2.0, 3.0]), "branch_moments"),
    (lambda: pre_second_moments(1.0, 0.1, 2.0), "dt"),
    (lambda: pre_second_moments(-1.0, (0.1,), [1.0]), "m0"),
    (lambda: peri_second_moments(1.0, (0.1,), 1.0, 8, 1.5), "rho"),
    (lambda: peri_second_moments(1.0, (0.0,), 1.0, 8, 1.0), "dt"),
    (lambda: post_second_moment(float("nan"), 8, 1.0), "gamma"),
    (lambda: mlp_output_rho(8, 32, 0.1, 0.1, 1.0, 0.1, "gelu", method="exact"), "method"),
    (lambda: uniform_attention_mixed_sq(1.0, 0), "n_attended"),
])
def test_bad_inputs_raise_value_error_naming_the_parameter(call, name):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value).startswith(name), str(info.value)


# ---- devices ---------------------------------------------------------------------------------------------------------
def test_pre_check_on_each_device(device):
    """The pre check passes on every available device; on CUDA the measurement equals the CPU one (weights are
    drawn on the CPU, TF32 off) to float64 round-off."""
    ctx = Context(device=device)
    assert all(t.passed for t in f5.check_f5_pre(ctx))
    if device != "cpu":
        case = f5._fixed_cases("pre", ctx)[0]
        cpu_case = f5._fixed_cases("pre", Context())[0]
        np.testing.assert_allclose(f5.measure(case).x_sq, f5.measure(cpu_case).x_sq, rtol=1e-10, atol=0)
