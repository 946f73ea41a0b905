"""Group N — norm-layer geometry: N1 output range, N2 exact Jacobian and its spectrum, N3 invariances.

Each theorem has one place below: the registered check run on every device, its meta-tests (a deliberately
wrong theory injected into the same check must FAIL it), and the domain errors of its theory functions.
Statements and proofs: docs/theorems/N.md.
"""
from __future__ import annotations

import dataclasses
import inspect
import math

import mpmath
import numpy as np
import pytest

import theory.norms as norms
from theory.norms import (
    ln_jacobian,
    ln_jacobian_eigenvalues,
    ln_jacobian_frobenius_norm,
    ln_jacobian_norm_bound,
    ln_jacobian_spectral_norm,
    ln_jacobian_spectrum,
    norm_equivalent_eps,
    norm_jacobian_scale_factor,
    norm_output_bound,
    rms_jacobian,
    rms_jacobian_spectral_norm,
    rms_jacobian_spectrum,
    rms_row_mean_square,
)
from verify.checks.norms import check_n1, check_n2, check_n3
from verify.checks.registry import Context


class _MetaContext(Context):
    """The check as registered, on its fixed anchor cases plus two drawn examples: a wrong theory must already
    fail there (the anchors hold the witnesses, the d = 2 edge and the large-mean rows), at a fraction of the cost."""

    def examples(self, quick, full=None):
        return 2


META = _MetaContext()


def _run(check, ctx, **theory):
    return {t.check: t for t in check(ctx, **theory)}


def _assert_all_pass(tallies):
    bad = [f"{t.summary()}\n    worst case: {t.worst_case}" for t in tallies.values() if not t.passed]
    assert not bad, "\n".join(bad)


def _assert_fails(tallies, *fragments):
    for fragment in fragments:
        hits = [t for name, t in tallies.items() if fragment in name]
        assert hits, f"no tally named like {fragment!r}: {list(tallies)}"
        assert any(t.cases > 0 and not t.passed for t in hits), (
            f"the wrong theory was NOT caught by {fragment!r}: " + "; ".join(t.summary() for t in hits))


def _sqrt(x):
    return mpmath.sqrt(x) if isinstance(x, mpmath.mpf) else np.sqrt(x)


# =================================================================================================================
# N1 — range: ‖N(z)‖ ≤ ‖γ‖∞·√d·√(m/(m+ε)) + ‖β‖₂, equality for constant γ and β = 0
# =================================================================================================================
def test_n1_output_norm_is_bounded_by_gain_sqrt_d_and_attained_by_constant_gain(ctx, device):
    """N1 over hypothesis-drawn LayerNorm/RMSNorm rows (d ≤ 256, 12 orders of scale, means up to 1e6 spreads,
    ε incl. 0, vector γ and β) in float64: never violated, and equality holds for constant γ, β = 0."""
    tallies = _run(check_n1, dataclasses.replace(ctx, device=device))
    _assert_all_pass(tallies)
    witness = tallies["equality for constant γ, β = 0 (witness)"]
    assert witness.worst_ratio == pytest.approx(1.0, abs=1e-12)


def test_n1_bound_ten_percent_too_small_fails():
    """A range bound 10% below the truth is violated on the equality cases."""
    tallies = _run(check_n1, META, bound=lambda *a, **k: 0.9 * norm_output_bound(*a, **k))
    _assert_fails(tallies, "LayerNorm range", "RMSNorm range")


def test_n1_bound_ten_percent_too_large_fails_the_witness():
    """A bound 10% above the truth still holds, but its witness shows it is not attained."""
    tallies = _run(check_n1, META, bound=lambda *a, **k: 1.1 * norm_output_bound(*a, **k))
    _assert_fails(tallies, "witness")


def test_n1_values_and_array_form():
    """Known values: |γ|√d at ε = 0, the factor √(σ²/(σ²+ε)), +‖β‖; arrays give the scalar answers row-wise."""
    assert norm_output_bound(4, 2.0) == 4.0
    assert norm_output_bound(4, 2.0, beta_norm=1.5, eps=1.0, second_moment=3.0) == pytest.approx(
        2.0 * 2.0 * math.sqrt(0.75) + 1.5, rel=1e-15)
    m = np.array([0.5, 3.0, 1e6])
    got = norm_output_bound(9, np.array([1.0, 2.0, 3.0]), 0.25, 0.1, m)
    want = [norm_output_bound(9, g, 0.25, 0.1, float(v)) for g, v in zip([1.0, 2.0, 3.0], m)]
    np.testing.assert_allclose(got, want, rtol=1e-15)


