"""S1, S2 — the (B, τ) stability criterion and the step sizes it admits (paper claim K5, our statement).

S1 (criterion). A stack of K residual steps with step sizes Δt_k is **(B, τ)-stable** when

    forward   G := max_k M_k / M_0 ≤ B,          M_k = max_i ‖x_{k,i}‖₂ (largest row of X_k),
    backward  Λ := max_k log ‖J_{k→K}‖₂ ≤ τ,      J_{k→K} = ∂X_K/∂X_k = A_{K−1}⋯A_k (X vectorised in R^{nd}),

i.e. no hidden state grows by more than B and no gradient p_k = J_{k→K}ᵀ p_K grows by more than e^τ on its way
back. The criterion is applied to *bounds* of G and Λ computed a priori — from Δt, the norm gains, ε, the
sublayers' weight norms and two numbers of the input (its largest row norm M_0 and its smallest row scale σ_0) —
never from a forward pass. Two generic constants per step carry everything:

    forward  ‖x_{k+1}‖ ≤ (1 + Δt_k a_k)‖x_k‖ + Δt_k c_k   (a_k = 0 for the normalised placements),
    backward ‖A_k − I‖ ≤ Δt_k ℓ_k                         (post: ‖A_k‖ ≤ g_k(1 + Δt_k ℓ_k) instead),

so G ≤ Π(1+Δt a) + Σ_k Δt_k c_k/M_0 Π_{j>k}(1+Δt_j a_j) (discrete Grönwall, ``theory.forward``) and
Λ ≤ max_k Σ_{j≥k} log L_j with L_j = 1 + Δt_j ℓ_j (B3). Placement by placement (proofs in docs/theorems/S.md):

- peri: c_k = ‖γ_out‖_∞√d + ‖β_out‖ (F2) — weight-free; ℓ_k = (‖γ_out‖_∞/s_F)·J_k·(‖γ_in‖_∞/s_k) (B2), with J_k
  the sup of the sublayer Jacobian over the input norm's range, s_F a floor on the sublayer output's scale
  (√ε_out unless given) and s_k a floor on the state's scale.
- pre: c_k = M_k, the sup of the sublayer output over the norm's range (F3) — grows with the weights without
  limit, so *no* Δt > 0 is admissible uniformly over unbounded weights; ℓ_k = J_k·‖γ‖_∞/s_k (B2).
- post: G ≤ max(1, (‖γ‖_∞√d + ‖β‖)/M_0) for every Δt (F1) — Δt cannot change it; ‖A_k‖ ≤ (|γ|/s_Y,k)(1 + Δt_k J_k)
  (B2) with a floor on the scale of Y_k = X_k + Δt F(X_k) that Δt lowers.
- none: a_k, c_k the gain and offset of the sublayer output (F4, exponential); ℓ_k = J_k (B2).

Scale floors are propagated a priori: the centring map is linear, so ‖c(x_k)‖ ≥ ‖c(x_0)‖ − Σ_{j<k} Δt_j c_j and
s_k ≥ √(((σ_0 − Σ_{j<k}Δt_j c_j/√d)₊)² + ε) (RMSNorm: the same with uncentred norms). With σ_0 = 0 this is the
global floor √ε, and every constant is independent of Δt: then the largest admissible uniform Δt has a closed
form (``max_uniform_dt_closed_form``); in general G and Λ are nondecreasing in Δt and ``max_uniform_dt`` finds it
by a bracketing root search.

S2 (optimal schedule). Maximising the total time T = Σ Δt_k under the criterion. With the one-sided backward
constraint Σ log(1 + Δt_k ℓ_k) ≤ τ the problem is *not* convex and its optimum puts all of T on the single step
of smallest ℓ (``one_sided_optimal_time``). With the two-sided constraint Σ −log(1 − Δt_k ℓ_k) ≤ τ — which also
keeps gradients from vanishing, ∏(1 − Δt ℓ) ≥ e^{−τ}, and implies the one-sided one — the problem is convex and
its solution is a water-filling Δt_k = (1/ℓ_k − λ/(1 − μ c_k))₊ (``optimal_step_sizes``).

Provenance: paper claim K5 (a general stability criterion guiding the residual scaling), our statement; the
paper's own criterion is not available to this project. Domain errors are ValueErrors naming the parameter.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import optimize, special

from theory._domain import (
    NORMS,
    as_float_array,
    as_vector,
    require_choice,
    require_int,
    require_nonnegative,
    require_positive,
    require_real,
    require_width,
    step_sizes,
)
from theory.backward import (
    none_step_deviation_bound,
    peri_step_deviation_bound,
    post_step_norm_bound,
    pre_step_deviation_bound,
)
from theory.forward import (
    attention_output_sup,
    mlp_output_sup,
    none_gronwall_bound,
    peri_norm_bound,
    post_row_bound,
    pre_norm_bound,
)

__all__ = [
    "ACTIVATION_LIPSCHITZ",
    "GELU_LIPSCHITZ",
    "STABILITY_BOUNDS",
    "AdmissibleStep",
    "OptimalSchedule",
    "StabilityBounds",
    "SublayerNorms",
    "attention_jacobian_sup",
    "backward_log_gain_bound",
    "forward_gain_bound",
    "max_uniform_dt",
    "max_uniform_dt_closed_form",
    "mlp_jacobian_sup",
    "none_stability_bounds",
    "one_sided_optimal_time",
    "optimal_step_sizes",
    "peri_stability_bounds",
    "post_max_dt_closed_form",
    "post_stability_bounds",
    "pre_stability_bounds",
    "propagated_scale_floor",
    "schedule_dual_value",
    "stability_bounds",
    "water_level",
]

SIDES = ("upper", "two")

# max_x |GELU'(x)|: GELU'' = φ(x)(2 − x²) vanishes at ±√2, and GELU'(√2) = Φ(√2) + √2 φ(√2) ≈ 1.1289 beats
# |GELU'(−√2)| ≈ 0.1289 (and the limits 0, 1). ReLU is 1-Lipschitz.
GELU_LIPSCHITZ = float(special.ndtr(math.sqrt(2.0)) + math.sqrt(2.0) * math.exp(-1.0) / math.sqrt(2.0 * math.pi))
ACTIVATION_LIPSCHITZ = {"relu": 1.0, "gelu": GELU_LIPSCHITZ}


# ---- validation ----------------------------------------------------------------------------------------------
def _norm_value(name: str, value) -> float:
    """A weight norm: a real ≥ 0, +inf allowed (it stands for 'unbounded weights')."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a real number >= 0 (inf allowed), got {value!r}")
    value = float(value)
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be >= 0 (inf allowed), got {value!r}")
    return value


def _norm_tuple(name: str, values) -> tuple[float, ...]:
    if isinstance(values, (int, float, np.floating)) and not isinstance(values, bool):
        values = (values,)
    arr = as_float_array(name, values).ravel()
    return tuple(_norm_value(f"{name}[{h}]", float(v)) for h, v in enumerate(arr))


def _require_B_tau(B, tau):
    require_real("B", B)
    if not B > 1:
        raise ValueError(f"B must be > 1 (a forward gain of at most 1 forbids any growth), got {B!r}")
    require_positive("tau", tau)
    return float(B), float(tau)


