"""F6 — trained pre-LN Transformers under weight decay: the stationarity identity and the hidden-state envelope.

Our statement of the paper's exponential bound for trained pre-LN models (its eq. (10), which we do not have;
paper claim K3). Pure mathematics: functions of Δt, λ and measured or closed-form quantities (weight norms,
activation and adjoint norms, step-Jacobian gains). Proofs are in ``docs/theorems/F6.md``; the numerical
side (tiny models optimised to stationarity in float64) is ``verify/checks/trained.py``.

Setting. A pre-LN stack of K residual steps X_{k+1} = X_k + Δt_k·(h_k W_k + 1 b_kᵀ), X ∈ R^{n×d}, where
h_k ∈ R^{n×m} is the sublayer's last activation, a function of N_k(X_k) only (MLP: φ(N(X)W₁ + b₁); attention:
the concatenated head outputs P^h N(X) W_V^h), and W_k ∈ R^{m×d} is the step's *output map* (W₂ or W_O).
A loss ℓ(X_K; y) (anything differentiable: a final norm, a head and cross-entropy in our models), data drawn
from a distribution D (the training set), and the objective

    J(θ) = E_D[ℓ] + (λ/2)·Σ_k ‖W_k‖_F² + Ω(other parameters),      λ > 0,

with any regulariser Ω on the other parameters. p_k = ∂ℓ/∂X_k is the adjoint (B3: p_k = A_kᵀ p_{k+1}).

Statement (F6). Let r_k = ‖∂J/∂W_k‖_F (r_k = 0 at a stationary point). Then
  (i)   identity:  λ W_k = −∂E[ℓ]/∂W_k + ∂J/∂W_k, so at a stationary point W_k = −(1/λ)·∂E[ℓ]/∂W_k;
  (ii)  tie:       ‖W_k‖_F ≤ (Δt_k·E[Σ_i ‖h_{k,i}‖‖p_{k+1,i}‖] + r_k)/λ;
  (iii) backward:  E[Σ_i ‖h_{k,i}‖‖p_{k+1,i}‖] ≤ √n·H_k·Π_{k+1}·G, with H_k ≥ sup_i ‖h_{k,i}‖ (closed form from
                   the weights and the norm's range N1), Π_{k+1} = ∏_{j=k+1}^{K−1}(1 + a_j) for any a_j with
                   ‖A_j‖₂ ≤ 1 + a_j on the data (B2/B3), and G = E‖p_K‖_F;
  (iv)  envelope:  for EVERY input and row i,
                   ‖x_{k,i} − x_{0,i}‖ ≤ Σ_{j<k} Δt_j·(H_j·w_j + ‖b_j‖),   w_j = (Δt_j √n H_j Π_{j+1} G + r_j)/λ,
                   hence ‖x_{k,i}‖ ≤ ‖x_{0,i}‖ + the same sum.
With uniform constants (Δt_j = Δt, H_j ≤ H, a_j ≤ a, r_j = 0, b_j = 0) the envelope is the closed form
    ‖x_{K,i}‖ ≤ ‖x_{0,i}‖ + (√n·G·H²·Δt²/λ)·((1 + a)^K − 1)/a ≤ ‖x_{0,i}‖ + (√n·G·H²·Δt²·K/λ)·e^{aK}:
exponential in depth and ∝ 1/λ (decreasing in λ at fixed H, a, G).

What is proven and what is measured. (i)–(iv) are theorems given their inputs; the inputs H_k (closed form),
r_k, G and the a_j are measured on the trained model (a_j from exact step Jacobians, G by autograd). That the
trained model's H, a and G themselves stay moderate as λ changes is *not* proven: it is what the check
measures. The ill-posedness of the unregularised pre-LN problem (exact scale symmetry) is ``pre_scale_symmetry``.
"""
from __future__ import annotations

import math

import numpy as np