@pytest.mark.parametrize("kwargs, name", [
    (dict(d=1, gamma_max=1.0), "d"),
    (dict(d=4, gamma_max=-1.0), "gamma_max"),
    (dict(d=4, gamma_max=1.0, eps=-1e-5), "eps"),
    (dict(d=4, gamma_max=1.0, second_moment=float("nan")), "second_moment"),
    (dict(d=4, gamma_max=1.0, eps=0.0, second_moment=0.0), "second_moment"),
    (dict(d=4, gamma_max=np.array([1.0, np.nan])), "gamma_max"),
    (dict(d=4, gamma_max=1.0, eps=np.array([0.0, 1.0]), second_moment=np.array([0.0, 1.0])), "second_moment"),
])
def test_n1_rejects_bad_inputs_naming_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        norm_output_bound(**kwargs)


# =================================================================================================================
# N2 — Jacobian: exact matrix; scalar γ spectrum {0 on 1, γε/s³ on c, γ/s ×(d−2)}; norms; ‖J‖ ≤ ‖γ‖∞/s (centred s)
# =================================================================================================================
def test_n2_jacobian_spectrum_and_norms_match_autodiff_and_mpmath(ctx, device):
    """The closed-form Jacobian equals torch.func.jacrev of the zoo's norm (vector γ, ε ≥ 0, LN and RMS); for
    scalar γ its spectrum/eigenpairs, ‖J‖₂ (d ≥ 3 and d = 2) and ‖J‖_F equal numpy's; ‖J‖₂ ≤ ‖γ‖∞/s with
    equality at constant γ; and the closed-form spectrum matches a 50/80-digit mpmath oracle at ε/σ² = 1e-16."""
    tallies = _run(check_n2, dataclasses.replace(ctx, device=device))
    _assert_all_pass(tallies)
    assert tallies["‖J‖₂ ≤ ‖γ‖_∞/s, centred s (vector γ)"].numbers["max_ratio_to_uncentred_bound"] > 100, (
        "the large-mean rows should exceed an uncentred bound by orders of magnitude")


def test_n2_uncentred_norm_bound_fails_on_large_mean():
    """Using the raw second moment mean(z²) for s (an uncentred norm) makes the bound too small at large means."""
    tallies = _run(check_n2, META, ln_row_variance=rms_row_mean_square)
    _assert_fails(tallies, "‖J‖₂ ≤ ‖γ‖_∞/s", "closed-form spectrum = eigvalsh")


def test_n2_spectrum_off_by_ten_percent_fails():
    tallies = _run(check_n2, META, ln_spectrum=lambda *a: 1.1 * ln_jacobian_spectrum(*a),
                   rms_spectrum=lambda *a: 1.1 * rms_jacobian_spectrum(*a))
    _assert_fails(tallies, "closed-form spectrum = eigvalsh", "at 50 digits", "in float64")


def _spectrum_eps_over_s_squared(d, gamma, variance, eps=0.0):
    """Wrong exponent: γε/s² on the centred input instead of γε/s³ (numpy or mpmath)."""
    s = _sqrt(variance + eps)
    wrong = gamma * eps / (s * s)
    if isinstance(s, mpmath.mpf):
        return np.array(sorted([0 * s, wrong] + [gamma / s] * (d - 2)), dtype=object)
    g = np.broadcast_to(np.asarray(gamma, float), np.shape(s))
    parts = [np.zeros(np.shape(s) + (1,)), np.asarray(wrong)[..., None], np.repeat((g / s)[..., None], d - 2, -1)]
    return np.sort(np.concatenate(parts, axis=-1), axis=-1)


