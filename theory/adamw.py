"""F9 — AdamW with decoupled weight decay: a bound on the weights along the whole trajectory, and the pre-LN
hidden-state envelope it gives.

Pure mathematics (numpy only). Proofs in ``docs/theorems/F8-F9.md``; the numerical side is
``verify/checks/certificates.py`` (torch's own ``AdamW`` on witness gradient streams and on trained GPTs) and
``verify.training.certificates.adamw_envelope_ratio``.

Setting (torch.optim.AdamW, amsgrad off). For one parameter tensor W and optimiser steps t = 1, 2, …, with any
gradients g_t (clipped or not, any data, any loss), learning rates η_t > 0 and decoupled decay λ ≥ 0:

    m_t = β₁m_{t−1} + (1−β₁)g_t,  v_t = β₂v_{t−1} + (1−β₂)g_t²,  m_0 = v_0 = 0,
    u_t = m̂_t/(√v̂_t + ε),  m̂_t = m_t/(1−β₁ᵗ),  v̂_t = v_t/(1−β₂ᵗ),
    W_t = (1 − η_tλ)·W_{t−1} − η_t·u_t                          (entrywise; torch decays first, same η_t).

Statement (F9).
  (a) update:    |u_t| ≤ C_t entrywise, for every gradient stream, with
                   C_t = (1−β₁)/(1−β₁ᵗ) · √((1−β₂ᵗ)/(1−β₂)) · √(Σ_{i=0}^{t−1} q^i),   q = β₁²/β₂;
                 C_t ↑ C_∞ = (1−β₁)/√((1−β₂)(1−q)) when q < 1 (β₁² < β₂). Equality (ε = 0) for every t at
                 once: the constant-sign geometric stream g_s = c·(β₂/β₁)^s (``adam_witness_stream``).
  (b) weights:   with P_t = ∏_{s≤t}(1 − η_sλ) (assumed η_sλ < 1) and S_t = Σ_{s≤t} η_s C_s P_t/P_s,
                   |W_t − P_t W_0| ≤ S_t entrywise,  so for an m×n matrix
                   ‖W_t‖ ≤ P_t‖W_0‖ + √(mn)·S_t   (‖·‖ spectral or Frobenius),
                 and for a vector (bias, gain) ‖b_t‖₂ ≤ P_t‖b_0‖₂ + √m·S_t, ‖γ_t‖_∞ ≤ P_t‖γ_0‖_∞ + S_t.
                 Constant η, λ > 0: P_t = (1−ηλ)^t, S_t ≤ C_∞·(1 − (1−ηλ)^t)/λ.
  (c) envelope:  for a pre-LN stack the F3 bound ‖x_{k,i}‖ ≤ ‖x_{0,i}‖ + Σ_{j<k} Δt_j M_j holds with M_j the
                 F3 sublayer supremum evaluated at the (b) bounds of that layer's weights, gains and biases at
                 step t, and ‖x_{0,i}‖ at the (b) bounds of the embedding rows: an envelope for every step t
                 of training that depends on (W_0, η, λ, β₁, β₂, t) only — never on the data or the gradients.

  (d) optimality: (b) is attained in spectral norm — W_0 = −a·s tᵀ/√(mn) (a ≥ 0, s ∈ {±1}^m, t ∈ {±1}^n) and
                 the gradient stream g_s = c·(β₂/β₁)^{s−1}·s tᵀ (``adam_sign_pattern_stream``) give, at ε = 0,
                 u_s = C_s·s tᵀ and W_T = −(P_T a/√(mn) + S_T)·s tᵀ, so ‖W_T‖₂ = P_T‖W_0‖₂ + √(mn)·S_T exactly.

Statement (F9b, windowed / online). For a checkpoint at step t₀ ≥ 0 and every t₀ < t ≤ T,
    |W_t − P_{t₀,t}W_{t₀}| ≤ S_{t₀,t} entrywise,  ‖W_t‖ ≤ P_{t₀,t}‖W_{t₀}‖ + √(mn)·S_{t₀,t},
with P_{t₀,t} = ∏_{t₀<s≤t}(1 − η_sλ) and S_{t₀,t} = Σ_{t₀<s≤t} η_sC_s·P_{t₀,t}/P_{t₀,s} (C_s at the *global* step s,
``adamw_window_factors``): (b) restarted at t₀. It needs nothing of the optimiser state at t₀ — (a) holds for every
gradient history g_1..g_s, in particular for whatever history produced the moments at t₀ (it does *not* hold for
an arbitrary (m, v) that Adam cannot reach from m_0 = v_0 = 0, e.g. edited or foreign state; an optimiser re-created
at t₀ is covered too, because C_s is non-decreasing in s). Fed into F3's chain as in (c) it is a hidden-state
envelope from t₀ to t that uses only the measured weights at t₀ and the schedule: an online monitor.

Equality: (a) by the witness stream; (b) for a scalar (or a rank-one sign pattern) with W_0 of the sign
opposite to the saturated update, so every step adds η_tC_t to |W|; the √(mn) is attained by W_0 = 0 and
u_t = C_t·s tᵀ with sign vectors s, t (‖s tᵀ‖₂ = √(mn)).
Provenance: neighbour: Kingma & Ba 2015 (Adam), Loshchilov & Hutter 2019 (AdamW); the update bound of (a) in
this form is ours (the classical |u| ≤ (1−β₁)/√(1−β₂) is the cruder termwise version). Domain: ValueError
naming the parameter.
"""
from __future__ import annotations