def _require_sublayers(sublayers) -> tuple[SublayerNorms, ...]:
    if isinstance(sublayers, SublayerNorms):
        sublayers = (sublayers,)
    if not isinstance(sublayers, Sequence) or not sublayers:
        raise ValueError(f"sublayers must be a non-empty sequence of SublayerNorms, got {sublayers!r}")
    for k, s in enumerate(sublayers):
        if not isinstance(s, SublayerNorms):
            raise ValueError(f"sublayers[{k}] must be a SublayerNorms, got {type(s).__name__}")
    return tuple(sublayers)


# ---- S1 lemma: sublayer Jacobian suprema -----------------------------------------------------------------------
def mlp_jacobian_sup(w1_norm, w2_norm, activation: str = "gelu") -> float:
    """S1 lemma (MLP) — sup over all inputs of ‖J_F‖₂ for F(U) = φ(U W₁ + b₁) W₂ + b₂ acting row-wise.

    Statement: ‖J_F(U)‖₂ ≤ L_φ·‖W₁‖₂·‖W₂‖₂ for every U, L_relu = 1, L_gelu = Φ(√2) + √2φ(√2) ≈ 1.1289.
    Proof: a row's differential is (du W₁ ⊙ φ'(z)) W₂ with |φ'| ≤ L_φ; rows do not interact, so the operator norm on
    R^{nd} is the largest row's. Equality: ReLU, an active unit on aligned top singular vectors of W₁ and W₂.
    Provenance: standard; used by S1/U1 (paper claim K5/K6, our statement). Domain: norms ≥ 0 (inf allowed).
    """
    require_choice("activation", activation, tuple(ACTIVATION_LIPSCHITZ))
    w1 = _norm_value("w1_norm", w1_norm)
    w2 = _norm_value("w2_norm", w2_norm)
    if w1 == 0 or w2 == 0:
        return 0.0
    return ACTIVATION_LIPSCHITZ[activation] * w1 * w2


def _attention_jacobian_core(r: float, n: int, wv: np.ndarray, wo: float, qk: np.ndarray, dh: int) -> float:
    if wo == 0:
        return 0.0
    kappa = 0.0 if n == 1 else 1.0 + math.sqrt(n)
    with np.errstate(invalid="ignore"):
        mix = kappa * r * r * qk / math.sqrt(dh) if kappa else np.zeros_like(qk)
        per_head = np.where(wv == 0, 0.0, wv * (math.sqrt(n) + mix))
    return float(wo * math.sqrt(float(np.sum(per_head * per_head))))


def attention_jacobian_sup(r, n_tokens, wv_head_norms, wo_norm, qk_head_norms=0.0, head_dim=1) -> float:
    """S1 lemma (attention) — sup of ‖J_F(U)‖₂ over inputs whose rows have ‖u_j‖₂ ≤ r, n tokens, any mask.

    F(U) = concat_h(P_h U W_V^h) W_O + b_O, P_h = softmax(U W_Q^h W_K^hᵀ Uᵀ/√d_h) row-stochastic. With
    A_h = W_Q^h W_K^hᵀ (``qk_head_norms`` = ‖A_h‖₂, or any upper bound such as ‖W_Q^h‖‖W_K^h‖):

        ‖J_F‖₂ ≤ ‖W_O‖₂ · √( Σ_h ‖W_V^h‖₂² (√n + κ_n r²‖A_h‖₂/√d_h)² ),   κ_1 = 0, κ_n = 1 + √n (n ≥ 2).

    Proof: dF_h = P_h dU W_V^h + dP_h U W_V^h. ‖P_h‖₂ ≤ √(‖P‖₁‖P‖_∞) ≤ √n. Row i of dP_h U is
    Σ_j p_ij(ds_ij − s̄_i)(u_j − ū_i) (softmax Jacobian diag(p) − ppᵀ), so by Cauchy–Schwarz in L²(p) its norm is
    ≤ max_j|ds_ij|·r, and |ds_ij| ≤ ‖A_h‖ r(‖du_i‖ + ‖du_j‖)/√d_h; summing squares over i gives the factor
    (1 + √n)‖dU‖_F. For n = 1, P ≡ 1 and the second term vanishes: attention is affine. Heads concatenate, so
    their squared norms add before W_O.
    Tightness: the first term is attained for n = 1 (affine map) with aligned singular vectors; for n ≥ 2 the
    bound is a worst case over patterns (loose). Provenance: our statement (used by S1/U1; paper claims K5/K6).
    Domain: r ≥ 0, n_tokens ≥ 1, head_dim ≥ 1, norms ≥ 0 (inf allowed); one qk norm per head (or a scalar).
    """
    require_nonnegative("r", r)
    n = require_int("n_tokens", n_tokens, 1)
    dh = require_int("head_dim", head_dim, 1)
    wv = np.asarray(_norm_tuple("wv_head_norms", wv_head_norms))
    if wv.size == 0:
        raise ValueError("wv_head_norms must hold at least one head")
    qk = np.asarray(_norm_tuple("qk_head_norms", qk_head_norms))
    if qk.size == 1:
        qk = np.full(wv.shape, qk[0])
    if qk.shape != wv.shape:
        raise ValueError(f"qk_head_norms must have one entry per head ({wv.size}), got {qk.size}")
    wo = _norm_value("wo_norm", wo_norm)
    return _attention_jacobian_core(float(r), n, wv, wo, qk, dh)


@dataclasses.dataclass(frozen=True)
class SublayerNorms:
    """S1 input — the operator norms of one step's sublayer, the only weight information the criterion uses.

    ``kind="mlp"``: ‖W₁‖₂, ‖W₂‖₂, ‖b₁‖₂, ‖b₂‖₂ and the activation. ``kind="attn"``: per head ‖W_V^h‖₂ and
    ‖W_Q^h W_K^hᵀ‖₂, ‖W_O‖₂, ‖b_O‖₂ and the head width d_h. Norms may be ``math.inf`` ('unbounded weights').
    Its methods evaluate the F3/F4 output sups (``theory.forward``) and the S1 Jacobian lemmas. Provenance: our
    statement (paper claim K5). Domain: norms ≥ 0 (inf allowed), d_h ≥ 1; ValueError naming the field.
    """

    kind: str
    w1_norm: float = 0.0
    w2_norm: float = 0.0
    b1_norm: float = 0.0
    b2_norm: float = 0.0
    activation: str = "gelu"
    wv_head_norms: tuple = (0.0,)
    wo_norm: float = 0.0
    bo_norm: float = 0.0
    qk_head_norms: tuple = (0.0,)
    head_dim: int = 1

    def __post_init__(self):
        require_choice("kind", self.kind, ("mlp", "attn"))
        require_choice("activation", self.activation, tuple(ACTIVATION_LIPSCHITZ))
        for name in ("w1_norm", "w2_norm", "b1_norm", "b2_norm", "wo_norm", "bo_norm"):
            object.__setattr__(self, name, _norm_value(name, getattr(self, name)))
        object.__setattr__(self, "wv_head_norms", _norm_tuple("wv_head_norms", self.wv_head_norms))
        qk = _norm_tuple("qk_head_norms", self.qk_head_norms)
        if len(qk) == 1 and len(self.wv_head_norms) > 1:
            qk = qk * len(self.wv_head_norms)
        if len(qk) != len(self.wv_head_norms):
            raise ValueError(f"qk_head_norms must have one entry per head ({len(self.wv_head_norms)}), got {len(qk)}")
        object.__setattr__(self, "qk_head_norms", qk)
        require_int("head_dim", self.head_dim, 1)

    @functools.cached_property
    def finite(self) -> bool:
        vals = (self.w1_norm, self.w2_norm, self.b1_norm, self.b2_norm, self.wo_norm, self.bo_norm,
                *self.wv_head_norms, *self.qk_head_norms)
        return all(math.isfinite(v) for v in vals)

    @functools.cached_property
    def _gain_offset(self) -> tuple[float, float]:
        if not self.finite:
            return math.inf, math.inf
        if self.kind == "mlp":
            a = mlp_output_sup(1.0, self.w1_norm, self.w2_norm)
            b = mlp_output_sup(0.0, self.w1_norm, self.w2_norm, self.b1_norm, self.b2_norm)
        else:
            a = attention_output_sup(1.0, np.asarray(self.wv_head_norms), self.wo_norm)
            b = attention_output_sup(0.0, np.asarray(self.wv_head_norms), self.wo_norm, self.bo_norm)
        return float(a), float(b)

    def gain_offset(self) -> tuple[float, float]:
        """(a, b) with sup_{rows ≤ r} max_i ‖F(U)_i‖ ≤ a·r + b (``theory.forward`` F3/F4: ``mlp_output_sup`` and
        ``attention_output_sup`` are affine in r; evaluated once per sublayer and cached)."""
        return self._gain_offset

    def output_sup(self, r: float) -> float:
        """sup of the largest output row over inputs with rows ≤ r (``theory.forward`` F3)."""
        if not r >= 0:
            raise ValueError(f"r must be >= 0, got {r!r}")
        a, b = self._gain_offset
        if not self.finite:
            return math.inf
        return a * float(r) + b

    def jacobian_sup(self, r: float, n_tokens: int) -> float:
        """sup of ‖J_F‖₂ over inputs with rows ≤ r (``mlp_jacobian_sup`` / ``attention_jacobian_sup``)."""
        if self.kind == "mlp":
            return mlp_jacobian_sup(self.w1_norm, self.w2_norm, self.activation)
        return _attention_jacobian_core(float(r), int(n_tokens), np.asarray(self.wv_head_norms), self.wo_norm,
                                        np.asarray(self.qk_head_norms), self.head_dim)

    def globally_lipschitz(self, n_tokens: int) -> bool:
        """MLPs are; attention is only for one token (softmax over n ≥ 2 tokens is not, r² growth)."""
        return self.kind == "mlp" or n_tokens == 1


