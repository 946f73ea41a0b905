"""F5 — second moments of hidden states at initialisation, per norm placement.

Setting (the zoo's initialisation, ``verify.engine.zoo.Stack``): every weight matrix has iid N(0, var) entries,
independent across matrices and across residual steps; biases are iid N(0, b_var); norms have a constant gain
γ and β = 0. One residual step k with size Δt_k:

    pre   x⁺ = x + Δt F(N(x))        peri  x⁺ = x + Δt N_out(F(N_in(x)))        post  x⁺ = N(x + Δt F(x))

Every branch F ends in an output map ``F = h W + b`` (MLP: h = φ(u W₁ + b₁), W = W₂; attention: h = P U W_V,
W = W_O) whose weights (W, b) are independent of everything before them and have a sign-symmetric law. Two
facts carry the whole module:

1. (cross terms) E[⟨x_k, F⟩ | x_k, h] = 0 and, because a norm with β = 0 is odd, E[⟨x_k, N_out(F)⟩ | x_k, h] = 0:
   flipping (W, b) → (−W, −b) flips F and N_out(F) but not x_k or h.
2. (conditional Gaussian row) given h, each row of F is N(0, a·I_d) with a = w_var·‖h‖² + b_var, so a norm's row
   statistic of F (or of x + Δt F) is a scaled (non)central chi-square — :func:`chi2_rho`,
   :func:`noncentral_chi2_rho`.

What is *exact* here (finite width, no asymptotics): the pre/peri/post recursions, E‖F‖² given the branch input,
the chi-square laws of the row statistic, ρ for a ReLU MLP and for one-token attention. What is *approximate*:
ρ for a GELU MLP (second-order delta method over ‖h‖², with a stated allowance, :func:`mlp_output_rho_allowance`).

Numbers: every function takes Python/numpy floats; the one-dimensional expectations (:func:`gaussian_phi2`,
:func:`gaussian_phi4`, :func:`gelu_phi2_closed_form`, :func:`chi2_rho`, :func:`noncentral_chi2_rho`) also take
mpmath numbers and then evaluate at the current ``mpmath.mp`` precision (the high-precision oracle). numpy
arrays are evaluated with fixed rules (trapezoid in a log variable; the GELU closed form) certified against
the mpmath values in ``tests/test_init_moments.py``.

Provenance: paper claim K2/K3 (growth of second moments per placement), our statement and proofs
(docs/theorems/F5.md). Not the paper's constants: the paper's text is not available to this project.
"""
from __future__ import annotations

import functools
import math
import numbers

import mpmath
import numpy as np
from scipy import integrate, special, stats

from theory._domain import (
    as_float_array,
    require_choice,
    require_finite_array,
    require_int,
    require_nonnegative,
    require_positive,
    require_real,
    require_width,
    step_sizes,
)

ACTIVATIONS = ("relu", "gelu")
NORMS = ("layer", "rms")

# Quadrature for the vectorised (numpy) paths: the trapezoid rule in a logarithmic variable. Every integrand
# here (a χ² density times a rational function of the row statistic, or the Laplace-transform integrand of
# noncentral_chi2_rho) is analytic and decaying in the strip |Im t| < π/2 of t = log X, so the rule's error is
# ~ exp(−π²/h) (≈ e^{-49} for h = 0.2), uniformly in a, ε and the width. Certified against mpmath at 50 digits
# in tests/test_init_moments.py (and h against h/2).
LOG_STEP = 0.2
# scipy.integrate.quad's relative target for scalar float paths: QUADPACK accepts nothing below
# 50·machine-epsilon = 1.1e-14, so 2e-14 is the tightest request (compared with mpmath in the tests).
QUAD_EPSREL = 2e-14
# χ² mass left outside the log-grid on each side: far below float64 round-off of an expectation of O(1).
CHI2_TAIL = 1e-20
# The ReLU mixture over N = #active units ~ Binomial(m, 1/2) keeps every N whose probability exceeds this:
# the dropped tail has total mass < m·1e-18, far below float64 round-off of ρ ≤ 1.
BINOMIAL_TAIL = 1e-18


# ---- argument checks --------------------------------------------------------------------------------------------
def _is_mp(*values) -> bool:
    return any(isinstance(v, (mpmath.mpf, mpmath.mpc)) for v in values)


def _is_array(value) -> bool:
    return isinstance(value, np.ndarray) or (
        isinstance(value, (list, tuple)) and not isinstance(value, str))


def _nonneg(name: str, value):
    """A scalar (float or mpmath) or array of finite values ≥ 0; arrays come back as float ndarrays."""
    if _is_array(value):
        arr = require_finite_array(name, value)
        if np.any(arr < 0):
            raise ValueError(f"{name} must be >= 0, got min {arr.min()!r}")
        return arr
    return require_nonnegative(name, value)


def _positive_arg(name: str, value):
    v = _nonneg(name, value)
    if np.any(as_float_array(name, v) <= 0) if not _is_mp(v) else not v > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return v


def _nu(d: int, norm: str) -> int:
    """Degrees of freedom of the norm's row statistic: LayerNorm centres (d − 1), RMSNorm does not (d)."""
    return d - 1 if norm == "layer" else d


