"""G — the gallery: closed forms of what eight 2024–2026 designs claim about their hidden states (X7–X14).

What it is for: each design of ``verify/check/designs/`` comes with a statement of its paper — "bounded by
construction", "identity at init", "×1.1 per layer", "1 + c·L^{1−2α}", "gain 1", … — restated here as a formula
the numerical side can fail (``verify/checks/gallery.py``), and as an expected curve whose growth regime
``verify.check``'s own classification must reproduce (tests/test_gallery.py). Statements and proofs:
docs/theorems/G.md.

Common setting ("the gallery setting"): the branch F is a bias-free ReLU MLP F(x) = ReLU(x W₁) W₂ of any hidden
width m with W₁ ~ N(0, 1/d), W₂ ~ N(0, 1/m) entrywise; norms are RMS norms with unit gain (ε = 0 unless stated), so
‖N(x)‖² = d for every row x ≠ 0; input rows have E‖x_0‖² = d (standard Gaussian). Two facts drive every formula:
for fixed x, E‖F(x)‖² = ‖x‖²/2 (:data:`RELU_BRANCH`), and E⟨y, F(x)⟩ = 0 for any y independent of W₂ (its law is
sign-symmetric). Second moments are per row (per token), m = E‖x‖²; "at initialisation" means over the draw of
the weights, for a fixed or independent input.

What it is not: torch code; the designs and measurements live in ``verify/``.
"""
from __future__ import annotations

import math

import numpy as np

from theory._domain import (
    require_choice,
    require_finite_array,
    require_int,
    require_nonnegative,
    require_positive,
    require_real,
    require_width,
)

# E‖F(x)‖²/‖x‖² for the bias-free ReLU MLP with fan-in Gaussian weights: each of the m pre-activations is
# N(0, ‖x‖²/d), ReLU keeps half its second moment, and W₂ (variance 1/m) sums m of them into each output.
RELU_BRANCH = 0.5


def _x0(x0_energy, d):
    return float(d) if x0_energy is None else float(require_nonnegative("x0_energy", x0_energy))


def _alpha_unit(alpha) -> float:
    alpha = float(require_real("alpha", alpha))
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}")
    return alpha


# ---- X7 nGPT -----------------------------------------------------------------------------------------------------
def ngpt_rms(depth: int, d: int, x0_energy: float | None = None) -> np.ndarray:
    """X7a — nGPT's RMS row norms r_l, l = 0..L: r_0 = √m_0, r_l = 1 for l ≥ 1 (every row on the unit sphere).

    h ← unit(h + α(unit(F(h)) − h)) puts each row back on the sphere after every block, for any weights and α
    (as long as the point before normalising is ≠ 0, which X7b's lower bound guarantees for α < 1/2).
    Provenance: neighbour: Loshchilov et al. 2024 (nGPT), our statement. Domain: depth ≥ 1, d ≥ 2, x0_energy ≥ 0.
    """
    depth = require_int("depth", depth, 1)
    require_width("d", d)
    return np.concatenate([[math.sqrt(_x0(x0_energy, d))], np.ones(depth)])


def ngpt_unnormalised_bounds(alpha: float) -> tuple[float, float]:
    """X7b — for unit rows h, u and α ∈ [0, 1]: |1 − 2α| ≤ ‖(1 − α)h + αu‖ ≤ 1.

    Triangle inequality for the upper end (equality at u = h), reverse triangle inequality for the lower end
    (equality at u = −h). Provenance: our statement for nGPT's update with a scalar (or constant-vector) α.
    Domain: alpha in [0, 1].
    """
    alpha = _alpha_unit(alpha)
    return abs(1.0 - 2.0 * alpha), 1.0


def ngpt_unnormalised_energy(alpha: float) -> float:
    """X7c — at initialisation E‖h + α(unit(F(h)) − h)‖² = (1 − α)² + α² for a unit row h.

    Expand: (1 − α)²‖h‖² + α²‖u‖² + 2α(1 − α)⟨h, u⟩ with u = unit(F(h)); W₂ → −W₂ maps u → −u and leaves h, so
    E⟨h, u⟩ = 0. Assumptions: the gallery setting, α a constant vector. Provenance: our statement for nGPT.
    Domain: alpha in [0, 1].
    """
    alpha = _alpha_unit(alpha)
    return (1.0 - alpha) ** 2 + alpha ** 2


