"""Mutation-run gaps in theory/init_moments.py (README "Mutation and soak"), and the evidence for the mutants
listed as equivalent in .ci/mutation-equivalent.txt.

Part 1 (kills): every parameter of the ρ mixtures away from its default (w1_var, u_sq, b1_var, w2_var, b2_var ≠
0, 1; hidden = 1 and small m; widths with half-integer ν/2), each against a value computed here by another route:
  - central ρ: 1 − x eˣ E_{ν/2}(x) written here in mpmath (the float path under test is a log-trapezoid rule);
  - noncentral ρ: the Poisson mixture Σ_j Pois(j; λ/2)·ρ_central(ν + 2j) (the module integrates a Laplace
    transform instead);
  - the ReLU binomial mixture: the outer χ²_n expectations by mpmath.quad of the density (the module uses its
    log-trapezoid rule), n = 0 (Y ≡ 0) included;
  - the GELU delta method: E φ², E φ⁴ by mpmath.quad, ρ'' by mpmath.diff (the module: scipy quad and a central
    difference); the allowance from its docstring (|½ρ''Var a| + 2^{−m}·[ReLU, bias-free] + 1e-12).
Part 2 (evidence for equivalents): the numerical settings (log step, tail masses, quadrature caps and tolerances,
grid ends and end-point weights, precision-ladder constants) perturbed as the mutants perturb them leave the
results unchanged to round-off — shown by perturbing the module's own constants where they are read at call
time, and by an independent re-implementation of the two trapezoid rules and of the ladder with the knobs
exposed otherwise.
"""
from __future__ import annotations

import functools
import math
import warnings

import mpmath
import numpy as np
import pytest
from scipy import integrate, special, stats

from theory import init_moments as im


# ---- independent references -------------------------------------------------------------------------------------
def rho_central(a, c, nu, dps=30):
    """E[aX/(aX + c)], X ~ χ²_ν (c = d·ε > 0), closed form 1 − x eˣ E_{ν/2}(x), x = c/(2a), to ``dps`` digits.

    mpmath's x eˣ E_s(x) loses ~15 digits at s = 128 and more beyond, so it is evaluated with 80 guard digits."""
    with mpmath.workdps(dps + 80):
        a, c = mpmath.mpf(a), mpmath.mpf(c)
        if a == 0:
            return mpmath.mpf(0)
        x = c / (2 * a)
        value = 1 - x * mpmath.exp(x) * mpmath.expint(mpmath.mpf(nu) / 2, x)
    return +value


def rho_noncentral(a, signal, c, nu, dps=30):
    """E[aX/(aX + c)], X ~ χ'²_ν(λ = signal/a), as the Poisson mixture of central χ²_{ν+2j}."""
    with mpmath.workdps(dps):
        lam = mpmath.mpf(signal) / a
        total, j = mpmath.mpf(0), 0
        while True:
            w = mpmath.exp(-lam / 2) * (lam / 2) ** j / mpmath.factorial(j)
            total += w * rho_central(a, c, nu + 2 * j, dps)
            if j > lam and w < mpmath.mpf(10) ** (-dps):
                return +total
            j += 1


def chi2_mp_expect(f, n, dps=20):
    """E f(Y), Y ~ χ²_n, by mpmath.quad of the density (n = 0: Y ≡ 0)."""
    with mpmath.workdps(dps):
        if n == 0:
            return f(mpmath.mpf(0))
        k = mpmath.mpf(n) / 2
        dens = lambda y: y ** (k - 1) * mpmath.exp(-y / 2) / (2 ** k * mpmath.gamma(k))  # noqa: E731
        return mpmath.quad(lambda y: dens(y) * f(y), [0, n, 4 * n + 10, mpmath.inf])