# ---- S1: generic bounds ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class StabilityBounds:
    """A priori bounds of one configuration at one schedule Δt (S1). ``forward_gain`` ≥ max_k M_k/M_0,
    ``backward_log_gain`` ≥ max_k log‖J_{k→K}‖₂; per step: ``row_bounds`` (K+1) ≥ M_k, ``step_log_gains`` (K)
    ≥ log‖A_k‖ (two-sided: −log(1 − ‖A_k − I‖)), ``rates`` ℓ_k, ``jacobian_sups`` J_k, ``scale_floors`` s_k."""

    placement: str
    dt: np.ndarray
    forward_gain: float
    backward_log_gain: float
    row_bounds: np.ndarray
    step_log_gains: np.ndarray
    rates: np.ndarray
    jacobian_sups: np.ndarray
    scale_floors: np.ndarray
    sided: str = "upper"

    def stable(self, B: float, tau: float) -> bool:
        B, tau = _require_B_tau(B, tau)
        return self.forward_gain <= B and self.backward_log_gain <= tau


def propagated_scale_floor(x0_min_scale, increments, d, eps) -> np.ndarray:
    """S1 lemma — floors s_k ≤ min_i s(x_{k,i}) for k = 0..K−1 when ‖x_{j+1,i} − x_{j,i}‖ ≤ increments_j.

    s(x) = √(σ(x)² + ε) with σ the centred RMS of the row (LayerNorm; uncentred RMS for RMSNorm), and
    ``x0_min_scale`` = σ_0 ≤ min_i σ(x_{0,i}). Statement: s_k ≥ √(((σ_0 − Σ_{j<k} increments_j/√d)₊)² + ε).
    Proof: centring is linear and 1-Lipschitz, so ‖c(x_k)‖ ≥ ‖c(x_0)‖ − Σ_{j<k}‖x_{j+1} − x_j‖, and σ = ‖c‖/√d.
    Provenance: our statement (S1). Domain: σ_0 ≥ 0, increments ≥ 0, d ≥ 2, ε ≥ 0.
    """
    require_nonnegative("x0_min_scale", x0_min_scale)
    require_width("d", d)
    require_nonnegative("eps", eps)
    inc = as_float_array("increments", increments)
    if inc.ndim != 1 or np.any(np.isnan(inc)) or np.any(inc < 0):
        raise ValueError("increments must be a 1-D array of values >= 0")
    spent = np.concatenate([[0.0], np.cumsum(inc)[:-1]]) / math.sqrt(d)
    with np.errstate(invalid="ignore"):
        sigma = np.maximum(float(x0_min_scale) - spent, 0.0)
    sigma = np.where(np.isfinite(sigma), sigma, 0.0)
    return np.sqrt(sigma * sigma + float(eps))


def forward_gain_bound(dt, c, x0_max_norm, a=0.0) -> float:
    """S1 (forward, generic) — G ≤ Π_k(1+Δt_k a_k) + Σ_k Δt_k c_k/M_0·Π_{j>k}(1+Δt_j a_j).

    From ‖x_{k+1}‖ ≤ (1 + Δt_k a_k)‖x_k‖ + Δt_k c_k for the largest row (``theory.forward``: F2/F3 with a = 0,
    F4 Grönwall otherwise); every term is ≥ 0 so the maximum over k is at k = K. Returns inf if any constant is
    infinite. Provenance: paper claim K5, our statement. Domain: Δt_k > 0, a_k, c_k ≥ 0, M_0 > 0.
    """
    require_positive("x0_max_norm", x0_max_norm)
    c_arr = as_vector("c", c)
    a_arr = as_vector("a", a)
    k = max(c_arr.size, a_arr.size, np.atleast_1d(as_float_array("dt", dt)).size)
    dts = step_sizes(dt if np.ndim(dt) else float(dt), k)
    c_arr = np.broadcast_to(c_arr, (k,)) if c_arr.size in (1, k) else c_arr
    a_arr = np.broadcast_to(a_arr, (k,)) if a_arr.size in (1, k) else a_arr
    if c_arr.shape != (k,) or a_arr.shape != (k,):
        raise ValueError(f"c and a must be scalars or have one entry per step ({k})")
    for name, arr in (("c", c_arr), ("a", a_arr)):
        if np.any(np.isnan(arr)) or np.any(arr < 0):
            raise ValueError(f"{name} must be >= 0 entrywise")
    if not (np.all(np.isfinite(c_arr)) and np.all(np.isfinite(a_arr))):
        return math.inf
    if np.all(a_arr == 0):
        rows = pre_norm_bound(float(x0_max_norm), dts, c_arr)
    else:
        rows = none_gronwall_bound(float(x0_max_norm), dts, a_arr, c_arr)
    return float(np.max(rows) / float(x0_max_norm))


def _step_log_gains(deviation: np.ndarray, sided: str) -> np.ndarray:
    """log L_k from ‖A_k − I‖ ≤ deviation_k: log(1 + dev) (upper) or −log(1 − dev) (two-sided, inf if dev ≥ 1)."""
    dev = as_float_array("deviation", deviation)
    if sided == "upper":
        return np.log1p(dev)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(dev < 1, -np.log1p(-np.minimum(dev, 1.0)), np.inf)


