"""A-posteriori certificates for one trained GPT (F8) and the AdamW trajectory envelope (F9).

What it is for: evaluating the forward bounds F1/F2/F3, the B3 gradient envelope and the F9 AdamW bound with the
constants of *this* model — its weights, gains and activations, layer by layer — and returning, per residual step,
what was measured, what the bound says and their ratio (≤ 1; the closer to 1 the more the bound says about the
model). Used by the figures right after training (``k7_moments``, ``grad_norms``) and by the F8/F9 checks.

API (all on ``verify.training.gpt.GPT``; the model is copied to float64 first and is not modified):

- :func:`forward_certificate` ``(model, tokens)`` → ``{"measured", "bound", "ratio", "tiers", ...}``;
- :func:`gradient_certificate` ``(model, tokens, targets)`` → the same for ‖∂loss/∂X_k‖ (B3 with this model's
  exact step Jacobians on this input: end to end ‖A_kᵀ⋯A_{K−1}ᵀ‖₂ (headline), chained ∏‖A_j‖₂, and ∏(1 + ‖A_j − I‖₂));
- :func:`adamw_envelope_ratio` ``(model_init_state, model, lr, weight_decay, betas, steps, ...)`` → the F9 bound on
  the final weights (and, given ``tokens``, the pre-LN hidden-state envelope) — per logged step with ``history``.

Conventions: k = 0..K indexes the residual states X_0 (embeddings) … X_K (before the final norm); "measured" at
k is M_k = max over every row (token, sequence) of ‖x_{k,i}‖₂ (forward), or the batch norm ‖p_k‖ (gradient).
A BatchedGPT is not supported (extract one model first); a ValueError names any bad argument.

What it is not: cheap at any size. The gradient certificate needs dense per-sequence Jacobians of the attention
steps, (T·d)² per sequence: pass short sequences (T·d ≤ ``max_dense``, e.g. 16 tokens at d = 64).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from theory.adamw import (
    adam_update_bound,
    adam_update_bound_limit,
    adamw_decay_products,
    adamw_deviation_bound,
)
from theory.certificates import forward_chain, gradient_chain, one_step_ratios
from theory.forward import (
    attention_output_sup,
    mlp_output_sup,
    post_row_bound,
    pre_norm_bound,
)
from verify.engine.devices import single_threaded
from verify.engine.jacobians import (
    identity_like,
    spectral_norm,
    step_jacobian,
    sublayer_input,
)
from verify.engine.zoo import BatchedAttention, BatchedMLP
from verify.training.gpt import GPT

__all__ = [
    "FORWARD_TIERS",
    "SUPPORTED_RULES",
    "adamw_envelope_ratio",
    "forward_certificate",
    "gradient_certificate",
]

RESIDUAL_RULES = ("pre", "lns", "peri", "outnorm")
NORMALISING_RULES = ("post", "deepnorm")
SUPPORTED_RULES = RESIDUAL_RULES + NORMALISING_RULES
# Tiers of the forward certificate, loosest first: F1/F2/F3 with this model's weight norms and gains and the N1
# range of the norm (a priori given the weights); the same with the measured radius of each sublayer input; the
# measured branch rows themselves (a posteriori: only the triangle inequality of the residual sum remains).
FORWARD_TIERS = ("weights", "inputs", "aposteriori")


# ---- helpers ------------------------------------------------------------------------------------------------
def _check_model(model) -> None:
    if not isinstance(model, GPT):
        raise ValueError(f"model must be a verify.training.gpt.GPT, got {type(model).__name__}")  # noqa: TRY004


def _check_tokens(model: GPT, tokens, name: str = "tokens") -> torch.Tensor:
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{name} must be an integer tensor of shape (B, T)")
    if tokens.shape[0] < 1 or tokens.shape[1] < 1 or tokens.shape[1] > model.cfg.block_size:
        raise ValueError(f"{name} must have B >= 1 and 1 <= T <= block_size={model.cfg.block_size}, "
                         f"got {tuple(tokens.shape)}")
    if int(tokens.min()) < 0 or int(tokens.max()) >= model.cfg.vocab_size:
        raise ValueError(f"{name} must hold token ids in [0, {model.cfg.vocab_size})")
    return tokens.to(model.device, torch.int64)


def _float64(model: GPT) -> GPT:
    """A float64 copy on the model's device (float32 values are exact in float64)."""
    m = copy.deepcopy(model).to(torch.float64)
    for p in m.parameters():
        p.requires_grad_(True)
    if not all(bool(torch.isfinite(p).all()) for p in m.parameters()):
        raise ValueError("model has NaN or inf parameters")
    return m