# ---- X8 HybridNorm -----------------------------------------------------------------------------------------------
def hybridnorm_rms(depth: int, d: int, x0_energy: float | None = None) -> np.ndarray:
    """X8a — HybridNorm's RMS row norms: r_0 = √m_0, r_l = √d for l ≥ 1 (the FFN's Post-Norm, unit gain, ε = 0).

    Provenance: neighbour: Zhuo et al. 2025 (HybridNorm), our statement (F1 with equality). Domain: depth ≥ 1,
    d ≥ 2, x0_energy ≥ 0.
    """
    depth = require_int("depth", depth, 1)
    require_width("d", d)
    return np.concatenate([[math.sqrt(_x0(x0_energy, d))], np.full(depth, math.sqrt(d))])


def hybridnorm_presum_energy(x_energy: float, d: int) -> float:
    """X8b — one token at initialisation: E‖x' + F(x')‖² = (3/2)(‖x‖² + d), x' = x + Attn_QKVnorm(x).

    With one token the softmax is 1, so the attention update is N(x W_V) W_O with ‖N(x W_V)‖² = d exactly:
    E‖x'‖² = ‖x‖² + d (cross term 0 by W_O's symmetry); then E‖x' + F(x')‖² = (1 + 1/2)‖x'‖² (W₂'s symmetry).
    For a block input on the norm's sphere (‖x‖² = d, every block after the first) this is 3d — HybridNorm's
    analogue of Xiong's (3/2)d. Assumptions: the gallery setting, W_V, W_O ~ N(0, 1/d), one head, one token.
    Provenance: our statement. Domain: x_energy ≥ 0, d ≥ 2.
    """
    x_energy = float(require_nonnegative("x_energy", x_energy))
    require_width("d", d)
    return (1.0 + RELU_BRANCH) * (x_energy + d)


# ---- X9 ReZero ---------------------------------------------------------------------------------------------------
def rezero_energy(depth: int, alpha: float, d: int, x0_energy: float | None = None) -> float:
    """X9 — ReZero x⁺ = x + αF(x): E‖x_L‖² = (1 + α²/2)^L ‖x_0‖² at initialisation of F.

    F is positively homogeneous and its weights independent of x: E[‖x + αF(x)‖² | x] = ‖x‖²(1 + α²/2) exactly.
    At α = 0 (ReZero's initialisation) every block is the identity map: E‖x_L‖² = ‖x_0‖², Jacobian I (X9a).
    Provenance: neighbour: Bachlechner et al. 2021 (ReZero), our statement. Domain: depth ≥ 0, alpha real,
    d ≥ 2, x0_energy ≥ 0.
    """
    depth = require_int("depth", depth, 0)
    alpha = float(require_real("alpha", alpha))
    require_width("d", d)
    return _x0(x0_energy, d) * (1.0 + RELU_BRANCH * alpha * alpha) ** depth


def rezero_rms(depth: int, alpha: float, d: int) -> np.ndarray:
    """X9 — the expected curve √(E‖x_l‖²), l = 0..L (flat at α = 0). Domain: as :func:`rezero_energy`, depth ≥ 1."""
    require_int("depth", depth, 1)
    return np.sqrt([rezero_energy(l, alpha, d) for l in range(depth + 1)])


# ---- X10 the residual multiplier ---------------------------------------------------------------------------------
def residual_multiplier_energy(layer: int, d: int, lam2: float = 1.1, x0_energy: float | None = None) -> float:
    """X10 — x⁺ = λx + F(N(x)): E‖x_l‖² = λ^{2l} m_0 + (d/2)(λ^{2l} − 1)/(λ² − 1) at initialisation.

    m⁺ = λ²m + E‖F(N(x))‖² = λ²m + d/2 (cross term 0; ‖N(x)‖² = d). With λ² = 1.1 (modded-nanogpt's √1.1 per
    sublayer) the second moment is multiplied by 1.1 per layer: exponential by design, rate ½ log 1.1 per layer in
    r. λ² = 1 gives Pre-LN's additive m_0 + l·d/2. Provenance: neighbour: modded-nanogpt (Jordan et al. 2024–25,
    residual scaling), as stated in issue 10; our statement. Domain: layer ≥ 0, d ≥ 2, lam2 > 0, x0_energy ≥ 0.
    """
    layer = require_int("layer", layer, 0)
    require_width("d", d)
    lam2 = float(require_positive("lam2", lam2))
    m0, c = _x0(x0_energy, d), RELU_BRANCH * d
    if lam2 == 1.0:
        return m0 + layer * c
    g = lam2 ** layer
    return g * m0 + c * (g - 1.0) / (lam2 - 1.0)