from theory._domain import (
    as_float_array,
    require_int,
    require_nonnegative,
    require_positive,
    require_width,
    step_sizes,
)
from theory.backward import gradient_envelope
from theory.forward import attention_output_sup, mlp_output_sup

__all__ = [
    "activation_adjoint_bound",
    "activation_bound_attention",
    "activation_bound_mlp",
    "attention_balance_residual",
    "envelope_moment_bounds",
    "output_map_norm_bound",
    "pre_scale_symmetry",
    "pre_weight_energy_bound",
    "stationary_weight",
    "trained_pre_depth_free_bound",
    "trained_pre_envelope",
    "trained_pre_envelope_from_backward",
    "trained_pre_envelope_uniform",
]


def _nonneg(name: str, value) -> np.ndarray:
    arr = as_float_array(name, value)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    if np.any(arr < 0):
        raise ValueError(f"{name} must be >= 0 everywhere, got min {arr.min()!r}")
    return arr


def _per_step(name: str, value, k: int) -> np.ndarray:
    arr = _nonneg(name, value)
    if arr.ndim == 0:
        return np.full(k, float(arr))
    if arr.shape[0] != k:
        raise ValueError(f"{name} must have one entry per step ({k}) along axis 0, got shape {arr.shape}")
    return arr


def _lam(lam) -> float:
    require_positive("lam", lam)
    return float(lam)


def stationary_weight(grad_loss, lam):
    """F6 (i) — the stationarity identity: at a stationary point of E[ℓ] + (λ/2)‖W‖², W = −(1/λ)·∂E[ℓ]/∂W.

    ``grad_loss`` is ∂E[ℓ]/∂W (any array shape), ``lam`` = λ > 0. Returns −grad_loss/λ. Proof: ∂J/∂W =
    ∂E[ℓ]/∂W + λW = 0. Away from stationarity W + ∂E[ℓ]/∂W/λ = (∂J/∂W)/λ exactly.
    Provenance: paper claim K3 (weight-decay stationarity), our statement. Domain: λ > 0, finite gradient.
    """
    lam = _lam(lam)
    g = as_float_array("grad_loss", grad_loss)
    if not np.all(np.isfinite(g)):
        raise ValueError("grad_loss contains NaN or inf")
    return -g / lam


def output_map_norm_bound(dt, lam, activation_adjoint, grad_residual=0.0):
    """F6 (ii) — ‖W_k‖_F ≤ (Δt_k·E[Σ_i ‖h_{k,i}‖‖p_{k+1,i}‖] + r_k)/λ for the output map of step k.

    Statement: with ∂ℓ/∂W_k = Δt_k·h_kᵀ p_{k+1} (the output map's gradient is an outer product of the
    activation and the adjoint of the step's output) and the identity (i),
    λ‖W_k‖_F ≤ Δt_k‖E[h_kᵀp_{k+1}]‖_F + r_k ≤ Δt_k·E[Σ_i ‖h_{k,i}‖‖p_{k+1,i}‖] + r_k
    (‖Σ_i h_iᵀp_i‖_F ≤ Σ_i ‖h_i‖‖p_i‖, Jensen for E).
    Equality: one data point and one token (h and p single rows): ∂ℓ/∂W is rank one and every step is tight.

    ``dt`` Δt_k > 0, ``lam`` λ > 0, ``activation_adjoint`` ≥ 0 = E[Σ_i‖h_{k,i}‖‖p_{k+1,i}‖] (or any upper
    bound), ``grad_residual`` r_k = ‖∂J/∂W_k‖_F ≥ 0; arrays broadcast. Provenance: paper claim K3, our
    statement. Domain: ValueError naming the parameter.
    """
    lam = _lam(lam)
    dt = as_float_array("dt", dt)
    if not np.all(np.isfinite(dt)) or np.any(dt <= 0):
        raise ValueError(f"dt must be finite and > 0, got {dt!r}")
    aa = _nonneg("activation_adjoint", activation_adjoint)
    r = _nonneg("grad_residual", grad_residual)
    out = (dt * aa + r) / lam
    return float(out) if out.ndim == 0 else out