def relu_rho_reference(d, m, w1, w2, u_sq, eps, b1=0.0, b2=0.0, norm="layer"):
    """ReLU MLP: ‖h‖² = q·χ²_N, N ~ Binomial(m, ½); ρ = Σ_n P(N = n)·E_Y ρ_central(w2·q·Y + b2)."""
    q = w1 * u_sq + b1
    nu = d - 1 if norm == "layer" else d
    total = 0.0
    for n in range(m + 1):
        p = math.comb(m, n) / 2 ** m
        if n == 0 and b2 == 0:
            continue
        total += p * float(chi2_mp_expect(lambda y: rho_central(w2 * q * y + b2, d * eps, nu, 20), n))
    return total


def gelu_moment(q, power, dps=30):
    """E[(zΦ(z))^power], z ~ N(0, q), by mpmath.quad."""
    with mpmath.workdps(dps):
        s = mpmath.sqrt(q)
        return mpmath.quad(lambda t: (s * t * mpmath.ncdf(s * t)) ** power * mpmath.npdf(t), [-mpmath.inf, 0, mpmath.inf])


# ---- Part 1: kills ----------------------------------------------------------------------------------------------
def test_gelu_phi4_against_mpmath_quadrature_scalar_and_array():
    """E[GELU(z)⁴] (never E φ², never E φ⁵): the scalar and the array path against 30-digit quadrature."""
    qs = [0.3, 1.7, 6.0]
    ref = [float(gelu_moment(q, 4)) for q in qs]
    np.testing.assert_allclose(im.gaussian_phi4(np.array(qs), "gelu"), ref, rtol=1e-13)  # quad asked for 2e-14
    assert im.gaussian_phi4(qs[1], "gelu") == pytest.approx(ref[1], rel=1e-13)
    assert im.gaussian_phi4(qs[1]) == pytest.approx(ref[1], rel=1e-13)  # default activation is GELU


def test_hidden_one_is_a_valid_width():
    """m = 1 (one hidden unit): E‖F‖² = d(w2·E φ² + b2); ReLU ρ = ½·E_Y ρ(w2 q Y + b2) + ½ρ(b2); allowance."""
    d, w1, w2, u_sq, b1, b2 = 6, 0.7, 0.45, 2.0, 0.3, 0.2
    q = w1 * u_sq + b1
    assert im.mlp_output_second_moment(d, 1, w1, w2, u_sq, "relu", b1, b2) == pytest.approx(
        d * (w2 * q / 2 + b2), rel=1e-15)
    got = im.mlp_output_rho(d, 1, w1, w2, u_sq, 0.5, "relu", b1, b2)
    assert got == pytest.approx(relu_rho_reference(d, 1, w1, w2, u_sq, 0.5, b1, b2), abs=1e-12)
    assert im.mlp_output_rho_allowance(d, 1, w1, w2, u_sq, 0.5, "relu") == pytest.approx(0.5 + 1e-12, rel=1e-15)


@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_relu_exact_mixture_away_from_defaults(norm):
    """w1_var, u_sq, b1_var, w2_var, b2_var all ≠ 0, 1: q = w1·u_sq + b1 and a = w2·q·Y + b2 each enter the value
    (N = 0 active units included: with b2 > 0 it contributes ρ(b2), not 0). Tolerance 1e-12: the module's rule
    is accurate to ~1e-14, the 20-digit reference beyond that."""
    d, m, w1, w2, u_sq, b1, b2, eps = 6, 3, 0.7, 0.45, 2.0, 0.3, 0.2, 0.5
    got = im.mlp_output_rho(d, m, w1, w2, u_sq, eps, "relu", b1, b2, norm)
    assert got == pytest.approx(relu_rho_reference(d, m, w1, w2, u_sq, eps, b1, b2, norm), abs=1e-12)
    # and without the output bias, where N = 0 contributes nothing (F ≡ 0)
    got = im.mlp_output_rho(d, m, w1, w2, u_sq, eps, "relu", b1, 0.0, norm)
    assert got == pytest.approx(relu_rho_reference(d, m, w1, w2, u_sq, eps, b1, 0.0, norm), abs=1e-12)