# ---- quadrature rules --------------------------------------------------------------------------------------------
@functools.cache
def _chi2_rule(dof: float, h: float = LOG_STEP) -> tuple[np.ndarray, np.ndarray]:
    """Nodes/weights for E over χ²_dof (dof > 0): trapezoid rule in t = log X on the central 1 − 2·CHI2_TAIL mass."""
    lo, hi = math.log(stats.chi2.ppf(CHI2_TAIL, dof)), math.log(stats.chi2.isf(CHI2_TAIL, dof))
    n = int(math.ceil((hi - lo) / h))
    t = np.linspace(lo, hi, n + 1)
    w = np.exp(stats.chi2.logpdf(np.exp(t), dof) + t)
    w[[0, -1]] *= 0.5
    return np.exp(t), w / w.sum()


def chi2_expect(func, dof: float, h: float = LOG_STEP):
    """E[func(X)], X ~ χ²_dof, by the log-variable trapezoid rule; dof = 0 means X ≡ 0.

    ``func`` maps an array of nodes (broadcast on a new last axis) to values; the result drops that axis.
    Helper for the exact mixtures below (no theorem of its own). Domain: dof ≥ 0, h > 0.
    """
    require_nonnegative("dof", dof)
    require_positive("h", h)
    if dof == 0:
        return func(np.zeros(1))[..., 0]
    # log X has spread ~√(2/dof): the strip argument needs h·√dof bounded (0.6 gives < 1e-15 at every dof tried)
    nodes, weights = _chi2_rule(float(dof), float(min(h, 0.6 / math.sqrt(dof))))
    return np.sum(func(nodes) * weights, axis=-1)


# ---- one-dimensional Gaussian expectations of φ ---------------------------------------------------------------
def _gelu(z):
    return z * special.ndtr(z)


def gelu_phi2_closed_form(q):
    """F5 (ingredient) — E[GELU(z)²], z ~ N(0, q), in closed form.

    Statement: E[(zΦ(z))²] = q/4 + q·arcsin(q/(1+q))/(2π) + q²/(π(1+q)√(1+2q)); at q = 1 this is
    1/3 + √3/(6π) = 0.42522148257029867… Proof: Stein's lemma E[z g(z)] = q E[g'(z)] with g = zΦ(z)² gives
    q(E[Φ(z)²] + 2E[zΦ(z)φ(z)]); E[Φ(z)²] is the orthant probability 1/4 + arcsin(q/(1+q))/(2π) of a bivariate
    normal with correlation q/(1+q), and E[zΦ(z)φ(z)] = q/(2π(1+q)√(1+2q)) by completing the square and Stein
    once more (docs/theorems/F5.md).
    Assumptions: exact (erf) GELU. Provenance: our statement (an independent certificate of the quadrature in
    :func:`gaussian_phi2`). Domain: q ≥ 0 (float, numpy array or mpmath number).
    """
    q = _nonneg("q", q)
    if _is_mp(q):
        return (q / 4 + q * mpmath.asin(q / (1 + q)) / (2 * mpmath.pi)
                + q**2 / (mpmath.pi * (1 + q) * mpmath.sqrt(1 + 2 * q)))
    q = as_float_array("q", q) if _is_array(q) else float(q)
    return q / 4 + q * np.arcsin(q / (1 + q)) / (2 * np.pi) + q**2 / (np.pi * (1 + q) * np.sqrt(1 + 2 * q))


def _phi_power_moment(q, activation: str, power: int):
    activation = require_choice("activation", activation, ACTIVATIONS)
    q = _nonneg("q", q)
    if activation == "relu":  # E[max(z,0)^p] = ½ E[z^p]: E z² = q, E z⁴ = 3q²
        return q / 2 if power == 2 else 3 * q**2 / 2
    if _is_mp(q):
        if q == 0:
            return mpmath.mpf(0)
        s = mpmath.sqrt(q)
        return mpmath.quad(lambda t: (s * t * mpmath.ncdf(s * t)) ** power * mpmath.npdf(t),
                           [-mpmath.inf, 0, mpmath.inf])
    if _is_array(q):
        q = as_float_array("q", q)
        if power == 2:  # the closed form, certified equal to the quadrature below to ~1e-15 in the tests
            return gelu_phi2_closed_form(q)
        return np.vectorize(lambda v: _phi_power_moment(float(v), activation, power), otypes=[float])(q)
    q = float(q)
    if q == 0:
        return 0.0
    s = math.sqrt(q)

    def integrand(t):
        return _gelu(s * t) ** power * math.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)

    lo = integrate.quad(integrand, -np.inf, 0.0, epsabs=0.0, epsrel=QUAD_EPSREL, limit=200)[0]
    hi = integrate.quad(integrand, 0.0, np.inf, epsabs=0.0, epsrel=QUAD_EPSREL, limit=200)[0]
    return lo + hi


def gaussian_phi2(q, activation: str = "gelu"):
    """F5 (ingredient) — E[φ(z)²] for z ~ N(0, q): the one-dimensional Gaussian expectation behind E‖F‖².

    Statement: ReLU: q/2 exactly. GELU (exact erf form zΦ(z)): by quadrature — scipy.integrate.quad for a float,
    ``mpmath.quad`` at the working precision for an mpmath number; for a numpy array the closed form
    :func:`gelu_phi2_closed_form` (certified equal). E[GELU(z)²] at q = 1 is 0.425221482570298674918554416385…
    (all digits: the quadrature agrees with the closed form at 30 and 60 digits).
    Assumptions: none beyond q ≥ 0. Provenance: paper claim K3 (pre-LN growth), our statement.
    Domain: q ≥ 0, activation ∈ {"relu", "gelu"}; ValueError names the parameter otherwise.
    """
    return _phi_power_moment(q, activation, 2)