def activation_bound_mlp(r, w1_norm, b1_norm=0.0):
    """F6 (iii), MLP — H = ‖W₁‖₂·r + ‖b₁‖₂ bounds ‖φ(u W₁ + b₁)‖₂ for every row ‖u‖ ≤ r (φ = ReLU, GELU).

    It is F3's MLP bound with the output map removed (|φ(z)| ≤ |z|; ``theory.forward.mlp_output_sup`` with
    ‖W₂‖ = 1, b₂ = 0). ``r`` is the norm layer's range (N1: ‖γ‖_∞√d + ‖β‖₂). Provenance: paper claim K3, our
    statement. Domain: all arguments ≥ 0.
    """
    return mlp_output_sup(r, w1_norm, 1.0, b1_norm, 0.0)


def activation_bound_attention(r, wv_head_norms):
    """F6 (iii), attention — H = r·√(Σ_h ‖W_V^h‖₂²) bounds every row of the concatenated head outputs.

    It is F3's attention bound before the output map (``theory.forward.attention_output_sup`` with ‖W_O‖ = 1,
    b_O = 0): each head output row is a convex combination of rows u_j W_V^h with ‖u_j‖ ≤ r.
    ``wv_head_norms``: the ‖W_V^h‖₂ along the last axis. Provenance: paper claim K3, our statement.
    Domain: all arguments ≥ 0.
    """
    return attention_output_sup(r, wv_head_norms, 1.0, 0.0)


def activation_adjoint_bound(h_bound, backward_rates, terminal_adjoint, n_tokens):
    """F6 (iii) — E[Σ_i ‖h_{k,i}‖‖p_{k+1,i}‖] ≤ √n·H_k·Π_{k+1}·G for k = 0..K−1.

    Statement: ‖h_k‖_F ≤ √n H_k; p_{k+1} = A_{k+1}ᵀ ⋯ A_{K−1}ᵀ p_K gives ‖p_{k+1}‖_F ≤ Π_{k+1}‖p_K‖_F with
    Π_{k+1} = ∏_{j=k+1}^{K−1}(1 + a_j) when ‖A_j‖₂ ≤ 1 + a_j on every data point (B3,
    ``theory.backward.gradient_envelope``); Cauchy–Schwarz over rows and E‖p_K‖_F = G finish it.

    ``h_bound`` H_k (K,), ``backward_rates`` a_j ≥ 0 (K,), ``terminal_adjoint`` G = E‖p_K‖_F ≥ 0,
    ``n_tokens`` n ≥ 1. Returns an array (K,). Provenance: paper claim K3 (with K4's B3), our statement.
    Domain: ValueError naming the parameter.
    """
    a = _nonneg("backward_rates", backward_rates)
    if a.ndim != 1 or a.size < 1:
        raise ValueError(f"backward_rates must be a 1-D array with one entry per step, got shape {a.shape}")
    k = a.size
    h = _per_step("h_bound", h_bound, k)
    g = float(require_nonnegative("terminal_adjoint", terminal_adjoint))
    n = require_int("n_tokens", n_tokens, 1)
    _, upper, _ = gradient_envelope(a, 1.0)  # upper[k] = ∏_{j≥k}(1 + a_j), upper[K] = 1
    return math.sqrt(n) * h * upper[1:] * g