import math

import numpy as np

from theory._domain import (
    as_float_array,
    require_int,
    require_nonnegative,
    require_positive,
    require_real,
)

__all__ = [
    "adam_update_bound",
    "adam_update_bound_limit",
    "adam_witness_stream",
    "adamw_decay_products",
    "adamw_deviation_bound",
    "adamw_norm_bound",
    "adamw_window_factors",
    "adamw_window_norm_bound",
    "adam_sign_pattern_stream",
    "WINDOW_DECAYS",
]


def _betas(beta1, beta2) -> tuple[float, float]:
    require_real("beta1", beta1)
    require_real("beta2", beta2)
    if not 0 <= beta1 < 1:
        raise ValueError(f"beta1 must lie in [0, 1), got {beta1!r}")
    if not 0 <= beta2 < 1:
        raise ValueError(f"beta2 must lie in [0, 1), got {beta2!r}")
    if beta2 == 0 and beta1 > 0:
        raise ValueError("beta2 must be > 0 when beta1 > 0 (q = beta1²/beta2)")
    return float(beta1), float(beta2)


def _steps(name: str, value) -> np.ndarray:
    """Optimiser step counts t ≥ 1 (int or array of ints)."""
    arr = np.asarray(value)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be an integer >= 1 or an array of them, got {value!r}")
    if arr.size and arr.min() < 1:
        raise ValueError(f"{name} must be >= 1, got min {arr.min()!r}")
    return arr.astype(np.int64)


