"""X — neighbouring results: closed forms for six published statements around LayerNorm placement.

What it is for: the suite does not only check the paper (arXiv 2510.09904); it also settles six neighbouring
claims in the same conventions, each restated and proved here in our own words:

- X1 Xiong et al. 2020 (Pre-LN vs Post-LN at initialisation): second moments and the last-layer W₂ gradient ratio;
- X2 Liu et al. 2020 (Admin): output change under a small weight perturbation, ∝ N (post) vs ∝ log N (pre);
- X3 Wang et al. 2022 (DeepNet/DeepNorm): the α, β tables, the update-budget identity, the init specification;
- X4 Sun et al. 2025 (LayerNorm-Scaling): harmonic, not linear, second-moment growth at initialisation;
- X5 Noci et al. 2022 (rank collapse): zero query/key gradients, (1 + β²)^L mean growth, bounded token cosine;
- X6 Emadi 2026: the softmax Jacobian's ∞→1 norm θ(p)/τ and the ½-Lipschitz constant (in which norms).

What it is not: torch code. Everything here is a function of hyper-parameters (width, depth, Δt, α, β, τ) or of a
probability vector, in numpy/scipy/mpmath; the numerical side lives in ``verify/checks/neighbours.py``.

Common setting of X1, X2, X4 ("Xiong's setting", chosen to match their paper): one residual step per sublayer,
LayerNorm with γ = 1, β = 0, ε = 0; biases 0; ReLU MLP of hidden width m with W₁ ~ N(0, 1/d), W₂ ~ N(0, 1/m)
(Xiong et al. take m = d and W₂ ~ N(0, 1/d), which is the same law when m = d; the zoo's fan-in rule gives it for
every m); W_V, W_O ~ N(0, 1/d); W_Q = W_K = 0, so attention is uniform over the n tokens; the input rows
x_{0,i} have E‖x_{0,i}‖² = d (e.g. N(0, I_d)). Two facts drive every X1/X2/X4 formula: a LayerNorm output u has
‖u‖² = d exactly (ε = 0), and for fixed u, E‖u W_V W_O‖² = ‖u‖², E‖ReLU(u W₁) W₂‖² = ‖u‖²/2, with zero-mean
cross terms against anything independent of the last weight matrix (its law is sign-symmetric).
"""
from __future__ import annotations

import dataclasses
import itertools
import math

import mpmath
import numpy as np
from scipy import integrate, special

from theory._domain import (
    require_choice,
    require_finite_array,
    require_int,
    require_nonnegative,
    require_positive,
    require_width,
)

# ------------------------------------------------------------------------------------------------------------
# X1 — Xiong et al. 2020
# ------------------------------------------------------------------------------------------------------------
RELU_SECOND_MOMENT = 0.5  # E[ReLU(Z)²], Z ~ N(0, 1)
RELU_FOURTH_MOMENT = 1.5  # E[ReLU(Z)⁴] = E[Z⁴]/2


def xiong_post_presum_energy(d: int) -> float:
    """X1(a) — Post-LN: the sum just before a block's last LayerNorm has E‖x^{post,5}_i‖² = (3/2)·d.

    Statement: in a post block X' = N(X + F_attn(X)), X'' = N(X' + F_mlp(X')), the MLP residual sum
    s_i = u_i + F_mlp(u_i) with u_i = x'_i satisfies E‖s_i‖² = d + d/2 = 3d/2 for every token i, every n, and
    every attention weights (Q, K need not be zero: u_i is a LayerNorm output whatever came before).
    Proof: ‖u_i‖² = d exactly (γ = 1, β = 0, ε = 0); E‖ReLU(u W₁) W₂‖² = ‖u‖²/2 (each of the m pre-activations is
    N(0, ‖u‖²/d) = N(0, 1), E ReLU² = 1/2, then W₂ ~ N(0, 1/m) multiplies by d/m); the cross term
    2⟨u, F(u)⟩ has mean zero because W₂ is sign-symmetric and independent of u.

    Assumptions: Xiong's setting (module docstring), any hidden width m. Provenance: neighbour: Xiong et al. 2020
    (Lemma on Post-LN), our statement. Domain: d ≥ 2.
    """
    require_width("d", d)
    return 1.5 * d