def trained_pre_envelope(dt, lam, h_bound, activation_adjoint, grad_residual=0.0, bias_norm=0.0, n_steps=None):
    """F6 (iv) — the displacement envelope ‖x_{k,i} − x_{0,i}‖ ≤ E_k, k = 0..K, for every input and row.

    E_k = Σ_{j<k} Δt_j·(H_j·w_j + ‖b_j‖) with w_j = (Δt_j·AA_j + r_j)/λ the tie (ii) and AA_j an upper bound
    on E[Σ_i ‖h_{j,i}‖‖p_{j+1,i}‖] — measured, or (iii)'s √n H_j Π_{j+1} G (``trained_pre_envelope_from_backward``).
    Proof: row i of step j's update is Δt_j(h_{j,i}W_j + b_j), of norm ≤ Δt_j(H_j‖W_j‖₂ + ‖b_j‖), and
    ‖W_j‖₂ ≤ ‖W_j‖_F ≤ w_j; sum the triangle inequality over j. ‖x_{k,i}‖ ≤ ‖x_{0,i}‖ + E_k follows.
    H_j must bound the activation rows of the inputs the envelope is applied to: the closed forms
    (``activation_bound_*``) bound them for every input, a measured sup only on the measured data.

    Returns an array (K+1,) with E_0 = 0. ``dt``: scalar or (K,); ``lam`` λ > 0; ``h_bound``,
    ``activation_adjoint``, ``grad_residual``, ``bias_norm``: scalars or (K,), ≥ 0. Provenance: paper claim
    K3, our statement (eq. (10) of the paper is not available). Domain: ValueError naming the parameter.
    """
    lam = _lam(lam)
    k = n_steps
    for v in (h_bound, activation_adjoint, grad_residual, bias_norm, dt):
        if np.ndim(v) == 1:
            k = len(v)
            break
    if k is None:
        raise ValueError("n_steps must be given when every per-step argument is a scalar")
    require_int("n_steps", k, 1)
    dts = step_sizes(dt, k)
    h = _per_step("h_bound", h_bound, k)
    aa = _per_step("activation_adjoint", activation_adjoint, k)
    r = _per_step("grad_residual", grad_residual, k)
    b = _per_step("bias_norm", bias_norm, k)
    w = (dts * aa + r) / lam
    return np.concatenate([[0.0], np.cumsum(dts * (h * w + b))])


def trained_pre_envelope_from_backward(dt, lam, h_bound, backward_rates, terminal_adjoint, n_tokens,
                                       grad_residual=0.0, bias_norm=0.0):
    """F6 (iv) with (iii): the closed-form envelope from H_k, the backward rates a_j and G = E‖p_K‖_F.

    E_k = Σ_{j<k} Δt_j·(H_j·(Δt_j √n H_j Π_{j+1} G + r_j)/λ + ‖b_j‖), k = 0..K. Exponential in depth through
    Π_{j+1} = ∏_{i>j}(1 + a_i) and ∝ 1/λ. Provenance: paper claim K3, our statement. Domain: as the parts.
    """
    a = _nonneg("backward_rates", backward_rates)
    aa = activation_adjoint_bound(h_bound, a, terminal_adjoint, n_tokens)
    return trained_pre_envelope(dt, lam, h_bound, aa, grad_residual, bias_norm, n_steps=a.size)


def trained_pre_envelope_uniform(n_steps, dt, lam, h_bound, backward_rate, terminal_adjoint, n_tokens):
    """F6 corollary — uniform constants: E_K = (√n·G·H²·Δt²/λ)·((1 + a)^K − 1)/a  (= K·… when a = 0).

    Equals ``trained_pre_envelope_from_backward`` with every Δt_j = Δt, H_j = H, a_j = a, r = b = 0, and is ≤
    (√n G H² Δt² K/λ)·e^{aK}: exponential in the depth K, decreasing in λ. It bounds the per-step envelope
    whenever Δt_j ≤ Δt, H_j ≤ H, a_j ≤ a (every term is monotone in each of them).
    ``n_steps`` K ≥ 1, ``dt`` > 0, ``lam`` > 0, ``h_bound`` H ≥ 0, ``backward_rate`` a ≥ 0, ``terminal_adjoint``
    G ≥ 0, ``n_tokens`` ≥ 1. Provenance: paper claim K3, our statement. Domain: ValueError naming the parameter.
    """
    k = require_int("n_steps", n_steps, 1)
    require_positive("dt", dt)
    lam = _lam(lam)
    h = float(require_nonnegative("h_bound", h_bound))
    a = float(require_nonnegative("backward_rate", backward_rate))
    g = float(require_nonnegative("terminal_adjoint", terminal_adjoint))
    n = require_int("n_tokens", n_tokens, 1)
    geometric = float(k) if a == 0 else math.expm1(k * math.log1p(a)) / a
    return math.sqrt(n) * g * h * h * dt * dt / lam * geometric