def adam_update_bound(t, beta1: float = 0.9, beta2: float = 0.95, exponent: float = 0.5):
    """F9 (a) — C_t with |m̂_t/(√v̂_t + ε)| ≤ C_t entrywise for every gradient stream, at optimiser step t ≥ 1.

    C_t = (1−β₁)/(1−β₁ᵗ)·√((1−β₂ᵗ)/(1−β₂))·(Σ_{i<t} q^i)^{1/2}, q = β₁²/β₂ (``exponent`` = 1/2 is the theorem;
    other values exist only for the meta-tests).

    Proof: |m_t| ≤ (1−β₁)Σ_s β₁^{t−s}|g_s| = (1−β₁)Σ_s (β₁^{t−s}β₂^{−(t−s)/2})(β₂^{(t−s)/2}|g_s|)
    ≤ (1−β₁)(Σ_s q^{t−s})^{1/2}(Σ_s β₂^{t−s}g_s²)^{1/2} = (1−β₁)(Σ_{i<t}q^i)^{1/2}·√(v_t/(1−β₂)) (Cauchy–Schwarz);
    divide by (1−β₁ᵗ) and by √v̂_t = √(v_t/(1−β₂ᵗ)); ε > 0 only lowers |u|. (0/0 := 0 when every g_s = 0.)
    Equality (ε = 0) iff β₂^{(t−s)/2}|g_s| ∝ β₁^{t−s}β₂^{−(t−s)/2} with one sign, i.e. |g_s| ∝ (β₂/β₁)^s.
    Assumptions: β₁, β₂ ∈ [0, 1). Provenance: neighbour (Adam), our statement. Domain: ValueError naming it.
    """
    b1, b2 = _betas(beta1, beta2)
    tt = _steps("t", t)
    exponent = float(require_real("exponent", exponent))
    q = 0.0 if b1 == 0 else b1 * b1 / b2
    tf = tt.astype(float)
    geo = tf if q == 1.0 else (1.0 - q ** tf) / (1.0 - q)
    out = (1 - b1) / (1 - b1 ** tf) * np.sqrt((1 - b2 ** tf) / (1 - b2)) * geo ** float(exponent)
    return float(out) if out.ndim == 0 else out


def adam_update_bound_limit(beta1: float = 0.9, beta2: float = 0.95) -> float:
    """F9 (a), t → ∞: C_∞ = (1−β₁)/√((1−β₂)(1−β₁²/β₂)) = sup_t C_t; inf when β₁² ≥ β₂ (no uniform bound)."""
    b1, b2 = _betas(beta1, beta2)
    q = 0.0 if b1 == 0 else b1 * b1 / b2
    if q >= 1:
        return math.inf
    return (1 - b1) / math.sqrt((1 - b2) * (1 - q))


def adam_witness_stream(n_steps: int, beta1: float = 0.9, beta2: float = 0.95, scale: float = 1.0) -> np.ndarray:
    """The gradient stream g_s = scale·(β₂/β₁)^{s−1}, s = 1..n_steps, that attains F9 (a) at every step (ε = 0).

    Constant sign and geometric growth at rate β₂/β₁ make the Cauchy–Schwarz step an equality for every t at once
    (the weights β₁^{t−s}/β₂^{t−s} and the gradients are proportional). Needs β₁ > 0.
    Domain: n_steps ≥ 1, β₁ ∈ (0, 1), scale > 0 finite (the updates are then +C_t; a negative scale only mirrors
    the stream, −stream does that, and scale = 0 is no witness at all: u ≡ 0).
    """
    require_int("n_steps", n_steps, 1)
    b1, b2 = _betas(beta1, beta2)
    if b1 == 0:
        raise ValueError("beta1 must be > 0 for the witness stream")
    require_positive("scale", scale)
    return float(scale) * (b2 / b1) ** np.arange(n_steps, dtype=float)


def _lrs(lrs, weight_decay) -> tuple[np.ndarray, float]:
    eta = as_float_array("lrs", lrs)
    if eta.ndim != 1 or eta.size < 1:
        raise ValueError(f"lrs must be a 1-d sequence with one learning rate per optimiser step, got shape {eta.shape}")
    if not np.all(np.isfinite(eta)) or not np.all(eta > 0):
        raise ValueError("lrs must be finite and > 0 at every step")
    lam = float(require_nonnegative("weight_decay", weight_decay))
    if np.any(eta * lam >= 1):
        raise ValueError(f"weight_decay·lr must be < 1 at every step (decay factor 1 − ηλ > 0), got max "
                         f"{float(np.max(eta * lam))!r}")
    return eta, lam


def adamw_decay_products(lrs, weight_decay) -> np.ndarray:
    """P_t = ∏_{s≤t}(1 − η_sλ) for t = 0..T (P_0 = 1): the factor AdamW's decoupled decay puts on W_0."""
    eta, lam = _lrs(lrs, weight_decay)
    return np.concatenate([[1.0], np.cumprod(1.0 - eta * lam)])