def backward_log_gain_bound(dt, ell, log_prefactor=0.0, sided: str = "upper") -> float:
    """S1 (backward, generic) — Λ = max(0, max_k Σ_{j≥k} log L_j) ≥ max_k log‖J_{k→K}‖₂.

    ``sided="upper"``: L_j = g_j(1 + Δt_j ℓ_j) with g_j = exp(log_prefactor_j) (1 for the additive placements,
    the post norm's gain otherwise) — from ‖A_j‖ ≤ ‖I‖ + ‖A_j − I‖ and submultiplicativity (B3).
    ``sided="two"`` (additive placements only): log L_j = −log(1 − Δt_j ℓ_j) ≥ log(1 + Δt_jℓ_j); the same Λ then
    also bounds the vanishing side, σ_min(J_{k→K}) ≥ Π(1 − Δt_j ℓ_j) ≥ e^{−Λ}.
    Provenance: paper claim K4/K5, our statement. Domain: Δt_k > 0, ℓ_k ≥ 0 (inf allowed).
    """
    require_choice("sided", sided, SIDES)
    ell_arr = as_vector("ell", ell)
    k = max(ell_arr.size, np.atleast_1d(as_float_array("dt", dt)).size)
    dts = step_sizes(dt if np.ndim(dt) else float(dt), k)
    ell_arr = np.broadcast_to(ell_arr, (k,))
    if np.any(np.isnan(ell_arr)) or np.any(ell_arr < 0):
        raise ValueError("ell must be >= 0 entrywise")
    pre = np.broadcast_to(as_vector("log_prefactor", log_prefactor), (k,))
    if not np.all(np.isfinite(pre)):
        raise ValueError(f"log_prefactor must be finite, got {log_prefactor!r}")
    if sided == "two" and np.any(pre != 0):
        raise ValueError("log_prefactor must be 0 for sided='two' (the two-sided form needs ‖A − I‖ < 1)")
    with np.errstate(invalid="ignore"):
        logs = _step_log_gains(dts * ell_arr, sided) + pre
    return _suffix_max(logs)


def _suffix_max(step_logs: np.ndarray) -> float:
    """max(0, max_k Σ_{j≥k} step_logs_j) — the log of the largest end-to-end gain bound."""
    logs = as_float_array("step_logs", step_logs)
    if np.any(np.isposinf(logs)):
        return math.inf
    suffix = np.cumsum(logs[::-1])
    return float(max(0.0, np.max(suffix)))


# ---- S1: placements ----------------------------------------------------------------------------------------------
def _common(dt, sublayers, x0_max_norm, x0_min_scale, sided):
    subl = _require_sublayers(sublayers)
    dts = step_sizes(dt, len(subl))
    require_positive("x0_max_norm", x0_max_norm)
    require_nonnegative("x0_min_scale", x0_min_scale)
    require_choice("sided", sided, SIDES)
    return subl, dts


def _deviation(fn: Callable, dts, jf, floors) -> np.ndarray:
    """‖A_k − I‖ bounds from a B2 step bound ``fn(Δt, J, s_floor)`` (called once, vectorised over the finite
    steps); an infinite Jacobian sup or a zero scale floor gives an infinite bound (no a priori bound there)."""
    jf = as_float_array("jf", jf)
    floors = as_float_array("floors", floors)
    out = np.where(jf == 0, 0.0, np.inf)
    ok = (jf > 0) & np.isfinite(jf) & (floors > 0)
    if np.any(ok):
        out[ok] = np.asarray(fn(dts[ok], jf[ok], floors[ok]), dtype=float)
    return out


def peri_stability_bounds(dt, sublayers, *, d, n_tokens, x0_max_norm, x0_min_scale=0.0, norm="layer",
                          gamma_in=1.0, beta_in_norm=0.0, eps_in=1e-5, gamma_out=1.0, beta_out_norm=0.0,
                          eps_out=1e-5, s_f_min=None, sided="upper") -> StabilityBounds:
    """S1 (peri) — bounds for X⁺ = X + Δt N_out(F(N_in(X))).

    Forward: c_k = C_out = ‖γ_out‖_∞√d + ‖β_out‖ (F2, ``theory.forward.peri_norm_bound``): G ≤ 1 + Σ Δt_k C_out/M_0,
    independent of the sublayer weights. Backward (B2, ``theory.backward.peri_step_deviation_bound``):
    ‖A_k − I‖ ≤ Δt_k (‖γ_out‖_∞/s_F) J_k (‖γ_in‖_∞/s_k), J_k = sup ‖J_F‖ over rows ≤ ‖γ_in‖_∞√d + ‖β_in‖ (the input
    norm's range), s_k the propagated floor (``propagated_scale_floor`` with increments Δt_j C_out), and
    s_F = ``s_f_min`` (default √ε_out, the global floor: a sublayer may output rows of zero variance).
    The backward bound depends on the weights only through J_k/s_F, which is unchanged when the output map is
    scaled (B4) once s_F is a floor of the actual output scale.

    Assumptions: ``gamma_*`` are ‖γ‖_∞, ``beta_*_norm`` are ‖β‖₂, d ≥ 2, ε ≥ 0, ε_out > 0 unless ``s_f_min`` is
    given. Provenance: paper claims K2/K5, our statement. Domain: ValueError naming the parameter.
    """
    subl, dts = _common(dt, sublayers, x0_max_norm, x0_min_scale, sided)
    require_width("d", d)
    require_int("n_tokens", n_tokens, 1)
    require_choice("norm", norm, NORMS)
    for name, v in (("gamma_in", gamma_in), ("beta_in_norm", beta_in_norm), ("eps_in", eps_in),
                    ("gamma_out", gamma_out), ("beta_out_norm", beta_out_norm), ("eps_out", eps_out)):
        require_nonnegative(name, v)
    if s_f_min is None:
        if not eps_out > 0:
            raise ValueError("eps_out must be > 0 for an a priori peri backward bound (the output norm's Jacobian "
                             "|γ|/s_F is unbounded when the sublayer output has zero variance); or pass s_f_min")
        s_f_min = math.sqrt(eps_out)
    require_positive("s_f_min", s_f_min)
    c_out = float(post_row_bound(d, gamma_out, beta_out_norm, eps_out))
    rows = peri_norm_bound(float(x0_max_norm), dts, c_out)
    rho_in = float(post_row_bound(d, gamma_in, beta_in_norm, eps_in))
    jf = np.array([s.jacobian_sup(rho_in, n_tokens) for s in subl])
    floors = propagated_scale_floor(x0_min_scale, dts * c_out, d, eps_in)
    dev = _deviation(lambda h, j, s: peri_step_deviation_bound(h, j, gamma_in, s, gamma_out, s_f_min),
                     dts, jf, floors)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.where(dts > 0, dev / dts, 0.0)
    logs = _step_log_gains(dev, sided)
    return StabilityBounds("peri", dts, float(rows[-1] / x0_max_norm), _suffix_max(logs), np.asarray(rows, float),
                           logs, rates, jf, floors, sided)