def xiong_pre_energy_bounds(d: int, blocks: int, x0_energy: float | None = None) -> tuple[float, float]:
    """X1(b) — Pre-LN: E‖x_0‖² + l·d/2 ≤ E‖x_{l,i}‖² ≤ E‖x_0‖² + 3l·d/2, equality on the right for one token.

    With E‖x_{0,i}‖² = d this is Xiong's (1 + l/2)d ≤ E‖x_{l,i}‖² ≤ (1 + 3l/2)d after l pre blocks.
    Proof: a pre block adds the attention update ū W_V W_O (ū = mean over tokens of u_j = LN(x_j), uniform
    attention) and then ReLU(u' W₁) W₂ with ‖u'‖² = d. Both updates have zero-mean cross terms with what they are
    added to, so E‖x_{l+1,i}‖² = E‖x_{l,i}‖² + E‖ū_l‖² + d/2 exactly, and 0 ≤ ‖ū_l‖² ≤ max_j ‖u_j‖² = d
    (convexity). One token: ū = u, ‖ū‖² = d, the right side is an equality. The left side is approached only
    when the normalised tokens average to zero (many near-orthogonal tokens, first block).

    Assumptions: Xiong's setting, ε = 0. Provenance: neighbour: Xiong et al. 2020 (Lemma on Pre-LN), our
    statement (we make the input energy explicit). Domain: d ≥ 2, blocks ≥ 0, x0_energy ≥ 0 (default d).
    """
    require_width("d", d)
    blocks = require_int("blocks", blocks, 0)
    e0 = float(d) if x0_energy is None else float(require_nonnegative("x0_energy", x0_energy))
    return e0 + 0.5 * blocks * d, e0 + 1.5 * blocks * d


def xiong_grad_ratio_limit(blocks: int) -> float:
    """X1(c), d → ∞ — one token: ‖∇_{W₂} ℓ‖ of the last layer, Pre-LN over Post-LN, → √(1.5/(1 + 1.5 L)).

    Statement (Xiong's "≈"): for a loss read from the final LayerNorm output, the last MLP's W₂ gradient is
    h ⊗ J_LN(s)ᵀ g, and ‖J_LN(s)‖ = √d/‖s − mean(s)‖ (N2). The sum s under that norm has E‖s‖² = 1.5d in Post-LN
    (X1a) and (1 + 1.5L)d in Pre-LN after L blocks (X1b, one token); everything else has the same law in both.
    So the root-mean-square gradient ratio tends to √(1.5/(1 + 1.5L)) as d → ∞. At finite width the ratio of
    root-mean-squares is larger by a relative O(1/d) (Jensen on 1/‖s‖²); :func:`xiong_grad_ratio` gives it.

    Provenance: neighbour: Xiong et al. 2020 (Theorem 1's scaling, gradient of W^{2,L}), our statement.
    Domain: blocks ≥ 1.
    """
    blocks = require_int("blocks", blocks, 1)
    return math.sqrt(1.5 / (1.0 + 1.5 * blocks))


@dataclasses.dataclass(frozen=True)
class GradRatio:
    """X1(c) at finite width: the second-order (delta-method) prediction and its parts."""

    value: float  # predicted √(E‖∇_pre‖²/E‖∇_post‖²)
    limit: float  # the d → ∞ value √(1.5/(1 + 1.5L))
    scale_ratio: float  # √(E‖c_post‖²/E‖c_pre‖²): the ratio of root-mean-square centred sums (no Jensen term)
    correction_pre: float  # δ_pre: relative second-order correction to E[s/Q] in Pre-LN
    correction_post: float  # δ_post: the same in Post-LN
    next_term: float  # size of the first neglected term, relative to value (≈ (δ_pre² + δ_post²)/2)


def _update_moments(q: float, w: float, s_mean: float, s_var: float, dc: int) -> tuple[float, float]:
    """One isotropic residual update of the centred norm² r² → r² + 2r√s ξ + s Z (Z ~ χ²_{dc}): (mean, var)."""
    var_sz = s_var * dc * dc + 2 * dc * (s_mean**2 + s_var)
    return q + s_mean * dc, w + 4 * q * s_mean + var_sz