def envelope_moment_bounds(x0_max_norm, displacement, d):
    """The K7 moments under a row-norm envelope R_k = max‖x_0‖ + E_k (F2's corollary, for any row bound).

    mean_abs ≤ R/√d, entrywise_var ≤ R²/d, datawise_var ≤ R²/d (proof in ``theory.forward.peri_moment_bounds``:
    it uses only ‖x_{k,i}‖ ≤ R_k). ``x0_max_norm`` ≥ 0, ``displacement`` E_k ≥ 0 (array), ``d`` ≥ 2.
    Returns a dict of arrays. Provenance: paper claims K3 and K7, our statement. Domain: ValueError naming
    the parameter.
    """
    require_width("d", d)
    x0 = float(require_nonnegative("x0_max_norm", x0_max_norm))
    r = x0 + _nonneg("displacement", displacement)
    return {"row_norm": r, "mean_abs": r / math.sqrt(d), "entrywise_var": r * r / d, "datawise_var": r * r / d}


def pre_scale_symmetry(c):
    """F6 (ill-posedness) — pre-LN + final norm, ε = 0: scaling (embeddings, output maps W_k, output biases b_k)
    by c > 0 scales every hidden state X_k by c and leaves the logits unchanged.

    Statement: if X_0 → cX_0 and (W_k, b_k) → c(W_k, b_k) for every step, then by induction X_k → cX_k
    (N_k(cX) = N_k(X) for ε = 0, N3, so h_k is unchanged and the update scales by c), and the final norm
    removes c. Hence the unregularised loss is constant along the ray {c·θ_G}: if a minimiser exists, so does
    one with max_i‖x_{K,i}‖ arbitrarily large, and no bound on trained hidden states can hold without weight
    decay (K3: the problem is ill-posed). With ε > 0 the symmetry is broken only at scale σ² ~ ε.
    Peri-LN has no such ray with fixed gains: its update rows have norm ≤ Δt‖γ_out‖_∞√d + ‖β_out‖ whatever
    the weights (F2).

    Returns the factor by which hidden states scale (c) — the closed form the check compares against.
    Provenance: paper claim K3 ("ill-posed without regularisation"), our statement. Domain: c > 0.
    """
    require_positive("c", c)
    return float(c)