def pre_stability_bounds(dt, sublayers, *, d, n_tokens, x0_max_norm, x0_min_scale=0.0, norm="layer", gamma=1.0,
                         beta_norm=0.0, eps=1e-5, sided="upper") -> StabilityBounds:
    """S1 (pre) — bounds for X⁺ = X + Δt F(N(X)).

    Forward: c_k = M_k = sup of F_k's output rows over rows ≤ ρ = ‖γ‖_∞√d + ‖β‖ (F3, ``pre_norm_bound``):
    G ≤ 1 + Σ Δt_k M_k/M_0. M_k is homogeneous of degree one in the output weights and unbounded over them: for
    any Δt > 0 and B there are weights with G > B (F3 witness), so **no Δt is admissible uniformly over unbounded
    weights**; with infinite norms this function returns G = inf (and ``max_uniform_dt`` returns Δt = 0).
    Backward (B2, ``pre_step_deviation_bound``): ‖A_k − I‖ ≤ Δt_k J_k ‖γ‖_∞/s_k, J_k = sup ‖J_F‖ over the norm's
    range, s_k the propagated floor with increments Δt_j M_j (global floor √ε when σ_0 = 0).

    Assumptions: ``gamma`` = ‖γ‖_∞, ``beta_norm`` = ‖β‖₂, d ≥ 2, ε ≥ 0. Provenance: paper claims K3/K5, our
    statement. Domain: ValueError naming the parameter.
    """
    subl, dts = _common(dt, sublayers, x0_max_norm, x0_min_scale, sided)
    require_width("d", d)
    require_int("n_tokens", n_tokens, 1)
    require_choice("norm", norm, NORMS)
    for name, v in (("gamma", gamma), ("beta_norm", beta_norm), ("eps", eps)):
        require_nonnegative(name, v)
    rho = float(post_row_bound(d, gamma, beta_norm, eps))
    m = np.array([s.output_sup(rho) for s in subl])
    jf = np.array([s.jacobian_sup(rho, n_tokens) for s in subl])
    if np.all(np.isfinite(m)):
        rows = np.asarray(pre_norm_bound(float(x0_max_norm), dts, m), dtype=float)
    else:
        rows = np.concatenate([[float(x0_max_norm)], np.full(len(dts), math.inf)])
    with np.errstate(invalid="ignore"):
        floors = propagated_scale_floor(x0_min_scale, np.where(np.isfinite(m), dts * m, np.inf), d, eps)
    dev = _deviation(lambda h, j, s: pre_step_deviation_bound(h, j, gamma, s), dts, jf, floors)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = dev / dts
    logs = _step_log_gains(dev, sided)
    return StabilityBounds("pre", dts, float(rows[-1] / x0_max_norm), _suffix_max(logs), rows, logs, rates, jf,
                           floors, sided)


def none_stability_bounds(dt, sublayers, *, n_tokens, x0_max_norm, x0_min_scale=0.0, sided="upper",
                          **_unused) -> StabilityBounds:
    """S1 (none) — bounds for X⁺ = X + Δt F(X).

    Forward (F4, ``none_gronwall_bound``): M_{k+1} ≤ (1 + Δt a_k)M_k + Δt b_k with (a_k, b_k) the gain and offset of
    the sublayer output, so G ≤ Π(1+Δt a) + Σ Δt_k b_k/M_0 Π_{j>k}(1+Δt_j a_j) — exponential in t. Backward
    (B2, ``none_step_deviation_bound``): ‖A_k − I‖ ≤ Δt_k J_k, J_k = sup ‖J_F‖ over rows ≤ the forward bound of
    M_k (attention over n ≥ 2 tokens has no global Jacobian bound; its sup grows like r², which the Grönwall
    radius supplies — still nondecreasing in Δt). Norm arguments of the other placements are accepted and ignored.
    Provenance: paper claims K3/K5, our statement. Domain: ValueError naming the parameter.
    """
    subl, dts = _common(dt, sublayers, x0_max_norm, x0_min_scale, sided)
    require_int("n_tokens", n_tokens, 1)
    ab = np.array([s.gain_offset() for s in subl])
    if np.all(np.isfinite(ab)):
        rows = np.asarray(none_gronwall_bound(float(x0_max_norm), dts, ab[:, 0], ab[:, 1]), dtype=float)
    else:
        rows = np.concatenate([[float(x0_max_norm)], np.full(len(dts), math.inf)])
    jf = np.array([s.jacobian_sup(float(rows[k]), n_tokens) if math.isfinite(rows[k]) or
                   s.globally_lipschitz(n_tokens) else math.inf for k, s in enumerate(subl)])
    dev = _deviation(lambda h, j, s: none_step_deviation_bound(h, j), dts, jf, np.ones(len(dts)))
    logs = _step_log_gains(dev, sided)
    return StabilityBounds("none", dts, float(np.max(rows) / x0_max_norm), _suffix_max(logs), rows, logs, jf.copy(),
                           jf, np.zeros(len(dts)), sided)


def post_stability_bounds(dt, sublayers, *, d, n_tokens, x0_max_norm, x0_min_scale, norm="layer", gamma=1.0,
                          beta_norm=0.0, eps=1e-5, sided="upper") -> StabilityBounds:
    """S1 (post) — bounds for X⁺ = N(X + Δt F(X)) with a constant gain γ·1 (and β ∈ span(1) for LayerNorm).

    Forward (F1, ``post_row_bound``): rows after a step are ≤ ρ = |γ|√d + ‖β‖, so G ≤ max(1, ρ/M_0) — for every
    Δt: the step size cannot control post-LN's forward gain (its gain γ does).
    Backward (B2, ``post_step_norm_bound``): ‖A_k‖ ≤ (|γ|/s_Y,k)(1 + Δt_k J_k), J_k = sup ‖J_F‖ over rows ≤ r_k
    (r_0 = M_0, r_k = ρ), with the floor s_Y,k = √(σ_Y,k² + ε) propagated through the norms:
    σ_Y,k = (σ_X,k − Δt_k M_F,k/√d)₊ (M_F,k = sup of F's output rows, ‖c(F)‖ ≤ ‖F‖), σ_X,0 = ``x0_min_scale``
    and σ_X,k+1 = |γ|σ_Y,k/s_Y,k (the output of a norm with constant gain has exactly that scale).
    The log-gain Λ is the largest suffix sum of log ‖A_k‖ bounds (a post step can contract gradients).
    With ε = 0 and σ_X,0 = |γ|: ‖A_k‖ ≤ (1 + Δt J)/(1 − Δt M_F/(|γ|√d)), attained (docs/theorems/S.md).

    Assumptions: ``gamma`` is the constant gain (any sign), ``beta_norm`` = ‖β‖₂ with β ∈ span(1); ``sided``
    must be "upper". Provenance: paper claims K1/K4/K5, our statement. Domain: ValueError naming the parameter.
    """
    subl, dts = _common(dt, sublayers, x0_max_norm, x0_min_scale, sided)
    if sided != "upper":
        raise ValueError("sided must be 'upper' for post (its steps are not of the form I + Δt·(…))")
    require_width("d", d)
    require_int("n_tokens", n_tokens, 1)
    require_choice("norm", norm, NORMS)
    require_real("gamma", gamma)
    require_nonnegative("beta_norm", beta_norm)
    require_nonnegative("eps", eps)
    g = abs(float(gamma))
    rho = float(post_row_bound(d, g, beta_norm, eps))
    radii = [float(x0_max_norm)] + [rho] * (len(dts) - 1)
    mf = np.array([s.output_sup(r) for s, r in zip(subl, radii)])
    jf = np.array([s.jacobian_sup(r, n_tokens) for s, r in zip(subl, radii)])
    floors = np.empty(len(dts))
    logs = np.empty(len(dts))
    sigma_x = float(x0_min_scale)
    for k, h in enumerate(dts):
        sigma_y = max(sigma_x - h * mf[k] / math.sqrt(d), 0.0) if math.isfinite(mf[k]) else 0.0
        s_y = math.sqrt(sigma_y * sigma_y + eps)
        floors[k] = s_y
        if s_y == 0 or not math.isfinite(jf[k]):
            logs[k] = math.inf if g > 0 else -math.inf
        elif g == 0:
            logs[k] = -math.inf
        else:
            logs[k] = math.log(float(post_step_norm_bound(float(h), float(jf[k]), g, s_y)))
        sigma_x = g * sigma_y / s_y if s_y > 0 else 0.0
    rows = np.array([float(x0_max_norm)] + [rho] * len(dts))
    return StabilityBounds("post", dts, float(max(1.0, rho / x0_max_norm)), _suffix_max(logs), rows, logs,
                           jf.copy(), jf, floors, sided)