def gaussian_phi4(q, activation: str = "gelu"):
    """F5 (ingredient) — E[φ(z)⁴] for z ~ N(0, q): gives Var φ(z)², the spread of ‖h‖² in a random MLP layer.

    Statement: ReLU: 3q²/2 exactly; GELU by quadrature as in :func:`gaussian_phi2`.
    Provenance: our statement. Domain: q ≥ 0, activation ∈ {"relu", "gelu"}.
    """
    return _phi_power_moment(q, activation, 4)


# ---- the branch's second moment ----------------------------------------------------------------------------------
def mlp_output_second_moment(d: int, hidden: int, w1_var, w2_var, u_sq, activation: str = "gelu",
                             b1_var=0.0, b2_var=0.0, phi2=gaussian_phi2):
    """F5 — E‖F(u)‖² for a Gaussian MLP F(u) = φ(u W₁ + b₁) W₂ + b₂ at a fixed input u with ‖u‖² = u_sq.

    Statement: E‖F(u)‖² = d·(m·w2_var·E[φ(z)²] + b2_var), z ~ N(0, q), q = w1_var·u_sq + b1_var, m = hidden.
    Proof: z_j = u·W₁[:, j] + b₁_j are iid N(0, q); F_c = Σ_j φ(z_j) W₂[j, c] + b₂_c with W₂, b₂ independent,
    mean zero, so all cross terms vanish and E F_c² = w2_var·Σ_j E φ(z_j)² + b2_var. Exact at every width.
    For a norm output u = N(x) with β = 0 and ε = 0, u_sq = γ²·d for every x (N1 with equality), so the moment
    does not depend on x at all. Example: d = 64, m = 256, w1_var = 1/64, w2_var = 1/256, GELU, u_sq = 64:
    64·0.425221… = 27.2142.
    Assumptions: W₁, b₁, W₂, b₂ independent with iid entries of the stated variances (W₂, b₂ mean zero).
    Provenance: paper claim K3, our statement. Domain: d ≥ 2, hidden ≥ 1, variances ≥ 0, u_sq ≥ 0 (scalar or
    array; arrays are evaluated elementwise). ``phi2`` is injectable (meta-tests pass a wrong one).
    """
    d = require_width("d", d)
    hidden = require_int("hidden", hidden, 1)
    w1_var, w2_var = _nonneg("w1_var", w1_var), _nonneg("w2_var", w2_var)
    b1_var, b2_var = _nonneg("b1_var", b1_var), _nonneg("b2_var", b2_var)
    u_sq = _nonneg("u_sq", u_sq)
    q = w1_var * u_sq + b1_var
    return d * (hidden * w2_var * phi2(q, activation) + b2_var)


def attention_output_second_moment(d: int, wv_var, wo_var, mixed_sq, bo_var=0.0):
    """F5 — E‖F_i‖² for softmax attention F = P U W_V W_O + b_O with Gaussian W_V, W_O, given the probabilities.

    Statement: E[‖F_i‖² | U, P] = d²·wv_var·wo_var·mixed_sq + d·bo_var, where mixed_sq = (1/H) Σ_H ‖(P^H U)_i‖²
    (H heads; P^H the head's probabilities). One token: P = 1, mixed_sq = ‖u‖². Zoo scaling wv_var = w²/d,
    wo_var = w²·out²/d gives w⁴·out²·mixed_sq + d·bo_var.
    Proof: head H's slice of h_i is (P^H U)_i W_V^H, with d_h = d/H iid columns, so E‖h_i‖² = wv_var·d_h·Σ_H
    ‖(P^H U)_i‖² = wv_var·d·mixed_sq; then E‖h_i W_O + b_O‖² = d·(wo_var·‖h_i‖² + bo_var) as for the MLP.
    The probabilities depend on W_Q, W_K only, which are independent of W_V, W_O.
    Assumptions: W_V, W_O, b_O independent of U and of (W_Q, W_K), iid entries, mean zero.
    Provenance: paper claim K3, our statement; the uniform case is the setting of Xiong et al. 2020 (neighbour).
    Domain: d ≥ 2, variances ≥ 0, mixed_sq ≥ 0 (scalar or array).
    """
    d = require_width("d", d)
    wv_var, wo_var, bo_var = _nonneg("wv_var", wv_var), _nonneg("wo_var", wo_var), _nonneg("bo_var", bo_var)
    mixed_sq = _nonneg("mixed_sq", mixed_sq)
    return d * d * wv_var * wo_var * mixed_sq + d * bo_var


def uniform_attention_mixed_sq(row_sq, n_attended: int):
    """F5 — E‖(P U)_i‖² under uniform attention over ``n_attended`` tokens with independent, mean-zero rows.

    Statement: if u_1, …, u_n are independent with E u_j = 0 and E‖u_j‖² = row_sq, uniform probabilities
    1/n_i over n_i tokens give E‖(1/n_i) Σ_j u_j‖² = row_sq/n_i (n_i = n bidirectional, i + 1 for causal row i).
    Holds for the first step (independent inputs; LayerNorm with β = 0 is odd, so E u_j = 0 whenever the
    centred input is sign-symmetric; for RMSNorm it needs mean-zero inputs). Later steps correlate the tokens
    (they share weights), so it is not a recursion.
    Provenance: neighbour: Xiong et al. 2020 (zero-initialised Q, K ⇒ uniform attention), our statement.
    Domain: row_sq ≥ 0, n_attended ≥ 1.
    """
    row_sq = _nonneg("row_sq", row_sq)
    n_attended = require_int("n_attended", n_attended, 1)
    return row_sq / n_attended


