"""F8 — a-posteriori certificates: the forward bounds F1/F2/F3 and the B3 gradient envelope evaluated with the
constants of one given model (its weights, gains and activations, layer by layer).

Pure mathematics (numpy only): the recursions that turn per-step constants into per-layer bounds. The constants
are measured on a model by ``verify.training.certificates``; the proofs are in ``docs/theorems/F8-F9.md``.

Statement (F8). Let a stack of K steps act on rows x_{k,i} (one row per token and sequence).
  (a) forward:  if every step j is either a residual step with ‖x_{j+1,i} − x_{j,i}‖ ≤ Δt_j·c_{j,i}, or a
                normalising step (post, DeepNorm, a Mix-LN post block) with ‖x_{j+1,i}‖ ≤ c_{j,i}, then
                ‖x_{k,i}‖ ≤ R_{k,i}, where R_{0,i} = ‖x_{0,i}‖ and
                    R_{j+1,i} = R_{j,i} + Δt_j c_{j,i}   (residual)   or   R_{j+1,i} = c_{j,i}   (normalising).
                The constants may be per row (the a-posteriori tier: c_{j,i} = ‖branch_j(X_j)_i‖ measured on the
                very input, so only the triangle inequality remains) or the same for every row (F1/F2/F3 with
                the layer's own weight norms and gains: the a-priori tiers).
  (b) gradient: if ‖A_jᵀ p‖ ≤ g_j‖p‖ for every p (g_j = ‖A_j‖₂ of that model's step Jacobian on that input,
                per sequence), then ‖p_k‖ ≤ ∏_{j≥k} g_j·‖p_K‖ (B3 with the tightest per-step constant); the
                factor lost at k is the product of the per-step alignment factors ‖A_jᵀp_{j+1}‖/(g_j‖p_{j+1}‖).
Equality: (a) when every update row is aligned with its row (the F2/F3 witnesses); (b) when p_K is a common top
singular direction of every A_jᵀ (the B3 witnesses).
Provenance: paper claims K1–K4 (our F1–F3, B3) applied a posteriori; the tiering is ours.
"""
from __future__ import annotations

import numpy as np

__all__ = ["forward_chain", "gradient_chain", "one_step_ratios"]


def _arr(name: str, value, ndim_min: int = 0) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a real array, got {value!r}") from exc
    if arr.ndim < ndim_min:
        raise ValueError(f"{name} must have at least {ndim_min} dimension(s), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    if not np.all(arr >= 0):
        raise ValueError(f"{name} must be >= 0 entrywise")
    return arr


def _flags(name: str, value) -> np.ndarray:
    """Booleans (or the numbers 0 and 1): a NaN, an inf or a string is not silently True."""
    arr = np.asarray(value)
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind not in "iuf" or not np.all(np.isin(arr, (0, 1))):
        raise ValueError(f"{name} must hold booleans (True/False or 0/1), got {value!r}")
    return arr.astype(bool)


def forward_chain(x0_norm, dt, c, normalising) -> np.ndarray:
    """F8 (a) — R_k for k = 0..K from R_0 = ``x0_norm`` (shape S), ``dt`` (K,), ``c`` (K, *S or broadcast) and
    ``normalising`` (K booleans: True where step j's output is a norm layer's, R_{j+1} = c_j).

    Returns shape (K+1, *S). ``c`` for a normalising step is the bound on its output row norm (F1:
    ‖γ‖_∞√d + ‖β‖₂, or the measured ‖γ⊙ẑ_i‖ + ‖β‖); for a residual step the bound on its branch row norm
    (F2: C_out; F3: the sublayer supremum M_j; a posteriori: the measured ‖branch_j(X_j)_i‖).
    Domain: ValueError naming the parameter (Δt > 0 at every step, normalising ones included — Δt = 0 is an error
    project-wide, docs/theorems/engine.md; c ≥ 0 finite; ``normalising`` booleans (or 0/1); lengths agree).
    """
    x0 = _arr("x0_norm", x0_norm)
    d = _arr("dt", dt, 1)
    if d.ndim != 1 or not np.all(d > 0):
        raise ValueError("dt must be a 1-d array of step sizes > 0")
    cc = _arr("c", c, 1)
    flags = _flags("normalising", normalising)
    if flags.shape != d.shape or cc.shape[0] != d.shape[0]:
        raise ValueError(f"c, dt and normalising must have one entry per step ({d.shape[0]}), got "
                         f"{cc.shape[0]}, {d.shape[0]}, {flags.shape}")
    shape = np.broadcast_shapes(x0.shape, cc.shape[1:])
    out = np.empty((d.size + 1,) + shape)
    out[0] = np.broadcast_to(x0, shape)
    for j in range(d.size):
        out[j + 1] = np.broadcast_to(cc[j], shape) if flags[j] else out[j] + d[j] * cc[j]
    return out


def gradient_chain(gains, p_final_norm) -> np.ndarray:
    """F8 (b) — ∏_{j≥k} g_j·‖p_K‖ for k = 0..K; ``gains`` (K, *S), ``p_final_norm`` broadcast against S."""
    g = _arr("gains", gains, 1)
    p = _arr("p_final_norm", p_final_norm)
    ones = np.ones((1,) + g.shape[1:])
    with np.errstate(over="ignore"):
        suffix = np.concatenate([np.cumprod(g[::-1], axis=0)[::-1], ones], axis=0)
        return p * suffix


def one_step_ratios(p_norms, gains) -> np.ndarray:
    """‖p_k‖/(g_k‖p_{k+1}‖), k = 0..K−1: how much of its one-step inequality each step uses (≤ 1); their product
    over j ≥ k is the chained ratio ‖p_k‖/(∏_{j≥k} g_j‖p_K‖). 0/0 := 1 (a zero adjoint loses nothing)."""
    p = _arr("p_norms", p_norms, 1)
    g = _arr("gains", gains, 1)
    if p.shape[0] != g.shape[0] + 1:
        raise ValueError(f"p_norms must have one more entry than gains along axis 0, got {p.shape[0]}, {g.shape[0]}")
    den = g * p[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, p[:-1] / np.where(den > 0, den, 1.0), np.where(p[:-1] > 0, np.inf, 1.0))