def adamw_deviation_bound(lrs, weight_decay, beta1: float = 0.9, beta2: float = 0.95, decay_exponent: float = 1.0,
                          update_bound=adam_update_bound) -> np.ndarray:
    """F9 (b) — S_t with |W_t − P_tW_0| ≤ S_t entrywise, t = 0..T (S_0 = 0), for ``lrs`` = (η_1, …, η_T).

    Recursion (the proof): E_t := W_t − P_tW_0 satisfies E_t = (1−η_tλ)E_{t−1} − η_tu_t, so
    |E_t| ≤ (1−η_tλ)|E_{t−1}| + η_tC_t, i.e. S_t = (1−η_tλ)S_{t−1} + η_tC_t = Σ_{s≤t} η_sC_s·P_t/P_s.
    ``decay_exponent`` (1 is the theorem) replaces (1−η_tλ) by (1−η_tλ)^e — for the meta-test of the wrong
    exponent only; ``update_bound`` is injectable for the meta-test of a wrong C_t.
    """
    eta, lam = _lrs(lrs, weight_decay)
    decay_exponent = float(require_real("decay_exponent", decay_exponent))
    c = np.asarray(update_bound(np.arange(1, eta.size + 1), beta1, beta2), dtype=float)
    rho = (1.0 - eta * lam) ** decay_exponent
    s = np.zeros(eta.size + 1)
    for t in range(eta.size):
        s[t + 1] = rho[t] * s[t] + eta[t] * c[t]
    return s


def adamw_norm_bound(w0_norm, lrs, weight_decay, size: int, beta1: float = 0.9, beta2: float = 0.95,
                     decay_exponent: float = 1.0, update_bound=adam_update_bound) -> np.ndarray:
    """F9 (b) — ‖W_t‖ ≤ P_t‖W_0‖ + √size·S_t for t = 0..T (shape (T+1, *shape of w0_norm)).

    ``size`` = mn for a matrix under the spectral or Frobenius norm, m for a vector's 2-norm, 1 for its ∞-norm
    (or any single entry). ``w0_norm`` ≥ 0 (an array broadcasts: many tensors with the same schedule at once).
    """
    require_int("size", size, 1)
    w0 = as_float_array("w0_norm", w0_norm)
    if not np.all(np.isfinite(w0)) or not np.all(w0 >= 0):
        raise ValueError("w0_norm must be finite and >= 0")
    decay_exponent = float(require_real("decay_exponent", decay_exponent))
    p = adamw_decay_products(lrs, weight_decay) ** decay_exponent
    s = adamw_deviation_bound(lrs, weight_decay, beta1, beta2, decay_exponent, update_bound)
    shape = (p.size,) + (1,) * w0.ndim
    return p.reshape(shape) * w0 + math.sqrt(size) * s.reshape(shape)


WINDOW_DECAYS = ("restarted", "global", "none")