# ---- ρ: the expected normalised fraction of a norm's row statistic -------------------------------------------------
def chi2_rho(a, d: int, eps, norm: str = "layer"):
    """F5 — ρ = E[σ²/(σ² + ε)] for a Gaussian row N(0, a·I_d) through a norm layer (the peri/post factor).

    Statement: a row F ~ N(0, a·I_d) has row statistic σ² (LayerNorm: mean((F−F̄)²); RMSNorm: mean(F²)) with
    d·σ² = a·χ²_ν, ν = d − 1 (layer) or d (rms). Then ‖N(F)‖² = γ²·d·σ²/(σ²+ε) (β = 0) and
        ρ = E[σ²/(σ²+ε)] = 1 − x·eˣ·E_{ν/2}(x),   x = d·ε/(2a),
    with E_s the generalised exponential integral (from 1/(aX+c) = ∫₀^∞ e^{−t(aX+c)} dt and the χ² Laplace
    transform). ε = 0 gives ρ = 1 exactly, whatever a > 0: the weight scale drops out. For small outputs
    (a ≪ dε) ρ ≈ ν·a/(d·ε) → 0.
    Evaluation: mpmath numbers use the closed form at the working precision; floats and arrays the trapezoid
    rule in log X over the χ²_ν density (certified against the closed form in the tests).
    Assumptions: the row is exactly Gaussian with iid entries — true for F = h W + b given h, with W, b
    Gaussian (a = w_var‖h‖² + b_var). Provenance: paper claim K2 (peri-LN), our statement.
    Domain: a ≥ 0 (a > 0 when ε = 0), d ≥ 2, ε ≥ 0, norm ∈ {"layer", "rms"}; a may be an array.
    """
    d = require_width("d", d)
    norm = require_choice("norm", norm, NORMS)
    eps = require_nonnegative("eps", eps)
    a = _positive_arg("a", a) if eps == 0 else _nonneg("a", a)
    nu = _nu(d, norm)
    if _is_mp(a, eps):
        a, eps = mpmath.mpf(a), mpmath.mpf(eps)
        if eps == 0:
            return mpmath.mpf(1)
        if a == 0:
            return mpmath.mpf(0)
        x = d * eps / (2 * a)
        # x·eˣ·E_s(x) cancels catastrophically inside mpmath for large s (≈ 10^15 at s = 128 with 30 digits), so
        # it is evaluated on a precision ladder until two rungs agree (see _precision_ladder).
        return 1 - _precision_ladder(lambda: x * mpmath.exp(x) * mpmath.expint(mpmath.mpf(nu) / 2, x))
    if eps == 0:
        return np.ones_like(a, dtype=float) if _is_array(a) else 1.0
    a_arr = as_float_array("a", a)
    c = d * float(eps)
    out = chi2_expect(lambda X: (a_arr[..., None] * X) / (a_arr[..., None] * X + c), nu)
    return out if _is_array(a) else float(out)


def _precision_ladder(evaluate, extra: int = 20, rungs: int = 8):
    """Evaluate an mpmath expression at working precision dps + extra·2^k (k = 0, 1, …) until two successive
    rungs agree to 10^−(dps+3) relative; return it rounded to the caller's precision. Raises ArithmeticError if
    no two rungs agree (never seen: 8 rungs reach > 5000 digits)."""
    dps = mpmath.mp.dps
    previous = None
    for k in range(rungs):
        with mpmath.workdps(dps + extra * 2**k):
            value = evaluate()
            if previous is not None and abs(value - previous) <= mpmath.mpf(10) ** (-dps - 3) * max(1, abs(value)):
                return +value
            previous = value
    raise ArithmeticError("precision ladder did not converge")