STABILITY_BOUNDS: dict[str, Callable[..., StabilityBounds]] = {
    "peri": peri_stability_bounds,
    "pre": pre_stability_bounds,
    "post": post_stability_bounds,
    "none": none_stability_bounds,
}


def stability_bounds(placement: str, dt, sublayers, **kwargs) -> StabilityBounds:
    """S1 — dispatch to the placement's bounds (``STABILITY_BOUNDS``: peri, pre, post, none).

    Provenance: paper claim K5, our statement. Domain: a known placement; the rest as the placement's function.
    """
    require_choice("placement", placement, tuple(STABILITY_BOUNDS))
    return STABILITY_BOUNDS[placement](dt, sublayers, **kwargs)


# ---- S1: largest admissible uniform Δt ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class AdmissibleStep:
    """The largest uniform Δt with G ≤ B (``dt_forward``), with Λ ≤ τ (``dt_backward``), and both (``dt``).
    0 means no Δt > 0 is admissible, inf that every Δt is."""

    dt: float
    dt_forward: float
    dt_backward: float
    binding: str
    note: str = ""


def _admissible(dt_f: float, dt_b: float, note: str = "") -> AdmissibleStep:
    dt = min(dt_f, dt_b)
    if dt == math.inf:
        binding = "none"
    else:
        binding = "forward" if dt_f <= dt_b else "backward"
    return AdmissibleStep(float(dt), float(dt_f), float(dt_b), binding, note)


def _sup_feasible(excess: Callable[[float], float], dt_min: float = 1e-12, dt_cap: float = 1e12) -> float:
    """sup{h > 0 : excess(h) ≤ 0} for a nondecreasing ``excess`` (inf allowed): bracket, then Brent."""
    if excess(dt_min) > 0:
        return 0.0
    lo, hi = dt_min, 1.0
    while excess(hi) <= 0:
        if hi >= dt_cap:  # feasible at the cap itself: reported as inf
            return math.inf
        lo, hi = hi, min(hi * 16.0, dt_cap)  # the last bracket ends at the cap (a root in (16⁹, 10¹²) is found)
    if hi <= lo:  # pragma: no cover
        return lo

    def f(h):
        v = excess(h)
        return v if math.isfinite(v) else 1e300

    root = optimize.brentq(f, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)
    # brentq returns a point within tolerance of the crossing; step down to the feasible side.
    while excess(root) > 0:
        root = root * (1 - 8 * np.finfo(float).eps)
    return float(root)


def max_uniform_dt(placement, B, tau, sublayers, *, bounds: Callable | None = None, **kwargs) -> AdmissibleStep:
    """S1 — the largest uniform Δt for which the placement's bounds certify (B, τ)-stability.

    Both bounds are nondecreasing in Δt (every increment, rate and floor-loss grows with Δt), so the admissible set
    is an interval (0, Δt*] and Δt* = min(Δt_forward, Δt_backward) is found by a bracketing root search of each
    monotone constraint. ``bounds`` overrides the placement's bound function (meta-tests inject wrong ones).
    Returns Δt = 0 when no Δt > 0 is admissible (pre with unbounded weights; post with ρ > B·M_0) and inf when
    every Δt is; the search brackets [10⁻¹², 10¹²], so an admissible Δt below 10⁻¹² is reported as 0 and one above
    10¹² as inf. Provenance: paper claim K5, our statement. Domain: B > 1, τ > 0, a known placement.
    """
    B, tau = _require_B_tau(B, tau)
    require_choice("placement", placement, tuple(STABILITY_BOUNDS))
    fn = bounds if bounds is not None else STABILITY_BOUNDS[placement]
    subl = _require_sublayers(sublayers)

    def at(h):
        return fn(float(h), subl, **kwargs)

    note = ""
    if not all(s.finite for s in subl):
        note = ("no Δt > 0 is admissible uniformly over unbounded weights" if placement in ("pre", "none")
                else "infinite weight norms")
    dt_f = _sup_feasible(lambda h: at(h).forward_gain - B)
    dt_b = _sup_feasible(lambda h: at(h).backward_log_gain - tau)
    return _admissible(dt_f, dt_b, note)


def max_uniform_dt_closed_form(n_steps, c, ell, x0_max_norm, B, tau, a=0.0, sided="upper") -> AdmissibleStep:
    """S1 closed form — the largest uniform Δt when the per-step constants do not depend on Δt.

    Forward: a = 0 (peri, pre): Δt_f = (B − 1)M_0/Σ_k c_k (peri: (B−1)M_0/(K C_out), weight-free). a > 0 uniform
    (none, with uniform c = b): G = (1 + Δt a)^K(1 + q) − q, q = c/(a M_0), so Δt_f = (((B+q)/(1+q))^{1/K} − 1)/a.
    Backward, uniform ℓ: Δt_b = (e^{τ/K} − 1)/ℓ (upper) or (1 − e^{−τ/K})/ℓ (two-sided); per-step ℓ_k: the unique
    root of Σ log(1 + Δt ℓ_k) = τ (resp. Σ −log(1 − Δt ℓ_k) = τ). Valid for the placements' bounds when the scale
    floors do not depend on Δt (σ_0 = 0: global floors √ε). Provenance: paper claim K5, our statement.
    Domain: K ≥ 1, c, ℓ, a ≥ 0 (scalars, or arrays of length K for c and ℓ; a must be uniform), M_0 > 0, B > 1, τ > 0.
    """
    K = require_int("n_steps", n_steps, 1)
    require_positive("x0_max_norm", x0_max_norm)
    B, tau = _require_B_tau(B, tau)
    require_choice("sided", sided, SIDES)
    require_nonnegative("a", a)
    c_arr = np.broadcast_to(as_float_array("c", c), (K,)).copy()
    ell_arr = np.broadcast_to(as_float_array("ell", ell), (K,)).copy()
    for name, arr in (("c", c_arr), ("ell", ell_arr)):
        if np.any(np.isnan(arr)) or np.any(arr < 0):
            raise ValueError(f"{name} must be >= 0 entrywise")
    M0 = float(x0_max_norm)
    # forward
    if a == 0:
        total = float(np.sum(c_arr))
        dt_f = math.inf if total == 0 else (0.0 if math.isinf(total) else (B - 1) * M0 / total)
    else:
        if not np.all(c_arr == c_arr[0]):
            raise ValueError("c must be uniform when a > 0 (the Grönwall closed form needs uniform constants)")
        q = c_arr[0] / (a * M0)
        dt_f = (((B + q) / (1 + q)) ** (1.0 / K) - 1.0) / a
    # backward
    if np.all(ell_arr == 0):
        dt_b = math.inf
    elif np.any(np.isinf(ell_arr)):
        dt_b = 0.0
    elif np.all(ell_arr == ell_arr[0]):
        dt_b = (math.expm1(tau / K) if sided == "upper" else -math.expm1(-tau / K)) / ell_arr[0]
    else:
        if sided == "upper":
            f = lambda h: float(np.sum(np.log1p(h * ell_arr))) - tau
            hi = math.expm1(tau) / float(np.max(ell_arr))  # one step alone reaches τ there
        else:
            f = lambda h: float(np.sum(-np.log1p(-np.minimum(h * ell_arr, 1 - 1e-16)))) - tau
            hi = (1 - 1e-16) / float(np.max(ell_arr))
            while hi * float(np.max(ell_arr)) >= 1:  # the largest h with h·max ℓ < 1 in float64 (a finite step)
                hi = math.nextafter(hi, 0.0)
        lo = (math.expm1(tau / K) if sided == "upper" else -math.expm1(-tau / K)) / float(np.max(ell_arr))
        if f(lo) >= 0:
            dt_b = lo
        elif f(hi) <= 0:  # two-sided with τ ≳ 36: the root lies within float64 resolution of 1/max ℓ, at hi
            dt_b = hi
        else:
            dt_b = optimize.brentq(f, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps)
    return _admissible(dt_f, dt_b)