def residual_multiplier_rms(depth: int, d: int, lam2: float = 1.1) -> np.ndarray:
    """X10 — the expected curve √(E‖x_l‖²), l = 0..L. Domain: depth ≥ 1, as :func:`residual_multiplier_energy`."""
    require_int("depth", depth, 1)
    return np.sqrt([residual_multiplier_energy(l, d, lam2) for l in range(depth + 1)])


# ---- X11 CompleteP / depth-µP ------------------------------------------------------------------------------------
def completep_energy(depth: int, alpha: float, d: int, layer: int | None = None,
                     x0_energy: float | None = None) -> float:
    """X11 — x⁺ = x + L^{−α}F(N(x)) in a stack of depth L: E‖x_l‖² = m_0 + l·L^{−2α}·d/2 at initialisation.

    Each step adds L^{−2α}E‖F(N(x))‖² = L^{−2α}d/2 (cross term 0), so at the output (l = L)
    E‖x_L‖²/d = m_0/d + (1/2)L^{1−2α}: depth-independent at α = 1/2 (depth-µP), → m_0/d as L → ∞ at α = 1
    (CompleteP). Provenance: neighbour: Dey et al. 2025 (CompleteP), Yang et al. 2023 / Bordelon et al. 2023
    (depth-µP), our statement. Domain: depth ≥ 1, alpha real, d ≥ 2, 0 ≤ layer ≤ depth (default depth),
    x0_energy ≥ 0.
    """
    depth = require_int("depth", depth, 1)
    alpha = float(require_real("alpha", alpha))
    require_width("d", d)
    layer = depth if layer is None else require_int("layer", layer, 0)
    if layer > depth:
        raise ValueError(f"layer must be <= depth = {depth}, got {layer}")
    return _x0(x0_energy, d) + layer * depth ** (-2.0 * alpha) * RELU_BRANCH * d


def completep_rms(depth: int, alpha: float, d: int) -> np.ndarray:
    """X11 — the expected curve √(E‖x_l‖²), l = 0..L, of one stack of depth L. Domain: as :func:`completep_energy`."""
    depth = require_int("depth", depth, 1)
    return np.sqrt([completep_energy(depth, alpha, d, layer=l) for l in range(depth + 1)])


# ---- X12 hyper-connections with a doubly-stochastic mixing -------------------------------------------------------
def sinkhorn(logits, iters: int = 60) -> np.ndarray:
    """Sinkhorn–Knopp: alternate row and column normalisation of exp(logits) (a square matrix), ending on columns.

    Domain: logits a finite square 2-D array, iters ≥ 1.
    """
    a = require_finite_array("logits", logits, ndim=2)
    if a.shape[0] != a.shape[1]:
        raise ValueError(f"logits must be square, got shape {a.shape}")
    iters = require_int("iters", iters, 1)
    h = np.exp(a - a.max())
    for _ in range(iters):
        h = h / h.sum(1, keepdims=True)
        h = h / h.sum(0, keepdims=True)
    return h