def noncentral_chi2_rho(a, signal, d: int, eps, norm: str = "layer"):
    """F5 — ρ = E[σ²/(σ²+ε)] for a row x + ξ, ξ ~ N(0, a·I_d), x fixed (the post-LN factor).

    Statement: with s = ‖P x‖² (P the centring projector for LayerNorm, the identity for RMSNorm; ``signal``),
    d·σ² = a·χ'²_ν(λ), a noncentral chi-square with ν = d − 1 (layer) / d (rms) and λ = s/a. Then
        ρ = 1 − ∫₀^∞ e^{−w} (1 + w/x)^{−ν/2} exp(−(λ/2)·(w/x)/(1 + w/x)) dw,   x = d·ε/(2a),
    from the noncentral Laplace transform. signal = 0 reduces to :func:`chi2_rho`. In a post step at
    initialisation y = x_k + Δt F(x_k) with F's row N(0, a_F I) given h, so a = Δt²·a_F and ρ is exact
    conditionally on (x_k, h); E‖x_{k+1}‖² = γ²·d·E[ρ].
    Evaluation: mpmath numbers by ``mpmath.quad`` of the integral above; floats/arrays by the trapezoid rule
    in log w on a per-row grid (:func:`_noncentral_rho_trapezoid`), certified against mpmath in the tests.
    Assumptions: ξ Gaussian with iid entries, independent of x. Provenance: paper claim K1 (post-LN), our
    statement. Domain: a > 0 (arrays allowed), signal ≥ 0, d ≥ 2, ε ≥ 0, norm ∈ {"layer", "rms"}.
    """
    d = require_width("d", d)
    norm = require_choice("norm", norm, NORMS)
    eps = require_nonnegative("eps", eps)
    a = _positive_arg("a", a)
    signal = _nonneg("signal", signal)
    nu = _nu(d, norm)
    if _is_mp(a, signal, eps):
        a, signal, eps = mpmath.mpf(a), mpmath.mpf(signal), mpmath.mpf(eps)
        if eps == 0:
            return mpmath.mpf(1)
        x = d * eps / (2 * a)
        lam = signal / a
        s = mpmath.mpf(nu) / 2

        def integrand(w):
            r = w / x
            return mpmath.exp(-w) * (1 + r) ** (-s) * mpmath.exp(-(lam / 2) * r / (1 + r))

        return 1 - mpmath.quad(integrand, [0, x / (1 + lam + s), x, mpmath.inf])
    if eps == 0:
        shape = np.broadcast(np.asarray(a), np.asarray(signal)).shape
        return np.ones(shape) if (_is_array(a) or _is_array(signal)) else 1.0
    a_arr, s_arr = np.broadcast_arrays(as_float_array("a", a), as_float_array("signal", signal))
    flat_a, flat_s = a_arr.ravel(), s_arr.ravel()
    out = np.empty(flat_a.shape)
    for lo in range(0, flat_a.size, 4096):  # bounded temporaries: 4096 rows × a few hundred nodes
        out[lo:lo + 4096] = _noncentral_rho_trapezoid(flat_a[lo:lo + 4096], flat_s[lo:lo + 4096], d * float(eps),
                                                      nu / 2.0)
    out = out.reshape(a_arr.shape)
    return out if (_is_array(a) or _is_array(signal)) else float(out)


def _noncentral_rho_trapezoid(a: np.ndarray, signal: np.ndarray, c: float, s: float, h: float = LOG_STEP):
    """ρ = ∫₀^∞ e^{−w}[1 − (1+w/x)^{−s} e^{−(λ/2) r/(1+r)}] dw, r = w/x, by the trapezoid rule in t = log w.

    The bracket rises from 0 to 1 around w ≈ κ = x/(1 + s + λ/2); near w → 0 the integrand (in t) is
    ≈ w²/κ, so the grid starts where that is < 1e-18 and ends at w = 45 (e^{−45} ≈ 3e-20). Each row gets its
    own grid with spacing ≤ h (a shared node count keeps it one array computation).
    """
    x = c / (2.0 * a)
    lam = signal / a
    kappa = x / (1.0 + s + lam / 2.0)
    t_lo = np.log(1e-9 * np.sqrt(kappa)) - 1.0
    t_hi = np.full_like(t_lo, math.log(45.0))
    t_lo = np.minimum(t_lo, t_hi - 1.0)
    n = int(math.ceil(float(np.max(t_hi - t_lo)) / h))
    frac = np.linspace(0.0, 1.0, n + 1)
    t = t_lo[..., None] + (t_hi - t_lo)[..., None] * frac  # (..., n+1)
    w = np.exp(t)
    r = w / x[..., None]
    expo = -s * np.log1p(r) - (lam[..., None] / 2.0) * r / (1.0 + r)
    f = w * np.exp(-w) * -np.expm1(expo)
    step = (t_hi - t_lo) / n
    return step * (f.sum(axis=-1) - 0.5 * (f[..., 0] + f[..., -1]))


def gaussian_row_norm_expect(func, d: int, gamma, eps, input_var, input_mean=0.0, norm: str = "layer"):
    """F5 (ingredient) — E[func(‖N(x)‖²)] for one input row x ~ N(μ·1, s²·I_d) through a norm with β = 0.

    Statement: ‖N(x)‖² = γ²·d·σ²/(σ²+ε) with d·σ² = s²·χ'²_ν(λ): LayerNorm ν = d − 1, λ = 0 (centring removes μ);
    RMSNorm ν = d, λ = d·μ²/s². Evaluated by scipy.integrate.quad over log X. With func = identity
    this is γ²·d·ρ_in (ρ_in = E[σ²/(σ²+ε)]); with func = E‖F(u)‖² it is the first pre-LN step's branch moment.
    Provenance: our statement. Domain: d ≥ 2, ε ≥ 0, s² > 0, μ real, norm ∈ {"layer", "rms"}; ``func`` maps a
    float array to a float array.
    """
    d = require_width("d", d)
    norm = require_choice("norm", norm, NORMS)
    gamma = require_real("gamma", gamma)
    eps = float(require_nonnegative("eps", eps))
    s2 = float(_positive_arg("input_var", input_var))
    mu = float(require_real("input_mean", input_mean))
    nu = _nu(d, norm)
    lam = 0.0 if norm == "layer" else d * mu * mu / s2
    g2d = float(gamma) ** 2 * d
    if eps == 0:
        return float(np.asarray(func(np.array([g2d])), dtype=float)[0])
    law = stats.chi2(nu) if lam == 0 else stats.ncx2(nu, lam)

    def integrand(t):  # X = e^t, the row statistic is σ² = s²X/d
        sig2 = s2 * math.exp(t) / d
        value = float(np.asarray(func(np.array([g2d * sig2 / (sig2 + eps)])), dtype=float)[0])
        return value * law.pdf(math.exp(t)) * math.exp(t)

    lo, hi = math.log(law.ppf(CHI2_TAIL)), math.log(law.isf(CHI2_TAIL))
    mid = math.log(law.mean())
    return (integrate.quad(integrand, lo, mid, epsabs=0.0, epsrel=QUAD_EPSREL, limit=200)[0]
            + integrate.quad(integrand, mid, hi, epsabs=0.0, epsrel=QUAD_EPSREL, limit=200)[0])