def test_n2_wrong_exponent_eps_over_s_squared_fails():
    """γε/s² instead of γε/s³ on the centred input is caught by the eigenpairs, eigvalsh and the mpmath oracle."""
    def eigenvalues(gamma, variance, eps=0.0):
        ev = ln_jacobian_eigenvalues(gamma, variance, eps)
        return ev._replace(along_input=ev.along_input * _sqrt(variance + eps))

    tallies = _run(check_n2, META, ln_eigenvalues=eigenvalues, ln_spectrum=_spectrum_eps_over_s_squared)
    _assert_fails(tallies, "eigenpairs", "closed-form spectrum = eigvalsh", "at 50 digits")


def test_n2_ignoring_the_d2_edge_case_fails():
    """Claiming ‖J‖₂ = |γ|/s also for d = 2 is wrong: there J = (γε/s³)ĉĉᵀ (zero at ε = 0)."""
    tallies = _run(check_n2, META, ln_spectral_norm=lambda d, g, v, e=0.0: np.abs(g) / np.sqrt(v + e))
    _assert_fails(tallies, "‖J‖₂ closed form")


def test_n2_wrong_frobenius_count_fails():
    """(|γ|/s)·√(d − 1 + ε²/s⁴) (one direction too many) is caught."""
    tallies = _run(check_n2, META, ln_frobenius_norm=lambda d, g, v, e=0.0: ln_jacobian_frobenius_norm(d + 1, g, v, e))
    _assert_fails(tallies, "‖J‖_F closed form")


def test_n2_jacobian_without_centring_projection_fails():
    """diag(γ)(I − ccᵀ/(ds²))/s — forgetting that the mean moves with z — is caught against autodiff."""
    def no_projection(z, gamma=1.0, eps=0.0):
        z = np.asarray(z, float)
        c = z - z.mean(axis=-1, keepdims=True)
        return rms_jacobian(c, gamma, eps)  # same formula with c in place of z: I instead of P

    tallies = _run(check_n2, META, ln_jacobian=no_projection)
    _assert_fails(tallies, "exact Jacobian = jacrev")


def test_n2_closed_forms_by_hand():
    """Small cases worked by hand: d = 3, σ² = 1, ε = 3 (s = 2): spectrum {0, γ·3/8, γ/2}; d = 2 at ε = 0: J = 0."""
    np.testing.assert_allclose(ln_jacobian_spectrum(3, 2.0, 1.0, 3.0), [0.0, 0.75, 1.0], rtol=1e-15)
    assert ln_jacobian_spectral_norm(3, -2.0, 1.0, 3.0) == 1.0
    assert ln_jacobian_spectral_norm(2, 2.0, 1.0, 3.0) == 0.75
    assert ln_jacobian_spectral_norm(2, 2.0, 1.0, 0.0) == 0.0
    np.testing.assert_allclose(ln_jacobian(np.array([1.0, -1.0]), 2.0, 0.0), 0.0, atol=0)
    assert ln_jacobian_frobenius_norm(3, 2.0, 1.0, 3.0) == pytest.approx(math.hypot(1.0, 0.75), rel=1e-15)
    assert rms_jacobian_spectral_norm(2, 3.0, 4.0, 5.0) == 1.0
    assert ln_jacobian_norm_bound(3.0, 7.0, 2.0) == 1.0
    # a large mean does not shrink the Jacobian: J depends on z only through z − μ1
    z = np.array([0.3, -1.2, 0.9, 0.0])
    np.testing.assert_allclose(ln_jacobian(z + 1e4, 1.0, 0.1), ln_jacobian(z, 1.0, 0.1), rtol=0, atol=1e-11)


def test_n2_spectrum_accepts_mpmath_and_avoids_cancellation():
    """At 50 digits, ε/σ² = 1e-30: the centred-input eigenvalue γε/s³ is returned to full relative precision."""
    mpmath.mp.dps = 50
    spec = ln_jacobian_spectrum(4, mpmath.mpf(1), mpmath.mpf(2), mpmath.mpf("2e-30"))
    s = mpmath.sqrt(mpmath.mpf(2) + mpmath.mpf("2e-30"))
    assert abs(spec[1] - mpmath.mpf("2e-30") / s ** 3) < mpmath.mpf("1e-75")
    assert all(isinstance(v, mpmath.mpf) for v in spec[1:])


