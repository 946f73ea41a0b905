"""F1–F4 — forward stability: closed-form bounds on hidden-state growth, one function per placement.

Every bound here is on **row norms**: for a hidden state X ∈ R^{n×d} (one data sample, n tokens) the quantity is
‖x_i‖₂ for each token row i, separately (F1–F3), or the largest of them, M = max_i ‖x_i‖₂ (F4, where attention
couples the rows). A residual step k has size Δt_k > 0; t_k = Σ_{j<k} Δt_j.

Shapes: ``dt`` and the per-step constants (``c_out``, ``m``, ``a``, ``b``) are scalars or arrays whose FIRST axis is
the step axis (length K); trailing axes of a per-step constant are instance axes and broadcast (numpy rules,
aligned at the right) against ``x0_norm`` / ``m0``. A trajectory bound returns an array of shape
(K+1, *broadcast shape) whose entry k bounds the state after k steps (entry 0 is the start value). When every
step argument is a scalar, pass ``n_steps``.

What this module is not: a measurement. It takes numbers (weight norms, gains, Δt) and returns bounds; the
numerical side (``verify/checks/forward.py``) measures the zoo and compares.
"""
from __future__ import annotations

import math

import numpy as np

from theory._domain import (
    as_float_array,
    require_int,
    require_nonnegative,
    require_width,
)
from theory.norms import norm_output_bound

__all__ = [
    "attention_output_sup",
    "mlp_output_sup",
    "none_gronwall_bound",
    "peri_moment_bounds",
    "peri_norm_bound",
    "post_row_bound",
    "pre_norm_bound",
]


# ---- validation helpers ------------------------------------------------------------------------------------------
def _nonneg_array(name: str, value) -> np.ndarray:
    """A finite, entrywise non-negative float array (scalars become 0-d arrays); ValueError naming ``name``."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a non-negative real number or array, got {value!r}")
    try:
        arr = as_float_array(name, value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a non-negative real number or array, got {value!r}") from exc
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    if not np.all(arr >= 0):
        raise ValueError(f"{name} must be >= 0 entrywise, got min {arr.min()!r}")
    return arr


def _dt_array(value) -> np.ndarray:
    arr = _nonneg_array("dt", value)
    if not np.all(arr > 0):
        raise ValueError(f"dt entries must all be > 0, got min {arr.min()!r}")
    return arr


def _n_steps_from(n_steps, **per_step) -> int:
    """K from the first non-scalar per-step argument, or from ``n_steps``; they must agree."""
    k = None
    for name, value in per_step.items():
        arr = _nonneg_array(name, value) if name != "dt" else _dt_array(value)
        if arr.ndim >= 1:
            if k is None:
                k = arr.shape[0]
            elif arr.shape[0] != k:
                raise ValueError(f"{name} must have {k} steps along its first axis (as the arguments before it), "
                                 f"got shape {arr.shape}")
    if n_steps is not None:
        n_steps = require_int("n_steps", n_steps, 1)
        if k is not None and k != n_steps:
            raise ValueError(f"n_steps must equal the step-axis length of the per-step arguments ({k}), got {n_steps}")
        return n_steps
    if k is None:
        raise ValueError("n_steps must be given when dt and every per-step constant are scalars")
    if k < 1:
        raise ValueError(f"dt must have at least one step, got {k}")
    return k


def _per_step(name: str, value, n_steps: int, positive: bool = False) -> np.ndarray:
    """Validate a per-step argument and return it with a leading step axis of length ``n_steps``."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a real number or an array, got {value!r}")
    arr = _nonneg_array(name, value)
    if positive and not np.all(arr > 0):
        raise ValueError(f"{name} entries must all be > 0, got min {arr.min()!r}")
    if arr.ndim == 0:
        return np.full(n_steps, float(arr))
    if arr.shape[0] != n_steps:
        raise ValueError(f"{name} must have {n_steps} entries along its first (step) axis, got shape {arr.shape}")
    return arr