def _delta_reference(d, m, w1, w2, u_sq, eps, b1, b2):
    q = w1 * u_sq + b1
    e2, e4 = gelu_moment(q, 2), gelu_moment(q, 4)
    with mpmath.workdps(30):
        mean_a = m * w2 * e2 + b2
        var_a = m * w2 ** 2 * (e4 - e2 * e2)
        c, nu2 = mpmath.mpf(d * eps), mpmath.mpf(d - 1) / 2

        def rho(a):  # at the working precision, which mpmath.diff raises for its own differences
            x = c / (2 * a)
            return 1 - x * mpmath.exp(x) * mpmath.expint(nu2, x)

        second = mpmath.diff(rho, mean_a, 2)
        return float(rho(mean_a)), float(second * var_a / 2)


def test_gelu_delta_method_and_allowance_against_exact_derivative():
    """ρ ≈ ρ(ā) + ½ρ''(ā)·Var a with ā = m w2 E φ² + b2, Var a = m w2² (E φ⁴ − (E φ²)²): the second-order term T
    here is −0.145; the module's central difference (h = 1e-3 ā, truncation O(h²)) is off by 4.7e-7·|T|
    (measured), a 10 % change of T (a wrong ½, a wrong variance) by 1e-1·|T| — so |Δ| ≤ 1e-5·|T| + 1e-13
    leaves a factor 20 above the method's error and fails every such mutant."""
    d, m, w1, w2, u_sq, b1, b2, eps = 6, 4, 0.7, 0.45, 2.0, 0.3, 0.2, 0.5
    f0, t = _delta_reference(d, m, w1, w2, u_sq, eps, b1, b2)
    assert abs(t) > 0.1
    got = im.mlp_output_rho(d, m, w1, w2, u_sq, eps, "gelu", b1, b2)
    assert got == pytest.approx(f0 + t, abs=1e-5 * abs(t) + 1e-13)
    allowance = im.mlp_output_rho_allowance(d, m, w1, w2, u_sq, eps, "gelu", b1, b2)
    assert allowance == pytest.approx(abs(t) + 1e-12, abs=1e-5 * abs(t))


def test_allowance_by_its_docstring():
    """(2) 2^{−m} only for a bias-free ReLU layer, plus 1e-12 always; the exact ReLU method has no delta term."""
    args = (8, 3, 0.5, 0.25, 8.0, 0.3)  # d, m, w1_var, w2_var, u_sq, ε > 0
    assert im.mlp_output_rho_allowance(*args, "relu") == pytest.approx(0.125 + 1e-12, rel=1e-15)
    assert im.mlp_output_rho_allowance(*args, "relu", b2_var=0.2) == 1e-12
    assert im.mlp_output_rho_allowance(*args, "relu", b1_var=0.2) == 1e-12
    # GELU with ε so small that ρ ≡ 1.0 in float64 at every node: the delta term is exactly 0, only 1e-12 remains
    assert im.mlp_output_rho_allowance(8, 3, 0.5, 0.25, 8.0, 1e-30, "gelu") == 1e-12
    assert im.mlp_output_rho_allowance(8, 3, 0.5, 0.25, 8.0, 0.0, "gelu") == 1e-12


def test_mpmath_zero_eps_is_one():
    with mpmath.workdps(30):
        assert im.chi2_rho(mpmath.mpf(2), 4, mpmath.mpf(0)) == 1
        assert im.noncentral_chi2_rho(mpmath.mpf(2), mpmath.mpf(1), 4, mpmath.mpf(0)) == 1