def xiong_grad_ratio(d: int, blocks: int, d_mlp: int | None = None) -> GradRatio:
    """X1(c) at finite width — √(E‖∇_{W₂}^pre‖²_F / E‖∇_{W₂}^post‖²_F) for one token, to second order in 1/d.

    Setting: Xiong's, one token, input x₀ ~ N(0, I_d); Post-LN of any depth (only its last block matters, since
    its input is normalised); Pre-LN with L blocks and a final LayerNorm; loss ℓ = ⟨g, y⟩ with g ~ N(0, I_d)
    independent (any loss whose output gradient is isotropic gives the same ratio).

    Derivation. Write c for the centred part of a vector (dimension d' = d − 1 subspace). With one token every
    residual update is, given its scale s, an isotropic Gaussian: attention adds v W_O with v = u W_V ~ N(0, I_d),
    s = ‖v‖²/d (mean 1, variance 2/d); the MLP adds h W₂ with h = ReLU(u W₁), s = ‖h‖²/m (mean 1/2, variance
    (3/2 − 1/4)/m). Hence r² = ‖c‖² evolves as r'² = r² + 2 r √s ξ + s Z, ξ ~ N(0, 1), Z ~ χ²_{d'}, which gives
    exact recursions for q = E r² and w = Var r². The W₂ gradient of the last MLP is h ⊗ J_LN(x_L)ᵀ g with
    E_g‖J_LN(x)ᵀ g‖² = d(d − 2)/‖c(x)‖², so E‖∇‖² = d(d − 2) m · E[s/Q], Q = r² + 2r√s ξ + s Z the last sum.
    Expanding s/Q about its means to second order, E[s/Q] = (s̄/Q̄)(1 + δ) with
    δ = −Cov(s, Q)/(s̄ Q̄) + Var(Q)/Q̄², Cov(s, Q) = d'·Var(s), Var(Q) = w + 4 q s̄ + Var(s Z).
    Post-LN: r² = d exactly (w = 0); Pre-LN: (q, w) after 2L − 1 updates starting from (d', 2d'). The ratio is
    √((Q̄_post/Q̄_pre)(1 + δ_pre)/(1 + δ_post)). In Post-LN the two terms of δ cancel to leading order; in Pre-LN
    δ ≈ 2/d, so the finite-width ratio exceeds the limit by ≈ 1/d (relative). The neglected third-order
    terms are O(δ²); ``next_term`` reports (δ_pre² + δ_post²)/2 as their size.

    Assumptions: Xiong's setting, one token, ε = 0. Provenance: neighbour: Xiong et al. 2020, our statement and
    our finite-width correction. Domain: d ≥ 3, blocks ≥ 1, d_mlp ≥ 1 (default d).
    """
    d = require_int("d", d, 3)
    blocks = require_int("blocks", blocks, 1)
    m = d if d_mlp is None else require_int("d_mlp", d_mlp, 1)
    dc = d - 1
    attn = (1.0, 2.0 / d)
    mlp = (RELU_SECOND_MOMENT, (RELU_FOURTH_MOMENT - RELU_SECOND_MOMENT**2) / m)

    def last_mlp(q: float, w: float) -> tuple[float, float]:
        s_mean, s_var = mlp
        q_bar, var_q = _update_moments(q, w, s_mean, s_var, dc)
        return q_bar, -dc * s_var / (s_mean * q_bar) + var_q / q_bar**2

    q_post, delta_post = last_mlp(float(d), 0.0)
    q, w = float(dc), 2.0 * dc
    for sv in [attn] + [mlp, attn] * (blocks - 1):
        q, w = _update_moments(q, w, *sv, dc)
    q_pre, delta_pre = last_mlp(q, w)
    value = math.sqrt(q_post / q_pre * (1 + delta_pre) / (1 + delta_post))
    return GradRatio(value=value, limit=xiong_grad_ratio_limit(blocks), scale_ratio=math.sqrt(q_post / q_pre),
                     correction_pre=delta_pre, correction_post=delta_post,
                     next_term=0.5 * (delta_pre**2 + delta_post**2))


# ------------------------------------------------------------------------------------------------------------
# X2 — Liu et al. 2020 (Admin)
# ------------------------------------------------------------------------------------------------------------
def admin_output_change(blocks: int, placement: str) -> float:
    """X2 — mean-field output change under a small weight perturbation: C_post(N) = 5N/6, C_pre(N) ~ ln N.

    Statement. Perturb every residual branch's last weight matrix (W_O, W₂) by δ·E_k, E_k with the init law
    N(0, 1/fan_in), independent. Then to first order in δ and in the mean-field (d → ∞) limit, one token,
    Xiong's setting, E‖Y(W + δE) − Y(W)‖² / E‖Y‖² = δ²·C(N), with Y the normalised output (Post-LN: the last
    block's output; Pre-LN: the final LayerNorm), and

        C_post(N) = (1/2 + 1/3)·N = 5N/6,
        C_pre(N)  = Σ_{l=0}^{N−1} [1/(2 + 1.5 l) + (1/2)/(2.5 + 1.5 l)] = ln N + O(1).

    Proof sketch. (i) Linearisation: ΔY = δ Σ_k J_{K←k+1}·ε_k with ε_k = h_k E_k (h_k the input of the perturbed
    matrix); the E_k are independent and zero-mean, so E‖ΔY‖² = δ² Σ_k E‖J_{K←k+1} ε_k‖² — contributions add
    over steps. (ii) Direct size: E‖ε_k‖² = E‖h_k‖²·d/fan_in = d (attention) or d/2 (MLP), as in X1.
    (iii) Propagation: Post-LN step Jacobians are J_LN(s)(I + J_F) with mean-square gain (d/E‖s‖²)(1 + g_F)
    = 1 (g_F = 1 attention, 1/2 ReLU MLP, E‖s‖² = (1 + g_F)d); the change is born behind a LayerNorm of scale
    d/E‖s‖², giving 1/2 (attention) and 1/3 (MLP) per block. Pre-LN step Jacobians I + J_F J_LN(x_k) have
    mean-square gain 1 + g_F d/q_k = q_{k+1}/q_k (q_k = E‖x_k‖², X1b), which telescopes to q_K/q_{k+1}; the final
    LayerNorm divides by q_K. So step k contributes e_k/q_{k+1}: 1/(2 + 1.5 l) for block l's attention and
    (1/2)/(2.5 + 1.5 l) for its MLP. Sum: C_pre(N) = ln N + O(1) (the summand is 1/l + O(1/l²)).
    Finite width enters through O(1/d) per-step deviations of the gains (the LayerNorm projection removes
    2 of d directions; Jensen on 1/‖s‖²) that compound over the K = 2N steps: a relative O(K/d).

    Assumptions: Xiong's setting, one token, perturbation of W_O and W₂ with the fan-in law. Provenance:
    neighbour: Liu et al. 2020 (Admin, Theorem on output change: O(N) post vs O(log N) pre), our statement
    with explicit mean-field constants. Domain: blocks ≥ 1, placement in ('post', 'pre').
    """
    blocks = require_int("blocks", blocks, 1)
    require_choice("placement", placement, ("post", "pre"))
    if placement == "post":
        return 5.0 * blocks / 6.0
    return float(sum(1.0 / (2.0 + 1.5 * l) + 0.5 / (2.5 + 1.5 * l) for l in range(blocks)))