def doubly_stochastic_gain(matrices) -> float:
    """X12a — the spectral norm of a product of doubly-stochastic matrices is exactly 1 (the residual path's gain).

    A doubly-stochastic H has ‖H‖₁ = ‖H‖∞ = 1, so ‖H‖₂ ≤ √(‖H‖₁‖H‖∞) = 1, and H1 = 1 gives ‖H‖₂ ≥ 1; a product
    of doubly-stochastic matrices is doubly stochastic. The function returns the theory's value, 1, after checking
    that every matrix given is doubly stochastic to 1e-9 (it refuses any other, e.g. a row-stochastic one).
    Provenance: neighbour: Xie et al. 2025/2026 (mHC, manifold-constrained hyper-connections) on Zhu et al. 2025
    (Hyper-Connections); Birkhoff–von Neumann. Domain: a non-empty sequence of non-negative square matrices whose
    rows and columns sum to 1 within 1e-9.
    """
    mats = list(matrices)
    if not mats:
        raise ValueError("matrices must hold at least one matrix")
    for k, m in enumerate(mats):
        a = require_finite_array(f"matrices[{k}]", m, ndim=2)
        if a.shape[0] != a.shape[1] or np.any(a < 0):
            raise ValueError(f"matrices[{k}] must be a non-negative square matrix")
        if np.max(np.abs(a.sum(0) - 1)) > 1e-9 or np.max(np.abs(a.sum(1) - 1)) > 1e-9:
            raise ValueError(f"matrices[{k}] must be doubly stochastic (rows and columns summing to 1)")
    return 1.0


def hyperconnection_energy(mixed_energy: float, post_weights, stream_width: int) -> float:
    """X12b — at initialisation E[‖X⁺‖²_F | X] = ‖H X‖²_F + ‖b‖²·d_s/2, X⁺_j = Σ_k H_jk X_k + b_j F(N(h)).

    ‖N(h)‖² = d_s, E‖F(N(h))‖² = d_s/2 and the cross term vanishes (W₂'s symmetry); with ‖H X‖_F ≤ ‖X‖_F (X12a)
    the second moment grows at most additively, like Pre-LN: never exponentially. Provenance: our statement.
    Domain: mixed_energy ≥ 0, post_weights a finite 1-D array, stream_width ≥ 1.
    """
    mixed_energy = float(require_nonnegative("mixed_energy", mixed_energy))
    b = require_finite_array("post_weights", post_weights, ndim=1)
    stream_width = require_int("stream_width", stream_width, 1)
    return mixed_energy + float(b @ b) * RELU_BRANCH * stream_width


# ---- X13 GPAS ----------------------------------------------------------------------------------------------------
def gpas_gain(alpha: float) -> float:
    """X13 — GPAS's forward stream gain λ = 1 − SiLU(α) = 1 − α/(1 + e^{−α}) (the backward pass sees 1).

    Provenance: neighbour: Chen et al. 2025 (GPAS). Domain: alpha real.
    """
    alpha = float(require_real("alpha", alpha))
    # σ(α) without overflow: e^{−α} overflows float64 for α < −709, so for α < 0 use σ(α) = e^{α}/(1 + e^{α}).
    sigmoid = 1.0 / (1.0 + math.exp(-alpha)) if alpha >= 0 else math.exp(alpha) / (1.0 + math.exp(alpha))
    return 1.0 - alpha * sigmoid


def gpas_energy(layer: int, alpha: float, d: int, x0_energy: float | None = None) -> float:
    """X13 — GPAS on Pre-LN, x⁺ = λ(x + F(N(x))): E‖x_l‖² = λ^{2l}m_0 + (d/2)λ²(1 − λ^{2l})/(1 − λ²).

    m⁺ = λ²(m + d/2); for λ² < 1 it tends to the fixed point λ²d/(2(1 − λ²)) — bounded — and at α = 0 (λ = 1, the
    paper's initialisation) it is Pre-LN's m_0 + l·d/2. Provenance: neighbour: Chen et al. 2025 (GPAS), our
    statement. Domain: layer ≥ 0, alpha real, d ≥ 2, x0_energy ≥ 0.
    """
    layer = require_int("layer", layer, 0)
    require_width("d", d)
    lam2 = gpas_gain(alpha) ** 2
    m0, c = _x0(x0_energy, d), RELU_BRANCH * d
    if lam2 == 1.0:
        return m0 + layer * c
    g = lam2 ** layer
    return g * m0 + c * lam2 * (1.0 - g) / (1.0 - lam2)