@pytest.mark.parametrize("d, norm, snr", [
    (4, "layer", 0.5),   # ν/2 = 1.5 and λ = 0.5: 1 + λ − ν/2 = 0
    (4, "layer", 2.5),   # λ = 1 + ν/2: 1 − λ + ν/2 = 0
    (4, "rms", 1.5),     # ν/2 = 2
    (7, "layer", 0.3),
])
def test_noncentral_mpmath_against_poisson_mixture(d, norm, snr):
    """The Laplace-integral evaluation (break points at x/(1 + λ + ν/2) and x) against the Poisson mixture of
    central χ², at 30 digits (agreement to 1e-25 leaves 5 digits for mpmath.quad's own error estimate)."""
    nu = d - 1 if norm == "layer" else d
    with mpmath.workdps(30):
        a, eps = mpmath.mpf("0.8"), mpmath.mpf("0.6")
        got = im.noncentral_chi2_rho(a, snr * a, d, eps, norm)
        ref = rho_noncentral(a, snr * a, d * eps, nu)
        assert isinstance(got, mpmath.mpf) and abs(got - ref) < mpmath.mpf("1e-25")
    assert im.noncentral_chi2_rho(0.8, snr * 0.8, d, 0.6, norm) == pytest.approx(float(ref), abs=1e-14)


def test_noncentral_float_zero_eps_shapes_and_types():
    out = im.noncentral_chi2_rho(np.array([1.0, 2.0]), 0.5, 4, 0.0)
    assert isinstance(out, np.ndarray) and out.shape == (2,) and np.all(out == 1.0)
    out = im.noncentral_chi2_rho(1.0, np.array([0.5, 0.1, 0.0]), 4, 0.0)
    assert isinstance(out, np.ndarray) and out.shape == (3,)
    out = im.noncentral_chi2_rho(1.0, 0.5, 4, 0.0)
    assert type(out) is float and out == 1.0


def test_noncentral_float_tiny_variance_is_linear():
    """a ≪ dε (κ ~ 1e23, the grid's lower end clipped at log 45 − 1): ρ ≈ ν a/(dε) ~ 1e-23, finite and ≥ 0."""
    for a in (1e-23, 3e-23, 1e-21):
        got = im.noncentral_chi2_rho(a, 0.0, 4, 1.0)
        assert math.isfinite(got) and 0 <= got <= 1e-18
        assert got == pytest.approx(3 * a / 4, abs=1e-18)


def test_rho_upper_limits_of_recursions():
    """ρ ≤ 1 + 1e-12 (quadrature round-off) is accepted; 1 + 1.05e-12 and 1.5 are not."""
    np.testing.assert_allclose(im.peri_second_moments(1.0, [0.5], 2.0, 4, 1 + 0.9e-12), [1.0, 5.0], rtol=1e-11)
    assert im.post_second_moment(2.0, 4, 1 + 0.9e-12) == pytest.approx(16.0, rel=1e-11)
    for bad in (1 + 1.05e-12, 1.5):
        with pytest.raises(ValueError, match="rho"):
            im.peri_second_moments(1.0, [0.5], 2.0, 4, bad)
        with pytest.raises(ValueError, match="rho"):
            im.post_second_moment(2.0, 4, bad)


# ---- Part 2: evidence for the listed equivalents ----------------------------------------------------------------
_CASES = [(d, norm, a, eps) for d in (2, 9, 64) for norm in ("layer", "rms") for a, eps in ((1e-3, 1e-2), (1.0, 1.0), (1e3, 0.1))]


def _chi2_rule_knobs(dof, h, tail=1e-20, cap=0.6, extra_nodes=0, end_weight=0.5, end_index=-1):
    """The module's χ² rule re-implemented with its settings exposed (mutants: h, tail, cap, n ± 1, end weights)."""
    h = min(h, cap / math.sqrt(dof))
    lo, hi = math.log(stats.chi2.ppf(tail, dof)), math.log(stats.chi2.isf(tail, dof))
    n = int(math.ceil((hi - lo) / h)) + extra_nodes
    t = np.linspace(lo, hi, n + 1)
    w = np.exp(stats.chi2.logpdf(np.exp(t), dof) + t)
    w[[0, end_index]] *= end_weight
    return np.exp(t), w / w.sum()


@pytest.mark.parametrize("knobs", [dict(h=0.2), dict(h=0.22), dict(h=0.2, tail=1.1e-20), dict(h=0.2, cap=0.66),
                                   dict(h=0.2, extra_nodes=-2), dict(h=0.2, extra_nodes=1),
                                   dict(h=0.2, end_weight=0.55), dict(h=0.2, end_index=1),
                                   dict(h=0.2, end_index=-2)])