def admin_output_change_deepnorm(blocks: int, alpha: float, beta: float) -> float:
    """X2/X3 — mean-field output change of a DeepNorm stack: C(N) = N·[2β²/(α² + β⁴) + β²/(α² + β⁴/2)].

    Same perturbation as :func:`admin_output_change` but of the four β-scaled matrices W_V, W_O, W₁, W₂ (DeepNet's
    set), E_k ~ N(0, 1/fan_in) (an update of fixed per-entry size, not proportional to β). Step
    X⁺ = LN(αX + F(X)), W_V, W_O, W₁, W₂ ~ β·N(0, 1/fan_in). Per block: attention's direct change has
    E‖Δ‖² = 2β²d behind a LayerNorm of scale d/((α² + β⁴)d); the MLP's β²d behind d/((α² + β⁴/2)d); step
    Jacobians J_LN(s)(αI + J_F) have mean-square gain (α² + g)/(α² + g) = 1. With α = (2N)^{1/4},
    β = (8N)^{-1/4} (so β²/α² = 1/(4N)) this is 3/4 − O(1/N): bounded in N, which is DeepNet's claim.

    Provenance: neighbour: Wang et al. 2022 (DeepNet, bounded model update), our statement. Domain: blocks ≥ 1,
    alpha > 0, beta > 0.
    """
    blocks = require_int("blocks", blocks, 1)
    a2 = float(require_positive("alpha", alpha)) ** 2
    b2 = float(require_positive("beta", beta)) ** 2
    return blocks * (2 * b2 / (a2 + b2 * b2) + b2 / (a2 + b2 * b2 / 2))


# ------------------------------------------------------------------------------------------------------------
# X3 — DeepNet / DeepNorm (Wang et al. 2022)
# ------------------------------------------------------------------------------------------------------------
DEEPNORM_ARCHITECTURES = ("encoder", "decoder", "encoder-decoder")
# DeepNet's encoder-decoder encoder constants, as published (two significant digits).
DEEPNORM_ENCDEC_ALPHA_COEF = 0.81
DEEPNORM_ENCDEC_BETA_COEF = 0.87
DEEPNORM_PUBLISHED_ROUNDING = 0.005  # half a unit in the last published digit of 0.81 and 0.87


