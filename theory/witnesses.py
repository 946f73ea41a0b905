"""Witness instances for F1–F4: explicit Transformer stacks that attain (or approach) the forward bounds.

A witness is a plain-numpy *spec* the numerical side loads into a ``verify.engine.zoo.Stack``
(``verify.engine.witness_loader.load_witness``), so that an inequality of ``theory.forward`` is shown to be tight and a
wrong bound (a constant 10% too small, a dropped Δt, a wrong exponent) is caught. A spec is a dict:

- ``config``: keyword arguments of ``verify.engine.zoo.StackConfig`` (plain Python values);
- ``params``: {zoo parameter name: array with the leading instance dimension I}, e.g. ``steps.0.sublayer.W1``
  of shape (I, d, d_mlp); parameters not listed keep the zoo's seeded initialisation (``seed``);
- ``x0``: the input hidden states, shape (I, n, d) or (I, B, n, d);
- ``seed``: seed of the zoo initialisation for the parameters not listed (e.g. W_Q, W_K — the witnesses hold
  for *every* attention pattern, so those are left random on purpose);
- ``expected_row_norms``: the row norms ‖x_{k,i}‖ that the construction predicts, shape (K+1, *x0.shape[:-1]),
  derived here from the construction (not from ``theory.forward``), where the prediction is exact;
- ``notes``: the family's parameters (scales, gains) and what it demonstrates.

The aligned construction (F2, F3, F4). Let s = (+1, −1, +1, …) ∈ R^d (d even): zero mean, mean square 1, so
LayerNorm and RMSNorm with ε = 0, constant γ > 0 and β = 0 map every row c·s (c > 0) to γ·s. Put ŝ = s/√d. Every
sublayer is built to map ŝ-aligned rows to ŝ-aligned rows:
- MLP, "one-sided": W₁ = w₁·ŝ e₁ᵀ, b₁ = b₁·e₁, W₂ = λw₂·e₁ŝᵀ, b₂ = λb₂·ŝ. For u = r ŝ the single active
  unit carries w₁r + b₁ > 0, so with ReLU F(u) = λ(w₂(w₁r + b₁) + b₂)·ŝ — exactly ``mlp_output_sup`` with
  ‖W₁‖ = w₁, ‖W₂‖ = λw₂ (GELU approaches it as w₁r grows).
- MLP, "odd": W₁ = w₁[ŝ, −ŝ, 0, …], W₂ = λw₂[ŝᵀ; −ŝᵀ; 0; …], no biases: since φ(t) − φ(−t) = t for ReLU and
  GELU, F(u) = λw₁w₂(u·ŝ)·ŝ exactly, and F is odd (needed for ± data pairs).
- attention (H heads of width d_h): W_V^h = ρ_h·ŝ e₁^(h)ᵀ, W_O = λw_O·â ŝᵀ with â = Σ_h (ρ_h/‖ρ‖)e_{h·d_h},
  b_O = λb_O·ŝ. If every input row is r ŝ, the output row is λ(w_O‖ρ‖r + b_O)·ŝ for every attention pattern,
  exactly ``attention_output_sup`` with ‖W_V^h‖ = ρ_h, ‖W_O‖ = λw_O.
The scale λ of the output maps (W₂, b₂, W_O, b_O) is the family parameter: pre-LN growth is ∝ λ, peri-LN growth
does not depend on it.

Provenance: constructions for paper claims K1–K3, our statements (see each function).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from theory._domain import (
    as_float_array,
    require_choice,
    require_int,
    require_nonnegative,
    require_positive,
    require_real,
    require_width,
)

__all__ = [
    "aligned_direction",
    "aligned_witness",
    "f1_post_witness",
    "f2_peri_witness",
    "f3_pre_witness",
    "f4_none_witness",
]

ALIGNED_PLACEMENTS = ("pre", "lns", "peri", "outnorm", "none")


def aligned_direction(d: int) -> np.ndarray:
    """s = (+1, −1, +1, …) ∈ R^d: zero mean and unit mean square, so LayerNorm and RMSNorm fix its direction.

    Domain: d even and ≥ 2 (an odd d has no ±1 vector of zero mean); ValueError naming ``d`` otherwise.
    """
    require_width("d", d)
    if d % 2:
        raise ValueError(f"d must be even for the aligned direction (±1 entries with zero mean), got {d}")
    return np.where(np.arange(d) % 2 == 0, 1.0, -1.0)


def _positive_tuple(name: str, values, length: int | None = None) -> np.ndarray:
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = (values,)
    if not isinstance(values, (Sequence, np.ndarray)):
        raise ValueError(f"{name} must be a sequence of positive numbers, got {values!r}")
    arr = as_float_array(name, values)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {arr.shape}")
    if length is not None and arr.size != length:
        raise ValueError(f"{name} must have {length} entries, got {arr.size}")
    if not np.all(np.isfinite(arr)) or not np.all(arr > 0):
        raise ValueError(f"{name} entries must be finite and > 0, got {values!r}")
    return arr


def _step_dts(dt, n_steps: int) -> tuple[float, ...]:
    if isinstance(dt, (int, float)) and not isinstance(dt, bool):
        require_positive("dt", dt)
        return (float(dt),) * n_steps
    return tuple(float(v) for v in _positive_tuple("dt", dt, n_steps))


def aligned_witness(placement: str, *, d: int = 8, n_tokens: int = 3, n_blocks: int = 2, n_heads: int = 2,
                    sublayers: tuple[str, ...] = ("attn", "mlp"), dt=1.0, norm: str = "layer",
                    activation: str = "relu", mlp: str = "one-sided", gamma_in: float = 1.0,
                    gamma_out: float = 1.0, out_scales: Sequence[float] = (1.0,), w1: float = 1.0,
                    w2: float = 1.0, head_gains: Sequence[float] | None = None, w_o: float = 1.0,
                    b1: float = 0.0, b2: float = 0.0, b_o: float = 0.0, row_scales: Sequence[float] = (1.0,),
                    signed_batch: bool = False, seed: int = 0) -> dict:
    """The aligned construction (module docstring) for one placement; instance i uses λ = ``out_scales[i]``.

    Rows of x0 are c_i·s with c_i = ``row_scales`` (cycled over the n tokens); with ``signed_batch`` the data
    batch is the pair (X0, −X0) (needs an odd module: ``mlp="odd"``, no biases). ε = 0 everywhere, β = 0.

    Predicted row norms (exact for ReLU; GELU only with ``mlp="odd"``), per step k with the step's G_k(r) =
    λ(w₂(w₁r + b₁) + b₂) (one-sided MLP), λw₁w₂r (odd MLP) or λ(w_O‖ρ‖r + b_O) (attention):
    - pre: ‖x_{k+1,i}‖ = ‖x_{k,i}‖ + Δt_k·G_k(γ_in√d); lns: the same with r = γ_in√d/√ℓ (ℓ = block + 1);
    - peri, outnorm: ‖x_{k+1,i}‖ = ‖x_{k,i}‖ + Δt_k·γ_out√d (independent of λ and of the module);
    - none (all row scales equal, so M_k is every row's norm): M_{k+1} = M_k + Δt_k·G_k(M_k).

    Domain: placement in ("pre", "lns", "peri", "outnorm", "none"); d even, n_heads | d; positive scales;
    biases ≥ 0 (the aligned biases point along +ŝ / +e₁); ValueError naming the parameter.
    """
    require_choice("placement", placement, ALIGNED_PLACEMENTS)
    s = aligned_direction(d)
    s_hat = s / math.sqrt(d)
    require_int("n_tokens", n_tokens, 1)
    require_int("n_blocks", n_blocks, 1)
    require_int("n_heads", n_heads, 1)
    require_int("seed", seed, 0)
    if d % n_heads:
        raise ValueError(f"n_heads must divide d, got n_heads={n_heads}, d={d}")
    if isinstance(sublayers, str) or not sublayers or any(k not in ("attn", "mlp") for k in sublayers):
        raise ValueError(f"sublayers must be a non-empty tuple of 'attn'/'mlp', got {sublayers!r}")
    sublayers = tuple(sublayers)
    require_choice("norm", norm, ("layer", "rms"))
    require_choice("activation", activation, ("relu", "gelu"))
    require_choice("mlp", mlp, ("one-sided", "odd"))
    for name, v in (("gamma_in", gamma_in), ("gamma_out", gamma_out), ("w1", w1), ("w2", w2), ("w_o", w_o)):
        require_positive(name, v)
    for name, v in (("b1", b1), ("b2", b2), ("b_o", b_o)):
        require_nonnegative(name, v)
    lam = _positive_tuple("out_scales", out_scales)
    rows = _positive_tuple("row_scales", row_scales)
    rho = (_positive_tuple("head_gains", head_gains, n_heads) if head_gains is not None
           else np.ones(n_heads))
    if signed_batch and (mlp != "odd" or b_o > 0):
        raise ValueError("signed_batch needs an odd module: mlp='odd' and b_o = 0 (X0 and −X0 must stay mirrored)")
    if mlp == "odd" and (b1 > 0 or b2 > 0):
        raise ValueError("b1 and b2 must be 0 for mlp='odd' (a bias breaks φ(t) − φ(−t) = t)")
    c = np.resize(rows, n_tokens)
    if placement == "none" and not np.all(c == c[0]):
        raise ValueError("row_scales must be all equal for placement 'none' (attention averages the rows)")
    n_steps = n_blocks * len(sublayers)
    dts = _step_dts(dt, n_steps)
    n_inst = lam.size
    hidden = 4 * d
    d_h = d // n_heads

    # --- parameters -------------------------------------------------------------------------------------------
    params: dict[str, np.ndarray] = {}
    rho_norm = float(np.sqrt(np.sum(rho * rho)))
    a_hat = np.zeros(d)
    wv = np.zeros((d, d))
    for h in range(n_heads):
        wv[:, h * d_h] = rho[h] * s_hat
        a_hat[h * d_h] = rho[h] / rho_norm
    wo = w_o * np.outer(a_hat, s_hat)
    W1 = np.zeros((d, hidden))
    W2 = np.zeros((hidden, d))
    B1 = np.zeros(hidden)
    W1[:, 0] = w1 * s_hat
    W2[0, :] = w2 * s_hat
    if mlp == "odd":
        W1[:, 1] = -w1 * s_hat
        W2[1, :] = -w2 * s_hat
    else:
        B1[0] = b1
    per_inst = lam.reshape(-1, 1, 1)
    for k in range(n_steps):
        pre = f"steps.{k}."
        if sublayers[k % len(sublayers)] == "attn":
            params[pre + "sublayer.W_v"] = np.broadcast_to(wv, (n_inst, d, d)).copy()
            params[pre + "sublayer.W_o"] = per_inst * wo
            params[pre + "sublayer.b_o"] = lam.reshape(-1, 1) * (b_o * s_hat)
        else:
            params[pre + "sublayer.W1"] = np.broadcast_to(W1, (n_inst, d, hidden)).copy()
            params[pre + "sublayer.b1"] = np.broadcast_to(B1, (n_inst, hidden)).copy()
            params[pre + "sublayer.W2"] = per_inst * W2
            params[pre + "sublayer.b2"] = lam.reshape(-1, 1) * (b2 * s_hat)
        if placement in ("pre", "lns", "peri"):
            params[pre + "norm_in.gamma"] = np.full((n_inst, d), float(gamma_in))
        if placement in ("peri", "outnorm"):
            params[pre + "norm_out.gamma"] = np.full((n_inst, d), float(gamma_out))

    # --- input and predicted trajectory -----------------------------------------------------------------------
    x_rows = np.broadcast_to(c[:, None] * s, (n_inst, n_tokens, d))
    x0 = np.stack([x_rows, -x_rows], axis=1) if signed_batch else x_rows.copy()

    def gain(k: int, r: np.ndarray) -> np.ndarray:  # ‖F_k(r ŝ rows)‖ for instance scales λ (I,) and radii r
        lam_b = lam.reshape((-1,) + (1,) * (r.ndim - 1))
        if sublayers[k % len(sublayers)] == "attn":
            return lam_b * (w_o * rho_norm * r + b_o)
        if mlp == "odd":
            return lam_b * w1 * w2 * r
        return lam_b * (w2 * (w1 * r + b1) + b2)

    norms = [np.broadcast_to(np.linalg.norm(x0, axis=-1), x0.shape[:-1]).astype(float)]
    for k in range(n_steps):
        cur = norms[-1]
        if placement in ("peri", "outnorm"):
            inc = np.full_like(cur, gamma_out * math.sqrt(d))
        elif placement in ("pre", "lns"):
            r = gamma_in * math.sqrt(d) / (math.sqrt(k // len(sublayers) + 1) if placement == "lns" else 1.0)
            inc = gain(k, np.full_like(cur, r))
        else:
            inc = gain(k, cur)
        norms.append(cur + dts[k] * inc)
    expected = np.stack(norms)

    config = dict(d=d, n_blocks=n_blocks, placement=placement, n_heads=n_heads, d_mlp=hidden, sublayers=sublayers,
                  norm=norm, eps=0.0, eps_out=0.0, gamma=float(gamma_in), beta=0.0, activation=activation,
                  causal=False, dt=dts, bias=True, bias_std=0.0)
    return dict(config=config, params=params, x0=x0, seed=int(seed), expected_row_norms=expected,
                notes=dict(construction="aligned", mlp=mlp, out_scales=lam, row_scales=c, head_gains=rho,
                           w1=w1, w2=w2, w_o=w_o, b1=b1, b2=b2, b_o=b_o, gamma_in=gamma_in, gamma_out=gamma_out,
                           exact=(activation == "relu" or mlp == "odd")))


def f1_post_witness(*, d: int = 8, n_tokens: int = 3, n_blocks: int = 2, gamma: float = 1.5, eps: float = 1e-5,
                    input_scales: Sequence[float] = (1e-4, 1e-2, 1.0, 1e2), norm: str = "layer",
                    placement: str = "post", dt: float = 1.0, seed: int = 0) -> dict:
    """F1 witness — post-LN rows approach ‖γ‖_∞√d as the pre-norm variance grows (constant γ, β = 0).

    Instance i has X0 = input_scales[i]·G (G standard Gaussian, the same for every instance) and the zoo's
    seeded random weights. For a row z entering the norm, ‖N(z)‖ = |γ|√d·√(σ²/(σ²+ε)) exactly (N1's equality
    case), so the first post step's ratio to ``post_row_bound`` rises to 1 with the input scale, and every later
    step sees rows of norm ≈ |γ|√d, so its ratio is ≈ 1 − ε/(2γ²). With ε = 0 the ratio is exactly 1.

    Domain: placement "post" or "deepnorm"; gamma ≠ 0; eps ≥ 0; positive input scales. Provenance: paper claim
    K1, our construction.
    """
    require_int("seed", seed, 0)
    require_choice("placement", placement, ("post", "deepnorm"))
    require_width("d", d)
    require_int("n_tokens", n_tokens, 1)
    require_int("n_blocks", n_blocks, 1)
    require_real("gamma", gamma)
    if gamma == 0:
        raise ValueError("gamma must be nonzero for the F1 witness (γ = 0 maps every row to β)")
    require_nonnegative("eps", eps)
    require_positive("dt", dt)
    require_choice("norm", norm, ("layer", "rms"))
    scales = _positive_tuple("input_scales", input_scales)
    g = np.random.default_rng(seed).standard_normal((n_tokens, d))
    x0 = scales.reshape(-1, 1, 1) * g
    config = dict(d=d, n_blocks=n_blocks, placement=placement, norm=norm, eps=float(eps), gamma=float(gamma),
                  beta=0.0, dt=float(dt), bias=True, bias_std=0.0)
    return dict(config=config, params={}, x0=x0, seed=int(seed), expected_row_norms=None,
                notes=dict(construction="post", input_scales=scales, gamma=gamma, eps=eps))


def f2_peri_witness(*, d: int = 8, n_tokens: int = 3, n_blocks: int = 2, n_heads: int = 2,
                    dt=(2.0, 0.5, 0.25, 0.25), gamma_in: float = 1.3, gamma_out: float = 0.7,
                    out_scales: Sequence[float] = (1e-2, 1.0, 1e2), row_scales: Sequence[float] = (1.0, 2.0, 5.0),
                    norm: str = "layer", activation: str = "gelu", placement: str = "peri",
                    signed_batch: bool = True, seed: int = 0) -> dict:
    """F2 witness — a peri (or output-norm-only) stack whose every update is aligned with its row: equality.

    ‖x_{k,i}‖ = ‖x_{0,i}‖ + Σ_{j<k} Δt_j·γ_out√d exactly, for every row, every output scale λ (growth does not
    depend on the weights) and every attention pattern. The odd MLP keeps (X0, −X0) mirrored, so with equal
    ``row_scales`` the three moment bounds of ``peri_moment_bounds`` are attained too. The default Δt mixes
    steps above and below 1, so dropping Δt from the bound is caught either way.

    Domain: placement "peri" or "outnorm"; as ``aligned_witness``. Provenance: paper claim K2, our construction.
    """
    require_int("n_heads", n_heads, 1)
    require_int("seed", seed, 0)
    require_choice("placement", placement, ("peri", "outnorm"))
    return aligned_witness(placement, d=d, n_tokens=n_tokens, n_blocks=n_blocks, n_heads=n_heads, dt=dt, norm=norm,
                           activation=activation, mlp="odd", gamma_in=gamma_in, gamma_out=gamma_out,
                           out_scales=out_scales, w1=0.8, w2=1.7, head_gains=np.linspace(0.5, 2.0, n_heads),
                           w_o=1.2, row_scales=row_scales, signed_batch=signed_batch, seed=seed)


def f3_pre_witness(*, d: int = 8, n_tokens: int = 3, n_blocks: int = 2, n_heads: int = 2,
                   dt=(0.5, 2.0, 0.25, 1.5), gamma: float = 1.3,
                   out_scales: Sequence[float] = (1.0, 10.0, 100.0, 1000.0), row_scales: Sequence[float] = (1.0, 3.0),
                   norm: str = "layer", placement: str = "pre", seed: int = 0) -> dict:
    """F3 witness family — pre-LN attains ‖x_0‖ + Σ Δt_j M_j exactly, and M_j ∝ λ: no weight-free bound.

    One-sided ReLU MLP (w₁ = 1.5, b₁ = 0.3, w₂ = 0.9, b₂ = 0.2) and attention with head gains ρ spread over
    [0.5, 2], w_O = 1.1, b_O = 0.1, output maps scaled by λ = ``out_scales`` (one instance each). Each step's
    update equals Δt_j·M_j with M_j = ``mlp_output_sup`` / ``attention_output_sup`` at r = γ√d, so the bound holds
    with equality and the growth ‖x_K‖ − ‖x_0‖ = λ·Σ_j Δt_j M_j(λ = 1) is exactly linear in λ (log-log slope 1).
    The default Δt has t_1 = 0.5 < 1 and t_2 = 2.5 > 2, so a bound that drops Δt is caught both ways.

    Domain: placement "pre" or "lns" (r/√ℓ); as ``aligned_witness``. Provenance: paper claim K3, our construction.
    """
    require_real("gamma", gamma)
    require_int("n_heads", n_heads, 1)
    require_int("seed", seed, 0)
    require_choice("placement", placement, ("pre", "lns"))
    return aligned_witness(placement, d=d, n_tokens=n_tokens, n_blocks=n_blocks, n_heads=n_heads, dt=dt, norm=norm,
                           activation="relu", mlp="one-sided", gamma_in=gamma, out_scales=out_scales, w1=1.5, w2=0.9,
                           b1=0.3, b2=0.2, head_gains=np.linspace(0.5, 2.0, n_heads), w_o=1.1, b_o=0.1,
                           row_scales=row_scales, seed=seed)


def f4_none_witness(*, d: int = 8, n_tokens: int = 3, n_blocks: int = 6, n_heads: int = 2, dt=0.5,
                    gains: Sequence[float] = (0.5, 1.0, 2.0), bias: float = 0.0, row_scale: float = 1.0,
                    seed: int = 0) -> dict:
    """F4 witness family — an unnormalised stack whose max row norm follows the Grönwall recursion exactly.

    Instance i uses output scale λ_i = ``gains[i]`` in a one-sided ReLU MLP (w₁ = w₂ = 1) and a one-head-gain
    attention (ρ_h = 1/√H, so ‖ρ‖ = 1; w_O = 1), so both sublayers have gain a = λ_i and offset b = λ_i·``bias``
    (with ``bias`` > 0 on b₂ and b_O). All rows equal c·s, hence M_{k+1} = (1 + Δt a)M_k + Δt b exactly:
    with bias 0, M_k = (1 + Δt λ_i)^k·M_0 — exponential growth at rate log(1 + Δt λ_i) per step.

    Domain: as ``aligned_witness``; gains > 0, bias ≥ 0. Provenance: paper claim K3 (unnormalised regime),
    our construction.
    """
    require_int("n_heads", n_heads, 1)
    require_int("seed", seed, 0)
    require_nonnegative("bias", bias)
    require_positive("row_scale", row_scale)
    return aligned_witness("none", d=d, n_tokens=n_tokens, n_blocks=n_blocks, n_heads=n_heads, dt=dt,
                           activation="relu", mlp="one-sided", out_scales=gains, w1=1.0, w2=1.0, b1=0.0, b2=bias,
                           head_gains=np.full(n_heads, 1.0 / math.sqrt(n_heads)), w_o=1.0, b_o=bias,
                           row_scales=(row_scale,), seed=seed)