def test_chi2_rule_settings_change_nothing_above_round_off(knobs):
    """Each perturbed rule (as mutants 62, 67, 111, 113, 128 perturb it) equals the closed form to 1e-14."""
    assert _chi2_rule_worst(knobs) < 1e-14


def _chi2_rule_worst(knobs):
    worst = 0.0
    for d, norm, a, eps in _CASES:
        nu = d - 1 if norm == "layer" else d
        x, w = _chi2_rule_knobs(float(nu), **knobs)
        value = float(np.sum(a * x / (a * x + d * eps) * w))
        worst = max(worst, abs(value - float(rho_central(a, d * eps, nu))))
    return worst


@pytest.mark.parametrize("knobs", [dict(h=1.5, cap=10.0), dict(h=0.7, cap=10.0), dict(h=0.2, tail=1e-6)])
def test_meta_chi2_rule_settings_check_can_fail(knobs):
    """The same 1e-14 criterion rejects coarse grids (strip error e^{−π²/h} ≈ 1e-3, 8e-7) and a law cut at 1e-6."""
    assert _chi2_rule_worst(knobs) > 1e-14


def _noncentral_knobs(a, signal, c, s, h=0.2, k_one=1.0, k_two=2.0, lo_scale=1e-9, lo_shift=-1.0, hi=45.0,
                      clip=1.0, end_weight=0.5, end_index=-1, last_sign=1.0):
    """The module's noncentral rule re-implemented (mutants 375-378, 387: grid ends and end-point corrections)."""
    x = c / (2.0 * a)
    lam = signal / a
    kappa = x / (k_one + s + lam / k_two)
    t_lo = math.log(lo_scale * math.sqrt(kappa)) + lo_shift
    t_hi = math.log(hi)
    t_lo = min(t_lo, t_hi - clip)
    n = int(math.ceil((t_hi - t_lo) / h))
    t = np.linspace(t_lo, t_hi, n + 1)
    w = np.exp(t)
    r = w / x
    f = w * np.exp(-w) * -np.expm1(-s * np.log1p(r) - (lam / 2.0) * r / (1.0 + r))
    return (t_hi - t_lo) / n * (f.sum() - end_weight * (f[0] + last_sign * f[end_index]))


_NONCENTRAL_CASES = [(2, "layer", 1e-3, 1e-2, 0.0), (9, "rms", 1.0, 1.0, 2.0), (64, "layer", 1e3, 0.1, 50.0),
                     (64, "rms", 1e-3, 1e-2, 50.0), (9, "layer", 1e3, 0.1, 0.0), (4, "layer", 1e-23, 1.0, 0.0),
                     (4, "layer", 1e-23, 1.0, 2.0)]


@functools.cache
def _noncentral_ref(a, snr, d, eps, nu):
    # 50 digits: the closed form cancels up to ~15 digits at ν + 2j ~ 200 (see the precision ladder)
    return float(rho_noncentral(a, snr * a, d * eps, nu, 50))


@pytest.mark.parametrize("knobs", [dict(), dict(h=0.22), dict(k_one=1.1), dict(k_two=0.5), dict(k_two=2.2),
                                   dict(lo_scale=1.1e-9), dict(lo_shift=1.0), dict(lo_shift=-1.1), dict(hi=49.5),
                                   dict(clip=1.1), dict(end_weight=0.55), dict(end_weight=-0.5),
                                   dict(end_index=1), dict(end_index=-2), dict(last_sign=-1.0)])
def test_noncentral_rule_settings_change_nothing_above_round_off(knobs):
    """Each perturbed grid equals the Poisson-mixture reference to 1e-14 (absolute, ρ ∈ [0, 1]), also at a
    tiny variance where the lower end is clipped (mutant 378:35)."""
    assert _noncentral_worst(knobs) < 1e-14