def deepnorm_constants(architecture: str, n_encoder: int | None = None, n_decoder: int | None = None,
                       exact: bool = False) -> dict[str, tuple]:
    """X3 — DeepNorm's (α, β) table (Wang et al. 2022, Table 1): {part: (α, β)}.

    encoder-only, N layers:      α = (2N)^{1/4},          β = (8N)^{-1/4}
    decoder-only, M layers:      α = (2M)^{1/4},          β = (8M)^{-1/4}
    encoder-decoder (N, M):      encoder α = 0.81 (N⁴M)^{1/16}, β = 0.87 (N⁴M)^{-1/16};
                                 decoder α = (3M)^{1/4},  β = (12M)^{-1/4}
    α multiplies the residual stream before the LayerNorm, β is the Xavier gain of W_V, W_O, W₁, W₂.
    ``exact=True`` returns mpmath numbers at the current precision (the rows other than the encoder of
    encoder-decoder are exact algebraic numbers; 0.81 and 0.87 are the published, rounded coefficients).

    Provenance: neighbour: Wang et al. 2022 (DeepNet), their table, restated. Domain: architecture in
    DEEPNORM_ARCHITECTURES; n_encoder ≥ 1 where an encoder exists, n_decoder ≥ 1 where a decoder exists.
    """
    require_choice("architecture", architecture, DEEPNORM_ARCHITECTURES)
    num = mpmath.mpf if exact else float
    root = (lambda x, k: mpmath.root(x, k)) if exact else (lambda x, k: float(x) ** (1.0 / k))
    out: dict[str, tuple] = {}
    if architecture == "encoder":
        n = require_int("n_encoder", n_encoder, 1)
        out["encoder"] = (root(num(2 * n), 4), 1 / root(num(8 * n), 4))
    elif architecture == "decoder":
        m = require_int("n_decoder", n_decoder, 1)
        out["decoder"] = (root(num(2 * m), 4), 1 / root(num(8 * m), 4))
    else:
        n = require_int("n_encoder", n_encoder, 1)
        m = require_int("n_decoder", n_decoder, 1)
        s = root(num(n) ** 4 * num(m), 16)
        a_coef = mpmath.mpf("0.81") if exact else DEEPNORM_ENCDEC_ALPHA_COEF
        b_coef = mpmath.mpf("0.87") if exact else DEEPNORM_ENCDEC_BETA_COEF
        out["encoder"] = (a_coef * s, b_coef / s)
        out["decoder"] = (root(num(3 * m), 4), 1 / root(num(12 * m), 4))
    return out


def deepnorm_update_budget(n_sublayers: int, alpha, beta):
    """X3 — DeepNet's update budget n_sub·(v² + w²)/α² with v = w = β, i.e. n_sub·2β²/α².

    Identity (exact): it equals 1 for encoder-only (n_sub = 2N), decoder-only (n_sub = 2M) and the decoder of
    encoder-decoder (n_sub = 3M, self-, cross-attention and FFN), because there α⁴ = n_sub and 2β² = α⁻²
    (equivalently αβ = 2^{-1/2}): n_sub·2β²/α² = n_sub/α⁴ = 1. It does *not* equal 1 for the encoder of
    encoder-decoder, whose constants come from a different condition (its updates also move the decoder through
    cross-attention): there 2N·2β²/α² = 4(0.87/0.81)²·M^{-1/4} ≈ 4.61·M^{-1/4}; only αβ ≈ 2^{-1/2} survives,
    to the published rounding (0.81·0.87 = 0.7047 vs 0.7071).

    Works on floats and mpmath numbers. Provenance: neighbour: Wang et al. 2022, our statement of which identity
    holds where. Domain: n_sublayers ≥ 1, alpha > 0, beta > 0.
    """
    n_sublayers = require_int("n_sublayers", n_sublayers, 1)
    require_positive("alpha", alpha)
    require_positive("beta", beta)
    return n_sublayers * 2 * beta**2 / alpha**2


def deepnorm_init_std(matrix: str, d: int, d_mlp: int, beta: float) -> float:
    """X3 — DeepNet's init: Xavier-normal std gain·√(2/(fan_in + fan_out)), gain β for W_V, W_O, W₁, W₂, 1 else.

    For the square attention maps this is gain/√d, the same as the zoo's fan-in rule; for W₁ (d × m) and
    W₂ (m × d) it is β√(2/(d + m)), which equals the zoo's fan-in std (β/√d, β/√m) only when m = d.

    Provenance: neighbour: Wang et al. 2022 (DeepNet initialisation), restated. Domain: matrix in
    ('W_q', 'W_k', 'W_v', 'W_o', 'W1', 'W2'), d ≥ 2, d_mlp ≥ 1, beta > 0.
    """
    require_choice("matrix", matrix, ("W_q", "W_k", "W_v", "W_o", "W1", "W2"))
    require_width("d", d)
    d_mlp = require_int("d_mlp", d_mlp, 1)
    beta = float(require_positive("beta", beta))
    gain = 1.0 if matrix in ("W_q", "W_k") else beta
    fan_sum = 2 * d if matrix.startswith("W_") else d + d_mlp
    return gain * math.sqrt(2.0 / fan_sum)