# ---- unconditional ρ for the output of a random branch ----------------------------------------------------------
def mlp_output_rho(d: int, hidden: int, w1_var, w2_var, u_sq, eps, activation: str = "gelu", b1_var=0.0,
                   b2_var=0.0, norm: str = "layer", rho=chi2_rho, phi2=gaussian_phi2, phi4=gaussian_phi4,
                   method: str = "auto"):
    """F5 — ρ = E[σ_F²/(σ_F²+ε)] for F = φ(u W₁ + b₁) W₂ + b₂ at init, u fixed with ‖u‖² = u_sq.

    Statement: given h = φ(u W₁ + b₁), F's row is N(0, a·I), a = w2_var·‖h‖² + b2_var, so ρ = E_h[ρ_χ²(a)] with
    ρ_χ² = :func:`chi2_rho`. ‖h‖² = Σ_j φ(z_j)², z_j iid N(0, q), q = w1_var·u_sq + b1_var.
    - ReLU (exact): ‖h‖² = q·χ²_N with N ~ Binomial(m, 1/2) the number of active units, so ρ is a binomial
      mixture of one-dimensional chi-square expectations (log-trapezoid rules, tail mass < 1e-18 dropped).
    - GELU (approximate): second-order delta method in a, ρ ≈ ρ_χ²(ā) + ½ρ_χ²''(ā)·Var a, ā = E a =
      m·w2_var·E φ² + b2_var, Var a = m·w2_var²·(E φ⁴ − (E φ²)²). The remainder is O(1/m) relative to the
      second-order term; :func:`mlp_output_rho_allowance` returns a stated bound on it.
    At ε = 0 both give ρ = 1 for every weight scale (the peri increment is weight-free) — except that a
    bias-free ReLU layer has F ≡ 0 with probability 2^{−m}, where N_out(F) = 0 in the ε → 0 limit (0/0 at
    ε = 0), so there ρ = 1 − 2^{−m} (see :func:`mlp_output_rho_allowance`).
    Assumptions: as :func:`mlp_output_second_moment`, plus Gaussian W₂, b₂. Provenance: paper claim K2 (peri-LN),
    our statement. Domain: as :func:`mlp_output_second_moment`, ε ≥ 0; ``rho``, ``phi2``, ``phi4`` injectable;
    ``method`` ∈ {"auto" (exact for ReLU, delta for GELU), "exact" (ReLU only), "delta"}.
    """
    d = require_width("d", d)
    hidden = require_int("hidden", hidden, 1)
    activation = require_choice("activation", activation, ACTIVATIONS)
    method = _rho_method(method, activation)
    w1_var, w2_var = float(_nonneg("w1_var", w1_var)), float(_positive_arg("w2_var", w2_var))
    b1_var, b2_var = float(_nonneg("b1_var", b1_var)), float(_nonneg("b2_var", b2_var))
    u_sq, eps = float(_nonneg("u_sq", u_sq)), float(require_nonnegative("eps", eps))
    q = w1_var * u_sq + b1_var
    if q == 0 and b2_var == 0:
        raise ValueError("u_sq must make the pre-activation variance q = w1_var·u_sq + b1_var > 0 when b2_var = 0 "
                         "(otherwise F ≡ 0 and ρ is 0/0)")
    if method == "exact":
        ns = np.arange(hidden + 1)
        pmf = stats.binom.pmf(ns, hidden, 0.5)
        total = 0.0
        for n_act, p in zip(ns, pmf):
            if p < BINOMIAL_TAIL:
                continue
            if n_act == 0 and b2_var == 0:
                continue  # F ≡ 0: the norm outputs 0, contributes ρ = 0
            total += p * chi2_expect(lambda Y: np.asarray(rho(w2_var * q * Y + b2_var, d, eps, norm)), int(n_act))
        return float(total)
    mean_a, var_a = _gelu_a_moments(hidden, w2_var, q, b2_var, activation, phi2, phi4)
    f0 = float(rho(mean_a, d, eps, norm))
    return f0 + 0.5 * _second_derivative(lambda a: float(rho(a, d, eps, norm)), mean_a) * var_a


def _rho_method(method: str, activation: str) -> str:
    method = require_choice("method", method, ("auto", "exact", "delta"))
    if method == "exact" and activation != "relu":
        raise ValueError("method='exact' needs activation='relu' (the GELU ‖h‖² law has no closed form here)")
    return ("exact" if activation == "relu" else "delta") if method == "auto" else method