def gpas_rms(depth: int, alpha: float, d: int) -> np.ndarray:
    """X13 — the expected curve √(E‖x_l‖²), l = 0..L. Domain: depth ≥ 1, as :func:`gpas_energy`."""
    require_int("depth", depth, 1)
    return np.sqrt([gpas_energy(l, alpha, d) for l in range(depth + 1)])


# ---- X14 Gemma-2 sandwich norm with soft-capping -----------------------------------------------------------------
def sandwich_energy(depth: int, d: int, steps_per_block: int = 2, x0_energy: float | None = None) -> float:
    """X14a — Gemma 2's sandwich norm at init: E‖x_L‖² = m_0 + (steps per block)·L·d (unit gains, ε = 0).

    Every residual step adds N_out(·) with ‖N_out(·)‖² = d exactly (peri-LN, F2), and the cross term vanishes: the
    last map before N_out is sign-symmetric and N_out is odd, so the update flips with it. With ε > 0 the update's
    norm is √d·(1 − O(ε/σ²)). Provenance: neighbour: Gemma Team 2024 (Gemma 2), our statement (F5 with Δt = 1,
    γ = 1). Domain: depth ≥ 0, d ≥ 2, steps_per_block ≥ 1, x0_energy ≥ 0.
    """
    depth = require_int("depth", depth, 0)
    require_width("d", d)
    steps_per_block = require_int("steps_per_block", steps_per_block, 1)
    return _x0(x0_energy, d) + steps_per_block * depth * d


def sandwich_rms(depth: int, d: int, steps_per_block: int = 2) -> np.ndarray:
    """X14a — the expected curve √(E‖x_l‖²), l = 0..L. Domain: depth ≥ 1, as :func:`sandwich_energy`."""
    require_int("depth", depth, 1)
    return np.sqrt([sandwich_energy(l, d, steps_per_block) for l in range(depth + 1)])


def softcap(z, cap: float) -> np.ndarray:
    """X14b — Gemma 2's soft-cap c·tanh(z/c): |softcap(z)| < c for every real z, → ±c as z → ±∞.

    Provenance: neighbour: Gemma Team 2024 (attention logits c = 50, final logits c = 30). Domain: cap > 0, z
    finite.
    """
    cap = float(require_positive("cap", cap))
    z = require_finite_array("z", z)
    return cap * np.tanh(z / cap)


def softcap_bound(cap: float) -> float:
    """X14b — the bound sup_z |c·tanh(z/c)| = c (not attained; approached to 1 − 2e^{−2t} at |z| = t·c).

    Domain: cap > 0.
    """
    return float(require_positive("cap", cap))


# ---- what each design is expected to be ------------------------------------------------------------------------
DESIGNS = {
    "ngpt": "X7", "hybridnorm": "X8", "rezero": "X9", "residual_multiplier": "X10", "completep": "X11",
    "hyperconnections": "X12", "gpas": "X13", "gemma": "X14",
}


def expected_placement(design: str, alpha: float | None = None) -> str:
    """The placement each design's construction makes it (what ``verify.check`` should recognise), by design name.

    nGPT and HybridNorm end each block on a norm of the residual sum (post-type, rows on one sphere); ReZero at
    α = 0 is the identity, at α ≠ 0 a plain no-norm step; the residual multiplier, GPAS with α ≠ 0 and the
    hyper-connections multiply the stream itself, so their update grows with the input (none-type, with a stream
    gain); CompleteP and GPAS at α = 0 are Pre-LN; Gemma's sandwich is peri-LN (with an RMS input norm and a ReLU
    MLP it computes the same update as an output norm alone: the tie of C1a's corollary, reported peri|outnorm).
    ``alpha`` is ReZero's or GPAS's α (default 0, their initialisation). Domain: design in :data:`DESIGNS`, alpha
    real.
    """
    require_choice("design", design, tuple(DESIGNS))
    a = 0.0 if alpha is None else float(require_real("alpha", alpha))
    if design == "rezero":
        return "identity" if a == 0.0 else "none"
    if design == "gpas":
        return "pre" if a == 0.0 else "none"
    return {"ngpt": "post", "hybridnorm": "post", "residual_multiplier": "none", "completep": "pre",
            "hyperconnections": "none", "gemma": "peri"}[design]