# ------------------------------------------------------------------------------------------------------------
# X4 — LayerNorm-Scaling (Sun et al. 2025)
# ------------------------------------------------------------------------------------------------------------
def activation_second_moment(activation: str, variance: float) -> float:
    """X4 (helper) — E[φ(σZ)²] for Z ~ N(0, 1), σ² = variance: ReLU σ²/2 exactly; exact (erf) GELU by quadrature.

    Statement: the per-unit second moment of the MLP's hidden layer when its pre-activations are N(0, σ²).
    ReLU: E[ReLU(σZ)²] = σ²/2 by symmetry. GELU(x) = x·Φ(x): scipy's adaptive quadrature at relative accuracy
    1e-12 (at σ = 1 it gives 0.425221…, the F5 constant of THEORY.md). Assumptions: none beyond Gaussianity.
    Provenance: standard Gaussian integral, our statement (used by X4 and, for σ = 1, by F5).
    Domain: activation in ('relu', 'gelu'), variance ≥ 0.
    """
    require_choice("activation", activation, ("relu", "gelu"))
    v = float(require_nonnegative("variance", variance))
    if v == 0.0:
        return 0.0
    if activation == "relu":
        return 0.5 * v
    s = math.sqrt(v)

    def integrand(z: float) -> float:
        x = s * z
        g = 0.5 * x * (1.0 + special.erf(x / math.sqrt(2.0)))
        return g * g * math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)

    val, _ = integrate.quad(integrand, -np.inf, np.inf, epsabs=0.0, epsrel=1e-12, limit=200)
    return float(val)


def lns_energy(blocks: int, d: int, activation: str = "relu", dt: float = 1.0,
               x0_energy: float | None = None, attention: str = "one-token") -> float:
    """X4 — LayerNorm-Scaling at init: E‖x_L‖² = E‖x_0‖² + Δt² d Σ_{ℓ=1}^{L} [a_ℓ/ℓ + E φ(Z/√ℓ)²].

    The LNS step is X⁺ = X + Δt F(N(X)/√ℓ) (ℓ the 1-based block index). In Xiong's setting the attention update
    of block ℓ is ū W_V W_O/√ℓ with E‖·‖² = ‖ū‖²/ℓ, ‖ū‖² ∈ [0, d] (= d for one token), and the MLP update
    φ(u W₁/√ℓ) W₂ has E‖·‖² = d·E[φ(Z/√ℓ)²] since each pre-activation is N(0, 1/ℓ). Cross terms vanish as in X1.
    For ReLU (positively homogeneous) E φ(Z/√ℓ)² = 1/(2ℓ), so for one token

        E‖x_L‖²/d = 1 + (3/2)·Δt²·H_L,  H_L = Σ_{ℓ ≤ L} 1/ℓ = ln L + γ_E + O(1/L),

    harmonic — against 1 + (3/2)Δt² L without the scaling (X1b). For GELU the MLP term is evaluated by
    quadrature; it is 1/(4ℓ) + O(ℓ⁻²) for large ℓ (GELU(x) ≈ x/2 near 0), so growth is still logarithmic.
    ``attention='one-token'`` uses ‖ū‖² = d (upper end, exact for n = 1); ``'none'`` drops it (‖ū‖² = 0, the
    lower end of the n-token bracket).

    Assumptions: Xiong's setting, ε = 0. Provenance: neighbour: Sun et al. 2025 (LayerNorm-Scaling, "curse of
    depth"), our statement (exact recursion). Domain: blocks ≥ 0, d ≥ 2, activation in ('relu', 'gelu'),
    dt > 0, x0_energy ≥ 0 (default d), attention in ('one-token', 'none').
    """
    blocks = require_int("blocks", blocks, 0)
    require_width("d", d)
    require_choice("activation", activation, ("relu", "gelu"))
    dt = float(require_positive("dt", dt))
    require_choice("attention", attention, ("one-token", "none"))
    e = float(d) if x0_energy is None else float(require_nonnegative("x0_energy", x0_energy))
    a = 1.0 if attention == "one-token" else 0.0
    for ell in range(1, blocks + 1):
        e += dt * dt * d * (a / ell + activation_second_moment(activation, 1.0 / ell))
    return e


def harmonic_number(n: int) -> float:
    """X4 (helper) — the harmonic number H_n = Σ_{k=1}^{n} 1/k (H_0 = 0), = ln n + γ_E + 1/(2n) + O(n⁻²).

    Statement: the growth law of X4 for ReLU (E‖x_L‖²/d = 1 + (3/2)H_L). Provenance: standard, our statement.
    Domain: n ≥ 0.
    """
    n = require_int("n", n, 0)
    return float(sum(1.0 / k for k in range(1, n + 1)))


