"""S3 — co-design of the residual step size Δt with the norm placement: what Δt *is* for each placement.

(a) pre — Δt is not a new degree of freedom: it is absorbed by the output maps (W_O, b_O, W₂, b₂ → Δt·(…)),
    and under weight decay it only changes the decay strength on those maps to λ/Δt² (an exact identity of the
    training objective).
(b) post — N(αz) = N_{ε/α²}(z): DeepNorm N(αX + F(X)) is post-LN with Δt = 1/α and ε/α² — exactly; with the same ε
    the two differ by a closed-form amount that depends only on the row's scale relative to √ε.
(c) peri — Δt cannot be absorbed by the module weights: the output norm removes any scale the module puts on
    its output, so every update row has norm exactly Δt|γ_out|√d (ε_out = 0, β_out = 0), whatever the weights;
    only the output gain absorbs it: Δt·N_out(f; γ, β) = N_out(f; Δtγ, Δtβ). So Δt is a real stability knob.

Every function returns the closed-form quantity an identity or bound is checked against
(``verify/checks/criterion.py``). Provenance: paper claim K5 ("the residual scaling must be co-designed with the
LN placement"), our statements; DeepNorm: neighbour: Wang et al. 2022 (DeepNet).
"""
from __future__ import annotations

import math

import numpy as np

from theory._domain import (
    as_float_array,
    require_nonnegative,
    require_positive,
    require_real,
    require_width,
    step_sizes,
)

__all__ = [
    "deepnorm_as_post",
    "deepnorm_post_deviation",
    "deepnorm_post_deviation_sup",
    "norm_scaled_input_eps",
    "peri_dt_as_output_gain",
    "peri_update_row_norm",
    "pre_absorbed_output_scale",
    "pre_decay_objective",
    "pre_effective_output_decay",
]


# ---- (a) pre ---------------------------------------------------------------------------------------------------
def pre_absorbed_output_scale(dt, n_steps: int) -> np.ndarray:
    """S3(a) — the factor by which step k's output maps (W_O, b_O or W₂, b₂) absorb Δt_k: Δt_k itself.

    Statement: X + Δt F(N(X); W_out) = X + F(N(X); Δt·W_out) for every X, because F is affine in its output layer
    (attention: P V W_O + b_O; MLP: φ(·) W₂ + b₂). So a pre stack at step sizes Δt_k is the same map as a stack at
    Δt = 1 with output maps Δt_k·(W_out, b_out). Provenance: paper claim K5, our statement. Domain: Δt_k > 0.
    """
    return step_sizes(dt, n_steps)


def pre_effective_output_decay(weight_decay, dt, n_steps: int) -> np.ndarray:
    """S3(a) — the weight-decay strength on step k's output maps after absorbing Δt_k: λ/Δt_k².

    Statement: with θ' = θ but W'_out,k = Δt_k W_out,k,
        L(f_Δt(θ)) + (λ/2)Σ_all‖W‖²  =  L(f_1(θ')) + (λ/2)Σ_other‖W‖² + Σ_k (λ/Δt_k²)/2·‖W'_out,k‖²,
    because f_Δt(θ) = f_1(θ') (``pre_absorbed_output_scale``) and ‖W_out,k‖² = ‖W'_out,k‖²/Δt_k². So training a
    pre stack with step Δt and decay λ is training the Δt = 1 stack with the output maps' decay raised to λ/Δt²
    (Δt < 1 = stronger decay on the residual branches' outputs). Provenance: paper claims K3/K5, our statement.
    Domain: λ ≥ 0, Δt_k > 0.
    """
    require_nonnegative("weight_decay", weight_decay)
    return float(weight_decay) / step_sizes(dt, n_steps) ** 2