def _noncentral_worst(knobs):
    worst = 0.0
    for d, norm, a, eps, snr in _NONCENTRAL_CASES:
        nu = d - 1 if norm == "layer" else d
        value = _noncentral_knobs(a, snr * a, d * eps, nu / 2.0, **knobs)
        worst = max(worst, abs(value - _noncentral_ref(a, snr, d, eps, nu)))
    return worst


@pytest.mark.parametrize("knobs", [dict(h=1.5), dict(lo_shift=8.0), dict(hi=20.0)])
def test_meta_noncentral_rule_settings_check_can_fail(knobs):
    """The same criterion rejects a coarse grid, a lower end 8 e-folds too high, an upper end at w = 20."""
    assert _noncentral_worst(knobs) > 1e-14


def test_module_constants_perturbed_by_ten_percent_change_nothing(monkeypatch):
    """QUAD_EPSREL, CHI2_TAIL and BINOMIAL_TAIL are read at call time: × 1.1 (the mutants) changes the scalar
    quadratures, the input-law integral and the ReLU mixture by < 1e-14; no quad hits its 200-interval cap."""
    def values():
        im._chi2_rule.cache_clear()
        with warnings.catch_warnings():
            warnings.simplefilter("error", integrate.IntegrationWarning)
            return np.array([im.gaussian_phi2(0.7), im.gaussian_phi4(3.0), im.gaussian_phi2(1e-4),
                             im.gaussian_row_norm_expect(lambda v: v * v, 8, 1.3, 0.2, 0.5, 0.4, "rms"),
                             im.gaussian_row_norm_expect(lambda v: v, 8, 1.3, 0.2, 0.5, 0.0, "layer"),
                             im.mlp_output_rho(8, 64, 0.5, 0.02, 8.0, 0.3, "relu", 0.1, 0.0)])

    base = values()
    for name in ("QUAD_EPSREL", "CHI2_TAIL", "BINOMIAL_TAIL"):
        with monkeypatch.context() as mp:
            mp.setattr(im, name, getattr(im, name) * 1.1)
            np.testing.assert_allclose(values(), base, rtol=1e-14, atol=0)
    im._chi2_rule.cache_clear()


def test_default_log_step_perturbed_changes_nothing():
    """LOG_STEP is bound as a default at import: passing h = 0.22 explicitly shows what the mutant would give."""
    f = lambda x: x / (x + 0.7)  # noqa: E731
    for dof in (1, 5, 40):
        assert im.chi2_expect(f, dof, 0.22) == pytest.approx(im.chi2_expect(f, dof), abs=1e-15)
    a, sig = np.array([1e-3, 1.0, 50.0]), np.array([0.0, 2.0, 1e3])
    np.testing.assert_allclose(im._noncentral_rho_trapezoid(a, sig, 8 * 0.1, 3.5, h=0.22),
                               im._noncentral_rho_trapezoid(a, sig, 8 * 0.1, 3.5), rtol=0, atol=1e-15)


def _ladder(evaluate, extra=20, rungs=8, base=2, mult=False, ten=10, shift=-3, floor=1):
    """The module's precision ladder with each constant a mutant changes exposed."""
    dps = mpmath.mp.dps
    previous = None
    for k in range(rungs):
        with mpmath.workdps(dps + extra * (base * k if mult else base ** k)):
            value = evaluate()
            if previous is not None and abs(value - previous) <= mpmath.mpf(ten) ** (-dps + shift) * max(floor, abs(value)):
                return +value
            previous = value
    raise ArithmeticError


@pytest.mark.parametrize("knobs", [dict(), dict(extra=21), dict(rungs=9), dict(mult=True), dict(base=3),
                                   dict(ten=11), dict(shift=3), dict(shift=-4), dict(floor=2)])