def _row_norms(x: torch.Tensor) -> np.ndarray:
    """‖x_i‖₂ of every row of a zoo state (1, B, T, d) → (B·T,) float64."""
    return x.detach()[0].reshape(-1, x.shape[-1]).norm(dim=-1).double().cpu().numpy()


def _spec(w: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(w.detach().double(), ord=2))


def _vec(v) -> float:
    return 0.0 if v is None else float(v.detach().double().norm())


def _gain_range(norm, d: int) -> float:
    """N1: sup ‖N(z)‖₂ = ‖γ‖_∞√d + ‖β‖₂ for this norm layer's own gain and bias."""
    beta = 0.0 if norm.beta is None else _vec(norm.beta[0])
    return float(post_row_bound(d, float(norm.gamma[0].detach().abs().max()), beta))


def _sublayer_sup(sub, r: float) -> float:
    """F3: sup of the sublayer's row norm over inputs with every row ‖u‖ ≤ r, from its own weight norms."""
    if isinstance(sub, BatchedMLP):
        return float(mlp_output_sup(r, _spec(sub.W1[0]), _spec(sub.W2[0]),
                                    _vec(None if sub.b1 is None else sub.b1[0]),
                                    _vec(None if sub.b2 is None else sub.b2[0])))
    if isinstance(sub, BatchedAttention):
        dh = sub.d // sub.n_heads
        wv = sub.W_v[0].detach().double()
        heads = [_spec(wv[:, h * dh:(h + 1) * dh]) for h in range(sub.n_heads)]
        return float(attention_output_sup(r, np.array(heads), _spec(sub.W_o[0]),
                                          _vec(None if sub.b_o is None else sub.b_o[0])))
    raise ValueError(f"sublayer must be a zoo attention or MLP, got {type(sub).__name__}")


def _rules(model: GPT) -> list[str]:
    rules = [s.rule for s in model.stack.steps]
    bad = sorted(set(rules) - set(SUPPORTED_RULES))
    if bad:
        raise ValueError(f"placement {model.cfg.stack.placement!r} has step rules {bad} without a forward "
                         f"certificate (supported: {SUPPORTED_RULES}; 'none' is F4's exponential regime)")
    return rules