def mlp_output_rho_allowance(d: int, hidden: int, w1_var, w2_var, u_sq, eps, activation: str = "gelu",
                             b1_var=0.0, b2_var=0.0, norm: str = "layer", rho=chi2_rho, phi2=gaussian_phi2,
                             phi4=gaussian_phi4, method: str = "auto") -> float:
    """F5 — what a Monte-Carlo estimate of ρ may differ from :func:`mlp_output_rho` by, besides sampling noise.

    Two parts. (1) GELU: a bound on the delta method's remainder, |½ρ''(ā)·Var a|. Why: the remainder is
    E[(a−ā)³]ρ'''/6 + O(E(a−ā)⁴ρ''''), and both the third cumulant of a = w2_var‖h‖² + b2_var and its fourth
    central moment are O(1/m) relative to (Var a)·ā, while |ρ^{(k)}(ā)|·ā ≲ k·|ρ^{(k−1)}(ā)|; so the remainder is
    O(1/m) times the second-order term itself, and taking the whole term is conservative for m ≥ 16 (the tests
    check it on ReLU, where the exact value is known). (2) A bias-free ReLU layer (b1_var = b2_var = 0) is
    entirely inactive with probability exactly 2^{−m} (the m pre-activations are iid symmetric given u); then
    F ≡ 0 and N_out(F) = 0 (0/0 at ε = 0, where the ε → 0 limit 0 is used). A run of I ≪ 2^m rows never
    samples that event, so its share of ρ, at most 2^{−m}, is allowed for. Plus 1e-12 for the quadratures.
    Provenance: our statement. Domain: as :func:`mlp_output_rho` (same ``method``).
    """
    activation = require_choice("activation", activation, ACTIVATIONS)
    method = _rho_method(method, activation)
    hidden = require_int("hidden", hidden, 1)
    b1_var, b2_var = float(_nonneg("b1_var", b1_var)), float(_nonneg("b2_var", b2_var))
    quad = 1e-12  # quadrature error of ρ, certified in the tests
    quad += 0.5**hidden if activation == "relu" and b1_var == 0 and b2_var == 0 else 0.0
    if method == "exact" or float(require_nonnegative("eps", eps)) == 0:
        return quad
    q = float(_nonneg("w1_var", w1_var)) * float(_nonneg("u_sq", u_sq)) + b1_var
    mean_a, var_a = _gelu_a_moments(hidden, float(_positive_arg("w2_var", w2_var)), q, b2_var, activation, phi2, phi4)
    return abs(0.5 * _second_derivative(lambda a: float(rho(a, d, eps, norm)), mean_a) * var_a) + quad


def _gelu_a_moments(hidden, w2_var, q, b2_var, activation, phi2, phi4):
    e2, e4 = float(phi2(q, activation)), float(phi4(q, activation))
    return hidden * w2_var * e2 + b2_var, hidden * w2_var**2 * max(e4 - e2 * e2, 0.0)


def _second_derivative(f, x: float) -> float:
    # Central difference with h = 1e-3·x: truncation O(h²)·f'''' ~ 1e-6 relative, round-off ~1e-16/1e-6 = 1e-10
    # relative; the result only enters a term that is itself O(1/m) of ρ.
    h = 1e-3 * x
    return (f(x + h) - 2 * f(x) + f(x - h)) / (h * h)


def attention_output_rho_single_token(d: int, wv_var, wo_var, u_sq, eps, bo_var=0.0, norm: str = "layer",
                                      rho=chi2_rho) -> float:
    """F5 — ρ for one-token attention at init, exact: F = u W_V W_O + b_O (the probability is 1).

    Statement: v = u W_V has iid N(0, wv_var·u_sq) entries, so ‖v‖² = wv_var·u_sq·χ²_d; given v, F's row is
    N(0, a·I) with a = wo_var·‖v‖² + bo_var. Hence ρ = E_Y[ρ_χ²(wo_var·wv_var·u_sq·Y + bo_var)], Y ~ χ²_d.
    (Heads do not matter with one token: every head's probability is 1.) ε = 0 gives 1.
    Provenance: paper claim K2, our statement. Domain: d ≥ 2, variances ≥ 0 (wo_var, wv_var, u_sq > 0 unless
    bo_var > 0), ε ≥ 0; ``rho`` injectable.
    """
    d = require_width("d", d)
    wv_var, wo_var, bo_var = float(_nonneg("wv_var", wv_var)), float(_nonneg("wo_var", wo_var)), float(
        _nonneg("bo_var", bo_var))
    u_sq, eps = float(_nonneg("u_sq", u_sq)), float(require_nonnegative("eps", eps))
    scale = wo_var * wv_var * u_sq
    if scale == 0 and bo_var == 0:
        raise ValueError("u_sq must be > 0 (with wv_var, wo_var > 0) when bo_var = 0: F ≡ 0 otherwise")
    return float(chi2_expect(lambda Y: np.asarray(rho(scale * Y + bo_var, d, eps, norm)), d))


# ---- the recursions --------------------------------------------------------------------------------------------------
def _increments(dt, per_step, name: str):
    per_step = _nonneg(name, per_step)
    arr = as_float_array("per_step", per_step)
    if _is_real_scalar_or_mp(dt):
        if arr.ndim == 0:
            raise ValueError(f"dt must be a sequence (one Δt_k per step) when {name} is a scalar")
        dts = step_sizes(dt, arr.shape[-1])
    else:
        n = len(dt)
        dts = step_sizes(dt, n)
        if arr.ndim and arr.shape[-1] != n:
            raise ValueError(f"{name} must have one entry per step ({n}) on its last axis, got shape {arr.shape}")
    return dts, arr