def pre_decay_objective(loss, other_sq_norm, output_sq_norms, weight_decay, output_decays=None) -> float:
    """S3(a) — the objective L + (λ/2)·‖W_other‖² + Σ_k (λ_k/2)·‖W_out,k‖² (λ_k = λ unless ``output_decays``).

    The two sides of the S3(a) identity are this function at (θ, λ) and at (θ', λ/Δt_k²). Domain: loss real,
    squared norms ≥ 0, decays ≥ 0.
    """
    require_real("loss", loss)
    require_nonnegative("other_sq_norm", other_sq_norm)
    require_nonnegative("weight_decay", weight_decay)
    out = np.atleast_1d(as_float_array("output_sq_norms", output_sq_norms))
    if np.any(~np.isfinite(out)) or np.any(out < 0):
        raise ValueError("output_sq_norms must be finite and >= 0")
    decays = np.full(out.shape, float(weight_decay)) if output_decays is None else \
        np.broadcast_to(as_float_array("output_decays", output_decays), out.shape)
    if np.any(~np.isfinite(decays)) or np.any(decays < 0):
        raise ValueError("output_decays must be finite and >= 0")
    return float(loss) + 0.5 * float(weight_decay) * float(other_sq_norm) + 0.5 * float(np.sum(decays * out))


# ---- (b) post / DeepNorm ----------------------------------------------------------------------------------------
def norm_scaled_input_eps(eps, scale) -> float:
    """S3(b) lemma — N_ε(c·z) = N_{ε/c²}(z) for c > 0 (LayerNorm and RMSNorm, any γ, β).

    Proof: centring commutes with scaling, σ(cz)² + ε = c²(σ(z)² + ε/c²), and the c cancels against the numerator
    c·(z − μ) (RMSNorm: the same without centring). With ε = 0 this is the scale invariance N(cz) = N(z) (N3).
    Provenance: standard, our statement. Domain: ε ≥ 0, c > 0.
    """
    require_nonnegative("eps", eps)
    require_positive("scale", scale)
    return float(eps) / float(scale) ** 2


def deepnorm_as_post(alpha, dt=1.0, eps=0.0) -> tuple[float, float]:
    """S3(b) — DeepNorm N_ε(αX + Δt F(X)) equals the post step N_{ε'}(X + Δt' F(X)), Δt' = Δt/α, ε' = ε/α².

    Proof: αX + ΔtF = α(X + (Δt/α)F) and ``norm_scaled_input_eps``. For ε = 0: DeepNorm's α is exactly post-LN with
    Δt = 1/α (the residual down-weighting *is* a step size). Returns (Δt', ε'). Provenance: neighbour: Wang et al.
    2022 (DeepNet), our statement of the equivalence (paper claim K5). Domain: α > 0, Δt > 0, ε ≥ 0.
    """
    require_positive("alpha", alpha)
    require_positive("dt", dt)
    return float(dt) / float(alpha), norm_scaled_input_eps(eps, alpha)


def deepnorm_post_deviation(sigma, alpha, eps, gamma_max, d) -> np.ndarray:
    """S3(b) — ‖N_ε(αz) − N_ε(z)‖₂ for a row z of scale σ (centred RMS; RMSNorm: RMS), same ε on both sides.

    Statement: ‖N_ε(αz) − N_ε(z)‖ ≤ ‖γ‖_∞√d·|σ/√(σ² + ε/α²) − σ/√(σ² + ε)|, with equality for a constant gain
    γ·1 (any β, which cancels). This is the per-step gap between DeepNorm (α, ε) and post-LN with Δt = 1/α and the
    same ε. Proof: both rows are γ ⊙ ĉ·(scalar) + β with ĉ = c(z)/σ of norm √d (``norm_scaled_input_eps``).
    Provenance: our statement (paper claim K5; neighbour: Wang et al. 2022). Domain: σ ≥ 0, α > 0, ε ≥ 0,
    ‖γ‖_∞ ≥ 0, d ≥ 2 (σ = 0 with ε = 0 is undefined and gives 0 by convention: both sides are then β).
    """
    s = as_float_array("sigma", sigma)
    if np.any(~np.isfinite(s)) or np.any(s < 0):
        raise ValueError("sigma must be finite and >= 0")
    require_positive("alpha", alpha)
    require_nonnegative("eps", eps)
    require_nonnegative("gamma_max", gamma_max)
    require_width("d", d)
    e_small = float(eps) / float(alpha) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.where(s > 0, s / np.sqrt(s * s + e_small), 0.0)
        b = np.where(s > 0, s / np.sqrt(s * s + float(eps)), 0.0)
    return float(gamma_max) * math.sqrt(d) * np.abs(a - b)