def pre_weight_energy_bound(dt, norm_range, in_norms, out_norms):
    """F7 (a) — the displacement of a bias-free pre-LN stack by its weight energy: for every input, row i and k,

        ‖x_{k,i} − x_{0,i}‖ ≤ Σ_{j<k} Δt_j R_j ‖W_in,j‖_F ‖W_out,j‖_F ≤ max_{j<k}(Δt_j R_j)·½Σ_{j<k}(‖W_in,j‖_F² + ‖W_out,j‖_F²).

    Setting: X_{k+1} = X_k + Δt_k·F_k(N_k(X_k)) with a bias-free sublayer F_k = (input map W_in, activation or
    softmax mixing, output map W_out): an MLP u ↦ φ(uW₁)W₂ (|φ(z)| ≤ |z|: ReLU, GELU; W_in = W₁, W_out = W₂) or
    attention U ↦ concat_h(P^h U W_V^h)·W_O (P^h row-stochastic; W_in = W_V, W_out = W_O). R_j ≥ sup ‖N_j(x)‖ is
    the norm's range (N1: ‖γ‖_∞√d + ‖β‖₂).
    Proof: an MLP row has ‖φ(uW₁)W₂‖ ≤ ‖u‖‖W₁‖₂‖W₂‖₂; an attention row is a convex combination of rows
    u_lW_V^h per head, so ‖concat_h(·)‖² ≤ Σ_h R²‖W_V^h‖₂² ≤ R²‖W_V‖_F², then ‖·W_O‖ ≤ ‖·‖‖W_O‖₂. Spectral ≤
    Frobenius, the triangle inequality over steps gives the first form, ab ≤ (a² + b²)/2 the second.
    Equality (witness): one step, aligned rank-one maps W_in = a·ûv̂ᵀ, W_out = a·v̂ŵᵀ with a ReLU MLP, v̂ ≥ 0 and
    N(x) = R·û (ε = 0): the update is Δt R a² ŵ.

    ``dt`` scalar or (K,), ``norm_range`` R scalar or (K,), ``in_norms``, ``out_norms`` (K, ...) Frobenius norms
    (trailing axes broadcast, e.g. instances). Returns (product_form, energy_form), each (K+1, ...) with row 0 = 0:
    the cumulative sums Σ_{j<k} Δt_jR_j a_j b_j and max_{j<k}(Δt_jR_j)·½Σ_{j<k}(a_j² + b_j²).
    Provenance: our statement (a depth-free alternative to F6's envelope; issue 13). Domain: Δt > 0, R ≥ 0,
    norms ≥ 0, one entry per step; ValueError naming the parameter otherwise.
    """
    a = _nonneg("in_norms", in_norms)
    b = _nonneg("out_norms", out_norms)
    if a.ndim < 1 or a.shape[0] < 1:
        raise ValueError(f"in_norms must have one entry per step along axis 0, got shape {a.shape}")
    if b.shape != a.shape:
        raise ValueError(f"out_norms must have the shape of in_norms {a.shape}, got {b.shape}")
    k = a.shape[0]
    dts = step_sizes(dt, k)
    r = _per_step("norm_range", norm_range, k)
    scale = (dts * r).reshape((k,) + (1,) * (a.ndim - 1))
    zero = np.zeros((1,) + a.shape[1:])
    product = np.concatenate([zero, np.cumsum(scale * a * b, axis=0)])
    energy = np.concatenate([zero, np.maximum.accumulate(np.broadcast_to(scale, a.shape), axis=0)
                             * np.cumsum(0.5 * (a * a + b * b), axis=0)])
    return product, energy


