"""F9b — the windowed (online) AdamW envelope of a pre-LN GPT: from the weights measured at a checkpoint t₀, a
bound on every hidden state of the next w optimiser steps (docs/theorems/F8-F9.md, F9b).

What it is for: "if you checkpoint every w steps, the hidden states until the next checkpoint stay below this".
At a checkpoint t₀ the norms that F3's chain needs (spectral norms, per-head value norms, bias norms, gains,
embedding rows) are measured once (:func:`norm_summary`); for t₀ < t ≤ t₀ + w each is replaced by its F9b bound
P_{t₀,t}·‖W_{t₀}‖ + √size·S_{t₀,t} (``theory.adamw.adamw_window_factors``) and chained
(:func:`envelope_from_summary`) — known before the steps are taken. t₀ = 0 with w = T is F9 (c)
(``verify.training.certificates.adamw_envelope_ratio``, which evaluates its envelope with the same two functions).

API:

- :func:`norm_summary` ``(state, model)`` → the norms of one state that the chain uses (a small dict);
- :func:`envelope_from_summary` ``(summary, model, bounds)`` → the F3 chain (K+1 values) with every norm of the
  summary replaced by P·norm + √size·S, ``bounds`` = {parameter name: (P, S)} (P = 1, S = 0: F3 on the weights
  of the summary itself — the "zero window");
- :func:`window_envelopes` ``(summaries, model, lr, weight_decay, betas, windows)`` → per window w and step t the
  envelope from the latest checkpoint t₀ = w·⌊(t − 1)/w⌋;
- :func:`window_envelope_ratio` ``(states, model, lr, weight_decay, betas, windows, tokens)`` → the same with the
  measured max row norm per layer on a probe batch and measured/bound (≤ 1 is the theorem).

Conventions as ``verify.training.certificates`` (float64, k = 0..K, measured = max row norm). Pre/LNS GPTs only
(ValueError otherwise); ``update_bound`` and ``decay`` are injectable for the meta-tests only.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from theory.adamw import WINDOW_DECAYS, adam_update_bound, adamw_window_factors
from theory.forward import attention_output_sup, mlp_output_sup, pre_norm_bound
from verify.engine.zoo import BatchedMLP
from verify.training.gpt import GPT

__all__ = ["envelope_from_summary", "measured_rows", "norm_summary", "window_deviation_ratios", "window_envelope_ratio",
           "window_envelopes"]


def _spec(w: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(w.detach().double(), ord=2))


def _check_pre(model) -> None:
    if not isinstance(model, GPT):
        raise ValueError(f"model must be a verify.training.gpt.GPT, got {type(model).__name__}")  # noqa: TRY004
    bad = sorted({s.rule for s in model.stack.steps} - {"pre", "lns"})
    if bad:
        raise ValueError(f"model: the windowed envelope is stated for pre-LN (rules pre/lns), got rules {bad}")


@torch.no_grad()
def norm_summary(state: Mapping[str, torch.Tensor], model: GPT) -> dict:
    """The norms of ``state`` (a state dict of ``model``'s parameters) that F3's pre-LN chain uses, with the size
    that multiplies S in each one's F9 bound: {name: (norm, size)} for matrices (spectral; per head for W_V),
    bias vectors (2-norm, size m) and gains (∞-norm, size 1); "emb:wte"/"emb:wpe": the largest row norm (size d)."""
    _check_pre(model)
    missing = [n for n, _ in model.named_parameters() if n not in state]
    if missing:
        raise ValueError(f"state lacks parameters {missing[:3]}…")

    def w(name):
        return state[name].detach().double().cpu()

    d = model.cfg.d
    out: dict = {}
    for name in ("wte", "wpe"):
        out["emb:" + name] = (float(w(name).norm(dim=-1).max()), d)
    for k, step in enumerate(model.stack.steps):
        pre = f"stack.steps.{k}."
        g = w(pre + "norm_in.gamma")[0]
        out[pre + "norm_in.gamma"] = (float(g.abs().max()), 1)
        if pre + "norm_in.beta" in state:
            b = w(pre + "norm_in.beta")[0]
            out[pre + "norm_in.beta"] = (float(b.norm()), b.numel())
        sub = step.sublayer
        names = (("sublayer.W1", "sublayer.W2"), ("sublayer.b1", "sublayer.b2")) if isinstance(sub, BatchedMLP) \
            else (("sublayer.W_o",), ("sublayer.b_o",))
        for n in names[0]:
            m = w(pre + n)[0]
            out[pre + n] = (_spec(m), m.numel())
        for n in names[1]:
            if pre + n in state:
                b = w(pre + n)[0]
                out[pre + n] = (float(b.norm()), b.numel())
        if not isinstance(sub, BatchedMLP):
            dh = sub.d // sub.n_heads
            wv = w(pre + "sublayer.W_v")[0]
            out[pre + "sublayer.W_v"] = ([_spec(wv[:, h * dh:(h + 1) * dh]) for h in range(sub.n_heads)],
                                         wv[:, :dh].numel())
    return out


def envelope_from_summary(summary: Mapping, model: GPT, bounds: Mapping[str, tuple]) -> np.ndarray:
    """F3's chain ‖x_{k,i}‖ ≤ ‖x_{0,i}‖ + Σ_{j<k} Δt_j M_j (K+1 values) with every norm ν of ``summary`` replaced by
    P·ν + √size·S, (P, S) = ``bounds[name]`` (scalars, or equal-length arrays: then shape (K+1, n)).
    M_j: ``mlp_output_sup``/``attention_output_sup`` at r_j = (‖γ_j‖_∞√d + ‖β_j‖₂)·in_scale; each is
    non-decreasing in every norm, so upper bounds of the norms give an upper bound (F9 (c), F9b)."""
    _check_pre(model)
    d = model.cfg.d

    def bnd(name):
        if name not in summary:
            return 0.0
        nu, size = summary[name]
        p, s = bounds[name if not name.startswith("emb:") else name[4:]]
        nu = np.asarray(nu, dtype=float)
        p, s = np.asarray(p, dtype=float), np.asarray(s, dtype=float)
        if nu.ndim:  # per-head norms: heads on the last axis
            return p[..., None] * nu + math.sqrt(size) * s[..., None]
        return p * nu + math.sqrt(size) * s

    emb = bnd("emb:wte") + bnd("emb:wpe")
    m = []
    for k, step in enumerate(model.stack.steps):
        pre = f"stack.steps.{k}."
        r = (bnd(pre + "norm_in.gamma") * math.sqrt(d) + bnd(pre + "norm_in.beta")) * step.in_scale
        if isinstance(step.sublayer, BatchedMLP):
            m.append(mlp_output_sup(r, bnd(pre + "sublayer.W1"), bnd(pre + "sublayer.W2"), bnd(pre + "sublayer.b1"),
                                    bnd(pre + "sublayer.b2")))
        else:
            m.append(attention_output_sup(r, bnd(pre + "sublayer.W_v"), bnd(pre + "sublayer.W_o"),
                                          bnd(pre + "sublayer.b_o")))
    dts = np.array([float(s.dt) for s in model.stack.steps])
    m = np.asarray(m, dtype=float)
    if m.ndim == 1:
        return pre_norm_bound(float(emb), dts, m)
    emb = np.broadcast_to(emb, m.shape[1:])
    return np.stack([pre_norm_bound(float(emb[i]), dts, m[:, i]) for i in range(m.shape[1])], axis=1)


def _schedule(lr, n_steps: int | None) -> np.ndarray:
    from verify.training.certificates import _lr_schedule

    if n_steps is None and (isinstance(lr, (int, float, str)) or lr is None):
        raise ValueError(f"lr must be the per-step schedule η_1..η_T (a sequence, one per step), got {lr!r}")
    return _lr_schedule(lr, n_steps)


def _weight_decay(weight_decay) -> float:
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or not math.isfinite(
            weight_decay) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    return float(weight_decay)


def _windows(windows) -> list[int]:
    if isinstance(windows, (int, str)) or not isinstance(windows, Sequence) or not windows:
        raise ValueError(f"windows must be a non-empty sequence of integers >= 1, got {windows!r}")
    out = []
    for w in windows:
        if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1:
            raise ValueError(f"windows must hold integers >= 1, got {w!r}")
        out.append(int(w))
    return out


def window_envelopes(summaries: Mapping[int, Mapping], model: GPT, lr, weight_decay: float, betas=(0.9, 0.95),
                     windows: Sequence[int] = (1, 10, 50), steps: Sequence[int] | None = None,
                     update_bound=adam_update_bound, decay: str = "restarted") -> dict:
    """F9b — per window w: the envelope at each step t of ``steps`` (default 1..T) from the checkpoint
    t₀ = w·⌊(t − 1)/w⌋ ("checkpoint every w steps"; t₀ < t ≤ t₀ + w), shape (len(steps), K+1).

    ``summaries``: {t₀: ``norm_summary`` of the weights after step t₀} for every checkpoint needed (t₀ = 0 is the
    initial state); ``lr``: the per-step schedule η_1..η_T (or a constant with ``steps`` … as
    ``adamw_envelope_ratio``: here T = len(lr)); ``weight_decay``: λ of the decayed matrices
    (``GPT.decay_groups``), 0 for gains and biases. Also returns ``zero`` (F3 at each step's own weights, needs
    a summary at every t of ``steps``; absent otherwise): ``zero/bound_w`` is what the window costs.
    """
    _check_pre(model)
    eta = _schedule(lr, None)
    T = eta.size
    lam = _weight_decay(weight_decay)
    from verify.training.certificates import _check_betas

    b1, b2 = _check_betas(betas)
    if decay not in WINDOW_DECAYS:
        raise ValueError(f"decay must be one of {WINDOW_DECAYS}, got {decay!r}")
    ws = _windows(windows)
    ts = list(range(1, T + 1)) if steps is None else [int(t) for t in steps]
    if not ts or min(ts) < 1 or max(ts) > T:
        raise ValueError(f"steps must lie in [1, {T}], got {steps!r}")
    decayed = {n for n, _ in model.decay_groups()[0]}
    names = [n for n, _ in model.named_parameters()]
    out: dict = {"steps": ts, "windows": {}}
    for w in ws:
        need = sorted({w * ((t - 1) // w) for t in ts})
        lacking = [t0 for t0 in need if t0 not in summaries]
        if lacking:
            raise ValueError(f"summaries lack the checkpoints {lacking[:5]} that window w = {w} needs")
        env = np.zeros((len(ts), len(model.stack.steps) + 1))
        for t0 in need:
            rows = [i for i, t in enumerate(ts) if w * ((t - 1) // w) == t0]
            p_d, s_d = adamw_window_factors(eta, lam, t0, b1, b2, update_bound, decay)
            p_f, s_f = adamw_window_factors(eta, 0.0, t0, b1, b2, update_bound, decay)
            off = np.array([ts[i] - t0 for i in rows])
            bounds = {n: (p_d[off], s_d[off]) if n in decayed else (p_f[off], s_f[off]) for n in names}
            env[rows] = envelope_from_summary(summaries[t0], model, bounds).T
        out["windows"][w] = env
    if all(t in summaries for t in ts):
        zero = {n: (1.0, 0.0) for n in names}
        out["zero"] = np.array([envelope_from_summary(summaries[t], model, zero) for t in ts])
    return out


@torch.no_grad()
def measured_rows(model: GPT, state: Mapping[str, torch.Tensor], tokens: torch.Tensor, probe: GPT | None = None):
    """max_i ‖x_{k,i}‖ per residual state k = 0..K of ``model`` at ``state`` on ``tokens`` (float64)."""
    from verify.training.certificates import _check_tokens, _float64, _row_norms

    probe = _float64(model) if probe is None else probe
    idx = _check_tokens(probe, tokens)
    probe.load_state_dict({k: v.to(torch.float64) for k, v in state.items()}, strict=False)
    _, _, states = probe(idx, trajectory=True)
    return np.array([float(_row_norms(x).max()) for x in states])


def window_envelope_ratio(states: Sequence[tuple[int, Mapping[str, torch.Tensor]]], model: GPT, lr,
                          weight_decay: float, betas=(0.9, 0.95), windows: Sequence[int] = (1, 10, 50),
                          tokens: torch.Tensor | None = None, update_bound=adam_update_bound,
                          decay: str = "restarted") -> dict:
    """F9b on a logged training run: ``states`` = (t, state dict) for t = 0..T (every step: each is a potential
    checkpoint; t = 0 the initial weights), ``lr`` the schedule η_1..η_T actually used, ``tokens`` the probe batch.

    Returns ``steps`` (1..T), ``measured`` (T, K+1), per window w ``bound`` (T, K+1), ``ratio`` (T, K+1) and
    ``ratio_last`` (T,: the last layer) — ≤ 1 is the theorem — and ``ratio_last_min`` (the worst step), plus
    ``zero``: the same for the zero window (F3 at each step's own weights with the embedding-table radius)."""
    _check_pre(model)
    if tokens is None:
        raise ValueError("tokens must be a probe batch (B, T) of token ids")
    st = {int(t): s for t, s in states}
    eta = _schedule(lr, None)
    T = eta.size
    if sorted(st) != list(range(T + 1)):
        raise ValueError(f"states must hold every step t = 0..{T} once (len(lr) = {T}), got {len(st)} states")
    summaries = {t: norm_summary(s, model) for t, s in st.items()}
    env = window_envelopes(summaries, model, eta, weight_decay, betas, windows, None, update_bound, decay)
    from verify.training.certificates import _float64

    probe = _float64(model)
    meas = np.array([measured_rows(model, st[t], tokens, probe) for t in env["steps"]])
    out = {"steps": env["steps"], "measured": meas, "windows": {}}
    for w, b in [*env["windows"].items(), ("zero", env["zero"])]:
        ratio = meas / b
        out["windows"][w] = {"bound": b, "ratio": ratio, "ratio_last": ratio[:, -1],
                             "ratio_last_min": float(ratio[:, -1].min())}
    return out


def window_deviation_ratios(states: Sequence[tuple[int, Mapping[str, torch.Tensor]]], model: GPT, lr,
                            weight_decay: float, betas=(0.9, 0.95), windows: Sequence[int] = (1, 10, 50),
                            update_bound=adam_update_bound, decay: str = "restarted") -> dict:
    """F9b entrywise, per tensor: max over tensors of max|W_t − P_{t₀,t}W_{t₀}|/S_{t₀,t} at every step t = 1..T,
    t₀ = w·⌊(t − 1)/w⌋, per window w (≤ 1 is the theorem); ``worst`` names the tensor of the largest ratio."""
    if not isinstance(model, GPT):
        raise ValueError(f"model must be a verify.training.gpt.GPT, got {type(model).__name__}")  # noqa: TRY004
    from verify.training.certificates import _check_betas

    b1, b2 = _check_betas(betas)
    eta = _schedule(lr, None)
    weight_decay = _weight_decay(weight_decay)
    T = eta.size
    st = {int(t): s for t, s in states}
    if sorted(st) != list(range(T + 1)):
        raise ValueError(f"states must hold every step t = 0..{T} once (len(lr) = {T}), got {len(st)} states")
    decayed = {n for n, _ in model.decay_groups()[0]}
    names = [n for n, _ in model.named_parameters()]
    out = {}
    for w in _windows(windows):
        ratios, worst = np.zeros(T), []
        for t0 in range(0, T, w):
            f = {lam: adamw_window_factors(eta, lam, t0, b1, b2, update_bound, decay)
                 for lam in {float(weight_decay), 0.0}}
            w0 = {n: st[t0][n].detach().double().cpu() for n in names}
            for t in range(t0 + 1, min(t0 + w, T) + 1):
                best, arg = -1.0, None
                for n in names:
                    p, s = f[float(weight_decay) if n in decayed else 0.0]
                    dev = float((st[t][n].detach().double().cpu() - p[t - t0] * w0[n]).abs().max())
                    r = dev / s[t - t0]
                    if r > best:
                        best, arg = r, n
                ratios[t - 1] = best
                worst.append(arg)
        out[w] = {"ratio": ratios, "worst": worst}
    return out
