"""B — backward stability: step-Jacobian bounds, the gradient-norm envelope, scale invariance, init moments.

Pure mathematics (numpy, mpmath): functions of measured or closed-form quantities (the sublayer Jacobian
norm ‖J_F‖₂, the norm layers' input scales s, gains, Δt) that return bounds, exact scalings or mean-field
recursions. The numerical side (exact Jacobians with ``torch.func``, the block zoo) lives in
``verify/engine/jacobians.py`` and ``verify/checks/backward.py``; proofs are in ``docs/theorems/B.md``.

Conventions. A hidden state X ∈ R^{n×d} is vectorised row by row to R^{nd}; step k maps X_k to X_{k+1} and
A_k = ∂X_{k+1}/∂X_k is an nd×nd matrix; p_k = ∂loss/∂X_k obeys p_k = A_kᵀ p_{k+1}. All matrix norms are
spectral norms. The one fact about norm layers everything rests on (N2, see ``theory.norms``): a row-wise
LayerNorm with gains γ has ‖∂N/∂z‖₂ ≤ ‖γ‖_∞ / s with s = √(σ² + ε) and σ² the *centred* row variance
(RMSNorm: s = r = √(mean z² + ε)), so the whole norm layer has ‖J_N(X)‖₂ ≤ ‖γ‖_∞ / min_i s_i(X).

Bound functions accept scalars or numpy arrays (broadcast together) and return a float for scalar input,
an ndarray otherwise. Outside the domain they raise ``ValueError`` whose message starts with the parameter.
"""
from __future__ import annotations

import mpmath
import numpy as np

from theory._domain import (
    as_float_array,
    require_choice,
    require_int,
    require_positive,
    require_real,
    step_sizes,
)

__all__ = [
    "deepnorm_step_norm_bound",
    "euler_radial_derivative",
    "gaussian_activation_moments",
    "gradient_envelope",
    "gradient_gain_envelope",
    "homogeneous_gradient_scale",
    "jacobian_moment_recursion",
    "lns_step_deviation_bound",
    "mp_to_float",
    "none_step_deviation_bound",
    "norm_jacobian_norm_bound",
    "norm_jacobian_scale",
    "outnorm_step_deviation_bound",
    "peri_step_deviation_bound",
    "post_step_norm_bound",
    "pre_step_deviation_bound",
    "step_bound_weight_growth_factor",
]

NORM_KINDS = ("layer", "rms")
RESIDUAL_RULES = ("pre", "peri", "none", "outnorm", "lns")  # ‖A − I‖ bounds
NORMALISED_RULES = ("post", "deepnorm")  # ‖A‖ bounds


