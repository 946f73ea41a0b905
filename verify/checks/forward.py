"""Registered checks for F1–F4 (forward stability): measured row norms of the batched zoo against theory.forward.

Each check draws stacks with hypothesis (``verify.engine.strategies.stack_cases``, placements restricted per theorem),
runs every instance of a draw as one float64 forward pass, measures ‖x_{k,i}‖ for every step k, row i (and data
sample), reads the weight norms the bound needs off the stack, and records ``measured ≤ bound``. Witness specs from
``theory.witnesses`` (loaded by ``verify.engine.witness_loader``) show each bound is attained, and carry the growth law
(F2: independent of the weights; F3: ∝ the output-map scale; F4: exponential rate log(1 + Δt a)).

Every theory function a check uses is a keyword argument, so the meta-tests can inject a wrong theory and watch
the check fail. What reduces to what (documented in docs/theorems/F1-F4.md):
- F1 covers post, DeepNorm, the post blocks of Mix-LN and a final norm (rows leaving a norm layer);
- F2 covers peri and outnorm (X + Δt N_out(F(X)): the proof never uses N_in);
- F3 covers pre, LayerNorm-Scaling (range r/√ℓ) and Mix-LN (restart at the F1 constant after each post step);
- F4 covers none.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from hypothesis import strategies as st

from theory.forward import (
    attention_output_sup,
    mlp_output_sup,
    none_gronwall_bound,
    peri_moment_bounds,
    peri_norm_bound,
    post_row_bound,
    pre_norm_bound,
)
from theory.witnesses import (
    f1_post_witness,
    f2_peri_witness,
    f3_pre_witness,
    f4_none_witness,
)
from verify.checks.record import Tally
from verify.checks.registry import Context, register
from verify.engine.moments import all_moments
from verify.engine.strategies import StackCase, run_over, stack_cases
from verify.engine.witness_loader import load_witness
from verify.engine.zoo import Stack, sample_inputs

U = float(np.finfo(np.float64).eps) / 2  # unit round-off of float64, 1.1e-16

# Round-off allowance of a measured row norm against an exact-arithmetic bound after K steps. Each step's update row
# is a sum of at most (d + d_mlp) products (matmul) followed by the norm layer's two reductions over d entries and the
# residual add, so its norm carries a relative error ≤ (d + d_mlp + 4)·u; these add up over K steps, and the norm of
# the result adds another d·u. The factor 4 is headroom for the softmax and the spectral norms (SVD, a few ulps). At
# the largest drawn sizes (K = 64, d = 256, d_mlp = 1024) this is 4·64·1284·u ≈ 3.6e-11 — far below any real
# violation (the meta-tests' wrong theories are off by ≥ 10%).
ROUNDOFF_HEADROOM = 4.0


def roundoff_rtol(n_steps: int, d: int, d_mlp: int) -> float:
    return ROUNDOFF_HEADROOM * (n_steps + 1) * (d + d_mlp + 4) * U


# Witnesses attain their bound exactly (ReLU / odd constructions, ε = 0) up to round-off, or approach it (F1 with
# ε > 0: ratio √(σ²/(σ²+ε)) ≥ 1 − 1e-5 at the witness's sizes); 0.99 is the suite-wide tightness threshold and sits
# well above any wrong constant the meta-tests inject (they are off by ≥ 10%, i.e. a ratio ≤ 0.91 or a violation).
WITNESS_THRESHOLD = 0.99

# The growth-law fits below (log-log slope of F3's growth against λ, per-step log-rate of F4) are exact identities
# for the witness constructions; a least-squares fit through values with relative error ~1e-15 recovers them to a
# few 1e-14 relative, so 1e-9 leaves five orders of headroom and still rejects any wrong law (a slope of 1/2 or 2).
GROWTH_LAW_RTOL = 1e-9


# ---- measurement helpers -------------------------------------------------------------------------------------------
def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def _trajectory(stack: Stack, x: torch.Tensor, validate: bool = True) -> list[torch.Tensor]:
    """Hidden states X_0..X_K. Drawn stacks skip the zoo's finiteness scan of every parameter (seeded Gaussian
    weights are finite by construction; a NaN in the states would still fail the tally, NaN counts as failure)."""
    with torch.no_grad():
        _, states = stack(x, trajectory=True, validate=validate)
    return states


def _row_norms(states: list[torch.Tensor]) -> np.ndarray:
    """(K+1, I, *batch, n) row norms of a trajectory."""
    return np.stack([_numpy(s.norm(dim=-1)) for s in states])


def _norm_constant(norm, d: int, c_of) -> np.ndarray:
    """Per instance: the N1 range ‖γ‖_∞√d + ‖β‖₂ of a BatchedNorm, through the (injectable) ``c_of``."""
    gmax = _numpy(norm.gamma.abs().amax(dim=-1))
    bnorm = _numpy(norm.beta.norm(dim=-1)) if norm.beta is not None else np.zeros_like(gmax)
    return np.asarray(c_of(d, gmax, bnorm, norm.eps), dtype=float) * np.ones_like(gmax)


def spectral_norm(w: torch.Tensor) -> np.ndarray:
    """‖W‖₂ of a batch of matrices (…, a, b): √(largest eigenvalue of the smaller Gram matrix).

    Several times faster than an SVD for the d × 4d MLP maps; the largest eigenvalue of a symmetric matrix is
    computed to a few ulps of ‖G‖ = ‖W‖², and forming G costs min(a, b)·u relative, so the result agrees with
    ``torch.linalg.svdvals`` to ~1e-14 relative (tests/test_forward.py checks it), inside every tolerance below.
    """
    g = w @ w.mT if w.shape[-2] <= w.shape[-1] else w.mT @ w
    return _numpy(torch.linalg.eigvalsh(g)[..., -1].clamp_min(0.0).sqrt())


def sublayer_norms(step) -> dict[str, np.ndarray]:
    """Per instance, the weight norms a step's sublayer sup needs (attention: per-head ‖W_V^h‖₂ along the last axis)."""
    sub = step.sublayer
    with torch.no_grad():
        if step.kind == "attn":
            n_inst, d, _ = sub.W_v.shape
            heads = sub.n_heads
            wv = sub.W_v.view(n_inst, d, heads, d // heads).permute(0, 2, 1, 3)  # (I, H, d, d_h): W_V^h
            return dict(kind="attn", wv_head_norms=spectral_norm(wv), wo_norm=spectral_norm(sub.W_o),
                        bo_norm=_numpy(sub.b_o.norm(dim=-1)) if sub.b_o is not None else 0.0)
        return dict(kind="mlp", w1_norm=spectral_norm(sub.W1), w2_norm=spectral_norm(sub.W2),
                    b1_norm=_numpy(sub.b1.norm(dim=-1)) if sub.b1 is not None else 0.0,
                    b2_norm=_numpy(sub.b2.norm(dim=-1)) if sub.b2 is not None else 0.0)


def _sublayer_sup(norms: dict, r, mlp_sup, attn_sup) -> np.ndarray:
    """Per instance: the closed-form sup of a sublayer's output row norm over input rows of norm ≤ r."""
    if norms["kind"] == "attn":
        return np.asarray(attn_sup(r, norms["wv_head_norms"], norms["wo_norm"], norms["bo_norm"]), dtype=float)
    return np.asarray(mlp_sup(r, norms["w1_norm"], norms["w2_norm"], norms["b1_norm"], norms["b2_norm"]), dtype=float)


def _paired(measured, bound) -> tuple[np.ndarray, np.ndarray]:
    """Broadcast measurement and bound to one shape before a Tally flattens them."""
    return tuple(np.broadcast_arrays(np.asarray(measured, dtype=float), np.asarray(bound, dtype=float)))


def _trailing(a: np.ndarray, extra: int) -> np.ndarray:
    """Append ``extra`` singleton axes so a per-instance array broadcasts against (I, *batch, n)."""
    return a.reshape(a.shape + (1,) * extra)


# ---- F1: post --------------------------------------------------------------------------------------------------------
@st.composite
def _post_cases(draw, placements=("post", "deepnorm", "mixln")):
    case = draw(stack_cases(placements=placements))
    return StackCase(cfg=case.cfg.replace(final_norm=draw(st.booleans())), n_instances=case.n_instances,
                     n_tokens=case.n_tokens, seed=case.seed, input_scale=case.input_scale,
                     input_mean=case.input_mean)


@register("F1", title="post-LN rows stay in the norm layer's range",
          statement="after a post step every row has ‖x_i‖ ≤ ‖γ‖_∞√d + ‖β‖₂, for any weights, Δt and depth",
          provenance="paper claim K1, our statement",
          theory=("theory.forward.post_row_bound", "theory.norms.norm_output_bound",
                  "theory.witnesses.f1_post_witness"),
          tests=("tests/test_forward.py",))
def check_f1(ctx: Context, *, bound=post_row_bound, examples: int | None = None) -> list[Tally]:
    rows = Tally("F1", "rows after post/deepnorm/final norm ≤ N1 sup", "inequality",
                 tolerance="round-off of one norm layer: rtol from roundoff_rtol(1, d, 0) (≤ 4·264·u)",
                 evidence="independent", instances="random")
    rows_w = Tally("F1", "witness rows ≤ N1 sup", "inequality",
                   tolerance="round-off of one norm layer: rtol from roundoff_rtol(1, d, 0)",
                   evidence="independent", instances="witness")
    wit = Tally("F1", "witness: constant γ, β=0, large input", "witness",
                tolerance=f"ratio ≥ {WITNESS_THRESHOLD} (√(σ²/(σ²+ε)) ≥ 1 − 1e-5 here)",
                evidence="independent", instances="witness")
    ident = Tally("F1", "witness ratio = √(σ²/(σ²+ε)) (N1 equality)", "identity",
                  tolerance="rtol 1e-13: one norm layer and one ratio in float64 (d ≤ 8: ≤ 20 ulps)",
                  evidence="independent", instances="witness")

    def one(case: StackCase):
        case = case.on_device(ctx.device)
        stack, x = case.build()
        states = _trajectory(stack, x, validate=False)
        d = case.cfg.d
        rtol = roundoff_rtol(1, d, 0)
        for k, step in enumerate(stack.steps):
            if step.norm_res is None:  # a pre block of Mix-LN: F3's business
                continue
            c = _norm_constant(step.norm_res, d, bound)
            rows.inequality(*_paired(_numpy(states[k + 1].norm(dim=-1)), _trailing(c, 1)), rtol=rtol,
                            case=dict(case.describe(), step=k))
        if stack.final is not None:
            with torch.no_grad():
                out = stack.final(states[-1])
            c = _norm_constant(stack.final, d, bound)
            rows.inequality(*_paired(_numpy(out.norm(dim=-1)), _trailing(c, 1)), rtol=rtol,
                            case=dict(case.describe(), step="final"))

    run_over(_post_cases(), one, examples=examples or ctx.examples(12, 60), seed=ctx.seed + 101)

    # Witness: exact equality with ε = 0; with ε > 0 the ratio → 1 as the input grows.
    for norm in ("layer", "rms"):
        for placement in ("post", "deepnorm"):
            for eps in (0.0, 1e-5):
                spec = f1_post_witness(norm=norm, placement=placement, eps=eps, seed=ctx.seed % 1000)
                stack, x = load_witness(spec, device=ctx.device)
                states = _trajectory(stack, x)
                d = spec["config"]["d"]
                big = int(np.argmax(spec["notes"]["input_scales"]))
                desc = dict(witness="f1_post_witness", norm=norm, placement=placement, eps=eps)
                for k, step in enumerate(stack.steps):
                    c = _norm_constant(step.norm_res, d, bound)
                    meas = _numpy(states[k + 1].norm(dim=-1))
                    rows_w.inequality(*_paired(meas, _trailing(c, 1)), rtol=roundoff_rtol(1, d, 0),
                                      case=dict(desc, step=k))
                    wit.witness(meas[big] / c[big], threshold=WITNESS_THRESHOLD, case=dict(desc, step=k))
                    # N1's equality case: ‖N(z)‖ = |γ|√d·√(σ²/(σ²+ε)) for the pre-norm sum z of this step.
                    with torch.no_grad():
                        z = step.residual(step.alpha * states[k], step.dt * step.branch(states[k]))
                        m2 = (z - z.mean(-1, keepdim=True)) if norm == "layer" else z
                        m2 = (m2 * m2).mean(-1)
                    ratio = np.sqrt(_numpy(m2) / (_numpy(m2) + eps))
                    # against |γ|√d itself, not the injected bound: this tally describes the witness, not the theory
                    gamma_sqrt_d = abs(spec["notes"]["gamma"]) * math.sqrt(d)
                    ident.identity(*_paired(meas / gamma_sqrt_d, ratio), rtol=1e-13, case=dict(desc, step=k))
                first = _numpy(states[1].norm(dim=-1)).min(axis=-1) / (abs(spec["notes"]["gamma"]) * math.sqrt(d))
                wit.note(**{f"{norm}/{placement}/eps={eps}: step-1 ratio by input scale": first})
    return [rows, rows_w, wit, ident]


# ---- F2: peri --------------------------------------------------------------------------------------------------------
@st.composite
def _batched_cases(draw, placements, weight_scale_range):
    """A stack case plus a data batch B (the moments need B ≥ 2 for the data-wise variance)."""
    batch = draw(st.integers(1, 3))
    case = draw(stack_cases(placements=placements, weight_scale_range=weight_scale_range, work_budget=3e6 / batch))
    cfg = case.cfg
    if cfg.eps_output == 0.0 and cfg.activation == "relu" and "mlp" in cfg.sublayers and cfg.placement in (
            "peri", "outnorm"):
        # Outside F2's domain: a ReLU MLP outputs an exactly zero row when every hidden unit is off (probability
        # 2^-hidden per row and step, not small at d = 2 over 64 steps), and N_out(0) with ε_out = 0 is 0/0.
        # GELU keeps the ε_out = 0 case (its output row is zero with probability 0), as codesign_cases does.
        case = dataclasses.replace(case, cfg=cfg.replace(activation="gelu"))
    return case, batch


def _peri_constants(stack: Stack, c_of) -> np.ndarray:
    """C_out,k per step and instance, shape (K, I): the output norm's range (for a wrong-placement meta-test, the
    range of whichever norm the step has, so the F2 formula can be applied to pre-LN and be seen to fail)."""
    d = stack.cfg.d
    out = []
    for step in stack.steps:
        norm = next(n for n in (step.norm_out, step.norm_in, step.norm_res) if n is not None)
        out.append(_norm_constant(norm, d, c_of))
    return np.stack(out)


@register("F2", title="peri-LN hidden states grow at most linearly, whatever the weights",
          statement="‖x_{k,i}‖ ≤ ‖x_{0,i}‖ + Σ_{j<k} Δt_j C_out,j, C_out = ‖γ_out‖_∞√d + ‖β_out‖₂; "
                    "moments: mean|x| ≤ R_k/√d, entry-wise and data-wise variance ≤ R_k²/d",
          provenance="paper claims K2, K7, our statement",
          theory=("theory.forward.peri_norm_bound", "theory.forward.peri_moment_bounds",
                  "theory.witnesses.f2_peri_witness"),
          tests=("tests/test_forward.py",))
def check_f2(ctx: Context, *, bound=peri_norm_bound, moment_bounds=peri_moment_bounds, c_of=post_row_bound,
             placements=("peri", "outnorm"), weight_scale_range=(1e-3, 1e3), examples: int | None = None
             ) -> list[Tally]:
    rtol_note = "roundoff_rtol(K, d, d_mlp): K steps of (d + d_mlp + 4)·u, ×4 headroom"
    rows = Tally("F2", "rows ≤ ‖x_0,i‖ + Σ Δt C_out (peri, outnorm)", "inequality", tolerance=rtol_note,
                 evidence="independent", instances="random")
    moments = Tally("F2", "K7 moments ≤ R_k/√d, R_k²/d", "inequality",
                    tolerance="2×roundoff_rtol (squares double the relative error)", evidence="independent",
                    instances="random")
    rows_w = Tally("F2", "witness rows ≤ ‖x_0,i‖ + Σ Δt C_out", "inequality", tolerance=rtol_note,
                   evidence="independent", instances="witness")
    moments_w = Tally("F2", "witness K7 moments ≤ R_k/√d, R_k²/d", "inequality",
                      tolerance="2×roundoff_rtol (squares double the relative error)", evidence="independent",
                      instances="witness")
    wit = Tally("F2", "witness: aligned updates attain the bound", "witness",
                tolerance=f"ratio ≥ {WITNESS_THRESHOLD}; exact up to round-off by construction",
                evidence="independent", instances="witness")
    mwit = Tally("F2", "witness: ± data pairs attain the moment bounds", "witness",
                 tolerance=f"ratio ≥ {WITNESS_THRESHOLD}", evidence="independent", instances="witness")
    # the zoo against itself at scaled weights: the weight-freedom follows from the output norm's algebra (N3)
    free = Tally("F2", "witness growth independent of the weight scale λ", "identity",
                 tolerance="rtol 1e-12: growth values of different λ agree to round-off (≤ 8 steps, d = 8)",
                 evidence="code-identity", instances="witness")

    def record(stack: Stack, x: torch.Tensor, desc: dict, rtol: float, witness=False, validate=True):
        states = _trajectory(stack, x, validate=validate)
        meas = _row_norms(states)  # (K+1, I, *batch, n)
        extra = meas.ndim - 2
        c = _peri_constants(stack, c_of)  # (K, I)
        dts = np.asarray(stack.cfg.dts)
        b = np.asarray(bound(meas[0], dts, _trailing(c, extra)), dtype=float)
        row_tally, moment_tally = (rows_w, moments_w) if "witness" in desc else (rows, moments)
        m1, b1 = _paired(meas[1:], b[1:])
        row_tally.inequality(m1, b1, rtol=rtol, case=desc, offset=np.broadcast_to(meas[0], m1.shape))
        if x.dim() == 4:  # the moments need a data axis
            x0_max = meas[0].reshape(meas.shape[1], -1).max(axis=1)  # (I,)
            mb = moment_bounds(x0_max, dts, c, stack.cfg.d)
            for name in ("mean_abs", "entrywise_var", "datawise_var"):
                got = np.stack([_numpy(all_moments(s)[name]) for s in states])  # (K+1, I)
                moment_tally.inequality(*_paired(got[1:], mb[name][1:]), rtol=2 * rtol,
                                        case=dict(desc, moment=name))
                if witness:
                    mwit.witness(got[1:] / mb[name][1:], threshold=WITNESS_THRESHOLD, case=dict(desc, moment=name))
        return meas, b

    def one(example):
        case, batch = example
        cfg = case.cfg.replace(device=ctx.device)
        stack = Stack(cfg, case.n_instances, seed=case.seed)
        x = sample_inputs(cfg, case.n_instances, case.n_tokens, seed=case.seed + 1, batch=(batch,),
                          scale=case.input_scale, mean=case.input_mean)
        record(stack, x, dict(case.describe(), batch=batch), roundoff_rtol(cfg.n_steps, cfg.d, cfg.hidden),
               validate=False)

    run_over(_batched_cases(tuple(placements), weight_scale_range), one, examples=examples or ctx.examples(12, 60),
             seed=ctx.seed + 202)

    for placement in ("peri", "outnorm"):
        for norm, act in (("layer", "gelu"), ("rms", "relu")):
            desc = dict(witness="f2_peri_witness", placement=placement, norm=norm, activation=act)
            # Distinct row scales: per-row equality; weight scales λ over four decades: same growth.
            spec = f2_peri_witness(placement=placement, norm=norm, activation=act, seed=ctx.seed % 1000)
            stack, x = load_witness(spec, device=ctx.device)
            cfg = stack.cfg
            meas, b = record(stack, x, desc, roundoff_rtol(cfg.n_steps, cfg.d, cfg.hidden))
            wit.witness(meas[1:] / b[1:], threshold=WITNESS_THRESHOLD, case=desc)
            growth = meas[-1] - meas[0]  # (I, B, n)
            free.identity(growth, np.broadcast_to(growth[:1], growth.shape), rtol=1e-12, case=desc)
            free.note(**{f"{placement}/{norm}: growth by λ={list(spec['notes']['out_scales'])}":
                         growth[:, 0, 0]})
            # Equal row scales and (X0, −X0): the three moment bounds are attained.
            spec = f2_peri_witness(placement=placement, norm=norm, activation=act, row_scales=(2.0,),
                                   seed=ctx.seed % 1000)
            stack, x = load_witness(spec, device=ctx.device)
            record(stack, x, dict(desc, moments=True), roundoff_rtol(cfg.n_steps, cfg.d, cfg.hidden), witness=True)
    return [rows, moments, rows_w, moments_w, wit, mwit, free]


# ---- F3: pre ---------------------------------------------------------------------------------------------------------
# F3 and F4 need spectral norms of every weight matrix (an eigvalsh of a d × d Gram matrix per step, instance and
# head), a cost O(I·K·d³) that the zoo's work budget (I·n·d²·K) does not see. Widths up to 128 and a smaller budget
# keep one example near 0.1 s on one core; the bounds depend on d only through √d in the norm range, which this
# range still spans over a decade.
SPECTRAL_DRAW = dict(d_range=(2, 128), work_budget=1.5e6)

def _pre_bounds(stack: Stack, x0_norms: np.ndarray, bound, mlp_sup, attn_sup, c_of) -> np.ndarray:
    """Bounds on every row at every step for pre / LNS / Mix-LN stacks: runs of pre steps follow F3 (``bound``), a
    post step (Mix-LN) resets the row bound to its F1 constant."""
    d, extra = stack.cfg.d, x0_norms.ndim - 1
    dts = np.asarray(stack.cfg.dts)
    out = [x0_norms]
    start, run_m = x0_norms, []
    k0 = 0

    def flush(upto: int):
        nonlocal start
        if run_m:
            b = np.asarray(bound(start, dts[k0:upto], _trailing(np.stack(run_m), extra)), dtype=float)
            out.extend(list(b[1:]))
            start = b[-1]

    for k, step in enumerate(stack.steps):
        if step.norm_res is not None:  # a post step of Mix-LN
            flush(k)
            run_m.clear()
            start = np.broadcast_to(_trailing(_norm_constant(step.norm_res, d, c_of), extra), x0_norms.shape)
            out.append(start)
            k0 = k + 1
            continue
        r = _norm_constant(step.norm_in, d, c_of) * step.in_scale  # N1 range of the (scaled) normalised input
        run_m.append(_sublayer_sup(sublayer_norms(step), r, mlp_sup, attn_sup))
    flush(len(stack.steps))
    return np.stack(out)


@register("F3", title="pre-LN hidden states grow at most linearly, at a weight-dependent rate",
          statement="‖x_{k,i}‖ ≤ ‖x_{0,i}‖ + Σ_{j<k} Δt_j M_j, M_j = closed-form sup of the sublayer over the norm's "
                    "range; no weight-free bound exists (growth ∝ output-map scale)",
          provenance="paper claim K3, our statement",
          theory=("theory.forward.pre_norm_bound", "theory.forward.mlp_output_sup",
                  "theory.forward.attention_output_sup", "theory.witnesses.f3_pre_witness"),
          tests=("tests/test_forward.py",))
def check_f3(ctx: Context, *, bound=pre_norm_bound, mlp_sup=mlp_output_sup, attn_sup=attention_output_sup,
             c_of=post_row_bound, placements=("pre", "lns", "mixln"), examples: int | None = None) -> list[Tally]:
    rows = Tally("F3", "rows ≤ ‖x_0,i‖ + Σ Δt M_j (pre, LNS, Mix-LN)", "inequality",
                 tolerance="roundoff_rtol(K, d, d_mlp): K steps of (d + d_mlp + 4)·u, ×4 headroom",
                 evidence="independent", instances="random")
    rows_w = Tally("F3", "witness rows ≤ ‖x_0,i‖ + Σ Δt M_j", "inequality",
                   tolerance="roundoff_rtol(K, d, d_mlp)", evidence="independent", instances="witness")
    wit = Tally("F3", "witness: aligned rank-one sublayers attain the bound", "witness",
                tolerance=f"ratio ≥ {WITNESS_THRESHOLD}; exact (ReLU, ε = 0) up to round-off",
                evidence="independent", instances="witness")
    law = Tally("F3", "witness growth ∝ λ (log-log slope 1): no weight-free bound", "identity",
                tolerance=f"rtol {GROWTH_LAW_RTOL}: an exact law fitted through float64 values",
                evidence="independent", instances="witness")

    def one(case: StackCase):
        case = case.on_device(ctx.device)
        stack, x = case.build()
        meas = _row_norms(_trajectory(stack, x, validate=False))
        b = _pre_bounds(stack, meas[0], bound, mlp_sup, attn_sup, c_of)
        cfg = case.cfg
        m1, b1 = _paired(meas[1:], b[1:])
        rows.inequality(m1, b1, rtol=roundoff_rtol(cfg.n_steps, cfg.d, cfg.hidden), case=case.describe(),
                        offset=np.broadcast_to(meas[0], m1.shape))

    run_over(stack_cases(placements=tuple(placements), **SPECTRAL_DRAW), one,
             examples=examples or ctx.examples(10, 60), seed=ctx.seed + 303)

    for placement in ("pre", "lns"):
        for norm in ("layer", "rms"):
            spec = f3_pre_witness(placement=placement, norm=norm, seed=ctx.seed % 1000)
            stack, x = load_witness(spec, device=ctx.device)
            cfg = stack.cfg
            desc = dict(witness="f3_pre_witness", placement=placement, norm=norm)
            meas = _row_norms(_trajectory(stack, x))
            b = _pre_bounds(stack, meas[0], bound, mlp_sup, attn_sup, c_of)
            m1, b1 = _paired(meas[1:], b[1:])
            rows_w.inequality(m1, b1, rtol=roundoff_rtol(cfg.n_steps, cfg.d, cfg.hidden), case=desc,
                              offset=np.broadcast_to(meas[0], m1.shape))
            wit.witness(meas[1:] / b[1:], threshold=WITNESS_THRESHOLD, case=desc)
            lam = np.asarray(spec["notes"]["out_scales"])
            growth = (meas[-1] - meas[0])[:, 0]  # (I,): first row of each instance
            slope = np.polyfit(np.log(lam), np.log(growth), 1)[0]
            law.identity(slope, 1.0, rtol=GROWTH_LAW_RTOL, case=desc)
            law.note(**{f"{placement}/{norm}: growth by λ={list(lam)}": growth, f"{placement}/{norm}: slope": slope})
    return [rows, rows_w, wit, law]


# ---- F4: none --------------------------------------------------------------------------------------------------------
# Draw limits for F4 (and why): the bound is Π(1 + Δt a_k)·M_0 with a_k ≈ ‖W₁‖‖W₂‖ ≈ 4.5·weight_scale² at d_mlp = 4d;
# weight_scale ≤ 3, Δt ≤ 1 and K ≤ 16 keep it ≤ (1 + 41)^16·M_0 ≈ 1e26·M_0, so neither the measured states nor the
# attention scores (∝ ‖x‖²·scale²) come near float64 overflow, where a failure would say nothing about the theorem.
F4_LIMITS = dict(weight_scale_range=(1e-3, 3.0), dt_range=(1e-3, 1.0), max_steps=16, **SPECTRAL_DRAW)


def _none_gains(stack: Stack, mlp_sup, attn_sup) -> tuple[np.ndarray, np.ndarray]:
    """Per step and instance, (a_k, b_k) with sup_{max‖x_i‖ ≤ M} max‖F_k(X)_i‖ ≤ a_k M + b_k — the sup is affine in
    its radius, so a_k = sup(1) − sup(0) and b_k = sup(0)."""
    n_inst = stack.n_instances
    a, b = [], []
    for step in stack.steps:
        norms = sublayer_norms(step)
        s0 = _sublayer_sup(norms, np.zeros(n_inst), mlp_sup, attn_sup)
        s1 = _sublayer_sup(norms, np.ones(n_inst), mlp_sup, attn_sup)
        a.append(s1 - s0)
        b.append(s0)
    return np.stack(a), np.stack(b)


@register("F4", title="without normalisation the max row norm grows at most exponentially (discrete Grönwall)",
          statement="M_{k+1} ≤ (1 + Δt_k a_k) M_k + Δt_k b_k, so "
                    "M_k ≤ Π(1+Δt_j a_j) M_0 + Σ Δt_j b_j Π_{l>j}(1+Δt_l a_l)",
          provenance="paper claim K3 (unnormalised regime), our statement",
          theory=("theory.forward.none_gronwall_bound", "theory.forward.mlp_output_sup",
                  "theory.forward.attention_output_sup", "theory.witnesses.f4_none_witness"),
          tests=("tests/test_forward.py",))
def check_f4(ctx: Context, *, bound=none_gronwall_bound, mlp_sup=mlp_output_sup, attn_sup=attention_output_sup,
             examples: int | None = None) -> list[Tally]:
    rows = Tally("F4", "max row norm ≤ discrete Grönwall bound (none)", "inequality",
                 tolerance="roundoff_rtol(K, d, d_mlp) on relative error; growth multiplies, relative error adds",
                 evidence="independent", instances="random")
    rows_w = Tally("F4", "witness max row norm ≤ discrete Grönwall bound", "inequality",
                   tolerance="roundoff_rtol(K, d, d_mlp)", evidence="independent", instances="witness")
    wit = Tally("F4", "witness: aligned stack follows the recursion with equality", "witness",
                tolerance=f"ratio ≥ {WITNESS_THRESHOLD}; exact (ReLU, rank one) up to round-off",
                evidence="independent", instances="witness")
    law = Tally("F4", "witness grows exponentially at rate log(1 + Δt a)", "identity",
                tolerance=f"rtol {GROWTH_LAW_RTOL}: an exact law fitted through float64 values",
                evidence="independent", instances="witness")

    def measure(stack: Stack, x: torch.Tensor, validate=True):
        meas = _row_norms(_trajectory(stack, x, validate=validate))  # (K+1, I, n)
        big = meas.max(axis=-1)  # M_k, (K+1, I)
        a, b = _none_gains(stack, mlp_sup, attn_sup)
        return big, np.asarray(bound(big[0], np.asarray(stack.cfg.dts), a, b), dtype=float)

    def one(case: StackCase):
        case = case.on_device(ctx.device)
        stack, x = case.build()
        big, b = measure(stack, x, validate=False)
        cfg = case.cfg
        m1, b1 = _paired(big[1:], b[1:])
        rows.inequality(m1, b1, rtol=roundoff_rtol(cfg.n_steps, cfg.d, cfg.hidden), case=case.describe(),
                        offset=np.broadcast_to(big[0], m1.shape))

    run_over(stack_cases(placements=("none",), **F4_LIMITS), one, examples=examples or ctx.examples(10, 60),
             seed=ctx.seed + 404)

    for bias in (0.0, 0.3):
        spec = f4_none_witness(bias=bias, seed=ctx.seed % 1000)
        stack, x = load_witness(spec, device=ctx.device)
        cfg = stack.cfg
        desc = dict(witness="f4_none_witness", bias=bias)
        big, b = measure(stack, x)
        m1, b1 = _paired(big[1:], b[1:])
        rows_w.inequality(m1, b1, rtol=roundoff_rtol(cfg.n_steps, cfg.d, cfg.hidden), case=desc,
                          offset=np.broadcast_to(big[0], m1.shape))
        wit.witness(big[1:] / b[1:], threshold=WITNESS_THRESHOLD, case=desc)
        if bias == 0.0:
            gains = np.asarray(spec["notes"]["out_scales"])
            steps = np.arange(big.shape[0])
            rate = np.polyfit(steps, np.log(big), 1)[0]  # (I,): fitted log-growth per step
            law.identity(rate, np.log1p(cfg.dts[0] * gains), rtol=GROWTH_LAW_RTOL, case=desc)
            law.note(gains=gains, fitted_rate=rate, theory_rate=np.log1p(cfg.dts[0] * gains),
                     growth_factor=big[-1] / big[0])
    return [rows, rows_w, wit, law]