# ------------------------------------------------------------------------------------------------------------
# X5 — Noci et al. 2022 (rank collapse)
# ------------------------------------------------------------------------------------------------------------
def noci_mean_energy(blocks: int, beta: float, mean_energy0: float = 1.0) -> float:
    """X5(b) — uniform attention, residual X⁺ = X + β·Attn(X): E‖x̄_L‖² = (1 + β²)^L ‖x̄_0‖².

    Attention-only stack, no norm, W_Q = W_K = 0 (uniform attention), W_V, W_O ~ N(0, 1/d). Uniform attention
    returns the token mean x̄ W_V W_O in every row, so x̄⁺ = x̄ (I + β W_V W_O) and E‖x̄⁺‖² = ‖x̄‖²(1 + β²)
    (cross term zero by the symmetry of W_O; E‖v W_V W_O‖² = ‖v‖²). The deviations x_i − x̄ are not changed
    at all (the update is the same for every row): that is an exact identity, not only in expectation.

    Provenance: neighbour: Noci et al. 2022 (signal propagation, rank collapse), our statement.
    Domain: blocks ≥ 0, beta ≥ 0, mean_energy0 ≥ 0.
    """
    blocks = require_int("blocks", blocks, 0)
    b = float(require_nonnegative("beta", beta))
    e = float(require_nonnegative("mean_energy0", mean_energy0))
    return e * (1.0 + b * b) ** blocks


def noci_token_cosine(blocks: int, beta: float, mean_energy0: float, spread_energy0: float, n_tokens: int) -> float:
    """X5(c) — the tokens' kernel cosine κ_L = mean_{i≠j}⟨x_i, x_j⟩ / mean_i ‖x_i‖² with E‖x̄_L‖² in place of ‖x̄_L‖².

    With a = ‖x̄_0‖², b = mean_i ‖x_{0,i} − x̄_0‖² (fixed through the stack, X5b) and a_L = a(1 + β²)^L:
        κ_L = (a_L − b/(n − 1)) / (a_L + b).
    κ_L increases with a_L. Fixed β > 0: κ_L → 1 (rank collapse). β² = 1/L: (1 + 1/L)^L < e, so
        κ_L < (a e − b/(n − 1)) / (a e + b) < 1 for every L (:func:`noci_cosine_sup`), approached as L → ∞.

    Provenance: neighbour: Noci et al. 2022 (residual scaling 1/√L avoids rank collapse), our statement.
    Domain: blocks ≥ 0, beta ≥ 0, mean_energy0 ≥ 0, spread_energy0 ≥ 0 (a + b > 0), n_tokens ≥ 2.
    """
    n = require_int("n_tokens", n_tokens, 2)
    a_l = noci_mean_energy(blocks, beta, mean_energy0)
    b = float(require_nonnegative("spread_energy0", spread_energy0))
    if a_l + b == 0:
        raise ValueError("spread_energy0 and mean_energy0 must not both be 0 (all tokens are zero)")
    return (a_l - b / (n - 1)) / (a_l + b)


def noci_cosine_sup(mean_energy0: float, spread_energy0: float, n_tokens: int) -> float:
    """X5(c) — sup over L of κ_L at β² = 1/L: (a e − b/(n − 1))/(a e + b) < 1 when b > 0.

    Provenance: neighbour: Noci et al. 2022, our statement. Domain as :func:`noci_token_cosine`.
    """
    n = require_int("n_tokens", n_tokens, 2)
    a = float(require_nonnegative("mean_energy0", mean_energy0)) * math.e
    b = float(require_nonnegative("spread_energy0", spread_energy0))
    if a + b == 0:
        raise ValueError("spread_energy0 and mean_energy0 must not both be 0 (all tokens are zero)")
    return (a - b / (n - 1)) / (a + b)


# ------------------------------------------------------------------------------------------------------------
# X6 — the softmax Jacobian (Emadi 2026)
# ------------------------------------------------------------------------------------------------------------
MAX_SUBSET_ENUMERATION = 20  # 2^20 subsets: the largest n for which θ(p) is computed by enumeration here


def _probabilities(p) -> np.ndarray:
    arr = require_finite_array("p", p)
    if arr.ndim < 1 or arr.shape[-1] < 1:
        raise ValueError(f"p must have a last axis of length >= 1, got shape {arr.shape}")
    if np.any(arr < 0):
        raise ValueError("p must be non-negative (a probability vector)")
    if not np.allclose(arr.sum(axis=-1), 1.0, rtol=0.0, atol=1e-12):
        raise ValueError("p must sum to 1 along its last axis (within 1e-12)")
    return arr