def adamw_window_factors(lrs, weight_decay, t0: int, beta1: float = 0.9, beta2: float = 0.95,
                         update_bound=adam_update_bound, decay: str = "restarted") -> tuple[np.ndarray, np.ndarray]:
    """F9b — (P_{t₀,t}, S_{t₀,t}) for t = t₀..T, for ``lrs`` = the whole schedule (η_1, …, η_T) and a checkpoint t₀.

    P_{t₀,t} = ∏_{t₀<s≤t}(1 − η_sλ), S_{t₀,t} = (1 − η_tλ)S_{t₀,t−1} + η_tC_t, S_{t₀,t₀} = 0, with C_t at the global
    step t (Adam's bias corrections count from step 1 whatever t₀ is). Then |W_t − P_{t₀,t}W_{t₀}| ≤ S_{t₀,t}.
    Proof: E_t = W_t − P_{t₀,t}W_{t₀} satisfies E_t = (1 − η_tλ)E_{t−1} − η_tu_t, E_{t₀} = 0, and |u_t| ≤ C_t by (a)
    for every gradient history (the one before t₀ included). t₀ = 0 gives (b)'s P_t, S_t.

    ``decay`` exists for the meta-tests only: "restarted" is the theorem; "global" multiplies W_{t₀} by the
    product from step 1 (P_t instead of P_{t₀,t}: too small, violated by the sign-pattern witness); "none" drops
    the decay from the window (P ≡ 1 and S = Σ η_sC_s: a valid but larger bound, which the witness does not attain).
    Domain: t₀ an integer in [0, T − 1]; the rest as ``adamw_deviation_bound``; ValueError naming the parameter.
    """
    eta, lam = _lrs(lrs, weight_decay)
    require_int("t0", t0, 0)
    if t0 >= eta.size:
        raise ValueError(f"t0 must be < len(lrs) = {eta.size} (a window needs at least one step), got {t0!r}")
    if decay not in WINDOW_DECAYS:
        raise ValueError(f"decay must be one of {WINDOW_DECAYS}, got {decay!r}")
    c = np.asarray(update_bound(np.arange(t0 + 1, eta.size + 1), beta1, beta2), dtype=float)
    rho = 1.0 - eta[t0:] * lam
    if decay == "none":
        rho = np.ones_like(rho)
    p = np.concatenate([[1.0], np.cumprod(rho)])
    s = np.zeros(p.size)
    for i in range(rho.size):
        s[i + 1] = rho[i] * s[i] + eta[t0 + i] * c[i]
    if decay == "global":
        p = p * float(np.prod(1.0 - eta[:t0] * lam))
    return p, s


def adamw_window_norm_bound(w_t0_norm, lrs, weight_decay, size: int, t0: int, beta1: float = 0.9,
                            beta2: float = 0.95, update_bound=adam_update_bound, decay: str = "restarted") -> np.ndarray:
    """F9b — ‖W_t‖ ≤ P_{t₀,t}‖W_{t₀}‖ + √size·S_{t₀,t} for t = t₀..T (shape (T − t₀ + 1, *shape of w_t0_norm)).

    ``w_t0_norm``: the norm of the weights measured at the checkpoint t₀ (≥ 0; an array broadcasts); ``size`` as in
    ``adamw_norm_bound`` (mn for a matrix, m for a vector's 2-norm, 1 for an ∞-norm).
    """
    require_int("size", size, 1)
    w0 = as_float_array("w_t0_norm", w_t0_norm)
    if not np.all(np.isfinite(w0)) or not np.all(w0 >= 0):
        raise ValueError("w_t0_norm must be finite and >= 0")
    p, s = adamw_window_factors(lrs, weight_decay, t0, beta1, beta2, update_bound, decay)
    shape = (p.size,) + (1,) * w0.ndim
    return p.reshape(shape) * w0 + math.sqrt(size) * s.reshape(shape)


def adam_sign_pattern_stream(n_steps: int, row_signs, col_signs, beta1: float = 0.9, beta2: float = 0.95,
                             scale: float = 1.0) -> np.ndarray:
    """F9 (d) — the matrix gradient stream g_s = scale·(β₂/β₁)^{s−1}·s tᵀ, shape (n_steps, m, n).

    Every entry is (±) the witness stream of (a), so at ε = 0 Adam's update is u_s = C_s·s tᵀ, a rank-one sign
    pattern with ‖u_s‖₂ = √(mn)·C_s = √(mn)·max|u_s|: ‖E‖₂ ≤ √(mn)·max|E| is attained at every step, and with
    W_0 = −a·s tᵀ/√(mn) AdamW's ‖W_T‖₂ equals (b)'s P_T a + √(mn)S_T. Domain: signs are non-empty 1-d ±1 arrays.
    """
    signs = []
    for name, v in (("row_signs", row_signs), ("col_signs", col_signs)):
        try:
            a = np.asarray(v, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be a non-empty 1-d array of ±1, got {v!r}") from exc
        if a.ndim != 1 or a.size < 1 or not np.all(np.abs(a) == 1):
            raise ValueError(f"{name} must be a non-empty 1-d array of ±1, got {v!r}")
        signs.append(a)
    rs, cs = signs
    g = adam_witness_stream(n_steps, beta1, beta2, scale)
    return g[:, None, None] * np.outer(rs, cs)[None]