def deepnorm_post_deviation_sup(alpha, gamma_max, d, eps=None) -> tuple[float, float]:
    """S3(b) — sup over σ of ``deepnorm_post_deviation``: ‖γ‖_∞√d·|1 − b|/√(1 + b + b²), b = α^{−2/3}.

    Statement: with t = σ/√ε the deviation is ‖γ‖_∞√d·|t/√(t² + α⁻²) − t/√(t² + 1)| — independent of ε — and its
    maximum over t is at t* = b/√(1 + b) (setting the derivatives α⁻²/(t²+α⁻²)^{3/2} and 1/(t²+1)^{3/2} equal),
    where it equals |1 − b|/√(1 + b + b²). So the gap is not small in ε: rows whose scale is comparable to √ε
    (σ ≈ √ε·t*) see a deviation up to ‖γ‖_∞√d (α → ∞); rows with σ ≫ √ε see O(ε/σ²).
    Returns (sup, σ* = √ε·t*) (σ* = nan without ``eps``). Provenance: our statement. Domain: α > 0, ‖γ‖_∞ ≥ 0, d ≥ 2.
    """
    require_positive("alpha", alpha)
    require_nonnegative("gamma_max", gamma_max)
    require_width("d", d)
    b = float(alpha) ** (-2.0 / 3.0)
    sup = float(gamma_max) * math.sqrt(d) * abs(1.0 - b) / math.sqrt(1.0 + b + b * b)
    if eps is None:
        return sup, math.nan
    require_nonnegative("eps", eps)
    return sup, math.sqrt(float(eps)) * b / math.sqrt(1.0 + b)


# ---- (c) peri ----------------------------------------------------------------------------------------------------
def peri_update_row_norm(dt, gamma, d) -> float:
    """S3(c) — every update row of a peri step has norm exactly Δt·|γ_out|·√d (ε_out = 0, β_out = 0, gain γ_out·1).

    Statement: for every sublayer F and all its weights, every row i with F(N_in(X))_i of nonzero scale gives
    ‖Δt N_out(F(N_in(X)))_i‖ = Δt|γ|√d. Hence the module weights cannot absorb Δt: replacing them by any others
    keeps the update norm at Δt|γ|√d, so a Δt = 1 stack with any weights differs from the Δt ≠ 1 one. Scaling
    the output map by c > 0 leaves the step unchanged (N(cf) = N(f), N3). Provenance: paper claims K2/K5, our
    statement. Domain: Δt > 0, γ real, d ≥ 2.
    """
    require_positive("dt", dt)
    require_real("gamma", gamma)
    require_width("d", d)
    return float(dt) * abs(float(gamma)) * math.sqrt(d)


def peri_dt_as_output_gain(dt, gamma_out, beta_out=0.0) -> tuple[float, float]:
    """S3(c) — only the output gain absorbs Δt: Δt·N_out(f; γ, β) = N_out(f; Δt·γ, Δt·β), for every ε_out.

    Proof: N(f; γ, β) = γ ⊙ n(f) + β is affine in (γ, β). Returns (Δt·γ, Δt·β) (scalars or arrays).
    Provenance: paper claim K5, our statement. Domain: Δt > 0, γ, β finite.
    """
    require_positive("dt", dt)
    g = as_float_array("gamma_out", gamma_out)
    b = as_float_array("beta_out", beta_out)
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(b))):
        raise ValueError("gamma_out and beta_out must be finite")
    out_g, out_b = float(dt) * g, float(dt) * b
    return (float(out_g) if out_g.ndim == 0 else out_g), (float(out_b) if out_b.ndim == 0 else out_b)