def _ratio(measured: np.ndarray, bound: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(bound > 0, measured / np.where(bound > 0, bound, 1.0), np.where(measured > 0, np.inf, 1.0))


def quadrature(x: np.ndarray) -> np.ndarray:
    """√(Σ_b x_b²) along axis 1 without overflow (an exp envelope can reach 1e200 and beyond)."""
    x = np.abs(np.asarray(x, dtype=float))
    scale = np.max(x, axis=1, keepdims=True)
    safe = np.where((scale > 0) & np.isfinite(scale), scale, 1.0)
    with np.errstate(invalid="ignore", over="ignore"):
        out = safe[:, 0] * np.sqrt(np.sum(np.square(x / safe), axis=1))
    return np.where(np.isfinite(scale[:, 0]), np.where(scale[:, 0] > 0, out, 0.0), np.inf)


# ---- F8 (a): forward ----------------------------------------------------------------------------------------
@single_threaded
@torch.no_grad()
def forward_certificate(model: GPT, tokens: torch.Tensor) -> dict:
    """F8 (a) — per residual state k = 0..K: measured M_k = max_i ‖x_{k,i}‖ vs the F1/F2/F3 bound of the model's
    placement with this model's per-layer constants, and ratio = measured/bound (≤ 1 is the theorem).

    Tiers (``tiers[name]`` = {"bound", "ratio"}; ``bound``/``ratio`` at top level are the tightest, "aposteriori"):

    - ``weights``: F1/F2/F3 with the layer's own spectral norms, per-head value norms, bias norms, gains and
      biases, and the N1 range ‖γ‖_∞√d + ‖β‖ of each input norm (pre), of each output norm (peri: F2's C_out)
      or of the residual norm (post: F1);
    - ``inputs``: the same, with the measured radius max_i ‖N(X_j)_i‖ of each sublayer input instead of N1's
      range (pre; equal to ``weights`` for peri/post, whose constants do not depend on the input);
    - ``aposteriori``: per row, the measured branch rows Δt_j‖branch_j(X_j)_i‖ (residual rules) or ‖γ⊙ẑ_i‖ + ‖β‖
      (post): the only inequality left is the triangle inequality of the residual sum (resp. of γ⊙ẑ + β).

    ``loss_factors`` splits the last layer's gap into the three inequalities: ``triangle`` (measured /
    aposteriori), ``sublayer_sup`` (aposteriori / inputs: F3's spectral-norm supremum), ``norm_range``
    (inputs / weights: N1's range vs the actual radius). Their product is the ``weights`` tier's ratio.
    """
    _check_model(model)
    rules = _rules(model)
    m = _float64(model)
    idx = _check_tokens(m, tokens)
    d = m.cfg.d
    _, _, states = m(idx, trajectory=True)
    K = len(m.stack.steps)
    measured = np.array([float(_row_norms(x).max()) for x in states])
    x0_rows = _row_norms(states[0])
    dts = np.array([float(s.dt) for s in m.stack.steps])
    flags = np.array([r in NORMALISING_RULES for r in rules])
    c_w, c_in, c_post = np.zeros(K), np.zeros(K), np.zeros((K, x0_rows.size))
    for j, step in enumerate(m.stack.steps):
        x = states[j]
        if step.rule in ("pre", "lns"):
            u = sublayer_input(step, x)
            c_w[j] = _sublayer_sup(step.sublayer, _gain_range(step.norm_in, d) * step.in_scale)
            c_in[j] = _sublayer_sup(step.sublayer, float(_row_norms(u).max()))
            c_post[j] = _row_norms(step.branch(x))
        elif step.rule in ("peri", "outnorm"):
            c_w[j] = c_in[j] = _gain_range(step.norm_out, d)
            c_post[j] = _row_norms(step.branch(x))
        else:  # post, deepnorm: the state is N(y), y = αx + Δt F(x)
            norm = step.norm_res
            y = step.alpha * x + step.dt * step.sublayer(x)
            z = norm.normalized(y)
            beta = 0.0 if norm.beta is None else _vec(norm.beta[0])
            c_w[j] = _gain_range(norm, d)
            c_in[j] = float(norm.gamma[0].abs().max()) * float(_row_norms(z).max()) + beta
            c_post[j] = _row_norms(norm.gamma[0] * z) + beta
    r0 = float(x0_rows.max())
    bounds = {
        "weights": forward_chain(r0, dts, c_w, flags),
        "inputs": forward_chain(r0, dts, c_in, flags),
        "aposteriori": forward_chain(x0_rows, dts, c_post, flags).max(axis=1),
    }
    tiers = {name: {"bound": b.tolist(), "ratio": _ratio(measured, b).tolist()} for name, b in bounds.items()}
    last = {name: b[-1] for name, b in bounds.items()}
    loss = {"triangle": float(measured[-1] / last["aposteriori"]),
            "sublayer_sup": float(last["aposteriori"] / last["inputs"]),
            "norm_range": float(last["inputs"] / last["weights"])}
    return {"measured": measured.tolist(), "bound": tiers["aposteriori"]["bound"],
            "ratio": tiers["aposteriori"]["ratio"], "tiers": tiers, "rules": rules, "dt": dts.tolist(),
            "loss_factors": loss, "n_rows": int(x0_rows.size),
            "constants": {"x0": {"weights": r0, "inputs": r0, "aposteriori": x0_rows.tolist()},
                          "weights": c_w.tolist(), "inputs": c_in.tolist(), "aposteriori": c_post.tolist()}}


# ---- F8 (b): gradient ---------------------------------------------------------------------------------------
def _adjoints(m: GPT, idx, targets):
    m.zero_grad(set_to_none=True)
    with torch.enable_grad():
        _, loss, states = m(idx, targets, trajectory=True)
        for x in states:
            x.retain_grad()
        loss.backward()
    p = np.array([x.grad[0].flatten(1).norm(dim=1).double().cpu().numpy() for x in states])  # (K+1, B)
    m.zero_grad(set_to_none=True)
    return p, float(loss.detach()), [x.detach() for x in states]


def _step_gains(step, x: torch.Tensor, max_dense: int, dense: bool = False):
    """Per sequence: (‖A‖₂, ‖A − I‖₂) of one step's exact Jacobian at x (B, T, d).

    Row-wise steps (an MLP step of any rule: pre/peri/none/outnorm, and post, whose norm is row-wise too) have a
    block-diagonal Jacobian with one d×d block per token, so ‖A‖ is the max over its tokens of the block norms;
    attention steps need the dense (T·d)² matrix of each sequence."""
    b, t, d = x.shape
    with torch.no_grad():
        if isinstance(step.sublayer, BatchedMLP):
            a = step_jacobian(step, x.reshape(b * t, 1, d))  # (B·T, d, d)
            g = spectral_norm(a).reshape(b, t).amax(dim=1)
            gi = spectral_norm(a - identity_like(a)).reshape(b, t).amax(dim=1)
            if dense:  # the block-diagonal (T·d)² matrix of each sequence
                blocks = a.reshape(b, t, d, d)
                eye_t = torch.eye(t, dtype=a.dtype, device=a.device)
                a = torch.einsum("ab,sajk->sajbk", eye_t, blocks).reshape(b, t * d, t * d)
        else:
            if t * d > max_dense:
                raise ValueError(f"tokens: a dense attention Jacobian needs T·d <= max_dense={max_dense}, got "
                                 f"T·d = {t}·{d} = {t * d}; pass shorter sequences (the model is causal, a prefix "
                                 f"is a valid input) or raise max_dense")
            a = step_jacobian(step, x)  # (B, T·d, T·d)
            g, gi = spectral_norm(a), spectral_norm(a - identity_like(a))
    return g.double().cpu().numpy(), gi.double().cpu().numpy(), (a if dense else None)


@single_threaded
def gradient_certificate(model: GPT, tokens: torch.Tensor, targets: torch.Tensor, max_dense: int = 2048,
                         end_to_end: bool = True) -> dict:
    """F8 (b) — per residual state k = 0..K: measured ‖p_k‖ = ‖∂loss/∂X_k‖ (batch norm; loss = the model's mean
    next-token cross-entropy on ``tokens``/``targets``) vs the B3 bound ∏_{j≥k} ‖A_j‖₂·‖p_K‖ built per sequence
    from this model's exact step Jacobians on this input, and ratio = measured/bound (≤ 1 is the theorem).

    Also: ``tiers["b3_rates"]`` — the residual form ∏(1 + ‖A_j − I‖₂)‖p_K‖ (theory.backward.gradient_envelope
    with exact rates; absent for post), ``one_step`` — per k < K the batch-worst ‖p_k‖/(‖A_k‖‖p_{k+1}‖) per
    sequence (how much of each one-step inequality is used; the chained ratio at k is their product over j ≥ k,
    per sequence), and ``gains`` (per step, the max over sequences of ‖A_j‖₂).
    ``max_dense`` caps T·d for the dense attention Jacobians (ValueError naming ``tokens`` beyond it).
    ``end_to_end=True`` (default) adds ``tiers["end_to_end"]``: ‖A_kᵀ…A_{K−1}ᵀ‖₂·‖p_K‖ per sequence — the best bound that
    does not look at p_K's direction (dense (T·d)² products and one SVD per step and sequence: about twice the
    cost of the rest); it is then the headline ``bound``/``ratio`` (``headline`` names the tier; with
    ``end_to_end=False`` the headline is ``exact_gains``).
    """
    _check_model(model)
    if isinstance(max_dense, bool) or not isinstance(max_dense, int) or max_dense < 1:
        raise ValueError(f"max_dense must be an integer >= 1, got {max_dense!r}")
    m = _float64(model)
    idx = _check_tokens(m, tokens)
    tgt = _check_tokens(m, targets, "targets")
    if tgt.shape != idx.shape:
        raise ValueError(f"targets must have the shape of tokens {tuple(idx.shape)}, got {tuple(tgt.shape)}")
    p, loss, states = _adjoints(m, idx, tgt)
    if not isinstance(end_to_end, bool):
        raise ValueError(f"end_to_end must be a bool, got {end_to_end!r}")  # noqa: TRY004
    gains, rates, q, e2e = [], [], None, []
    for j in reversed(range(len(m.stack.steps))):
        g, gi, a = _step_gains(m.stack.steps[j], states[j][0], max_dense, dense=end_to_end)
        gains.insert(0, g)
        rates.insert(0, gi)
        if end_to_end:  # Q_j = A_jᵀ Q_{j+1}: p_j = Q_j p_K, and ‖Q_j‖₂ is the best direction-free constant
            q = a.transpose(-1, -2) if q is None else a.transpose(-1, -2) @ q
            e2e.insert(0, spectral_norm(q).double().cpu().numpy())
    gains, rates = np.stack(gains), np.stack(rates)  # (K, B)
    residual = all(s.rule not in NORMALISING_RULES for s in m.stack.steps)
    measured = quadrature(p)
    bound = quadrature(gradient_chain(gains, p[-1]))
    tiers = {"exact_gains": {"bound": bound.tolist(), "ratio": _ratio(measured, bound).tolist()}}
    if residual:
        b3 = quadrature(gradient_chain(1.0 + rates, p[-1]))
        tiers["b3_rates"] = {"bound": b3.tolist(), "ratio": _ratio(measured, b3).tolist()}
    if end_to_end:
        ee = quadrature(np.concatenate([np.stack(e2e), np.ones((1, p.shape[1]))]) * p[-1])
        tiers["end_to_end"] = {"bound": ee.tolist(), "ratio": _ratio(measured, ee).tolist()}
    one = one_step_ratios(p, gains)  # (K, B)
    head = tiers["end_to_end" if end_to_end else "exact_gains"]
    return {"measured": measured.tolist(), "bound": head["bound"], "ratio": head["ratio"],
            "headline": "end_to_end" if end_to_end else "exact_gains",
            "tiers": tiers, "one_step": one.max(axis=1).tolist(), "gains": gains.max(axis=1).tolist(),
            "gains_seq": gains.tolist(),
            "rates": rates.max(axis=1).tolist(), "grad_norm_seq": p.tolist(), "loss": loss,
            "rules": [s.rule for s in m.stack.steps]}


# ---- F9: AdamW ------------------------------------------------------------------------------------------------
def _lr_schedule(lr, steps) -> np.ndarray:
    if isinstance(lr, (int, float)) and not isinstance(lr, bool):
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1 with a constant lr, got {steps!r}")
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
        return np.full(steps, float(lr))
    try:
        eta = np.asarray(lr, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"lr must be a number or a sequence of per-step learning rates, got {lr!r}") from exc
    if eta.ndim != 1 or eta.size < 1 or not np.all(np.isfinite(eta)) or not np.all(eta > 0):
        raise ValueError("lr must be a non-empty 1-d sequence of finite learning rates > 0 (one per step)")
    if steps is not None and steps != eta.size:
        raise ValueError(f"steps must equal len(lr) = {eta.size} when lr is a schedule, got {steps!r}")
    return eta


def _check_betas(betas) -> tuple[float, float]:
    if not isinstance(betas, Sequence) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    b1, b2 = float(betas[0]), float(betas[1])
    if not (0 <= b1 < 1 and 0 < b2 < 1):
        raise ValueError(f"betas must satisfy 0 <= beta1 < 1, 0 < beta2 < 1, got {betas!r}")
    return b1, b2


def _weight_bounds(init: Mapping[str, torch.Tensor], decayed: set, t: int, s_dec: np.ndarray, s_free: np.ndarray,
                   p_dec: np.ndarray) -> dict:
    """F9 (b) evaluated at optimiser step t for every parameter: entrywise deviation bound and decay factor."""
    out = {}
    for name in init:
        dec = name in decayed
        out[name] = (float(p_dec[t]) if dec else 1.0, float(s_dec[t] if dec else s_free[t]))
    return out


def _state_checks(init: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], bounds: dict) -> dict:
    """Measured vs bound for every tensor: max |W_t − P_tW_0| / S_t and ‖W_t‖/(P_t‖W_0‖ + √size·S_t)."""
    dev, nrm, use = {}, {}, {}
    for name, (pt, st) in bounds.items():
        w0 = init[name].detach().double().cpu()
        w = state[name].detach().double().cpu()
        dev[name] = float((w - pt * w0).abs().max()) / st if st > 0 else (0.0 if torch.equal(w, w0) else math.inf)
        mat = w.reshape(-1, w.shape[-1]) if w.dim() >= 2 else w.reshape(1, -1)
        mat0 = w0.reshape(mat.shape)
        b = pt * _spec(mat0) + math.sqrt(mat.numel()) * st
        nrm[name] = _spec(mat) / b if b > 0 else 0.0
        # how much of ‖E‖₂ ≤ √(mn)·S the deviation E = W_t − P_tW_0 uses (1: a rank-one sign pattern at the bound)
        use[name] = _spec(mat - pt * mat0) / (math.sqrt(mat.numel()) * st) if st > 0 else 0.0
    return {"deviation": dev, "norm": nrm, "spectral_use": use}