def softmax_theta(p) -> np.ndarray:
    """X6 — θ(p) = 4·max_{S ⊆ [n]} p(S)(1 − p(S)), by enumerating all 2^n subsets (batched over leading axes).

    θ ∈ [0, 1]; θ = 1 iff some subset has mass exactly 1/2 (t(1 − t) ≤ 1/4 with equality at t = 1/2), so
    computing θ is a subset-sum problem: enumeration is exact and fine for the small n the suite checks.
    Provenance: neighbour: Emadi 2026 (the quantity θ(p)), our statement. Domain: p a probability vector along the
    last axis (entries ≥ 0, sum 1 within 1e-12), n ≤ MAX_SUBSET_ENUMERATION.
    """
    arr = _probabilities(p)
    n = arr.shape[-1]
    if n > MAX_SUBSET_ENUMERATION:
        raise ValueError(f"p must have at most {MAX_SUBSET_ENUMERATION} entries for subset enumeration, got {n}")
    subsets = np.array(list(itertools.product((0.0, 1.0), repeat=n)))  # (2^n, n)
    mass = arr @ subsets.T  # (..., 2^n)
    return 4.0 * np.max(mass * (1.0 - mass), axis=-1)


def softmax_jacobian(z, tau: float = 1.0) -> np.ndarray:
    """X6 (helper) — the Jacobian of z ↦ softmax(z/τ): J = (diag p − p pᵀ)/τ, batched over leading axes.

    Statement: ∂p_i/∂z_j = p_i(δ_ij − p_j)/τ (differentiate exp(z_i/τ)/Σ_k exp(z_k/τ)); J is symmetric positive
    semi-definite with J1 = 0. Provenance: standard, our statement (the object of X6, neighbour: Emadi 2026).
    Domain: tau > 0, z finite with at least one axis.
    """
    tau = float(require_positive("tau", tau))
    zz = require_finite_array("z", z)
    if zz.ndim < 1:
        raise ValueError("z must have at least one axis")
    p = special.softmax(zz / tau, axis=-1)
    return (np.einsum("...i,ij->...ij", p, np.eye(p.shape[-1])) - p[..., :, None] * p[..., None, :]) / tau


def softmax_jacobian_inf_to_one(p, tau: float = 1.0) -> np.ndarray:
    """X6 — ‖J‖_{∞→1} = θ(p)/τ for J = (diag p − p pᵀ)/τ, the Jacobian of softmax(·/τ) at p.

    Proof. J is symmetric positive semi-definite, so for sign vectors s, t: tᵀJs ≤ √(tᵀJt·sᵀJs) ≤ max_s sᵀJs,
    and ‖J‖_{∞→1} = max_{s,t ∈ {±1}ⁿ} tᵀJs = max_s sᵀJs (a convex function of x on the ∞-ball peaks at a vertex).
    With S = {i: s_i = 1}: sᵀ(diag p − ppᵀ)s = Σ p_i − (Σ p_i s_i)² = 1 − (2p(S) − 1)² = 4p(S)(1 − p(S)).

    Provenance: neighbour: Emadi 2026, our proof. Domain: as :func:`softmax_theta`, tau > 0.
    """
    tau = float(require_positive("tau", tau))
    return softmax_theta(p) / tau


SOFTMAX_NORM_PAIRS = ("l1", "l2", "linf", "linf->l1", "l1->linf")


def softmax_lipschitz_constant(norm: str, tau: float = 1.0) -> float:
    """X6 — the best Lipschitz constant of z ↦ softmax(z/τ) for each norm pair (sup over z of ‖J(z)‖).

    - 'l1', 'l2', 'linf' (same norm on both sides): 1/(2τ). ‖J‖_{1→1} = ‖J‖_{∞→∞} = max_i 2p_i(1 − p_i)/τ
      (column/row sums of |J|) ≤ 1/(2τ); ℓ2 by Riesz–Thorin (or Gershgorin: λ_max ≤ max_i 2p_i(1 − p_i)).
      Sharp: p → (1/2, 1/2, 0, …) (attained for n = 2 at z₁ = z₂). This is the "softmax is ½-Lipschitz" claim.
    - 'linf->l1': 1/τ = sup θ(p)/τ (X6), attained whenever a subset has mass 1/2 (uniform p, n even). So in the
      ∞→1 pairing the constant is 1, not ½; in total variation (½‖·‖₁) against ℓ∞ it is ½ again.
    - 'l1->linf': max_{ij}|J_ij| ≤ 1/(4τ) (p_i(1 − p_i) and p_i p_j are ≤ 1/4), sharp at p_i → 1/2.
    By the mean-value inequality on the segment, each is a Lipschitz constant, and each is the supremum of the
    matching operator norm of J, hence best possible.

    Provenance: neighbour: Emadi 2026 (½-Lipschitz), our statement of the norms. Domain: norm in
    SOFTMAX_NORM_PAIRS, tau > 0.
    """
    require_choice("norm", norm, SOFTMAX_NORM_PAIRS)
    tau = float(require_positive("tau", tau))
    return {"l1": 0.5, "l2": 0.5, "linf": 0.5, "linf->l1": 1.0, "l1->linf": 0.25}[norm] / tau