def trained_pre_depth_free_bound(dt, norm_range, decay_energy, lam):
    """F7 (b) — depth-free trained-model bound: max_{k,i} ‖x_{k,i} − x_{0,i}‖ ≤ max_j(Δt_j R_j)·D/λ.

    Statement: for a bias-free pre-LN stack whose input and output maps carry weight decay λ in the objective
    J(θ) = E[ℓ] + (λ/2)Σ_j(‖W_in,j‖_F² + ‖W_out,j‖_F²) + Ω(other parameters), ℓ ≥ 0, Ω ≥ 0, let
    D = (λ/2)Σ_j(‖W_in,j‖_F² + ‖W_out,j‖_F²) ≤ J(θ) − E[ℓ] ≤ J(θ). Then for EVERY input, row and depth

        ‖x_{k,i} − x_{0,i}‖ ≤ max_j(Δt_j R_j)·D/λ ≤ max_j(Δt_j R_j)·J(θ)/λ.

    Proof: ``pre_weight_energy_bound``'s second form with ½Σ(a² + b²) = D/λ. No stationarity is used: the bound
    holds at any weights, and is informative about *trained* models because training keeps J small: at any θ
    with J(θ) ≤ J(θ₀) (a descent method started at θ₀) the right side is ≤ max(Δt R)·J(θ₀)/λ, and at a global
    minimiser with a decayed linear head J(θ*) ≤ J(0) = log V (V classes). It does not grow with the depth K,
    against F6's envelope, which is exponential in K; it is sharp given D alone (all the energy in one step,
    aligned rank-one maps: ``pre_weight_energy_bound``'s witness). At a stationary point the attention steps are
    balanced, ‖W_V‖_F = ‖W_O‖_F (``attention_balance_residual``), so AM-GM loses nothing there.

    ``dt`` scalar or (K,) > 0, ``norm_range`` R scalar or (K,) ≥ 0, ``decay_energy`` D ≥ 0 (or any upper bound
    of it, e.g. J(θ)), ``lam`` λ > 0; ``decay_energy`` may be an array (instances) when ``lam`` broadcasts.
    Provenance: our statement (depth-free alternative to F6, derived in issue 13's review). Domain: ValueError
    naming the parameter.
    """
    lam_arr = as_float_array("lam", lam)
    if not np.all(np.isfinite(lam_arr)) or np.any(lam_arr <= 0):
        raise ValueError(f"lam must be finite and > 0, got {lam!r}")
    dts = np.atleast_1d(as_float_array("dt", dt))
    if not np.all(np.isfinite(dts)) or np.any(dts <= 0):
        raise ValueError(f"dt must be finite and > 0, got {dt!r}")
    r = np.atleast_1d(_nonneg("norm_range", norm_range))
    if dts.size > 1 and r.size > 1 and dts.size != r.size:
        raise ValueError(f"norm_range must have one entry per step ({dts.size}), got {r.size}")
    energy = _nonneg("decay_energy", decay_energy)
    out = float(np.max(dts * r)) * energy / lam_arr
    return float(out) if np.ndim(out) == 0 else out


def attention_balance_residual(grad_v, w_v, grad_o, w_o, lam):
    """F7 (balance) — λ(‖W_V‖_F² − ‖W_O‖_F²) = ⟨∂J/∂W_V, W_V⟩ − ⟨∂J/∂W_O, W_O⟩ at ANY weights.

    Statement: the loss is invariant under (W_V, W_O) → (cW_V, W_O/c) (the heads' outputs are linear in W_V, the
    softmax does not see it), so d/dc E[ℓ] = ⟨∂E/∂W_V, W_V⟩ − ⟨∂E/∂W_O, W_O⟩ = 0 at c = 1, and the decay adds
    λ(‖W_V‖² − ‖W_O‖²). At a stationary point (∂J = 0) the two maps are balanced: ‖W_V‖_F = ‖W_O‖_F, so the
    AM-GM step of F7 is an equality for every attention step.
    Returns |‖W_V‖_F² − ‖W_O‖_F²| and the bound (‖∂J/∂W_V‖‖W_V‖ + ‖∂J/∂W_O‖‖W_O‖)/λ it must not exceed (Cauchy–
    Schwarz on the right side). Arguments are arrays (any shape, the last axes flattened per leading instance
    axis when 2-D or more); ``lam`` > 0 broadcasting against the leading axis. Provenance: our statement.
    Domain: ValueError naming the parameter.
    """
    lam_arr = as_float_array("lam", lam)
    if not np.all(np.isfinite(lam_arr)) or np.any(lam_arr <= 0):
        raise ValueError(f"lam must be finite and > 0, got {lam!r}")
    arrs = {}
    for name, v in (("grad_v", grad_v), ("w_v", w_v), ("grad_o", grad_o), ("w_o", w_o)):
        a = as_float_array(name, v)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or inf")
        arrs[name] = a.reshape(a.shape[0], -1) if a.ndim >= 2 else a.reshape(1, -1)
    nv, no = np.linalg.norm(arrs["w_v"], axis=1), np.linalg.norm(arrs["w_o"], axis=1)
    gap = np.abs(nv ** 2 - no ** 2)
    bound = (np.linalg.norm(arrs["grad_v"], axis=1) * nv + np.linalg.norm(arrs["grad_o"], axis=1) * no) / lam_arr
    return gap, bound