def _steps_first(dt: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Δt_k·c_k with Δt (K,) broadcast along c's step axis."""
    return dt.reshape(dt.shape + (1,) * (c.ndim - 1)) * c


def _align(start: np.ndarray, *per_step: np.ndarray) -> list[np.ndarray]:
    """Broadcast a start value (shape S0) and per-step arrays (K, *S_i) to (*S) and (K, *S), S = bcast(S0, S_i)."""
    shape = np.broadcast_shapes(start.shape, *(p.shape[1:] for p in per_step))
    return [np.broadcast_to(start, shape)] + [
        np.broadcast_to(p.reshape((p.shape[0],) + (1,) * (len(shape) - p.ndim + 1) + p.shape[1:]),
                        (p.shape[0],) + shape) for p in per_step]


def _cumulative(x0: np.ndarray, increments: np.ndarray) -> np.ndarray:
    """x0 + Σ_{j<k} increments_j for k = 0..K, shape (K+1, *broadcast)."""
    x0, increments = _align(x0, increments)
    zero = np.zeros((1,) + increments.shape[1:])
    cum = np.concatenate([zero, np.cumsum(increments, axis=0)], axis=0)
    return x0 + cum


# ---- F1: post ----------------------------------------------------------------------------------------------------
def post_row_bound(d, gamma_max, beta_norm=0.0, eps=0.0):
    """F1 — post-LN rows are bounded by the norm layer's range, whatever came before.

    Statement: after a post step X⁺ = N(X + Δt F(X)) every row satisfies
    ‖x⁺_i‖₂ ≤ ‖γ‖_∞·√d + ‖β‖₂ — the N1 supremum (``theory.norms.norm_output_bound`` with no second moment) —
    for any sublayer, any weights, any Δt and any depth. The same holds for every row leaving a norm layer:
    DeepNorm N(αX + Δt F), the post blocks of Mix-LN, a final norm.

    Proof: the row i of X⁺ is N applied to the row i of X + Δt F(X); N1 bounds the norm of N(z) for every z.
    ε only lowers the value (factor √(σ²/(σ²+ε)) < 1), so the ε-free constant is the supremum; ``eps`` is
    accepted for validation and documentation, the returned value does not depend on it.

    Equality: constant γ, β = 0 and ε = 0 give ‖x⁺_i‖ = |γ|·√d exactly; with ε > 0 the ratio
    √(σ²/(σ²+ε)) → 1 as the pre-norm row's variance σ² grows (``theory.witnesses.f1_post_witness``).

    Assumptions: d ≥ 2, ‖γ‖_∞ ≥ 0, ‖β‖₂ ≥ 0, ε ≥ 0. Arrays of ``gamma_max`` / ``beta_norm`` (per instance) are
    evaluated elementwise. Provenance: paper claim K1 (post-LN suppresses state growth), our statement.
    Domain: ValueError naming the parameter.
    """
    require_width("d", d)
    require_nonnegative("eps", eps)
    g = _nonneg_array("gamma_max", gamma_max)
    bn = _nonneg_array("beta_norm", beta_norm)
    if g.ndim == 0 and bn.ndim == 0:
        return norm_output_bound(d, float(g), float(bn))
    vec = np.vectorize(lambda gi, bi: norm_output_bound(d, float(gi), float(bi)), otypes=[float])
    return vec(g, bn)


# ---- F2: peri ----------------------------------------------------------------------------------------------------
def peri_norm_bound(x0_norm, dt, c_out, n_steps=None) -> np.ndarray:
    """F2 — peri-LN hidden states grow at most linearly in t, independently of the module weights.

    Statement: for peri steps X⁺ = X + Δt N_out(F(N_in(X))), every row satisfies
        ‖x_{k,i}‖₂ ≤ ‖x_{0,i}‖₂ + Σ_{j<k} Δt_j·C_out,j,   C_out,j = ‖γ_out,j‖_∞·√d + ‖β_out,j‖₂
    (C_out,j = ``post_row_bound`` of step j's output norm). Returns the K+1 bounds (k = 0..K).

    Proof: the row i of the update is Δt_j times a row of N_out(·), whose norm is ≤ C_out,j by N1; the triangle
    inequality gives ‖x_{j+1,i}‖ ≤ ‖x_{j,i}‖ + Δt_j C_out,j; sum over j. Nothing about F, N_in or the other rows
    is used, so the bound holds for attention (which couples rows) and for the output-norm-only variant
    X⁺ = X + Δt N_out(F(X)) ("outnorm") alike.

    Equality: when every update row is aligned with its row (N_out(F(N_in(X)))_i = C_out·x_i/‖x_i‖) — constant
    γ_out, β_out = 0, ε_out = 0 and a module mapping the aligned direction to itself
    (``theory.witnesses.f2_peri_witness``).

    Assumptions: x0_norm ≥ 0, Δt_j > 0, C_out,j ≥ 0. Provenance: paper claim K2, our statement.
    Domain: ValueError naming the parameter.
    """
    k = _n_steps_from(n_steps, dt=dt, c_out=c_out)
    x0 = _nonneg_array("x0_norm", x0_norm)
    dts = _per_step("dt", dt, k, positive=True)
    c = _per_step("c_out", c_out, k)
    return _cumulative(x0, _steps_first(dts, c))


def peri_moment_bounds(x0_max_norm, dt, c_out, d, n_steps=None) -> dict[str, np.ndarray]:
    """F2 corollaries — the three hidden-state moments of the paper's Fig. 1 grow at most linearly/quadratically.

    With R_k = max_i‖x_{0,i}‖ + Σ_{j<k} Δt_j C_out,j (F2 applied to the largest row, ``x0_max_norm`` = the max
    over every row and data sample), the moments of ``verify.engine.moments`` obey for k = 0..K
        mean_abs_k      ≤ R_k/√d            (linear in t),
        entrywise_var_k ≤ R_k²/d            (quadratic in t),
        datawise_var_k  ≤ R_k²/d            (quadratic in t).
    Returns a dict with these arrays and ``row_norm`` = R_k, each of shape (K+1, *broadcast).

    Proof: per row, (1/d)Σ_j|x_j| ≤ ‖x‖/√d (Cauchy–Schwarz) and (1/d)Σ_j(x_j − x̄)² ≤ (1/d)‖x‖²; averaging
    over rows keeps both under the max. The data-wise variance of a coordinate is ≤ its mean square over the
    B samples, and averaging that over coordinates gives (1/(Bn))Σ_{b,i}‖x_{b,i}‖²/d ≤ R²/d.

    Equality: all rows of norm R_k with entries ±R_k/√d (mean_abs), of zero row mean (entrywise) and data
    that come in ± pairs (datawise) — the F2 witness with a signed batch attains all three.

    Assumptions: as ``peri_norm_bound``; d ≥ 2. Provenance: paper claims K2 and K7, our statement.
    Domain: ValueError naming the parameter.
    """
    require_width("d", d)
    _nonneg_array("x0_max_norm", x0_max_norm)
    r = peri_norm_bound(x0_max_norm, dt, c_out, n_steps=n_steps)
    return {"row_norm": r, "mean_abs": r / math.sqrt(d), "entrywise_var": r * r / d, "datawise_var": r * r / d}


# ---- F3: pre -----------------------------------------------------------------------------------------------------
def mlp_output_sup(r, w1_norm, w2_norm, b1_norm=0.0, b2_norm=0.0):
    """F3 (MLP) — sup of ‖F(u)‖₂ over rows ‖u‖₂ ≤ r for F(u) = φ(u W₁ + b₁) W₂ + b₂, φ ∈ {ReLU, GELU}.

    Statement: ‖F(u)‖₂ ≤ ‖W₂‖₂·(‖W₁‖₂·r + ‖b₁‖₂) + ‖b₂‖₂ (``w1_norm``, ``w2_norm`` spectral norms).

    Proof: |φ(z)| ≤ |z| entrywise for ReLU and for GELU (zΦ(z), 0 ≤ Φ ≤ 1), so ‖φ(z)‖ ≤ ‖z‖ ≤ ‖W₁‖r + ‖b₁‖;
    then ‖φ(z)W₂ + b₂‖ ≤ ‖W₂‖‖φ(z)‖ + ‖b₂‖.

    Equality (ReLU): W₁ = w₁·û e₁ᵀ, b₁ = ‖b₁‖e₁, W₂ = w₂·e₁ v̂ᵀ, b₂ = ‖b₂‖v̂ with u = r û: the one active unit
    carries w₁r + ‖b₁‖ > 0 through the ReLU unchanged. GELU approaches it as w₁r → ∞ (Φ → 1). So, in terms of
    these four norms, the bound is the exact supremum. It is affine in r: sup = a·r + b with a = ‖W₁‖‖W₂‖,
    b = ‖W₂‖‖b₁‖ + ‖b₂‖ (the F4 gain and offset).

    Assumptions: all arguments ≥ 0 (arrays broadcast elementwise). Provenance: paper claim K3, our statement.
    Domain: ValueError naming the parameter.
    """
    r_, w1, w2, b1, b2 = (_nonneg_array(n, v) for n, v in
                          (("r", r), ("w1_norm", w1_norm), ("w2_norm", w2_norm), ("b1_norm", b1_norm),
                           ("b2_norm", b2_norm)))
    out = w2 * (w1 * r_ + b1) + b2
    return float(out) if out.ndim == 0 else out


def attention_output_sup(r, wv_head_norms, wo_norm, bo_norm=0.0):
    """F3 (attention) — sup of the max row norm of softmax attention when every input row has ‖u_j‖₂ ≤ r.

    Setting: heads h = 1..H split the width, W_V^h = W_V[:, h-block] (d × d_h), W_O (d × d), output row
    y_i = Σ_h (Σ_j p^h_ij u_j W_V^h) W_O^h + b_O = a_i W_O + b_O with a_i = (a^1_i, …, a^H_i) the concatenated
    head outputs, p^h_i a probability vector (any mask, causal included).

    Statement: ‖y_i‖₂ ≤ ‖W_O‖₂·√(Σ_h ‖W_V^h‖₂²)·r + ‖b_O‖₂. ``wv_head_norms`` holds the ‖W_V^h‖₂ along its
    LAST axis (a scalar means one head); leading axes broadcast against the others.

    Proof: a^h_i = (Σ_j p^h_ij u_j) W_V^h and Σ_j p^h_ij u_j is a convex combination of rows of norm ≤ r, so
    ‖a^h_i‖ ≤ ‖W_V^h‖ r; hence ‖a_i‖² = Σ_h ‖a^h_i‖² ≤ r² Σ_h ‖W_V^h‖², and ‖a_i W_O‖ ≤ ‖W_O‖‖a_i‖.

    Equality: every u_j = r û, W_V^h = ρ_h û e₁^(h)ᵀ (so a^h_i = ρ_h r e₁^(h)), W_O = w·â v̂ᵀ with â = a_i/‖a_i‖
    and b_O = ‖b_O‖v̂ — attained for every attention pattern. So among weights with these norms the bound is
    the exact supremum; √(Σ_h‖W_V^h‖²) ≤ √H·max_h‖W_V^h‖ and = ‖W_V‖₂ for one head.

    Assumptions: all arguments ≥ 0. Provenance: paper claim K3, our statement. Domain: ValueError naming the
    parameter.
    """
    r_ = _nonneg_array("r", r)
    wv = _nonneg_array("wv_head_norms", wv_head_norms)
    wo = _nonneg_array("wo_norm", wo_norm)
    bo = _nonneg_array("bo_norm", bo_norm)
    if wv.ndim >= 1 and wv.shape[-1] == 0:
        raise ValueError("wv_head_norms must hold at least one head")
    value_gain = np.sqrt(np.sum(wv * wv, axis=-1)) if wv.ndim >= 1 else wv
    out = wo * value_gain * r_ + bo
    return float(out) if out.ndim == 0 else out


def pre_norm_bound(x0_norm, dt, m, n_steps=None) -> np.ndarray:
    """F3 — pre-LN hidden states grow at most linearly in t, at a rate set by the module weights.

    Statement: for pre steps X⁺ = X + Δt F(N(X)), every row satisfies
        ‖x_{k,i}‖₂ ≤ ‖x_{0,i}‖₂ + Σ_{j<k} Δt_j·M_j,
    where M_j ≥ sup{max_i ‖F_j(U)_i‖ : every row ‖u_l‖ ≤ r_j} with r_j = ‖γ_j‖_∞√d + ‖β_j‖₂ (N1, the range of
    step j's input norm): ``mlp_output_sup(r_j, …)`` or ``attention_output_sup(r_j, …)``. LayerNorm-Scaling
    (N(X)/√ℓ) is the same with r_j/√ℓ. Returns the K+1 bounds.

    Proof: every row of N(X) has norm ≤ r_j (N1), so each row of F_j(N(X)) has norm ≤ M_j; triangle inequality
    and summation as in F2.

    No weight-free bound exists: M_j is homogeneous of degree one in the output map (W₂, W_O, biases), and
    the witness family ``theory.witnesses.f3_pre_witness`` attains the bound with equality for every scale λ
    of those maps, so its growth ‖x_K‖ − ‖x_0‖ = λ·Σ Δt_j M_j(1) is unbounded in λ (paper claim K3).

    Assumptions: x0_norm ≥ 0, Δt_j > 0, M_j ≥ 0. Provenance: paper claim K3, our statement.
    Domain: ValueError naming the parameter.
    """
    k = _n_steps_from(n_steps, dt=dt, m=m)
    x0 = _nonneg_array("x0_norm", x0_norm)
    dts = _per_step("dt", dt, k, positive=True)
    mm = _per_step("m", m, k)
    return _cumulative(x0, _steps_first(dts, mm))


# ---- F4: none ----------------------------------------------------------------------------------------------------
def none_gronwall_bound(m0, dt, a, b, n_steps=None, form: str = "product") -> np.ndarray:
    """F4 — without normalisation the max row norm grows at most exponentially (discrete Grönwall).

    Setting: X⁺ = X + Δt F(X), M_k = max_i ‖x_{k,i}‖₂. If every sublayer obeys max_i‖F_k(X)_i‖ ≤ a_k·M + b_k
    whenever max_i‖x_i‖ ≤ M — true with a_k, b_k the gain and offset of ``mlp_output_sup`` /
    ``attention_output_sup`` (both affine in r; the attention bound needs the MAX row norm because rows mix) —
    then M_{k+1} ≤ (1 + Δt_k a_k)·M_k + Δt_k b_k, and by induction (discrete Grönwall)

        form="product":  M_k ≤ P_k·m0 + Σ_{j<k} Δt_j b_j·P_k/P_{j+1},   P_k = Π_{j<k}(1 + Δt_j a_j)
        form="exp":      M_k ≤ exp(Σ_{j<k} Δt_j a_j)·(m0 + Σ_{j<k} Δt_j b_j)   (looser, continuous-time form).

    The product form is the exact solution of the comparison recursion, hence the tightest bound that uses only
    (a_k, b_k); 1 + x ≤ eˣ gives the exp form. Returns the K+1 bounds.

    Equality: rows all equal to c·v̂, F_k mapping v̂-aligned rows to (a_k M + b_k)v̂ (rank-one ReLU MLP,
    rank-one attention values) — ``theory.witnesses.f4_none_witness`` grows exactly like the product form.

    Assumptions: m0 ≥ 0, Δt_k > 0, a_k ≥ 0, b_k ≥ 0. Provenance: paper claim K3 (the unnormalised/exponential
    regime), our statement. Domain: ValueError naming the parameter; an overflow returns inf (a finite bound
    does not exist in float64), never NaN.
    """
    if form not in ("product", "exp"):
        raise ValueError(f"form must be 'product' or 'exp', got {form!r}")
    k = _n_steps_from(n_steps, dt=dt, a=a, b=b)
    m0_ = _nonneg_array("m0", m0)
    dts = _per_step("dt", dt, k, positive=True)
    aa = _per_step("a", a, k)
    bb = _per_step("b", b, k)
    m0_, aa, bb = _align(m0_, aa, bb)
    da = _steps_first(dts, aa)  # (K, *S)
    db = _steps_first(dts, bb)
    zero = np.zeros((1,) + da.shape[1:])
    with np.errstate(over="ignore", invalid="ignore"):
        if form == "exp":
            ea = np.exp(np.concatenate([zero, np.cumsum(da, axis=0)], axis=0))
            start = _cumulative(m0_, db)
            out = np.where(start > 0, ea * start, 0.0)
        else:
            logp = np.concatenate([zero, np.cumsum(np.log1p(da), axis=0)], axis=0)  # log P_k, k = 0..K
            # Σ_{j<k} db_j·exp(logP_k − logP_{j+1}): a (K+1) × K lower-triangular sum, never dividing big numbers.
            kk = np.arange(k + 1)[:, None]
            jj = np.arange(k)[None, :]
            expo = logp[:, None] - logp[None, 1:]  # (K+1, K, *S): logP_k − logP_{j+1}
            mask = (jj < kk).reshape((k + 1, k) + (1,) * (da.ndim - 1))
            terms = np.where(mask & (db[None] > 0), db[None] * np.exp(np.where(mask, expo, 0.0)), 0.0)
            out = np.where(m0_ > 0, np.exp(logp) * m0_, 0.0) + terms.sum(axis=1)
    return out
