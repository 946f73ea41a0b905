"""Mutation-run gaps in theory/norms.py (README "Mutation and soak"): the input checks' exact conditions (None, a
scalar, a width-1 row), mixed mpmath/float arguments (an mpmath number anywhere keeps the whole evaluation in
mpmath), the scalar N1 path's return type and its ε/second-moment edge cases, γ = 0, and the default γ = 1 of the
exact Jacobians against a central finite difference of a LayerNorm/RMSNorm written here.
"""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from theory import norms as tn


def _ln(z, eps):
    c = z - z.mean()
    return c / math.sqrt((c * c).mean() + eps)


def _rms(z, eps):
    return z / math.sqrt((z * z).mean() + eps)


def _fd_jacobian(f, z, h=1e-6):
    """Central differences: truncation O(h²)·f''' ~ 1e-12, round-off ~1e-16/h = 1e-10 per entry."""
    d = z.size
    out = np.empty((d, d))
    for j in range(d):
        e = np.zeros(d)
        e[j] = h
        out[:, j] = (f(z + e) - f(z - e)) / (2 * h)
    return out


@pytest.mark.parametrize("which", ["layer", "rms"])
def test_default_gain_is_one(which):
    z = np.array([0.7, -1.3, 0.2, 2.1, -0.4])
    jac = tn.ln_jacobian(z) if which == "layer" else tn.rms_jacobian(z)
    f = (lambda x: _ln(x, 0.0)) if which == "layer" else (lambda x: _rms(x, 0.0))
    np.testing.assert_allclose(jac, _fd_jacobian(f, z), rtol=0, atol=1e-8)  # 1e-8 >> 1e-10 FD error


def test_rows_and_arrays_reject_none_scalars_and_width_one():
    with pytest.raises(ValueError, match="z must be an array of rows"):
        tn.ln_row_variance(None)
    with pytest.raises(ValueError, match="z must be an array of rows"):
        tn.rms_row_mean_square(3.0)
    with pytest.raises(ValueError, match="d >= 2"):
        tn.ln_row_variance([1.0])
    with pytest.raises(ValueError, match="gamma_max must be a real number or an array"):
        tn.norm_output_bound(4, None)


def test_n1_scalar_path_returns_float_and_edge_cases():
    """Scalars give a float (docstring). m = 0 with ε > 0: factor 0, bound ‖β‖; ε = 0 with m > 0: factor 1."""
    for kwargs in ({}, {"second_moment": 3.0, "eps": 1.0}):
        out = tn.norm_output_bound(4, 2.0, 0.5, **kwargs)
        assert type(out) is float
    assert tn.norm_output_bound(4, 2.0, 0.5, eps=1.0, second_moment=3.0) == pytest.approx(
        2.0 * 2.0 * math.sqrt(3.0 / 4.0) + 0.5, rel=1e-15)
    assert tn.norm_output_bound(4, 2.0, 0.5, eps=0.1, second_moment=0.0) == 0.5
    assert tn.norm_output_bound(4, 2.0, 0.5, eps=0.0, second_moment=3.0) == 4.5


def test_mixed_mpmath_arguments_stay_in_mpmath():
    """γ and σ² as 50-digit numbers, ε a float 0: the eigenvalues, spectrum and norms keep 50 digits."""
    with mpmath.workdps(50):
        g, v = mpmath.mpf(1) / 3, mpmath.mpf(2) / 3
        want = g / mpmath.sqrt(v)
        ev = tn.ln_jacobian_eigenvalues(g, v, 0.0)
        assert isinstance(ev.orthogonal, mpmath.mpf) and abs(ev.orthogonal - want) < mpmath.mpf("1e-45")
        spec = tn.ln_jacobian_spectrum(4, g, v, 0.0)
        assert spec.dtype == object and abs(spec[-1] - want) < mpmath.mpf("1e-45")
        norm = tn.ln_jacobian_spectral_norm(4, g, v, 0.0)
        assert isinstance(norm, mpmath.mpf) and abs(norm - want) < mpmath.mpf("1e-45")
        # only γ an mpmath number: the result is still mpmath (s = √(σ²+ε) of two floats is a float64 value
        # there, so only float precision can be asked of it — an observation, not a theorem issue)
        spec = tn.rms_jacobian_spectrum(3, g, 2.0, 0.0)
        assert spec.dtype == object and all(isinstance(x, mpmath.mpf) for x in spec)
        assert abs(spec[-1] - g / mpmath.sqrt(2)) < mpmath.mpf("1e-16")


def test_mpmath_statistic_equal_to_eps():
    """σ² = ε = 1/2 (s = 1): bulk γ/s = γ, radial γε/s³ = γ/2 — σ² + ε > 0 is all the layer needs."""
    with mpmath.workdps(30):
        half = mpmath.mpf(1) / 2
        ev = tn.ln_jacobian_eigenvalues(mpmath.mpf(3), half, half)
        assert ev.orthogonal == 3 and ev.along_input == mpmath.mpf(3) / 2
        with pytest.raises(ValueError, match="variance must be > 0"):
            tn.ln_jacobian_eigenvalues(mpmath.mpf(3), mpmath.mpf(0), mpmath.mpf(0))


def test_zero_gain_eigenvalues_are_zero():
    ev = tn.ln_jacobian_eigenvalues(0.0, 1.0, 0.5)
    assert ev.along_ones == 0.0 and ev.along_input == 0.0 and ev.orthogonal == 0.0
    np.testing.assert_array_equal(tn.ln_jacobian_spectrum(3, 0.0, 1.0, 0.5), [0.0, 0.0, 0.0])