# ---- argument handling ----------------------------------------------------------------------------------------
def _array(name: str, value, *, positive: bool) -> np.ndarray:
    """A finite real array (or scalar) that is > 0 (``positive``) or >= 0; ValueError naming ``name``."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a real number or array, got {value!r}")
    try:
        arr = as_float_array(name, value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a real number or array, got {value!r}") from exc
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and not np.all(arr > 0):
        raise ValueError(f"{name} must be > 0, got min {arr.min()!r}")
    if not positive and not np.all(arr >= 0):
        raise ValueError(f"{name} must be >= 0, got min {arr.min()!r}")
    return arr


def _out(x: np.ndarray):
    return float(x) if np.ndim(x) == 0 else x


# ---- N2, as used by B2 -----------------------------------------------------------------------------------------
def norm_jacobian_scale(z, eps: float, norm: str = "layer") -> np.ndarray:
    """The scale s_i(z) that bounds row i's norm-layer Jacobian: ‖∂N(z_i)/∂z_i‖₂ ≤ ‖γ‖_∞ / s_i (N2).

    LayerNorm: s_i = √(σ_i² + ε) with σ_i² = mean_j (z_ij − μ_i)², the CENTRED variance. A large row mean
    does not shrink the Jacobian: using the raw second moment mean(z²) instead would give a bound that is
    violated by a factor ≈ |μ|/σ (the meta-tests of B2 show exactly this). RMSNorm: s_i = √(mean z_i² + ε).

    ``z``: array of shape (..., d), rows on the last axis, d ≥ 2. Returns shape z.shape[:-1].
    Theorem N2 (used by B2). Provenance: standard fact, our statement. Domain: finite z, ε ≥ 0, and s > 0.
    """
    require_choice("norm", norm, NORM_KINDS)
    require_real("eps", eps)
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    z = as_float_array("z", z)
    if z.ndim < 1 or z.shape[-1] < 2:
        raise ValueError(f"z must have rows of width d >= 2 on its last axis, got shape {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("z contains NaN or inf")
    if norm == "layer":
        c = z - z.mean(axis=-1, keepdims=True)
        m2 = (c * c).mean(axis=-1)
    else:
        m2 = (z * z).mean(axis=-1)
    s = np.sqrt(m2 + eps)
    if not np.all(s > 0):
        raise ValueError("z has a row with zero scale and eps == 0: the norm layer is undefined there")
    return s


def norm_jacobian_norm_bound(gamma_max, s_min):
    """N2 for a whole norm layer: ‖J_N(X)‖₂ ≤ ‖γ‖_∞ / min_i s_i(X) (block-diagonal over rows).

    Tight for scalar γ and d ≥ 3 (the direction orthogonal to 1 and to the centred row attains it).
    Provenance: standard fact, our statement. Domain: gamma_max ≥ 0, s_min > 0.
    """
    g = _array("gamma_max", gamma_max, positive=False)
    s = _array("s_min", s_min, positive=True)
    return _out(g / s)


# ---- B2: per-step bounds ---------------------------------------------------------------------------------------
def pre_step_deviation_bound(dt, jf_norm, gamma_max, s_min):
    """B2 pre: X⁺ = X + Δt F(N(X)) has ‖A − I‖₂ ≤ Δt·‖J_F‖₂·‖γ‖_∞ / min_i s_i(X).

    A − I = Δt·J_F(N(X))·J_N(X) by the chain rule, and ‖J_N(X)‖₂ ≤ ‖γ‖_∞/min_i s_i(X) (N2, centred s).
    ``jf_norm`` is ‖J_F‖₂ at the sublayer input U = N(X). Equality: a linear sublayer whose top right
    singular vector is orthogonal to 1 and to every centred row, scalar γ, d ≥ 3.
    Provenance: paper claim K4, our statement. Domain: dt > 0, jf_norm ≥ 0, gamma_max ≥ 0, s_min > 0.
    """
    dt = _array("dt", dt, positive=True)
    jf = _array("jf_norm", jf_norm, positive=False)
    g = _array("gamma_max", gamma_max, positive=False)
    s = _array("s_min", s_min, positive=True)
    return _out(dt * jf * g / s)


def lns_step_deviation_bound(dt, jf_norm, gamma_max, s_min, block):
    """B2 LayerNorm-Scaling: X⁺ = X + Δt F(N(X)/√ℓ) has ‖A − I‖₂ ≤ Δt‖J_F‖₂‖γ‖_∞ / (√ℓ·min_i s_i(X)).

    The pre bound with the norm's gain scaled by 1/√ℓ; ``block`` is the 1-based block index ℓ.
    Provenance: neighbour: Sun et al. 2025 (LayerNorm-Scaling), our statement. Domain: as pre, block ≥ 1.
    """
    ell = _array("block", block, positive=True)
    if not np.all(ell >= 1) or not np.all(ell == np.round(ell)):
        raise ValueError(f"block must be an integer >= 1 (1-based block index), got {block!r}")
    g = _array("gamma_max", gamma_max, positive=False)
    return pre_step_deviation_bound(dt, jf_norm, g / np.sqrt(ell), s_min)


def peri_step_deviation_bound(dt, jf_norm, gamma_in_max, s_in_min, gamma_out_max, s_f_min):
    """B2 peri: X⁺ = X + Δt N_out(F(N_in(X))) has
    ‖A − I‖₂ ≤ Δt·(‖γ_out‖_∞ / min_i s_i(F))·‖J_F‖₂·(‖γ_in‖_∞ / min_i s_i(X)).

    A − I = Δt·J_Nout(F)·J_F(U)·J_Nin(X), U = N_in(X); ``s_f_min`` is the output norm's scale on the sublayer
    output F(U). With ε_out = 0 the bound is invariant under F → cF (B4): ‖J_F‖ and s(F) both scale by c.
    Provenance: paper claims K2/K4, our statement. Domain: dt > 0, jf_norm, gains ≥ 0, scales > 0.
    """
    dt = _array("dt", dt, positive=True)
    jf = _array("jf_norm", jf_norm, positive=False)
    gi = _array("gamma_in_max", gamma_in_max, positive=False)
    si = _array("s_in_min", s_in_min, positive=True)
    go = _array("gamma_out_max", gamma_out_max, positive=False)
    sf = _array("s_f_min", s_f_min, positive=True)
    return _out(dt * (go / sf) * jf * (gi / si))


def outnorm_step_deviation_bound(dt, jf_norm, gamma_out_max, s_f_min):
    """B2 output-norm only: X⁺ = X + Δt N_out(F(X)) has ‖A − I‖₂ ≤ Δt·(‖γ_out‖_∞/min_i s_i(F))·‖J_F‖₂.

    The peri bound without the input norm (J_F at X itself). Provenance: our statement (K5 variants).
    Domain: dt > 0, jf_norm ≥ 0, gamma_out_max ≥ 0, s_f_min > 0.
    """
    dt = _array("dt", dt, positive=True)
    jf = _array("jf_norm", jf_norm, positive=False)
    go = _array("gamma_out_max", gamma_out_max, positive=False)
    sf = _array("s_f_min", s_f_min, positive=True)
    return _out(dt * (go / sf) * jf)


def none_step_deviation_bound(dt, jf_norm):
    """B2 none: X⁺ = X + Δt F(X) has ‖A − I‖₂ = Δt‖J_F(X)‖₂ (an identity, so always attained).

    Provenance: our statement (forward-Euler step). Domain: dt > 0, jf_norm ≥ 0.
    """
    dt = _array("dt", dt, positive=True)
    jf = _array("jf_norm", jf_norm, positive=False)
    return _out(dt * jf)


def post_step_norm_bound(dt, jf_norm, gamma_max, s_y_min):
    """B2 post: X⁺ = N(Y), Y = X + Δt F(X), has ‖A‖₂ ≤ (‖γ‖_∞ / min_i s_i(Y))·(1 + Δt‖J_F(X)‖₂).

    A = J_N(Y)·(I + Δt J_F(X)). A post step is not a perturbation of the identity (J_N kills the directions
    1 and the centred row), so only ‖A‖ is bounded and the gradient envelope has no lower side.
    Provenance: paper claim K4, our statement. Domain: dt > 0, jf_norm ≥ 0, gamma_max ≥ 0, s_y_min > 0.
    """
    dt = _array("dt", dt, positive=True)
    jf = _array("jf_norm", jf_norm, positive=False)
    g = _array("gamma_max", gamma_max, positive=False)
    s = _array("s_y_min", s_y_min, positive=True)
    return _out(g / s * (1.0 + dt * jf))


def deepnorm_step_norm_bound(dt, jf_norm, gamma_max, s_y_min, alpha):
    """B2 DeepNorm: X⁺ = N(αX + Δt F(X)) has ‖A‖₂ ≤ (‖γ‖_∞ / min_i s_i(Y))·(α + Δt‖J_F(X)‖₂), Y = αX + ΔtF.

    Provenance: neighbour: Wang et al. 2022 (DeepNorm), our statement. Domain: as post, alpha > 0.
    """
    dt = _array("dt", dt, positive=True)
    jf = _array("jf_norm", jf_norm, positive=False)
    g = _array("gamma_max", gamma_max, positive=False)
    s = _array("s_y_min", s_y_min, positive=True)
    a = _array("alpha", alpha, positive=True)
    return _out(g / s * (a + dt * jf))


# ---- B3: the gradient-norm envelope ----------------------------------------------------------------------------
def _suffix_products(factors: np.ndarray) -> np.ndarray:
    """out[k] = ∏_{j=k}^{K-1} factors[j] for k = 0..K (out[K] = 1), along axis 0."""
    ones = np.ones((1,) + factors.shape[1:])
    rev = np.cumprod(factors[::-1], axis=0)[::-1]
    return np.concatenate([rev, ones], axis=0)


def gradient_gain_envelope(upper_gains, p_final_norm, lower_gains=None):
    """B3, general steps: if ‖A_jᵀ p‖ ≤ g_j‖p‖ and ‖A_jᵀ p‖ ≥ h_j‖p‖ for every p, then for k = 0..K
    ∏_{j≥k} h_j·‖p_K‖ ≤ ‖p_k‖ ≤ ∏_{j≥k} g_j·‖p_K‖.

    ``upper_gains`` g_j ≥ 0 (shape (K, *batch)), ``lower_gains`` h_j ≥ 0 (same shape; default 0, i.e. no
    lower side, as for post steps), ``p_final_norm`` = ‖p_K‖ (broadcast against *batch). Returns
    ``(lower, upper)``, each of shape (K+1, *batch), entry K equal to ‖p_K‖.
    Provenance: paper claim K4, our statement. Domain: K ≥ 1, gains ≥ 0 and finite, p_final_norm ≥ 0.
    """
    g = _array("upper_gains", upper_gains, positive=False)
    if g.ndim == 0 or g.shape[0] < 1:
        raise ValueError(f"upper_gains must have one entry per step along axis 0, got shape {g.shape}")
    h = np.zeros_like(g) if lower_gains is None else _array("lower_gains", lower_gains, positive=False)
    if h.shape != g.shape:
        raise ValueError(f"lower_gains must have the shape of upper_gains {g.shape}, got {h.shape}")
    p = _array("p_final_norm", p_final_norm, positive=False)
    with np.errstate(over="ignore"):
        return p * _suffix_products(h), p * _suffix_products(g)


def gradient_envelope(a, p_final_norm):
    """B3 two-sided envelope for residual steps with ‖A_j − I‖₂ ≤ a_j (a_j from B2, per-step Δt_j inside):
    ∏_{j≥k}(1 − a_j)·‖p_K‖ ≤ ‖p_k‖ ≤ ∏_{j≥k}(1 + a_j)·‖p_K‖ ≤ exp(Σ_{j≥k} a_j)·‖p_K‖.

    Proof: p_k = A_kᵀ p_{k+1} and ‖A_kᵀ‖ = ‖A_k‖ ≤ 1 + a_k, ‖A_kᵀ p‖ ≥ ‖p‖ − ‖(A_k − I)ᵀp‖ ≥ (1 − a_k)‖p‖;
    induct from k = K; finally 1 + a ≤ eᵃ. The lower side is informative only when every a_j < 1; factors
    with a_j ≥ 1 are replaced by 0 (the trivial, still valid, bound ‖p_k‖ ≥ 0).

    ``a``: shape (K,) or (K, *batch), a_j ≥ 0; ``p_final_norm``: ‖p_K‖ ≥ 0 (broadcast against *batch).
    Returns ``(lower, upper, exp_upper)`` arrays of shape (K+1, *batch) over k = 0..K.
    Provenance: paper claim K4, our statement. Domain: K ≥ 1, a_j ≥ 0 finite, p_final_norm ≥ 0.
    """
    a = _array("a", a, positive=False)
    if a.ndim == 0 or a.shape[0] < 1:
        raise ValueError(f"a must have one entry per step along axis 0, got shape {a.shape}")
    p = _array("p_final_norm", p_final_norm, positive=False)
    lower, upper = gradient_gain_envelope(1.0 + a, p, np.clip(1.0 - a, 0.0, None))
    suffix_sums = np.concatenate([np.cumsum(a[::-1], axis=0)[::-1], np.zeros((1,) + a.shape[1:])], axis=0)
    with np.errstate(over="ignore"):
        exp_upper = p * np.exp(suffix_sums)
    return lower, upper, exp_upper


# ---- B4: scale invariance --------------------------------------------------------------------------------------
def homogeneous_gradient_scale(c, degree: float = 0.0):
    """B4: if L(cW) = c^k L(W) for all c > 0 (positive homogeneity of degree k), then ∇L(cW) = c^{k−1} ∇L(W).

    Peri with ε_out = 0 and a bias-free last map W: N_out(cF) = N_out(F), so the whole network — and any loss
    of its output — is homogeneous of degree 0 in W, and ∇_W scales by 1/c. Provenance: paper claim K2/K4
    (peri gradients stay stable), our statement. Domain: c > 0, degree real.
    """
    c = _array("c", c, positive=True)
    require_real("degree", degree)
    return _out(c ** (float(degree) - 1.0))


def euler_radial_derivative(degree: float, loss_value):
    """B4 (Euler): a loss homogeneous of degree k in W has ⟨∇_W L, W⟩ = k·L(W); for peri (k = 0) it is 0.

    So the gradient of a scale-invariant weight is orthogonal to the weight, and gradient descent can only
    increase ‖W‖ (‖W − η∇‖² = ‖W‖² + η²‖∇‖²). Provenance: our statement. Domain: real degree and loss.
    """
    require_real("degree", degree)
    lv = as_float_array("loss_value", loss_value)
    if not np.all(np.isfinite(lv)):
        raise ValueError(f"loss_value must be finite, got {loss_value!r}")
    return _out(float(degree) * lv)


def step_bound_weight_growth_factor(rule: str, c):
    """B4: how the B2 bound of one step changes when its sublayer's bias-free last map W becomes cW.

    F → cF, so ‖J_F‖ → c‖J_F‖ and (ε_out = 0) s(F) → c·s(F). Hence the deviation bound is multiplied by
    1 for ``peri`` and ``outnorm`` (weight growth cannot destabilise the backward pass) and by c for ``pre``,
    ``lns`` and ``none`` (it can, without limit). Post/DeepNorm bounds are not of this product form (s(Y)
    changes non-homogeneously); asking for them raises ValueError.
    Provenance: paper claims K2/K3/K4, our statement. Domain: rule in the five above, c > 0.
    """
    require_choice("rule", rule, RESIDUAL_RULES)
    c = _array("c", c, positive=True)
    return _out(np.ones_like(c) if rule in ("peri", "outnorm") else c)


# ---- B5: init-time mean-field recursions -----------------------------------------------------------------------
ACTIVATIONS = ("relu", "gelu")


def gaussian_activation_moments(activation: str, q, dps: int = 50, method: str = "closed"):
    """(E φ(h)², E φ'(h)²) for h ~ N(0, q), as mpmath numbers at ``dps`` digits.

    ReLU: (q/2, 1/2). Exact (erf) GELU φ(z) = zΦ(z), φ'(z) = Φ(z) + zϕ(z), in closed form (our derivation,
    Stein's lemma E[t²f(t)] = E[f] + E[f''] and E[Φ(at)²] = 1/4 + arcsin(a²/(1+a²))/(2π)):
        E φ(h)²  = q·[1/4 + arcsin(q/(1+q))/(2π) + q/(π(1+q)√(1+2q))],
        E φ'(h)² = 1/4 + arcsin(q/(1+q))/(2π) + q/(π(1+q)√(1+2q)) + q/(2π(1+2q)^{3/2}).
    At q = 1: 0.4252214825702987…, 0.4558508656492871…  ``method="quad"`` evaluates the same integrals by
    ``mpmath.quad`` (split at 0) instead — the independent cross-check the tests use.
    Provenance: standard Gaussian integrals, our closed form. Domain: activation in ('relu', 'gelu'), q > 0,
    dps ≥ 15, method in ('closed', 'quad').
    """
    require_choice("activation", activation, ACTIVATIONS)
    require_positive("q", q)
    dps = require_int("dps", dps, 15)
    require_choice("method", method, ("closed", "quad"))
    with mpmath.workdps(dps):
        q = mpmath.mpf(q)
        if activation == "relu":
            return q / 2, mpmath.mpf(1) / 2
        if method == "closed":
            base = mpmath.mpf(1) / 4 + mpmath.asin(q / (1 + q)) / (2 * mpmath.pi)
            cross = q / (mpmath.pi * (1 + q) * mpmath.sqrt(1 + 2 * q))
            return q * (base + cross), base + cross + q / (2 * mpmath.pi * (1 + 2 * q) ** mpmath.mpf(1.5))
        sd = mpmath.sqrt(q)

        def gauss(f):
            return mpmath.quad(lambda t: f(sd * t) * mpmath.npdf(t), [-mpmath.inf, 0, mpmath.inf])

        e2 = gauss(lambda z: (z * mpmath.ncdf(z)) ** 2)
        d2 = gauss(lambda z: (mpmath.ncdf(z) + z * mpmath.npdf(z)) ** 2)
        return +e2, +d2


def jacobian_moment_recursion(placement: str, d: int, n_steps: int, dt=1.0, *, weight_scale: float = 1.0,
                              out_scale: float = 1.0, gamma: float = 1.0, gamma_out: float | None = None,
                              activation: str = "relu", c0=None, q0=None, moments=gaussian_activation_moments,
                              dps: int = 50) -> dict:
    """B5: mean-field recursion for the end-to-end Jacobian second moment of an MLP-only stack at init.

    Setting (the zoo's init): LayerNorm with scalar gain γ, β = 0, ε = 0; bias-free MLP steps
    F(u) = φ(u W₁) W₂, W₁ ~ N(0, ws²/d), W₂ ~ N(0, ws²·out²/m) (the hidden width m drops out); Δt_k per step;
    input rows with E‖x₀‖² = q0 (default d) and centred E‖x₀ − μ1‖² = c0 (default d − 1). The quantity is
    Q_{l→K} = E‖J_{l→K}ᵀ g‖² / E‖g‖² = E‖∂X_K/∂X_l‖_F²/(nd) for an isotropic probe g (per row).

    Forward (exact in expectation at every width, by the sign symmetry of W₂): C_k = E‖x_k − μ_k 1‖²,
      pre:  C_{k+1} = C_k + δ_k,  δ_k = Δt_k² ws² out² (d−1) E φ(h)²,  h ~ N(0, ws² γ²);
      peri: C_{k+1} = C_k + δ_k,  δ_k = Δt_k² γ_out² d                 (N_out(F) is centred, ‖·‖² = γ_out² d);
      post: C_{k+1} = γ² d; the pre-norm sum Y_k has C^Y_k = C_k + Δt_k² ws² out² (d−1) E φ(h_k)²,
            h_k ~ N(0, ws² q_k/d), q_0 = q0, q_k = γ² d for k ≥ 1.
    Backward (mean field, d → ∞: p_{k+1} independent of step k's weights, 1/s² replaced by d/C):
      pre:  χ_k = 1 + κ δ_k/C_k,   peri: χ_k = 1 + κ δ_k/C_k,   κ = ws²γ_in² E φ'(h)² / E φ(h)²;
      post: χ_k = γ² d (1 + Δt_k² ws⁴ out² E φ'(h_k)²) / C^Y_k;
    and Q_{l→K} = ∏_{j=l}^{K−1} χ_j. For ReLU κ = 1, so pre and peri give Q_{l→K} = C_K/C_l exactly (the
    ratio of hidden-state second moments), and post gives χ_k = 1 + O(1/d): no geometric decay.
    Also returned, for post: ``skip`` = ∏_{j≥l} γ² d / C^Y_j, the mean-field value of ∏‖J_N(Y_j)‖₂², the
    squared gain of the skip path alone; in Xiong et al.'s setting (ReLU, ws = out = γ = Δt = 1) it is
    (2/3)^{K−l} (as d → ∞), the classical (2/3)^{(L−l)/2} heuristic for gradient norms.

    Finite width: the recursion is a d → ∞ statement; at width d the Monte-Carlo value exceeds it by
    O(1/d) (leading mechanism: E[1/s²] ≥ 1/E[s²] by Jensen). The checks measure that term at several widths.

    ``moments(activation, q, dps)`` returns (E φ², E φ'²) (injectable for meta-tests). Returns a dict of
    mpmath lists: ``C`` (K+1), ``chi`` (K), ``Q`` (K+1, Q[K] = 1), ``skip`` (K+1; post only, else None).
    Provenance: paper claim K4 (init behaviour per placement), our statement; the heuristic is a neighbour
    (classical post-LN analysis). Domain: placement in (pre, peri, post), d ≥ 3, K ≥ 1, Δt > 0, ws > 0,
    out_scale > 0, γ ≠ 0, c0 > 0, q0 ≥ c0.
    """
    require_choice("placement", placement, ("pre", "peri", "post"))
    d = require_int("d", d, 3)
    n_steps = require_int("n_steps", n_steps, 1)
    dts = step_sizes(dt, n_steps)
    require_positive("weight_scale", weight_scale)
    require_positive("out_scale", out_scale)
    require_real("gamma", gamma)
    if gamma == 0:
        raise ValueError("gamma must be nonzero")
    if gamma_out is not None:
        require_real("gamma_out", gamma_out)
    require_choice("activation", activation, ACTIVATIONS)
    dps = require_int("dps", dps, 15)
    c0 = d - 1 if c0 is None else c0
    q0 = d if q0 is None else q0
    require_positive("c0", c0)
    require_positive("q0", q0)
    if q0 < c0:
        raise ValueError(f"q0 must be >= c0 (the uncentred moment dominates the centred one), got q0={q0}, c0={c0}")
    with mpmath.workdps(dps + 10):
        mp = mpmath.mpf
        ws2, out2, g2 = mp(weight_scale) ** 2, mp(out_scale) ** 2, mp(gamma) ** 2
        go2 = g2 if gamma_out is None else mp(gamma_out) ** 2
        dd = mp(d)
        C = [mp(c0)]
        chi, skip_factors = [], []
        if placement in ("pre", "peri"):
            e2, d2 = moments(activation, ws2 * g2, dps + 10)
            kappa = ws2 * g2 * mp(d2) / mp(e2)
        for k in range(n_steps):
            dt2 = mp(dts[k]) ** 2
            if placement == "pre":
                delta = dt2 * ws2 * out2 * (dd - 1) * e2
                chi.append(1 + kappa * delta / C[k])
                C.append(C[k] + delta)
            elif placement == "peri":
                delta = dt2 * go2 * dd
                chi.append(1 + kappa * delta / C[k])
                C.append(C[k] + delta)
            else:
                qk = mp(q0) if k == 0 else g2 * dd
                e2, d2 = moments(activation, ws2 * qk / dd, dps + 10)
                cy = C[k] + dt2 * ws2 * out2 * (dd - 1) * e2
                chi.append(g2 * dd * (1 + dt2 * ws2 ** 2 * out2 * d2) / cy)
                skip_factors.append(g2 * dd / cy)
                C.append(g2 * dd)
        Q = [mp(1)]
        for x in reversed(chi):
            Q.append(Q[-1] * x)
        Q = Q[::-1]
        skip = None
        if placement == "post":
            skip = [mp(1)]
            for x in reversed(skip_factors):
                skip.append(skip[-1] * x)
            skip = skip[::-1]
    with mpmath.workdps(dps):
        rnd = lambda xs: None if xs is None else [+x for x in xs]
        return {"C": rnd(C), "chi": rnd(chi), "Q": rnd(Q), "skip": rnd(skip)}


def mp_to_float(xs) -> np.ndarray:
    """Utility, no theorem: an mpmath list (as returned by B5's recursion) → float64 array."""
    if isinstance(xs, (str, bytes)):
        raise ValueError(f"xs must be a sequence of (mpmath) numbers, got {xs!r}")
    try:
        return np.array([float(x) for x in xs], dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"xs must be a sequence of (mpmath) numbers ({exc})") from exc