@pytest.mark.parametrize("call, name", [
    (lambda: ln_jacobian(np.ones((3, 1))), "z"),
    (lambda: ln_jacobian(np.array([1.0, np.nan, 2.0])), "z"),
    (lambda: ln_jacobian(np.array([1.0, 1.0, 1.0]), 1.0, 0.0), "z"),  # zero variance with ε = 0
    (lambda: ln_jacobian(np.array([1.0, 2.0, 3.0]), 1.0, -1e-3), "eps"),
    (lambda: ln_jacobian(np.array([1.0, 2.0, 3.0]), np.ones(4)), "gamma"),
    (lambda: rms_jacobian("abc"), "z"),
    (lambda: rms_jacobian(np.zeros(3), 1.0, 0.0), "z"),
    (lambda: ln_jacobian_spectrum(1, 1.0, 1.0, 0.0), "d"),
    (lambda: ln_jacobian_spectrum(2.5, 1.0, 1.0, 0.0), "d"),
    (lambda: ln_jacobian_spectrum(3, float("nan"), 1.0, 0.0), "gamma"),
    (lambda: ln_jacobian_spectrum(3, 1.0, -1.0, 0.0), "variance"),
    (lambda: ln_jacobian_spectrum(3, 1.0, 0.0, 0.0), "variance"),
    (lambda: rms_jacobian_spectrum(3, 1.0, 1.0, -2.0), "eps"),
    (lambda: ln_jacobian_norm_bound(-1.0, 1.0, 0.0), "gamma_max"),
    (lambda: ln_jacobian_norm_bound(1.0, [1.0, np.inf], 0.0), "variance"),
])
def test_n2_rejects_bad_inputs_naming_the_parameter(call, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        call()


# =================================================================================================================
# N3 — invariances (ε = 0): N(cz + b1) = N(z), J z = 0, J 1 = 0, J(cz) = J(z)/c, LN odd when β = 0
# =================================================================================================================
def test_n3_scale_shift_invariance_null_directions_and_oddness(ctx, device):
    """At ε = 0: N(cz + b1) = N(z) for c > 0 over 12 orders of c (RMS: b = 0), J z = 0, J 1 = 0 (LN),
    J(cz + b1) = J(z)/c; for ε > 0 the same with ε/c²; J z = (ε/s³)γ⊙c; N(−z) = 2β − N(z)."""
    _assert_all_pass(_run(check_n3, dataclasses.replace(ctx, device=device)))


def test_n3_wrong_jacobian_scaling_exponent_fails():
    """J(cz) = J(z)/c² (wrong exponent) is caught."""
    tallies = _run(check_n3, META, jacobian_scale_factor=lambda c: 1.0 / c ** 2)
    _assert_fails(tallies, "ε = 0: J(cz + b1)", "ε > 0: J_ε(cz + b1)")


def test_n3_wrong_equivalent_eps_fails():
    """N_ε(cz) = N_{ε/c}(z) (wrong power of c) is caught where ε > 0."""
    tallies = _run(check_n3, META, equivalent_eps=lambda e, c: e / c)
    _assert_fails(tallies, "ε > 0: N_ε(cz + b1)")


def test_n3_rmsnorm_is_not_shift_invariant():
    """Claiming RMSNorm shares LayerNorm's shift invariance (N(z + b1) = N(z), J1 = 0) is caught."""
    tallies = _run(check_n3, META, shift_invariant_kinds=("layer", "rms"))
    _assert_fails(tallies, "ε = 0: N(cz + b1) = N(z)", "J z = 0 and J 1 = 0")


def test_n3_closed_forms():
    assert norm_equivalent_eps(1e-5, 10.0) == pytest.approx(1e-7, rel=1e-15)
    assert norm_jacobian_scale_factor(-4.0) == 0.25
    z = np.array([0.5, -2.0, 1.25, 3.0])
    np.testing.assert_allclose(ln_jacobian(z, 1.5, 0.0) @ z, 0.0, atol=1e-14)
    np.testing.assert_allclose(ln_jacobian(z, 1.5, 0.0).sum(axis=-1), 0.0, atol=1e-14)
    np.testing.assert_allclose(ln_jacobian(7.0 * z + 3.0, 1.5, 0.0), ln_jacobian(z, 1.5, 0.0) / 7.0, rtol=1e-13,
                               atol=1e-15)


@pytest.mark.parametrize("call, name", [
    (lambda: norm_equivalent_eps(-1.0, 2.0), "eps"),
    (lambda: norm_equivalent_eps(1.0, 0.0), "scale"),
    (lambda: norm_equivalent_eps(1.0, -2.0), "scale"),
    (lambda: norm_jacobian_scale_factor(0.0), "scale"),
    (lambda: norm_jacobian_scale_factor(float("inf")), "scale"),
])
def test_n3_rejects_bad_inputs_naming_the_parameter(call, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        call()


# =================================================================================================================
# the module as a whole
# =================================================================================================================
def test_theory_functions_state_theorem_provenance_and_domain():
    """Every public function of theory.norms names its theorem id and its provenance in its docstring."""
    for name in norms.__all__:
        obj = getattr(norms, name)
        if not inspect.isfunction(obj):
            continue
        doc = inspect.getdoc(obj) or ""
        assert any(tag in doc for tag in ("N1", "N2", "N3")), f"{name}: no theorem id"
        assert "Provenance" in doc or "provenance" in doc, f"{name}: no provenance"
        assert "omain" in doc or "Assumptions" in doc, f"{name}: no domain/assumptions"


def test_checks_are_registered_under_n1_n2_n3():
    from verify.checks.registry import REGISTRY

    assert REGISTRY["N1"].run is check_n1
    assert REGISTRY["N2"].run is check_n2
    assert REGISTRY["N3"].run is check_n3


@pytest.mark.slow
@pytest.mark.parametrize("check", [check_n1, check_n2, check_n3])
def test_n1_n3_full_level(check):
    """The thorough tier: five times as many drawn examples (and mpmath cases) at the full level."""
    _assert_all_pass(_run(check, Context(level="full")))


def test_n2_orthogonal_direction_is_well_conditioned_at_d3():
    """Regression (soak seeds 2395010012, 3153489512): at d = 3, ε = 0, |μ|/σ up to 6e4 the eigen-residual along a
    direction ⟂ {1, c} must stay within the round-off model; a single random draw nearly parallel to the float64
    radial direction amplified its centring error 39× (the old construction, checked here to fail), the
    conditioned draw keeps it ≤ 2× the model on every row."""
    from theory.norms import ln_jacobian_eigenvalues, ln_row_variance

    from verify.checks import norms as N

    c = N.NormCase(kind="layer", d=3, n_instances=2, n_rows=3, eps=0.0, gamma_mode="scalar", gamma_scale=3.0,
                   beta_scale=0.0, input_scale=0.001, input_mean=-5.0, seed=2395010012)
    z, gamma, beta = c.arrays()
    stat = ln_row_variance(z)
    J = N.row_jacobians(N._norm_layer("layer", 0.0, gamma, beta, "cpu"), z, "cpu")
    scale = np.abs(gamma[:, :1]) / np.sqrt(stat)
    model = N.input_roundoff_ratio(3, np.abs(z).max(axis=-1), np.sqrt(stat))
    lam = ln_jacobian_eigenvalues(gamma[:, :1] * np.ones_like(stat), stat, 0.0).orthogonal
    radial = z - z.mean(axis=-1, keepdims=True)
    u_rad = radial / np.linalg.norm(radial, axis=-1, keepdims=True)

    def res(u):
        return np.linalg.norm(np.einsum("...ab,...b->...a", J, u) - lam[..., None] * u, axis=-1) / scale / model

    u = N._orthogonal_direction(z.shape, u_rad, True, c.seed + 1)
    np.testing.assert_allclose(np.linalg.norm(u, axis=-1), 1.0, rtol=1e-15)
    assert np.abs(np.sum(u * u_rad, axis=-1)).max() < 1e-15
    # ⟂ 1 only up to u_rad's own centring error (its entries do not sum to exactly 0): ≤ √d·model
    assert np.all(np.abs(u.sum(axis=-1)) <= np.sqrt(3) * model)
    assert res(u).max() <= 2.0
    old = np.random.default_rng(c.seed + 1).standard_normal(z.shape)  # the construction before the fix
    old -= old.mean(axis=-1, keepdims=True)
    old -= np.sum(old * u_rad, axis=-1, keepdims=True) * u_rad
    assert res(old / np.linalg.norm(old, axis=-1, keepdims=True)).max() > 4 * N.ROUNDOFF_MODEL_FACTOR