def post_max_dt_closed_form(n_steps, jf, mf_over_row, tau) -> float:
    """S1 closed form (post, backward) — Δt_b = (e^{τ/K} − 1)/(J + m e^{τ/K}), m = M_F/(|γ|√d).

    Assumptions: ε = 0, every pre-norm input at scale |γ| (true after the first norm; for k = 0 the input must be
    a norm output), uniform J = sup‖J_F‖ and M_F = sup‖F‖ on the norm's range. Then ‖A_k‖ ≤ (1+ΔtJ)/(1−Δt m) and
    K·log of that = τ is solved in closed form; with J = m (a linear sublayer) Δt_b = tanh(τ/(2K))/J.
    Provenance: paper claims K1/K5, our statement. Domain: K ≥ 1, J ≥ 0, m ≥ 0 (not both 0), τ > 0.
    """
    K = require_int("n_steps", n_steps, 1)
    require_nonnegative("jf", jf)
    require_nonnegative("mf_over_row", mf_over_row)
    require_positive("tau", tau)
    if jf == 0 and mf_over_row == 0:
        raise ValueError("jf and mf_over_row must not both be 0 (every Δt is admissible)")
    e = math.exp(tau / K)
    return (e - 1.0) / (jf + mf_over_row * e)


# ---- S2: optimal schedule ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class OptimalSchedule:
    """S2 solution: per-step Δt_k, T = ΣΔt_k, the water level λ and the forward multiplier μ (KKT), and which
    constraints bind. ``unique`` is False in the degenerate case where only the forward budget binds on tied c_k."""

    dt: np.ndarray
    total_time: float
    lam: float
    mu: float
    binding: str
    unique: bool = True


def water_level(log_w, tau) -> tuple[float, np.ndarray]:
    """S2 — the water level λ with Σ_k (−log(λ w_k))₊ = τ, in log form; returns (log λ, active mask).

    Sort w ascending; with the m smallest active, log λ_m = −(τ + Σ_{i≤m} log w_(i))/m; the answer is the m with
    λ_m w_(m) < 1 ≤ λ_m w_(m+1) (the left side is continuous and strictly decreasing in λ, so it is unique), found
    as the longest prefix with λ_m w_(m) < 1.
    ``log_w`` may hold +inf (an excluded step). Provenance: S2, our statement (paper claim K5).
    Domain: τ > 0, at least one finite log w, no NaN or −inf.
    """
    require_positive("tau", tau)
    lw = as_vector("log_w", log_w)
    finite = np.isfinite(lw)
    if not np.any(finite) or np.any(np.isnan(lw)) or np.any(np.isneginf(lw)):
        raise ValueError("log_w must hold at least one finite value and no NaN or -inf")
    order = np.argsort(np.where(finite, lw, np.inf), kind="stable")
    srt = lw[order]
    n_fin = int(np.sum(finite))
    cums = np.cumsum(srt[:n_fin])
    # Step (m) is active iff log λ_m + log w_(m) < 0, i.e. D_m = Σ_{i<m} (log w_(m) − log w_(i)) < τ; D_m is
    # non-decreasing in m, so the active steps are a prefix: take the longest. (Testing also λ_m w_(m+1) ≥ 1 fails
    # on a tie: when τ equals a D_m exactly, round-off can make both m and m + 1 look wrong; soak seed 925024579.)
    m = 1  # D_1 = 0 < τ
    while m < n_fin and -(tau + cums[m]) / (m + 1) + srt[m] < 0:
        m += 1
    loglam = -(tau + cums[m - 1]) / m
    active = np.zeros(lw.shape, dtype=bool)
    active[order[:m]] = True
    return float(loglam), active


def _fill(ell: np.ndarray, log_w: np.ndarray, tau: float) -> tuple[np.ndarray, float]:
    """Δt_k = (1/ℓ_k)(1 − λ w_k)₊ for the water level of ``log_w``."""
    loglam, active = water_level(log_w, tau)
    with np.errstate(over="ignore", invalid="ignore"):
        dt = np.where(active, -np.expm1(loglam + np.where(active, log_w, 0.0)) / ell, 0.0)
    return np.maximum(dt, 0.0), loglam


def _schedule_inputs(c, ell, forward_budget, tau):
    """The S2 schedule inputs, validated: ℓ (1-D, finite, > 0), c (finite, ≥ 0, one per step), β_F > 0 (inf
    allowed), τ > 0; ValueError naming the parameter."""
    ell_arr = np.atleast_1d(as_float_array("ell", ell))
    if ell_arr.ndim != 1 or not np.all(np.isfinite(ell_arr)) or not np.all(ell_arr > 0):
        raise ValueError("ell must be a 1-D array of finite values > 0")
    c_in = as_float_array("c", c)
    if c_in.ndim > 1 or (c_in.ndim == 1 and c_in.size not in (1, ell_arr.size)):
        raise ValueError(f"c must be a scalar or one value per step ({ell_arr.size}), got shape {c_in.shape}")
    c_arr = np.broadcast_to(c_in, ell_arr.shape).copy()
    if not np.all(np.isfinite(c_arr)) or np.any(c_arr < 0):
        raise ValueError("c must be finite and >= 0 entrywise")
    if isinstance(forward_budget, (str, bytes)) or isinstance(forward_budget, bool):
        raise ValueError(f"forward_budget must be a number > 0 (inf allowed), got {forward_budget!r}")
    try:
        beta = float(forward_budget)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"forward_budget must be a number > 0 (inf allowed), got {forward_budget!r}") from exc
    if math.isnan(beta) or not beta > 0:
        raise ValueError(f"forward_budget must be > 0 (inf allowed), got {forward_budget!r}")
    require_positive("tau", tau)
    return ell_arr, c_arr, beta


