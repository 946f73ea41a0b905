"""Mutation-run gaps in theory/backward.py (README "Mutation and soak"): every parameter away from its default.

B5's recursion is recomputed here by an independent route — plain float arithmetic from the formulas of its
docstring, with the Gaussian moments by scipy quadrature (not theory's closed forms) — at per-step Δt, γ ≠ 1,
γ_out ≠ γ, ws ≠ 1, out ≠ 1, c0 and q0 off their defaults. N2's scale is checked on 1-D rows and batches by hand.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special

from theory import backward as tb


def _moments(activation: str, q: float) -> tuple[float, float]:
    """(E φ(h)², E φ'(h)²), h ~ N(0, q), by adaptive quadrature of the definitions (an independent route)."""
    def phi(z):
        return max(z, 0.0) if activation == "relu" else z * special.ndtr(z)

    def dphi(z):
        return float(z > 0) if activation == "relu" else special.ndtr(z) + z * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)

    sd = math.sqrt(q)
    dens = lambda t: math.exp(-t * t / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    e2 = sum(integrate.quad(lambda t: phi(sd * t) ** 2 * dens(t), a, b, epsabs=0, epsrel=1e-13)[0]
             for a, b in ((-np.inf, 0), (0, np.inf)))
    d2 = sum(integrate.quad(lambda t: dphi(sd * t) ** 2 * dens(t), a, b, epsabs=0, epsrel=1e-13)[0]
             for a, b in ((-np.inf, 0), (0, np.inf)))
    return e2, d2


def _recursion(placement, d, dts, ws, out, g, go, activation, c0, q0):
    """B5 by hand (the docstring's formulas, floats): C, chi, Q, skip."""
    C, chi, skip_f = [c0], [], []
    g2, go2 = g * g, (g if go is None else go) ** 2
    if placement in ("pre", "peri"):
        e2, d2 = _moments(activation, ws * ws * g2)
        kappa = ws * ws * g2 * d2 / e2
    for k, dt in enumerate(dts):
        if placement in ("pre", "peri"):
            delta = dt * dt * ws * ws * out * out * (d - 1) * e2 if placement == "pre" else dt * dt * go2 * d
            chi.append(1 + kappa * delta / C[k])
            C.append(C[k] + delta)
        else:
            qk = q0 if k == 0 else g2 * d
            e2, d2 = _moments(activation, ws * ws * qk / d)
            cy = C[k] + dt * dt * ws * ws * out * out * (d - 1) * e2
            chi.append(g2 * d * (1 + dt * dt * ws ** 4 * out * out * d2) / cy)
            skip_f.append(g2 * d / cy)
            C.append(g2 * d)
    Q = [float(np.prod(chi[j:])) for j in range(len(chi) + 1)]
    skip = [float(np.prod(skip_f[j:])) for j in range(len(skip_f) + 1)] if placement == "post" else None
    return {"C": C, "chi": chi, "Q": Q, "skip": skip}


@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("placement", ["pre", "peri", "post"])
def test_b5_recursion_matches_a_hand_recursion_off_defaults(placement, activation):
    """Every parameter off its default (per-step Δt, γ, γ_out, ws, out, c0, q0): the returned C, χ, Q, skip equal
    the hand recursion to 1e-10 relative (quadrature at 1e-13, a product of 5 factors: far below 1e-10)."""
    kw = dict(d=7, dts=[0.3, 1.7, 0.9, 0.5, 1.2], ws=1.3, out=0.7, g=1.6, go=0.8, activation=activation,
              c0=4.5, q0=6.25)
    got = tb.jacobian_moment_recursion(placement, kw["d"], len(kw["dts"]), kw["dts"], weight_scale=kw["ws"],
                                       out_scale=kw["out"], gamma=kw["g"], gamma_out=kw["go"],
                                       activation=activation, c0=kw["c0"], q0=kw["q0"])
    want = _recursion(placement, **kw)
    for name in ("C", "chi", "Q"):
        np.testing.assert_allclose(tb.mp_to_float(got[name]), want[name], rtol=1e-10, err_msg=name)
    if placement == "post":
        np.testing.assert_allclose(tb.mp_to_float(got["skip"]), want["skip"], rtol=1e-10)
    else:
        assert got["skip"] is None


def test_b5_meta_hand_recursion_tells_a_wrong_gamma_out_apart():
    """Meta: the comparison above can fail — peri with γ_out ignored (γ used) differs from the hand value."""
    got = tb.jacobian_moment_recursion("peri", 7, 3, [0.3, 1.7, 0.9], gamma=1.6, gamma_out=None)
    want = _recursion("peri", 7, [0.3, 1.7, 0.9], 1.0, 1.0, 1.6, 0.8, "relu", 6.0, 7.0)
    assert not np.allclose(tb.mp_to_float(got["C"]), want["C"], rtol=1e-3)


def test_b5_default_inputs_are_c0_d_minus_1_and_q0_d():
    """Defaults by hand: c0 = d − 1 and q0 = d (post's first step reads q0)."""
    got = tb.jacobian_moment_recursion("post", 9, 2, [0.6, 1.1], gamma=1.4)
    want = _recursion("post", 9, [0.6, 1.1], 1.0, 1.0, 1.4, None, "relu", 8.0, 9.0)
    assert tb.mp_to_float(got["C"])[0] == 8.0
    np.testing.assert_allclose(tb.mp_to_float(got["chi"]), want["chi"], rtol=1e-10)


def test_b5_gelu_moments_closed_form_match_quadrature_off_q1():
    """The GELU closed form against scipy quadrature at several q (not only q = 1)."""
    for q in (0.2, 1.0, 3.7):
        e2, d2 = tb.gaussian_activation_moments("gelu", q)
        want = _moments("gelu", q)
        assert float(e2) == pytest.approx(want[0], rel=1e-10)
        assert float(d2) == pytest.approx(want[1], rel=1e-10)


@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_norm_jacobian_scale_on_one_row_and_a_batch(norm):
    """N2's s on a 1-D row (shape ()) and on a (2, 3, d) batch, by hand: √(var + ε) or √(mean z² + ε)."""
    z = np.array([3.0, -1.0, 2.0, 0.5])
    m = z.mean()
    want = math.sqrt(((z - m) ** 2).mean() + 0.3) if norm == "layer" else math.sqrt((z * z).mean() + 0.3)
    s = tb.norm_jacobian_scale(z, 0.3, norm)
    assert np.shape(s) == ()
    assert float(s) == pytest.approx(want, rel=1e-14)
    batch = np.arange(24, dtype=float).reshape(2, 3, 4) ** 1.5 - 20.0
    got = tb.norm_jacobian_scale(batch, 0.01, norm)
    assert got.shape == (2, 3)
    for idx in np.ndindex(2, 3):
        row = batch[idx]
        ref = ((row - row.mean()) ** 2).mean() if norm == "layer" else (row * row).mean()
        assert got[idx] == pytest.approx(math.sqrt(ref + 0.01), rel=1e-14)