def test_precision_ladder_constants_change_nothing(knobs):
    """ν = 256 cancels ~15 digits: every ladder variant (mutants 305, 312, 314) returns the 200-digit value
    rounded to 30 digits — the returned rung always carries ≥ 17 digits more than the stopping test asks."""
    mpmath.mp.dps = 30
    x, s = mpmath.mpf(257) / 2, mpmath.mpf(128)
    with mpmath.workdps(200):
        ref = 1 - x * mpmath.exp(x) * mpmath.expint(s, x)
    got = 1 - _ladder(lambda: x * mpmath.exp(x) * mpmath.expint(s, x), **knobs)
    assert abs(got - ref) < mpmath.mpf(10) ** -29 * abs(ref)
    assert abs(im.chi2_rho(mpmath.mpf(1), 257, mpmath.mpf(1)) - ref) < mpmath.mpf(10) ** -29 * abs(ref)


def test_meta_precision_ladder_check_can_fail():
    """Without guard digits (extra = 0) both rungs are the naive 30-digit value, wrong by orders of magnitude."""
    mpmath.mp.dps = 30
    x, s = mpmath.mpf(257) / 2, mpmath.mpf(128)
    with mpmath.workdps(200):
        ref = 1 - x * mpmath.exp(x) * mpmath.expint(s, x)
    got = 1 - _ladder(lambda: x * mpmath.exp(x) * mpmath.expint(s, x), extra=0)
    assert abs(got - ref) > mpmath.mpf(10) ** -29 * abs(ref)


def test_noncentral_mpmath_break_points_change_nothing():
    """Mutants 352:46 (x·(1+λ+s): the sub-intervals reorder, the oriented sum is the same integral) and 352:51
    (x/(2+λ+s)): the same integrand over the moved break points agrees with the module to 1e-27 at 30 digits."""
    mpmath.mp.dps = 30
    for d, snr in ((8, 0.0), (8, 3.0), (33, 50.0)):
        a, eps = mpmath.mpf("0.5"), mpmath.mpf("0.2")
        x, lam, s = d * eps / (2 * a), mpmath.mpf(snr), mpmath.mpf(d - 1) / 2

        def integrand(w):
            r = w / x
            return mpmath.exp(-w) * (1 + r) ** (-s) * mpmath.exp(-(lam / 2) * r / (1 + r))

        module = im.noncentral_chi2_rho(a, snr * a, d, eps)
        for pts in ([0, x * (1 + lam + s), x, mpmath.inf], [0, x / (2 + lam + s), x, mpmath.inf]):
            assert abs((1 - mpmath.quad(integrand, pts)) - module) < mpmath.mpf("1e-27")


def test_array_phi2_closed_form_equals_the_quadrature():
    """Mutant 169:20 sends array GELU E φ² through the scalar quadrature instead of the closed form: the two agree
    to 1e-15 relative (QUADPACK's 2e-14 target is met with room), so the mutant is equivalent above round-off."""
    qs = np.array([1e-3, 0.3, 1.0, 7.0, 300.0])
    scalar = np.array([im.gaussian_phi2(float(q)) for q in qs])
    np.testing.assert_allclose(im.gaussian_phi2(qs), scalar, rtol=2e-14)


def test_relu_binomial_range_beyond_hidden_has_zero_mass():
    """Mutant 455:32 adds N = m + 1 active units to the mixture: its probability is exactly 0 (< BINOMIAL_TAIL)."""
    for m in (1, 5, 64):
        assert stats.binom.pmf(m + 1, m, 0.5) == 0.0
    assert special.comb(3, 4) == 0.0


def test_noncentral_float_batches_beyond_one_chunk():
    """More rows than one 4096-row chunk: every row equals its own one-row evaluation (chunking is invisible),
    checked on the rows around the chunk boundary and against the Poisson mixture for one of them."""
    n = 4100
    a = np.linspace(0.05, 3.0, n)
    sig = np.linspace(0.0, 5.0, n)
    big = im.noncentral_chi2_rho(a, sig, 8, 0.3)
    for i in (0, 4094, 4095, 4096, 4097, n - 1):
        assert big[i] == pytest.approx(im.noncentral_chi2_rho(float(a[i]), float(sig[i]), 8, 0.3), abs=1e-15)
    assert big[4096] == pytest.approx(float(rho_noncentral(a[4096], sig[4096], 8 * 0.3, 7)), abs=1e-14)