def optimal_step_sizes(c, ell, forward_budget, tau, *, level_factor: float = 1.0) -> OptimalSchedule:
    """S2 — maximise T = Σ Δt_k subject to Σ c_kΔt_k ≤ β_F and Σ −log(1 − ℓ_kΔt_k) ≤ τ, Δt ≥ 0.

    The forward constraint is S1's for the additive placements with β_F = (B − 1)M_0 (peri: c_k = C_out, so it
    reads T ≤ β_F/C_out); the backward one is S1's two-sided form (convex: −log(1 − x) is convex). Slater holds,
    so KKT is necessary and sufficient: 1 − μc_k = λℓ_k/(1 − ℓ_kΔt_k) on active steps, i.e.

        Δt_k = (1/ℓ_k − λ/(1 − μc_k))₊  — water-filling with levels 1/ℓ_k, water level λ/(1 − μc_k).

    μ = 0 if the backward-only fill (w_k = ℓ_k, ``water_level``) meets the forward budget; otherwise μ ∈ (0, 1/c_min)
    is the root of Σ c_kΔt_k(μ) = β_F, each Δt(μ) again a closed-form fill with w_k = ℓ_k/(1 − μc_k). If even
    μ → 1/c_min leaves the budget exceeded, only the forward constraint binds (λ = 0) and T = β_F/c_min on the
    steps of least c (not unique when those tie; c_k ≤ c_min(1 + 10⁻¹²) counts as a tie). ``level_factor`` ≠ 1
    multiplies the water level — a deliberately wrong solution for the meta-tests. Provenance: paper claim K5
    (optimising the scaling strategy), our statement.
    Domain: ℓ_k > 0, c_k ≥ 0, β_F > 0 (inf allowed), τ > 0.
    """
    ell_arr, c_arr, beta = _schedule_inputs(c, ell, forward_budget, tau)
    K = ell_arr.size
    require_positive("level_factor", level_factor)
    shift = math.log(level_factor)

    def fill(mu):
        with np.errstate(divide="ignore"):
            excluded = mu * c_arr >= 1
            log_w = np.where(excluded, np.inf, np.log(ell_arr) - np.log1p(-np.where(excluded, 0.0, mu * c_arr)))
        dt, loglam = _fill(ell_arr, log_w, tau)
        if shift:
            dt = np.where(dt > 0, np.maximum(-np.expm1(loglam + shift + np.where(dt > 0, log_w, 0.0)) / ell_arr, 0),
                          0.0)
        return dt, loglam

    dt, loglam = fill(0.0)
    if float(np.dot(c_arr, dt)) <= beta:
        return OptimalSchedule(dt, float(np.sum(dt)), math.exp(loglam), 0.0, "backward")
    pos = c_arr[c_arr > 0]
    mu_hi = 1.0 / float(np.min(pos))
    if np.any(c_arr == 0):
        g = lambda mu: float(np.dot(c_arr, fill(mu)[0])) - beta
        mu = optimize.brentq(g, 0.0, mu_hi, xtol=1e-300, rtol=4 * np.finfo(float).eps)
    else:
        mu_edge = mu_hi * (1 - 1e-13)
        g = lambda mu: float(np.dot(c_arr, fill(mu)[0])) - beta
        if g(mu_edge) > 0:
            # λ = 0: only the forward budget binds; spend it on the cheapest steps, backward-feasibly.
            tie = c_arr <= float(np.min(pos)) * (1 + 1e-12)
            dt_tie, _ = _fill(ell_arr, np.where(tie, np.log(ell_arr), np.inf), tau)
            dt = dt_tie * (beta / float(np.dot(c_arr, dt_tie)))
            return OptimalSchedule(dt, float(np.sum(dt)), 0.0, mu_hi, "forward", unique=int(np.sum(tie)) == 1)
        mu = optimize.brentq(g, 0.0, mu_edge, xtol=1e-300, rtol=4 * np.finfo(float).eps)
    dt, loglam = fill(mu := _feasible_mu(g, mu, mu_hi))
    return OptimalSchedule(dt, float(np.sum(dt)), math.exp(loglam), float(mu), "both")


def schedule_dual_value(c, ell, forward_budget, tau, lam, mu) -> float:
    """S2 — the Lagrange dual D(λ, μ) ≥ T* of ``optimal_step_sizes``' problem (weak duality, any λ, μ ≥ 0).

    D = λτ + μβ_F + Σ_k sup_{0 ≤ x < 1/ℓ_k} [x(1 − μc_k) + λ log(1 − ℓ_k x)], where the inner sup is
    (1−μc)/ℓ − λ + λ log(λℓ/(1−μc)) if λℓ < 1 − μc, (1 − μc)/ℓ if λ = 0 < 1 − μc, and 0 otherwise.
    At the KKT pair D equals T (zero duality gap): a certificate of optimality independent of any solver.
    Provenance: S2, our statement (paper claim K5). Domain: as ``optimal_step_sizes``; λ, μ ≥ 0 (β_F = inf
    needs μ = 0).
    """
    ell_arr, c_arr, beta = _schedule_inputs(c, ell, forward_budget, tau)
    require_nonnegative("lam", lam)
    require_nonnegative("mu", mu)
    slope = 1.0 - mu * c_arr
    with np.errstate(divide="ignore", invalid="ignore"):
        inner = np.where(
            slope <= 0, 0.0,
            np.where(lam == 0, slope / ell_arr,
                     np.where(lam * ell_arr < slope,
                              slope / ell_arr - lam + lam * np.log(lam * ell_arr / np.where(slope > 0, slope, 1)),
                              0.0)))
    budget_term = 0.0 if mu == 0 else mu * beta
    return float(lam * tau + budget_term + np.sum(inner))


def one_sided_optimal_time(ell, tau) -> tuple[float, int]:
    """S2 (one-sided) — max Σ Δt_k s.t. Σ log(1 + ℓ_kΔt_k) ≤ τ is (e^τ − 1)/min_k ℓ_k, on the single step argmin ℓ.

    Proof: with u_k = log(1 + ℓ_kΔt_k) ≥ 0, Σ_k Δt_k = Σ (e^{u_k} − 1)/ℓ_k ≤ Σ (e^{u_k} − 1)/ℓ_min ≤
    (e^{Σu_k} − 1)/ℓ_min ≤ (e^τ − 1)/ℓ_min, using (e^a − 1) + (e^b − 1) ≤ e^{a+b} − 1 for a, b ≥ 0. So the
    one-sided problem is not convex (its feasible set {Σ log(1 + ℓΔt) ≤ τ} is the sublevel set of a concave
    function) and its optimum is a single huge step: the reason S2 uses the two-sided constraint.
    Returns (T*, index of the step). Domain: ℓ_k > 0, τ > 0.
    """
    ell_arr = as_vector("ell", ell)
    if not np.all(np.isfinite(ell_arr)) or not np.all(ell_arr > 0):
        raise ValueError("ell must be finite and > 0 entrywise")
    require_positive("tau", tau)
    k = int(np.argmin(ell_arr))
    return math.expm1(tau) / float(ell_arr[k]), k


def _feasible_mu(g, mu: float, mu_hi: float) -> float:
    """The smallest float64 μ' ≥ ``mu`` (within 4096 ulps) with g(μ') ≤ 0, for the decreasing forward excess g.

    brentq's root is accurate to a few ulps of μ, but where the schedule is steep in μ a few ulps move c·Δt by more
    than round-off (soak seed 1006149505: c·Δt = β_F(1 + 1.5e-12)); the closed form must be feasible, so μ is
    stepped up, one ulp at a time, until the forward budget holds. The optimum moves by the same few ulps.
    """
    for _ in range(4096):
        if g(mu) <= 0 or mu >= mu_hi:
            return mu
        mu = float(np.nextafter(mu, math.inf))
    raise ArithmeticError(f"S2: no feasible forward multiplier within 4096 ulps of mu={mu!r}")  # pragma: no cover