def _pre_envelope(init: Mapping[str, torch.Tensor], model: GPT, bounds: dict, d: int) -> np.ndarray | None:
    """F9 (c): the F3 chain with every weight, gain and bias replaced by its F9 (b) bound (None unless pre/lns).

    X_0 rows: a wte row plus a wpe row, each ≤ P_t‖row_0‖ + √d·S_t; one implementation with F9b's windowed
    envelope (``verify.training.adamw_trajectory``: the norms of ``init`` measured once, then chained)."""
    if any(s.rule not in ("pre", "lns") for s in model.stack.steps):
        return None
    from verify.training.adamw_trajectory import envelope_from_summary, norm_summary

    return envelope_from_summary(norm_summary(init, model), model, bounds)


@single_threaded
def adamw_envelope_ratio(model_init_state: Mapping[str, torch.Tensor], model: GPT, lr, weight_decay: float,
                         betas=(0.9, 0.95), steps: int | None = None, tokens: torch.Tensor | None = None,
                         history: Sequence[tuple[int, Mapping[str, torch.Tensor]]] | None = None,
                         update_bound=adam_update_bound, decay_exponent: float = 1.0) -> dict:
    """F9 — the AdamW trajectory bound evaluated on the trained weights (and on each logged state of ``history``).

    ``model_init_state``: the state dict before the first optimiser step; ``model``: the trained GPT (its final
    state is optimiser step T = ``steps`` = len(lr)); ``lr``: a constant (then ``steps`` is required) or the
    per-step schedule η_1..η_T actually used (``TrainResult.history["lr"]``); ``weight_decay``: λ on the decayed
    matrices (``GPT.decay_groups``; gains and biases get λ = 0); ``betas``: Adam's (β₁, β₂); any ε ≥ 0 and any
    gradient clipping are covered (they only shrink |u|). ``history``: optional (t, state_dict) pairs — each is
    checked against the bound at its own step t (1 ≤ t ≤ T).

    Returns per evaluated step t (``steps_checked``): ``deviation_ratio_max`` = max over tensors of
    max|W_t − P_tW_0|/S_t (F9 (b) entrywise, ≤ 1), ``norm_ratio_max`` = max over tensors of
    ‖W_t‖₂/(P_t‖W_0‖₂ + √(mn)S_t) (≤ 1), and for pre-LN with ``tokens``: ``measured`` (max row norm per
    residual state), ``bound`` (F9 (c) envelope) and ``ratio`` per layer; ``ratio_last`` = the last layer's.
    ``f3_ratio_last``: the same F3 chain with the actual final weights (so ratio_last/f3_ratio_last is what
    replacing the weights by their F9 bounds costs); ``tensors_last``: per tensor at the last evaluated step, the
    ``deviation`` and ``norm`` ratios and ``spectral_use`` = ‖W_t − P_tW_0‖₂/(√(mn)S_t) (how far the deviation is
    from the rank-one sign pattern that attains ‖E‖₂ ≤ √(mn)·max|E|).
    ``update_bound_limit`` = C_∞, ``update_bound_last`` = C_T. ``update_bound`` (C_t) and ``decay_exponent``
    (1 is the theorem) are injectable for the meta-tests only.
    """
    _check_model(model)
    eta = _lr_schedule(lr, steps)
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or not math.isfinite(
            weight_decay) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    b1, b2 = _check_betas(betas)
    if not isinstance(model_init_state, Mapping):
        raise ValueError("model_init_state must be a state dict (name → tensor)")  # noqa: TRY004
    names = [n for n, _ in model.named_parameters()]
    missing = [n for n in names if n not in model_init_state]
    if missing:
        raise ValueError(f"model_init_state lacks parameters {missing[:3]}…")
    init = {n: model_init_state[n] for n in names}
    decayed = {n for n, _ in model.decay_groups()[0]}
    T = eta.size
    p_dec = adamw_decay_products(eta, weight_decay) ** float(decay_exponent)
    s_dec = adamw_deviation_bound(eta, weight_decay, b1, b2, decay_exponent, update_bound)
    s_free = adamw_deviation_bound(eta, 0.0, b1, b2, decay_exponent, update_bound)
    final_state = {n: p.detach() for n, p in model.named_parameters()}
    evals = [(int(t), st) for t, st in (history or [])] + [(T, final_state)]
    idx = None if tokens is None else _check_tokens(model, tokens)
    out = {"steps_checked": [], "deviation_ratio_max": [], "norm_ratio_max": [], "worst_tensor": [],
           "measured": [], "bound": [], "ratio": [], "ratio_last": [], "f3_ratio_last": None,
           "update_bound_limit": adam_update_bound_limit(b1, b2), "update_bound_last": adam_update_bound(T, b1, b2),
           "decay_factor_last": float(p_dec[T]), "deviation_bound_last": float(s_dec[T])}
    probe = _float64(model) if idx is not None else None
    for t, state in evals:
        if not 1 <= t <= T:
            raise ValueError(f"history steps must lie in [1, {T}], got {t}")
        bounds = _weight_bounds(init, decayed, t, s_dec, s_free, p_dec)
        chk = _state_checks(init, state, bounds)
        worst = max(chk["deviation"], key=chk["deviation"].get)
        out["steps_checked"].append(t)
        out["deviation_ratio_max"].append(chk["deviation"][worst])
        out["norm_ratio_max"].append(max(chk["norm"].values()))
        out["worst_tensor"].append(worst)
        env = _pre_envelope(init, model, bounds, model.cfg.d)
        if probe is not None and env is not None:
            with torch.no_grad():
                probe.load_state_dict({k: v.to(torch.float64) for k, v in state.items()}, strict=False)
                _, _, states = probe(idx, trajectory=True)
            meas = np.array([float(_row_norms(x).max()) for x in states])
            out["measured"].append(meas.tolist())
            out["bound"].append(env.tolist())
            out["ratio"].append(_ratio(meas, env).tolist())
            out["ratio_last"].append(float(meas[-1] / env[-1]))
            # the same chain with the actual weights of step t (F3, weights tier): what F9 itself costs is the rest
            if t == T:  # (once: the forward certificate is the costly part of a long history)
                out["f3_ratio_last"] = forward_certificate(probe, idx)["tiers"]["weights"]["ratio"][-1]
        out["tensors_last"] = {n: {k: chk[k][n] for k in chk} for n in chk["deviation"]}
    return out