def _is_real_scalar_or_mp(v) -> bool:
    return (isinstance(v, numbers.Real) and not isinstance(v, bool)) or isinstance(v, mpmath.mpf)


def _accumulate(m0, dts, inc):
    m0 = np.asarray(_nonneg("m0", m0), dtype=float)
    steps = dts**2 * inc  # (..., K)
    steps = np.broadcast_to(steps, np.broadcast_shapes(steps.shape, (*m0.shape, dts.shape[0])))
    zero = np.zeros((*steps.shape[:-1], 1))
    return m0[..., None] + np.concatenate([zero, np.cumsum(steps, axis=-1)], axis=-1)


def pre_second_moments(m0, dt, branch_moments):
    """F5 — pre-LN second-moment recursion: E‖x_{k+1}‖² = E‖x_k‖² + Δt_k²·E‖F_k(N(x_k))‖² (per row).

    Statement: returns [m_0, …, m_K] with m_{k+1} = m_k + Δt_k²·B_k, B_k = ``branch_moments[..., k]``.
    Proof: ‖x + Δt F‖² = ‖x‖² + 2Δt⟨x, F⟩ + Δt²‖F‖², and E[⟨x_k, F_k⟩] = 0 because step k's output map (W, b) is
    mean-zero and independent of x_k and of its input h (independence across layers). Exact at every width;
    with β = 0 and ε = 0 the branch moment B_k is the same for every input (‖N(x)‖² = γ²d), giving the closed
    form m_K = m_0 + B·Σ Δt_k². With ε > 0, B_k depends on the law of x_k through ‖N(x_k)‖² (see
    :func:`gaussian_row_norm_expect` for the first step).
    Assumptions: per-step Δt_k > 0; output maps mean-zero, independent of the past. Provenance: paper claim K3
    (pre-LN growth), our statement. Domain: m0 ≥ 0 (scalar or array of shape S), dt scalar or sequence of K
    positive numbers, branch_moments ≥ 0 of shape (*S, K) or (K,) (a scalar needs a dt sequence). Returns
    shape (*S, K + 1).
    """
    dts, inc = _increments(dt, branch_moments, "branch_moments")
    return _accumulate(m0, dts, inc)


def peri_second_moments(m0, dt, gamma, d: int, rho):
    """F5 — peri-LN (β_out = 0) second-moment recursion: E‖x_{k+1}‖² = E‖x_k‖² + Δt_k²·γ²·d·ρ_k (per row).

    Statement: returns [m_0, …, m_K] with m_{k+1} = m_k + Δt_k²·γ²·d·ρ_k, ρ_k = E[σ_F²/(σ_F²+ε_out)] over step k's
    branch-output row statistic (``rho`` scalar or per step). At ε_out = 0, ρ_k = 1 exactly: the growth is
    E‖x_k‖² = E‖x_0‖² + γ²d·Σ Δt_j², independent of every weight scale; at ε_out > 0 the weights enter only
    through ρ_k (:func:`chi2_rho`, :func:`mlp_output_rho`).
    Proof: ‖N_out(F)‖² = γ²d·σ_F²/(σ_F²+ε) (N1 equality); the cross term E⟨x_k, N_out(F)⟩ vanishes because
    N_out is odd (β = 0) and F's output map (W, b) has a sign-symmetric law independent of x_k and h.
    Provenance: paper claim K2 (peri-LN: second moments grow at most quadratically in t), our statement.
    Domain: m0 ≥ 0, dt > 0 (scalar or sequence), γ real, d ≥ 2, 0 ≤ ρ ≤ 1 (scalar or (..., K)).
    """
    gamma = require_real("gamma", gamma)
    d = require_width("d", d)
    rho_arr = np.asarray(_nonneg("rho", rho), dtype=float)
    if np.any(rho_arr > 1 + 1e-12):  # ρ is a mean of fractions in [0, 1]; 1e-12 admits quadrature round-off
        raise ValueError(f"rho must be in [0, 1], got max {rho_arr.max()!r}")
    dts, inc = _increments(dt, rho_arr, "rho")
    return _accumulate(m0, dts, float(gamma) ** 2 * d * inc)


def post_second_moment(gamma, d: int, rho):
    """F5 — post-LN (β = 0): E‖x_k‖² = γ²·d·ρ_k for every k ≥ 1, ρ_k = E[σ²/(σ²+ε)] of the residual sum's row.

    Statement: ‖N(y)‖² = γ²·d·σ_y²/(σ_y²+ε) for every row (N1 with equality), so the expectation is γ²dρ_k;
    at ε = 0 every row has ‖x_k‖² = γ²·d exactly, whatever the weights and Δt. At ε > 0, y = x_k + Δt F(x_k)
    and ρ_k is computable conditionally on (x_k, h) by :func:`noncentral_chi2_rho` (a = Δt²·a_F); small branch
    outputs and a small γ keep ρ well below 1 at every depth.
    Provenance: paper claim K1 (post-LN is bounded), our statement. Domain: γ real, d ≥ 2, 0 ≤ ρ ≤ 1 (scalar
    or array).
    """
    gamma = require_real("gamma", gamma)
    d = require_width("d", d)
    rho = _nonneg("rho", rho)
    if np.any(as_float_array("rho", rho) > 1 + 1e-12):  # quadrature round-off allowance, as above
        raise ValueError(f"rho must be in [0, 1], got {rho!r}")
    return gamma**2 * d * rho
