"""Registered checks for S1–S3: the (B, τ) stability criterion, the optimal schedule, and the Δt co-design identities.

S1 draws random zoo stacks (peri, pre, post, none), reads the weight norms off each instance, asks
``theory.criterion`` for the largest admissible uniform Δt, runs every instance *at its own* recommended Δt (one
batched forward/backward pass; Δt_k is set per instance as a tensor), and measures

    forward gain   G = max_k M_k/M_0        (M_k the largest row norm of X_k),
    backward gain  Λ = max_k log‖J_{k→K}‖₂  (exact end-to-end Jacobians: one backward pass with nd one-hot
                                              cotangents carried in a batch axis, no loop over instances).

The criterion must hold there (G ≤ B, Λ ≤ τ), the a priori bounds must hold at every Δt tried, and on witness
instances the bounds are attained at the admissible Δt and *violated* at twice it — the criterion is not vacuous.
S2 cross-checks the water-filling schedule against scipy.optimize and a duality certificate, and runs the
schedule on zoo stacks (two-sided: neither explosion nor vanishing beyond e^{±τ}). S3 checks the co-design
identities (pre absorption and weight decay λ/Δt², DeepNorm = post with Δt = 1/α, peri's Δt only in γ_out) to
round-off on random instances.

Every theory function a check uses is a keyword argument, so the meta-tests (tests/test_criterion.py,
tests/test_codesign.py) inject a wrong one and watch the check fail.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import torch
from hypothesis import strategies as st
from scipy import optimize

from theory.codesign import (
    deepnorm_as_post,
    deepnorm_post_deviation,
    deepnorm_post_deviation_sup,
    peri_dt_as_output_gain,
    peri_update_row_norm,
    pre_absorbed_output_scale,
    pre_decay_objective,
    pre_effective_output_decay,
)
from theory.criterion import (
    STABILITY_BOUNDS,
    SublayerNorms,
    max_uniform_dt,
    max_uniform_dt_closed_form,
    one_sided_optimal_time,
    optimal_step_sizes,
    post_max_dt_closed_form,
    schedule_dual_value,
)
from verify.checks.record import Tally
from verify.checks.registry import Context, register
from verify.engine.strategies import log_uniform, run_over
from verify.engine.zoo import Stack, StackConfig, sample_inputs

U = float(np.finfo(np.float64).eps) / 2  # unit round-off of float64, 1.1e-16

# Measured gains against a priori bounds. A measured row norm or singular value carries a relative round-off of
# ≲ (K + 1)(d + d_mlp + 8)·u (each step: a matmul chain over ≤ d + d_mlp terms, two norm reductions, the add; the SVD
# of J adds a few ulps); here K ≤ 16, d ≤ 16, d_mlp ≤ 64, so that is ≤ 17·88·1.1e-16 ≈ 1.7e-13. We allow 1e-10
# (relative; absolute in the log-gain), a thousand times more, and still far below any wrong theory the meta-tests
# inject (off by ≥ 10%).
ROUNDOFF_RTOL = 1e-10
# The admissible Δt comes from a root search to 4 ulps, and the bound at that Δt is then ≤ B (≤ τ) exactly (the
# search steps down to the feasible side); the measured value inherits only ROUNDOFF_RTOL.
# Tightness threshold of the witnesses (the suite-wide 0.99): they attain their bound up to ε-effects ≤ 1e-6 by
# construction (docs/theorems/S.md); a constant 10% off moves the ratio to ≤ 0.91 or turns it into a violation.
WITNESS_THRESHOLD = 0.99
# At twice the admissible Δt a tight witness overshoots: forward (G − 1)/(B − 1) = 2, backward Σlog(1 + 2x)/Σlog(1 + x)
# ≥ 1.6 for the per-step x = Δt_b ℓ ≤ e^{τ/K} − 1 ≤ 0.65 used here. 1.2 is a clear "violated" margin.
VIOLATION_THRESHOLD = 1.2
# Closed form vs bracketing root search of the same monotone constraint: both are accurate to a few ulps of Δt; the
# composition with expm1/log1p adds ~10 ulps. 1e-9 relative leaves a wide margin.
CLOSED_FORM_RTOL = 1e-9
# scipy SLSQP on the convex S2 problem (K ≤ 10 variables, ftol 1e-14): its optimal value agrees with the closed form
# to ~1e-9 relative in our runs (the objective is linear, the constraint smooth and strictly convex); we allow 1e-6.
# The duality gap of the closed form is pure round-off: ~K ulps of T, allowed 1e-9 relative.
SCIPY_VALUE_RTOL = 1e-6
SCIPY_FEASIBILITY_RTOL = 1e-8
DUALITY_RTOL = 1e-9
# Feasibility of a schedule: constraint values are sums of K ≤ 10 logs/products: 1e-12 relative is ~100 ulps.
FEASIBILITY_RTOL = 1e-12
# Co-design identities: the two sides are different float64 computations of the same map (scaled weights, a norm
# with ε/α², moved gains). Each step loses ≲ (d + d_mlp + 8)·u relative, and a norm layer multiplies the error of its
# input by ‖z‖/(√d·σ(z)) ≤ 10 for the inputs drawn (|mean| ≤ 3, scale ≥ 0.3); over K ≤ 8 steps: ≤ 8·10·88·u ≈ 1e-12.
# 1e-10 relative (plus 1e-12 absolute for entries near 0) leaves a hundredfold margin.
IDENTITY_RTOL = 1e-10
IDENTITY_ATOL = 1e-12


# ---- zoo helpers ------------------------------------------------------------------------------------------------
def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def _spec(w: torch.Tensor) -> np.ndarray:
    """Spectral norms of a batch of matrices (…, a, b) (LAPACK SVD: a few ulps)."""
    return _np(torch.linalg.matrix_norm(w, ord=2))


def stack_sublayer_norms(stack: Stack) -> list[list[SublayerNorms]]:
    """``[instance][step]`` SublayerNorms read off a zoo stack (batched over instances)."""
    I = stack.n_instances
    per_step = []
    with torch.no_grad():
        for step in stack.steps:
            sub = step.sublayer
            if step.kind == "mlp":
                w1, w2 = _spec(sub.W1), _spec(sub.W2)
                b1 = _np(sub.b1.norm(dim=-1)) if sub.b1 is not None else np.zeros(I)
                b2 = _np(sub.b2.norm(dim=-1)) if sub.b2 is not None else np.zeros(I)
                per_step.append([SublayerNorms("mlp", w1_norm=w1[i], w2_norm=w2[i], b1_norm=b1[i], b2_norm=b2[i],
                                               activation=sub.activation) for i in range(I)])
            else:
                d, H = sub.d, sub.n_heads
                dh = d // H
                split = lambda w: w.view(I, d, H, dh).permute(0, 2, 1, 3)  # noqa: E731  (I, H, d, d_h) per head
                wv = _spec(split(sub.W_v))
                qk = _spec(split(sub.W_q) @ split(sub.W_k).transpose(-1, -2))
                wo = _spec(sub.W_o)
                bo = _np(sub.b_o.norm(dim=-1)) if sub.b_o is not None else np.zeros(I)
                per_step.append([SublayerNorms("attn", wv_head_norms=tuple(wv[i]), wo_norm=wo[i], bo_norm=bo[i],
                                               qk_head_norms=tuple(qk[i]), head_dim=dh) for i in range(I)])
    return [[per_step[k][i] for k in range(len(per_step))] for i in range(I)]


def row_scale(x: torch.Tensor, norm: str) -> torch.Tensor:
    """σ of every row: centred RMS (LayerNorm) or RMS (RMSNorm), shape x.shape[:-1]."""
    if norm == "layer":
        x = x - x.mean(dim=-1, keepdim=True)
    return x.pow(2).mean(dim=-1).sqrt()


def theory_kwargs(cfg: StackConfig, x0: torch.Tensor, placement: str) -> list[dict]:
    """Per instance: the keyword arguments of ``theory.criterion``'s bounds for this config and input (I, n, d)."""
    m0 = _np(x0.norm(dim=-1).flatten(1).amax(dim=1))
    s0 = _np(row_scale(x0, cfg.norm).flatten(1).amin(dim=1))
    n = x0.shape[-2]
    g = abs(cfg.gamma)
    bn = abs(cfg.beta) * math.sqrt(cfg.d) if cfg.norm == "layer" else 0.0
    out = []
    for i in range(x0.shape[0]):
        base = dict(n_tokens=n, x0_max_norm=float(m0[i]), x0_min_scale=float(s0[i]))
        if placement == "none":
            out.append(base)
        elif placement == "peri":
            out.append(dict(base, d=cfg.d, norm=cfg.norm, gamma_in=g, beta_in_norm=bn, eps_in=cfg.eps, gamma_out=g,
                            beta_out_norm=bn, eps_out=cfg.eps_output))
        elif placement == "pre":
            out.append(dict(base, d=cfg.d, norm=cfg.norm, gamma=g, beta_norm=bn, eps=cfg.eps))
        else:  # post
            out.append(dict(base, d=cfg.d, norm=cfg.norm, gamma=cfg.gamma, beta_norm=bn, eps=cfg.eps))
    return out


@dataclasses.dataclass
class Measured:
    forward_gain: np.ndarray  # (I,) max_k M_k / M_0
    log_gain: np.ndarray  # (I,) max(0, max_k log σ_max(J_{k→K}))
    log_floor: np.ndarray  # (I,) min(0, min_k log σ_min(J_{k→K}))


def measure_gains(stack: Stack, x0: torch.Tensor, dts: np.ndarray) -> Measured:
    """Run every instance i at its own schedule ``dts[i]`` (shape (I, K)) and measure G and the Jacobian gains.

    One forward pass carries m = nd copies of each input in a batch axis; one backward pass with the one-hot
    cotangent e_o on copy o gives row o of every J_{k→K} = ∂X_K/∂X_k for every instance and every k at once.
    """
    I, n, d = x0.shape
    m = n * d
    dev, dtype = x0.device, x0.dtype
    dt_t = torch.as_tensor(np.asarray(dts, dtype=float), dtype=dtype, device=dev)
    saved = [step.dt for step in stack.steps]
    try:
        for k, step in enumerate(stack.steps):
            step.dt = dt_t[:, k].view(I, 1, 1, 1)
        x = x0.unsqueeze(1).expand(I, m, n, d).clone().requires_grad_(True)
        _, states = stack(x, trajectory=True, validate=False)
        rows = torch.stack([s[:, 0].detach().norm(dim=-1).amax(dim=-1) for s in states], dim=1)  # (I, K+1)
        cot = torch.eye(m, dtype=dtype, device=dev).view(1, m, n, d).repeat(I, 1, 1, 1)
        grads = torch.autograd.grad(states[-1], states[:-1], grad_outputs=cot)
    finally:
        for step, v in zip(stack.steps, saved):
            step.dt = v
    jac = torch.stack([g.reshape(I, m, m) for g in grads], dim=1)  # (I, K, m, m)
    sv = torch.linalg.svdvals(jac)
    with np.errstate(divide="ignore"):
        logmax = np.log(_np(sv[..., 0]))
        logmin = np.log(_np(sv[..., -1]))
    g = _np(rows.amax(dim=1) / rows[:, 0])
    return Measured(g, np.maximum(logmax.max(axis=1), 0.0), np.minimum(logmin.min(axis=1), 0.0))


def sublayer_jacobian_norms(sublayer, u: torch.Tensor) -> np.ndarray:
    """‖J_F(U)‖₂ per instance for U of shape (I, n, d): exact, from one backward pass with nd one-hot cotangents."""
    I, n, d = u.shape
    m = n * d
    x = u.unsqueeze(1).expand(I, m, n, d).clone().requires_grad_(True)
    y = sublayer(x)
    cot = torch.eye(m, dtype=u.dtype, device=u.device).view(1, m, n, d).repeat(I, 1, 1, 1)
    (g,) = torch.autograd.grad(y, x, grad_outputs=cot)
    return _np(torch.linalg.matrix_norm(g.reshape(I, m, m), ord=2))


def _set_attention_linear(step, wv: torch.Tensor, wo: torch.Tensor) -> None:
    """Give a one-token attention step the affine map u ↦ u W_V W_O (bias zero); W_Q, W_K are irrelevant (n = 1)."""
    with torch.no_grad():
        step.sublayer.W_v.copy_(wv)
        step.sublayer.W_o.copy_(wo)
        if step.sublayer.b_o is not None:
            step.sublayer.b_o.zero_()


def _directions(d: int) -> tuple[np.ndarray, np.ndarray]:
    """Two orthonormal directions orthogonal to 1: v̂ = (+,−,+,−,…)/√d and ŵ = (+,+,−,−,…)/√d (d divisible by 4)."""
    v = np.where(np.arange(d) % 2 == 0, 1.0, -1.0) / math.sqrt(d)
    w = np.where((np.arange(d) // 2) % 2 == 0, 1.0, -1.0) / math.sqrt(d)
    return v, w


# ---- S1 ---------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CriterionCase:
    cfg: StackConfig
    n_instances: int
    n_tokens: int
    seed: int
    input_scale: float
    input_mean: float
    B: float
    tau: float
    dt_probe: float

    def describe(self) -> dict:
        c = self.cfg
        return dict(placement=c.placement, norm=c.norm, d=c.d, n=self.n_tokens, steps=c.n_steps,
                    sublayers=c.sublayers, weight_scale=c.weight_scale, gamma=c.gamma, beta=c.beta, eps=c.eps,
                    eps_out=c.eps_out, activation=c.activation, seed=self.seed, B=self.B, tau=self.tau,
                    input_scale=self.input_scale, input_mean=self.input_mean)


@st.composite
def criterion_cases(draw, placements=("peri", "pre", "post", "none"), device: str = "cpu"):
    """Small random stacks (d ≤ 10, n ≤ 3, K ≤ 6) with a (B, τ) target; ε > 0 where an a priori bound needs it."""
    placement = draw(st.sampled_from(list(placements)))
    d = 10 - draw(st.integers(0, 7))  # counted down: hypothesis's first try is d = 10 (even: two heads possible)
    n = draw(st.integers(1, 3))
    subl = draw(st.sampled_from([("attn", "mlp"), ("mlp",), ("attn",)]))
    n_blocks = draw(st.integers(1, max(1, 6 // len(subl))))
    heads = draw(st.sampled_from([h for h in (2, 1) if d % h == 0]))  # non-default first: hypothesis tries it first
    eps = draw(st.one_of(log_uniform(1e-4, 1e-1), st.just(0.0))) if placement in ("pre", "post") else \
        draw(log_uniform(1e-4, 1e-1))
    cfg = StackConfig(
        d=d, n_blocks=n_blocks, placement=placement, n_heads=heads, sublayers=subl, d_mlp=2 * d,
        norm=draw(st.sampled_from(["rms", "layer"])), eps=eps,
        eps_out=draw(log_uniform(1e-3, 1e-1)) if placement == "peri" else None,
        gamma=draw(log_uniform(0.5, 2.0)) * draw(st.sampled_from([1.0, -1.0])),
        beta=draw(st.sampled_from([0.5, 0.0, -0.3])), activation=draw(st.sampled_from(["relu", "gelu"])),
        causal=not draw(st.booleans()), weight_scale=draw(log_uniform(0.2, 3.0)),
        bias_std=draw(st.sampled_from([0.1, 0.0])),
        dt=1.0, device=device,  # a placeholder: S1 is a statement about a uniform Δt it derives (and dt_probe)
    )
    rest = dict(seed=draw(st.integers(0, 2**31 - 1)), input_scale=draw(log_uniform(0.3, 3.0)),
                input_mean=draw(st.sampled_from([0.0, 2.0])), B=draw(log_uniform(1.2, 5.0)),
                tau=draw(log_uniform(0.1, 3.0)), dt_probe=draw(log_uniform(1e-3, 3.0)))
    # Drawn last so that the knobs above keep the examples they had (issue 11 §1: every parameter away from its
    # default). The a priori bounds read the drawn weights' norms, so any output or logit scale is admitted; the
    # first listed value (hypothesis's first try) is not the default.
    cfg = cfg.replace(out_scale=draw(st.sampled_from([0.5, 1.0, 2.0])), qk_scale=draw(st.sampled_from([2.0, 1.0, 0.0])))
    return CriterionCase(cfg=cfg, n_instances=4, n_tokens=n, **rest)


def _bounds_at(bounds_of: dict, placement: str, dt, subl, kw):
    return bounds_of[placement](float(dt), subl, **kw)


class _S1Tallies:
    """The S1 tallies of one kind of instance (``"random"`` draws or the ``"witness"`` constructions)."""

    def __init__(self, instances: str = "random"):
        tag = "" if instances == "random" else "witness: "
        ev = dict(evidence="independent", instances=instances)
        self.fwd_valid = Tally("S1", tag + "forward gain ≤ a priori bound G(Δt)", "inequality",
                               f"rtol {ROUNDOFF_RTOL:g}: float64 round-off over ≤ 16 steps (module constant)", **ev)
        self.bwd_valid = Tally("S1", tag + "backward log-gain ≤ a priori bound Λ(Δt)", "inequality",
                               f"atol {ROUNDOFF_RTOL:g} in log: round-off of SVD and autograd (module constant)", **ev)
        self.fwd_B = Tally("S1", tag + "measured G ≤ B at the admissible Δt_f and Δt*", "inequality",
                           f"rtol {ROUNDOFF_RTOL:g}: root search lands on the feasible side; round-off only", **ev)
        self.bwd_tau = Tally("S1", tag + "measured Λ ≤ τ at the admissible Δt_b and Δt*", "inequality",
                             f"atol {ROUNDOFF_RTOL:g}: as above", **ev)
        # the closed form against a numerical root of the same bound: two computations of one number
        self.closed = Tally("S1", "closed-form Δt (global floors) = root search", "identity",
                            f"rtol {CLOSED_FORM_RTOL:g}: both to a few ulps of Δt", **ev)
        self.lemma = Tally("S1", "lemma: ‖J_F(U)‖₂ ≤ J_sup(r) on rows ≤ r (MLP, attention)", "inequality",
                           f"rtol {ROUNDOFF_RTOL:g}: SVD of an exact autograd Jacobian", **ev)
        self.vacuous = 0
        self.used: dict = {}

    def finish(self):
        self.bwd_valid.note(infinite_bounds_skipped=self.vacuous)
        for (placement, name), vals in sorted(self.used.items()):
            tally = self.fwd_B if name == "dt_f" else self.bwd_tau
            tally.note(**{f"median_used_{placement}": float(np.median(vals)),
                          f"max_used_{placement}": float(np.max(vals))})

    def all(self):
        return [self.fwd_valid, self.bwd_valid, self.fwd_B, self.bwd_tau, self.closed, self.lemma]


def _run_config(t: _S1Tallies, stack: Stack, x0: torch.Tensor, placement: str, B: float, tau: float, dt_probe,
                bounds_of: dict, admissible: Callable, case: dict):
    """The S1 protocol on one batched family: Δt_f, Δt_b, Δt* per instance, measured at each (and at a probe Δt)."""
    subls = stack_sublayer_norms(stack)
    kws = theory_kwargs(stack.cfg, x0, placement)
    adm = [admissible(placement, B, tau, s, bounds=bounds_of[placement], **kw) for s, kw in zip(subls, kws)]
    # Δt* = min(Δt_f, Δt_b) is one of the two, so the two runs also cover each instance's Δt* (both checks there).
    dt_f = np.array([a.dt_forward for a in adm])
    dt_b = np.array([a.dt_backward for a in adm])
    probes = {"dt_f": dt_f, "dt_b": dt_b}
    if dt_probe is not None:
        probes["probe"] = np.full(len(adm), float(dt_probe))
    results = {}
    for name, h in probes.items():
        ok = np.isfinite(h) & (h > 0) & (h < 1e6)
        if not np.any(ok):
            continue
        h_run = np.where(ok, h, 1e-3)  # instances with no finite admissible Δt ride along at a harmless Δt
        bnds = [_bounds_at(bounds_of, placement, hh, s, kw) for hh, s, kw in zip(h_run, subls, kws)]
        meas = measure_gains(stack, x0, np.repeat(h_run[:, None], len(stack.steps), axis=1))
        sel = np.nonzero(ok)[0]
        gb = np.array([b.forward_gain for b in bnds])
        lb = np.array([b.backward_log_gain for b in bnds])
        c = dict(case, probe=name)
        # an infinite bound is vacuous (e.g. ε = 0 once the scale floor is spent): true, and not a comparison
        fin_g, fin_l = sel[np.isfinite(gb[sel])], sel[np.isfinite(lb[sel])]
        t.vacuous += (len(sel) - len(fin_g)) + (len(sel) - len(fin_l))
        if len(fin_g):
            t.fwd_valid.inequality(meas.forward_gain[fin_g], gb[fin_g], rtol=ROUNDOFF_RTOL, case=c, offset=1.0)
        if len(fin_l):
            t.bwd_valid.inequality(meas.log_gain[fin_l], lb[fin_l], rtol=ROUNDOFF_RTOL, atol=ROUNDOFF_RTOL, case=c)
        star = sel[(dt_f[sel] <= dt_b[sel]) if name == "dt_f" else (dt_b[sel] < dt_f[sel])] if name != "probe" \
            else sel[:0]
        fwd_sel = sel if name == "dt_f" else star
        bwd_sel = sel if name == "dt_b" else star
        if len(fwd_sel):
            t.fwd_B.inequality(meas.forward_gain[fwd_sel], B, rtol=ROUNDOFF_RTOL, case=c, offset=1.0)
        if len(bwd_sel):
            t.bwd_tau.inequality(meas.log_gain[bwd_sel], tau, rtol=ROUNDOFF_RTOL, atol=ROUNDOFF_RTOL, case=c)
        if "witness" not in case and name != "probe":  # how much of the allowance random instances use
            used = (meas.forward_gain[sel] - 1) / (B - 1) if name == "dt_f" else meas.log_gain[sel] / tau
            t.used.setdefault((placement, name), []).extend(used.tolist())
        results[name] = (h, meas, bnds)
    return adm, results, subls, kws


@register("S1", title="(B, τ) stability criterion and the largest admissible Δt",
          statement="G = max_k M_k/M_0 ≤ B and Λ = max_k log‖J_{k→K}‖ ≤ τ, certified a priori by per-placement "
                    "bounds; largest admissible uniform Δt in closed form (fixed constants) or by a monotone root",
          provenance="paper claim K5, our statement",
          theory=("theory.criterion.stability_bounds", "theory.criterion.max_uniform_dt",
                  "theory.criterion.max_uniform_dt_closed_form", "theory.criterion.post_max_dt_closed_form"),
          tests=("tests/test_criterion.py",))
def check_s1(ctx: Context, *, bounds: dict | None = None, admissible: Callable = max_uniform_dt,
             closed_form: Callable = max_uniform_dt_closed_form, post_closed_form: Callable = post_max_dt_closed_form,
             parts=("random", "witness")) -> list[Tally]:
    bounds_of = dict(STABILITY_BOUNDS)
    bounds_of.update(bounds or {})
    t = _S1Tallies("random")
    t_wit = _S1Tallies("witness")
    wit = _S1Witnesses()
    if "random" in parts:
        def one(case: CriterionCase):
            stack = Stack(case.cfg, case.n_instances, seed=case.seed)
            x0 = sample_inputs(case.cfg, case.n_instances, case.n_tokens, seed=case.seed + 1, scale=case.input_scale,
                               mean=case.input_mean)
            placement = case.cfg.placement
            desc = case.describe()
            _, _, subls, kws = _run_config(t, stack, x0, placement, case.B, case.tau, case.dt_probe, bounds_of,
                                           admissible, desc)
            # the Jacobian lemma the backward bounds rest on, at random inputs of the norm's range
            r = abs(case.cfg.gamma) * math.sqrt(case.cfg.d)
            gen = torch.Generator().manual_seed(case.seed + 2)
            u = torch.randn((case.n_instances, case.n_tokens, case.cfg.d), generator=gen, dtype=torch.float64)
            u = u / u.norm(dim=-1, keepdim=True) * r * (0.3 + 0.7 * torch.rand(u.shape[:-1] + (1,), generator=gen,
                                                                               dtype=torch.float64))
            u = u.to(x0.device)
            for k, step in enumerate(stack.steps):
                meas_j = sublayer_jacobian_norms(step.sublayer, u)
                sup = np.array([subls[i][k].jacobian_sup(r, case.n_tokens) for i in range(case.n_instances)])
                t.lemma.inequality(meas_j, sup, rtol=ROUNDOFF_RTOL, case=dict(desc, step=k, kind=step.kind))
            if placement in ("peri", "pre"):
                # With σ_0 = 0 the floors are the global √ε and every constant is Δt-free: closed form = root search.
                for s, kw in zip(subls, kws):
                    kw0 = dict(kw, x0_min_scale=0.0)
                    num = admissible(placement, case.B, case.tau, s, bounds=bounds_of[placement], **kw0)
                    b1 = bounds_of[placement](1.0, s, **kw0)
                    c = np.diff(b1.row_bounds)  # increments per unit Δt
                    cf = closed_form(len(s), c, b1.rates, kw["x0_max_norm"], case.B, case.tau)
                    for a, b in ((num.dt_forward, cf.dt_forward), (num.dt_backward, cf.dt_backward)):
                        if math.isfinite(a) and math.isfinite(b) and a > 0 and b > 0:
                            t.closed.identity(a, b, rtol=CLOSED_FORM_RTOL, case=desc)
                        else:  # 0 (nothing admissible) or inf (everything) must agree exactly
                            t.closed.identity(float(a == b), 1.0, rtol=0.0, atol=0.5, case=desc)

        for j, placement in enumerate(("peri", "pre", "post", "none")):  # stratified: every placement is drawn
            run_over(criterion_cases(placements=(placement,), device=ctx.device), one, examples=ctx.examples(3, 15),
                     seed=ctx.seed + 101 + j)
    if "witness" in parts:
        _s1_witnesses(ctx, t_wit, wit, bounds_of, admissible, post_closed_form)
    t.finish()
    t_wit.finish()
    out = t.all() + [t_wit.fwd_valid, t_wit.bwd_valid, t_wit.fwd_B, t_wit.bwd_tau]
    return [x for x in out if x.cases] + [x for x in wit.all() if x.cases]


class _S1Witnesses:
    def __init__(self):
        thr = f"threshold {WITNESS_THRESHOLD}: witnesses attain their bound up to ε-effects ≤ 1e-6"
        ev = dict(evidence="independent", instances="witness")
        self.fwd_tight = Tally("S1", "witness: G attains B at Δt_f ((G−1)/(B−1))", "witness", thr, **ev)
        self.bwd_tight = Tally("S1", "witness: Λ attains τ at Δt_b (Λ/τ)", "witness", thr, **ev)
        self.fwd_viol = Tally("S1", "witness: G > B at 2Δt_f (criterion not vacuous)", "witness",
                              f"threshold {VIOLATION_THRESHOLD}: a tight witness gives 2", **ev)
        self.bwd_viol = Tally("S1", "witness: Λ > τ at 2Δt_b (criterion not vacuous)", "witness",
                              f"threshold {VIOLATION_THRESHOLD}: a tight witness gives ≥ 1.6", **ev)
        self.post_fwd = Tally("S1", "post: G = max(1, ρ/M_0) for every Δt (F1, Δt-free)", "identity",
                              f"rtol {IDENTITY_RTOL:g}: ε = 0, constant γ, β = 0 make it exact", **ev)
        self.post_closed = Tally("S1", "post: closed-form Δt_b = tanh(τ/2K)/J = root search", "identity",
                                 f"rtol {CLOSED_FORM_RTOL:g}", **ev)
        # the admissible-Δt function against itself at scaled weights / infinite weights: its own algebra
        self.weights = Tally("S1", "pre: λ·Δt_f(λ) constant (no weight-uniform Δt); peri: Δt_f weight-free",
                             "identity", f"rtol {CLOSED_FORM_RTOL:g}: exact scalings of the bound",
                             evidence="code-identity", instances="witness")
        self.unbounded = Tally("S1", "pre with unbounded weights: admissible Δt = 0", "identity", "exact",
                               evidence="code-identity", instances="exact")

    def all(self):
        return [self.fwd_tight, self.bwd_tight, self.fwd_viol, self.bwd_viol, self.post_fwd, self.post_closed,
                self.weights, self.unbounded]


def _witness_stack(placement: str, *, d: int = 8, n_blocks: int = 4, eps: float = 0.0, eps_out: float | None = None,
                   device: str = "cpu") -> Stack:
    cfg = StackConfig(d=d, n_blocks=n_blocks, placement=placement, sublayers=("attn",), n_heads=1, eps=eps,
                      eps_out=eps_out, gamma=1.0, beta=0.0, dt=1.0, device=device)
    return Stack(cfg, 1, seed=7)


def _s1_witnesses(ctx: Context, t: _S1Tallies, w: _S1Witnesses, bounds_of: dict, admissible: Callable,
                  post_closed_form: Callable):
    d = 8
    v, u = _directions(d)
    V = torch.tensor(np.outer(v, v))
    Wd = torch.tensor(np.outer(u, u))
    eye = torch.eye(d, dtype=torch.float64)
    dev = ctx.device

    def x_along(vec, r, mean=0.0):
        return torch.tensor(mean + r * vec, dtype=torch.float64).view(1, 1, d).to(dev)

    def protocol(name, stack, x0, placement, B, tau, which):
        desc = dict(witness=name, placement=placement, B=B, tau=tau)
        adm, res, _, _ = _run_config(t, stack, x0, placement, B, tau, None, bounds_of, admissible, desc)
        a = adm[0]
        if "forward" in which and "dt_f" in res:
            g = res["dt_f"][1].forward_gain[0]
            w.fwd_tight.witness((g - 1) / (B - 1), threshold=WITNESS_THRESHOLD, case=desc)
            m2 = measure_gains(stack, x0, np.full((1, len(stack.steps)), 2 * a.dt_forward))
            w.fwd_viol.witness((m2.forward_gain[0] - 1) / (B - 1), threshold=VIOLATION_THRESHOLD, case=desc)
        elif "forward" in which:
            w.fwd_tight.witness(0.0, threshold=WITNESS_THRESHOLD, case=dict(desc, note="no finite Δt_f"))
        if "backward" in which and "dt_b" in res:
            lg = res["dt_b"][1].log_gain[0]
            w.bwd_tight.witness(lg / tau, threshold=WITNESS_THRESHOLD, case=desc)
            m2 = measure_gains(stack, x0, np.full((1, len(stack.steps)), 2 * a.dt_backward))
            w.bwd_viol.witness(m2.log_gain[0] / tau, threshold=VIOLATION_THRESHOLD, case=desc)
        elif "backward" in which:
            w.bwd_tight.witness(0.0, threshold=WITNESS_THRESHOLD, case=dict(desc, note="no finite Δt_b"))
        # a fixed probe above 1 so that a bound that drops Δt cannot hide behind Δt < 1
        for name_p, h in (("probe1.5", 1.5),):
            meas = measure_gains(stack, x0, np.full((1, len(stack.steps)), h))
            s = stack_sublayer_norms(stack)[0]
            kw = theory_kwargs(stack.cfg, x0, placement)[0]
            b = bounds_of[placement](h, s, **kw)
            c = dict(desc, probe=name_p)
            for tally, m_, b_, extra in ((t.fwd_valid, meas.forward_gain, b.forward_gain, {"offset": 1.0}),
                                         (t.bwd_valid, meas.log_gain, b.backward_log_gain, {"atol": ROUNDOFF_RTOL})):
                if math.isfinite(b_):
                    tally.inequality(m_, b_, rtol=ROUNDOFF_RTOL, case=c, **extra)
                else:
                    t.vacuous += 1
        return a

    # peri, forward: F(u) = 10·u, so N_out(F(N_in(x))) = |γ|√d·v̂ (×(1 − O(ε_out))) is aligned with x = r v̂.
    st_ = _witness_stack("peri", eps=1e-8, eps_out=1e-10, device=dev)
    for step in st_.steps:
        _set_attention_linear(step, 10.0 * eye, eye)
    protocol("peri-forward", st_, x_along(v, 3.0), "peri", 2.0, 50.0, ("forward",))
    # peri, backward: near-constant rows (σ ≪ √ε) make both norm Jacobians reach |γ|/√ε on v̂.
    st_ = _witness_stack("peri", eps=1e-4, eps_out=1e-4, device=dev)
    for step in st_.steps:
        _set_attention_linear(step, 2.0 * V, eye)
    protocol("peri-backward", st_, x_along(v, 1e-12, mean=1.0), "peri", 1e6, 1.0, ("backward",))
    # pre, forward: rank-one values W_V = s v̂v̂ᵀ: F(N(x)) = s|γ|√d v̂ = the F3 sup, aligned with x.
    fam = {}
    for lam in (1.0, 10.0, 100.0):
        st_ = _witness_stack("pre", eps=1e-8, device=dev)
        for step in st_.steps:
            _set_attention_linear(step, lam * 2.0 * V, eye)
        x0 = x_along(v, 100.0)
        a = protocol(f"pre-forward-λ{lam:g}", st_, x0, "pre", 2.0, 50.0, ("forward",) if lam == 1.0 else ())
        fam[lam] = a.dt_forward
    for lam in (10.0, 100.0):
        w.weights.identity(lam * fam[lam], fam[1.0], rtol=CLOSED_FORM_RTOL, case=dict(family="pre", lam=lam))
    # pre, backward: x = 1 + δ v̂ with δ ≪ √ε: ‖J_N‖ = |γ|/√ε on v̂ and W_V = s v̂v̂ᵀ maps v̂ to s v̂.
    st_ = _witness_stack("pre", eps=1e-4, device=dev)
    for step in st_.steps:
        _set_attention_linear(step, 0.5 * V, eye)
    protocol("pre-backward", st_, x_along(v, 1e-12, mean=1.0), "pre", 1e6, 1.0, ("backward",))
    # peri family: the forward Δt_f does not see the module weights at all.
    pf = []
    for lam in (1.0, 10.0, 100.0):
        st_ = _witness_stack("peri", eps=1e-8, eps_out=1e-10, device=dev)
        for step in st_.steps:
            _set_attention_linear(step, lam * 10.0 * eye, eye)
        s = stack_sublayer_norms(st_)[0]
        kw = theory_kwargs(st_.cfg, x_along(v, 3.0), "peri")[0]
        pf.append(admissible("peri", 2.0, 50.0, s, bounds=bounds_of["peri"], **kw).dt_forward)
    for lam, val in zip((10.0, 100.0), pf[1:]):
        w.weights.identity(val, pf[0], rtol=CLOSED_FORM_RTOL, case=dict(family="peri", lam=lam))
    # unbounded weights: pre has no admissible Δt, peri keeps its forward Δt_f.
    s_inf = [SublayerNorms("attn", wv_head_norms=(math.inf,), wo_norm=1.0)] * 4
    kw = theory_kwargs(_witness_stack("pre").cfg, x_along(v, 3.0).cpu(), "pre")[0]
    w.unbounded.identity(admissible("pre", 2.0, 1.0, s_inf, bounds=bounds_of["pre"], **kw).dt, 0.0, rtol=0.0,
                         atol=1e-300, case=dict(placement="pre", weights="inf"))
    # none: symmetric W_V = s(v̂v̂ᵀ + ½ŵŵᵀ): G = Π(1 + Δt s) and ‖J_{0→K}‖ = Π(1 + Δt s), both exactly.
    st_ = _witness_stack("none", device=dev)
    for step in st_.steps:
        _set_attention_linear(step, 0.7 * (V + 0.5 * Wd), eye)
    protocol("none", st_, x_along(v, 2.0), "none", 3.0, 1.0, ("forward", "backward"))
    # post (ε = 0): W_V = s(−v̂v̂ᵀ + ŵŵᵀ), x = |γ|√d v̂: Y = (1 − Δt s)x, N(Y) = x, ‖A‖ = (1 + Δt s)/(1 − Δt s).
    st_ = _witness_stack("post", eps=0.0, device=dev)
    s_val = 0.8
    for step in st_.steps:
        _set_attention_linear(step, s_val * (Wd - V), eye)
    x0 = x_along(v, math.sqrt(d))
    a = protocol("post", st_, x0, "post", 2.0, 1.0, ("backward",))
    K = len(st_.steps)
    w.post_closed.identity(a.dt_backward, post_closed_form(K, s_val, s_val, 1.0), rtol=CLOSED_FORM_RTOL,
                           case=dict(witness="post"))
    for h in (0.1, a.dt_backward, 2.0):
        meas = measure_gains(st_, x0, np.full((1, K), h))
        for scale in (1.0, 0.25):  # ρ/M_0 = 1 and 4
            meas_s = meas if scale == 1.0 else measure_gains(st_, x0 * scale, np.full((1, K), h))
            kw = theory_kwargs(st_.cfg, x0 * scale, "post")[0]
            b = bounds_of["post"](h, stack_sublayer_norms(st_)[0], **kw)
            w.post_fwd.identity(meas_s.forward_gain, b.forward_gain, rtol=IDENTITY_RTOL,
                                case=dict(witness="post", dt=h, rho_over_m0=1 / scale))


# ---- S2 ---------------------------------------------------------------------------------------------------------
@st.composite
def schedule_problems(draw):
    """(c, ℓ, β_F, τ): K ≤ 10 steps, ℓ over two decades, c either uniform (peri) or per step (pre)."""
    K = draw(st.integers(2, 10))
    ell = np.array(draw(st.lists(log_uniform(0.1, 10.0), min_size=K, max_size=K)))
    if draw(st.booleans()):
        c = np.full(K, draw(log_uniform(0.5, 5.0)))
    else:
        c = np.array(draw(st.lists(log_uniform(0.1, 10.0), min_size=K, max_size=K)))
    tau = draw(log_uniform(0.05, 3.0))
    # β_F from "never binds" to "binds hard": a fraction of the backward-only optimum's forward cost
    frac = draw(st.sampled_from([math.inf, 2.0, 0.7, 0.3, 0.05]))
    return c, ell, frac, tau


def _scipy_schedule(c, ell, beta, tau, sided="two", x0=None):
    """Maximise Σx with SLSQP under the S2 constraints (independent numerical optimum)."""
    K = len(ell)
    cap = (1 - 1e-9) / ell if sided == "two" else np.full(K, np.expm1(tau)) / ell
    phi = (lambda x: -np.log1p(-np.minimum(ell * x, 1 - 1e-15))) if sided == "two" else (lambda x: np.log1p(ell * x))
    dphi = (lambda x: ell / (1 - np.minimum(ell * x, 1 - 1e-15))) if sided == "two" else (lambda x: ell / (1 + ell * x))
    cons = [{"type": "ineq", "fun": lambda x: tau - np.sum(phi(x)), "jac": lambda x: -dphi(x)}]
    if math.isfinite(beta):
        cons.append({"type": "ineq", "fun": lambda x: beta - c @ x, "jac": lambda x: -c})
    start = np.full(K, 1e-3) / ell if x0 is None else x0
    res = optimize.minimize(lambda x: -np.sum(x), start, jac=lambda x: -np.ones(K), method="SLSQP",
                            bounds=[(0.0, float(b)) for b in cap], constraints=cons,
                            options={"ftol": 1e-14, "maxiter": 1000})
    x = np.clip(res.x, 0.0, cap)
    # SLSQP may stop at an infeasible point; such a point is no evidence either way (returned as None). Its own
    # constraint tolerance is ~1e-10 relative; a point within SCIPY_FEASIBILITY_RTOL can exceed T* by at most that
    # order, far inside SCIPY_VALUE_RTOL.
    feasible = all(con["fun"](x) >= -SCIPY_FEASIBILITY_RTOL * (tau if i == 0 else beta) for i, con in enumerate(cons))
    return x, (float(np.sum(x)) if feasible else None)


@register("S2", title="optimal residual schedule (water-filling)",
          statement="max ΣΔt_k s.t. Σc_kΔt_k ≤ (B−1)M_0 and Σ−log(1−ℓ_kΔt_k) ≤ τ: Δt_k = (1/ℓ_k − λ/(1−μc_k))₊; "
                    "with the one-sided Σlog(1+ℓΔt) ≤ τ the optimum is one step, T = (e^τ−1)/ℓ_min",
          provenance="paper claim K5, our statement (corrects THEORY.md: the one-sided problem is not convex)",
          theory=("theory.criterion.optimal_step_sizes", "theory.criterion.one_sided_optimal_time",
                  "theory.criterion.schedule_dual_value"),
          tests=("tests/test_criterion.py",))
def check_s2(ctx: Context, *, schedule: Callable = optimal_step_sizes, one_sided: Callable = one_sided_optimal_time,
             parts=("scipy", "zoo")) -> list[Tally]:
    ev = dict(evidence="independent", instances="random")
    feas = Tally("S2", "closed-form schedule is feasible", "inequality",
                 f"rtol {FEASIBILITY_RTOL:g}: sums of ≤ 10 logs", **ev)
    gap = Tally("S2", "duality gap of the closed form is zero", "identity", f"rtol {DUALITY_RTOL:g}: round-off", **ev)
    vs_scipy = Tally("S2", "closed-form T* = scipy SLSQP optimum", "identity",
                     f"rtol {SCIPY_VALUE_RTOL:g}: SLSQP's termination accuracy (module constant)", **ev)
    beats = Tally("S2", "scipy never beats the closed form", "inequality", f"rtol {SCIPY_VALUE_RTOL:g}", **ev)
    onesided = Tally("S2", "one-sided: scipy (multi-start) ≤ (e^τ−1)/ℓ_min", "inequality",
                     f"rtol {SCIPY_VALUE_RTOL:g}", **ev)
    onesided_w = Tally("S2", "one-sided optimum attained by a single step", "witness",
                       f"threshold {WITNESS_THRESHOLD}: exact by construction", evidence="independent",
                       instances="witness")
    gains = []
    skipped = [0]
    if "scipy" in parts:
        rng = np.random.default_rng(ctx.seed + 202)

        def one(problem):
            c, ell, frac, tau = problem
            base = optimal_step_sizes(c, ell, math.inf, tau)
            beta = frac * float(c @ base.dt) if math.isfinite(frac) else math.inf
            sol = schedule(c, ell, beta, tau)
            case = dict(K=len(ell), tau=tau, beta=beta, binding=sol.binding)
            phi = float(np.sum(-np.log1p(-ell * sol.dt))) if np.all(ell * sol.dt < 1) else math.inf
            feas.inequality(phi, tau, rtol=FEASIBILITY_RTOL, case=case)
            if math.isfinite(beta):
                feas.inequality(float(c @ sol.dt), beta, rtol=FEASIBILITY_RTOL, case=case)
            dual = schedule_dual_value(c, ell, beta, tau, sol.lam, sol.mu)
            gap.identity(dual, sol.total_time, rtol=DUALITY_RTOL, case=case)
            starts = [None, 0.5 * sol.dt + 1e-6 / ell]
            found = [v for v in (_scipy_schedule(c, ell, beta, tau, x0=s0)[1] for s0 in starts) if v is not None]
            if found:
                vs_scipy.identity(sol.total_time, max(found), rtol=SCIPY_VALUE_RTOL, case=case)
                beats.inequality(max(found), sol.total_time, rtol=SCIPY_VALUE_RTOL, case=case)
            skipped[0] += len(starts) - len(found)
            uniform = min(-math.expm1(-tau / len(ell)) / float(np.max(ell)),
                          beta / float(np.sum(c)) if math.isfinite(beta) else math.inf)
            gains.append(sol.total_time / (len(ell) * uniform))
            # one-sided: local optima from random starts never exceed the single-step value, which is attained
            t1, k1 = one_sided(ell, tau)
            for _ in range(3):
                x0 = rng.uniform(0, 1, len(ell)) * np.expm1(tau / len(ell)) / ell
                _, tsp = _scipy_schedule(c, ell, math.inf, tau, sided="upper", x0=x0)
                if tsp is None:
                    skipped[0] += 1
                    continue
                onesided.inequality(tsp, t1, rtol=SCIPY_VALUE_RTOL, case=case)
            x = np.zeros(len(ell))
            x[k1] = t1
            ok = float(np.sum(np.log1p(ell * x))) <= tau * (1 + FEASIBILITY_RTOL)
            onesided_w.witness(float(np.sum(x)) / t1 if ok else 0.0, threshold=WITNESS_THRESHOLD, case=case)

        run_over(schedule_problems(), one, examples=ctx.examples(12, 60), seed=ctx.seed + 203)
        vs_scipy.note(gain_over_uniform_min=float(np.min(gains)), gain_over_uniform_max=float(np.max(gains)),
                      scipy_runs_ending_infeasible=skipped[0])
    out = [feas, gap, vs_scipy, beats, onesided, onesided_w]
    if "zoo" in parts:
        out += _s2_zoo(ctx, schedule)
    return [x for x in out if x.cases]


def _s2_zoo(ctx: Context, schedule: Callable) -> list[Tally]:
    """Run zoo stacks at the S2 schedule: G ≤ B, Λ ≤ τ and (two-sided) min_k log σ_min(J_{k→K}) ≥ −τ."""
    ev = dict(evidence="independent", instances="random")
    ev_w = dict(evidence="independent", instances="witness")
    fwd = Tally("S2", "zoo at the S2 schedule: G ≤ B", "inequality", f"rtol {ROUNDOFF_RTOL:g}", **ev)
    up = Tally("S2", "zoo at the S2 schedule: Λ ≤ τ", "inequality", f"atol {ROUNDOFF_RTOL:g} in log", **ev)
    low = Tally("S2", "zoo at the S2 schedule: −min log σ_min(J_{k→K}) ≤ τ", "inequality",
                f"atol {ROUNDOFF_RTOL:g} in log", **ev)
    up_w = Tally("S2", "witness at the S2 schedule: Λ ≤ τ", "inequality", f"atol {ROUNDOFF_RTOL:g} in log", **ev_w)
    low_w = Tally("S2", "witness at the S2 schedule: −min log σ_min(J_{k→K}) ≤ τ", "inequality",
                  f"atol {ROUNDOFF_RTOL:g} in log", **ev_w)
    wit = Tally("S2", "witness: vanishing side attained (−log σ_min/τ)", "witness",
                f"threshold {WITNESS_THRESHOLD}: exact for the linear witness", **ev_w)

    def run(stack, x0, placement, B, tau, case):
        t_fwd, t_up, t_low = (fwd, up_w, low_w) if "witness" in case else (fwd, up, low)
        # none's forward growth is multiplicative (F4), outside S2's linear budget: only the backward is scheduled
        subls = stack_sublayer_norms(stack)
        kws = theory_kwargs(stack.cfg, x0, placement)
        dts = []
        for s, kw in zip(subls, kws):
            kw = dict(kw, x0_min_scale=0.0)  # global floors: Δt-free constants (the S2 premise)
            b1 = STABILITY_BOUNDS[placement](1.0, s, sided="two", **kw)
            c = np.diff(b1.row_bounds) if placement != "none" else np.zeros(len(s))
            beta = (B - 1) * kw["x0_max_norm"] if placement != "none" else math.inf
            dts.append(schedule(c, b1.rates, beta, tau).dt)
        dts = np.array(dts)
        meas = measure_gains(stack, x0, dts)
        if placement != "none":
            t_fwd.inequality(meas.forward_gain, B, rtol=ROUNDOFF_RTOL, case=case, offset=1.0)
        t_up.inequality(meas.log_gain, tau, rtol=ROUNDOFF_RTOL, atol=ROUNDOFF_RTOL, case=case)
        t_low.inequality(-meas.log_floor, tau, rtol=ROUNDOFF_RTOL, atol=ROUNDOFF_RTOL, case=case)
        return meas

    for j, placement in enumerate(("peri", "pre", "none")):
        for seed in range(ctx.examples(2, 8)):
            sub = ("attn", "mlp")
            cfg = StackConfig(d=6, n_blocks=2, placement=placement, sublayers=sub, n_heads=2, d_mlp=12,
                              eps=1e-2, eps_out=1e-2, weight_scale=0.7, bias_std=0.1, dt=1.0, device=ctx.device)
            stack = Stack(cfg, 3, seed=ctx.seed + 300 + 10 * j + seed)
            n_tok = 1 if placement == "none" else 2
            x0 = sample_inputs(cfg, 3, n_tok, seed=ctx.seed + 400 + 10 * j + seed)
            run(stack, x0, placement, 2.0, 0.5, dict(placement=placement, seed=seed))
    # witness: none, linear one-token steps W_k = s_k(v̂v̂ᵀ − ŵŵᵀ) with different s_k: on ŵ the product is
    # Π(1 − Δt_k s_k) = e^{−τ} exactly (the water level makes Σ −log(λ s_k) = τ over the active steps).
    d = 8
    v, u = _directions(d)
    stack = _witness_stack("none", n_blocks=4, device=ctx.device)
    for step, s_k in zip(stack.steps, (0.3, 1.0, 2.0, 0.6)):
        _set_attention_linear(step, torch.tensor(s_k * (np.outer(v, v) - np.outer(u, u))),
                              torch.eye(d, dtype=torch.float64))
    x0 = torch.tensor(2.0 * v).view(1, 1, d).to(ctx.device)
    tau = 0.8
    meas = run(stack, x0, "none", 10.0, tau, dict(witness="none-two-sided"))
    wit.witness(-meas.log_floor / tau, threshold=WITNESS_THRESHOLD, case=dict(witness="none-two-sided", tau=tau))
    return [fwd, up, low, up_w, low_w, wit]


# ---- S3 ---------------------------------------------------------------------------------------------------------
OUTPUT_MAPS = {"attn": ("W_o", "b_o"), "mlp": ("W2", "b2")}


@st.composite
def codesign_cases(draw, placement: str, device: str = "cpu"):
    # d counted down and two heads listed first: hypothesis tries the first value first (issue 11 §1)
    d = 10 - draw(st.integers(0, 7))
    heads = draw(st.sampled_from([h for h in (2, 1) if d % h == 0]))
    subl = draw(st.sampled_from([("attn", "mlp"), ("mlp",), ("attn",)]))
    n_blocks = draw(st.integers(1, max(1, 8 // len(subl))))
    K = n_blocks * len(subl)
    dt = tuple(draw(st.lists(log_uniform(0.01, 3.0), min_size=K, max_size=K)))
    cfg = StackConfig(d=d, n_blocks=n_blocks, placement=placement, n_heads=heads, sublayers=subl, d_mlp=2 * d,
                      norm=draw(st.sampled_from(["layer", "rms"])), eps=draw(st.one_of(st.just(0.0),
                                                                                      log_uniform(1e-6, 1e-1))),
                      gamma=draw(log_uniform(0.5, 2.0)), beta=draw(st.sampled_from([0.0, 0.3])),
                      activation=draw(st.sampled_from(["relu", "gelu"])), causal=draw(st.booleans()),
                      weight_scale=draw(log_uniform(0.3, 2.0)), bias_std=draw(st.sampled_from([0.0, 0.2])), dt=dt,
                      device=device)
    case = dict(cfg=cfg, n_tokens=draw(st.integers(1, 3)), seed=draw(st.integers(0, 2**31 - 1)),
                scale=draw(log_uniform(0.3, 3.0)), mean=draw(st.sampled_from([0.0, 1.0, -3.0])),
                lam=draw(log_uniform(1e-4, 1.0)), c=draw(log_uniform(1e-2, 1e2)), alpha=draw(log_uniform(1.1, 10.0)))
    # Drawn last so that the knobs above keep the examples they had (issue 11 §1). The S3 identities hold for any
    # weights; the first listed value (hypothesis's first try) is not the default.
    case["cfg"] = cfg.replace(out_scale=draw(st.sampled_from([0.5, 1.0, 2.0])),
                              qk_scale=draw(st.sampled_from([2.0, 1.0, 0.0])))
    return case


def _copy_params(dst: Stack, src: Stack) -> None:
    dst.load_state_dict(src.state_dict())


def _sq(t: torch.Tensor) -> torch.Tensor:
    return (t * t).flatten(1).sum(dim=1)


def _decay_split(stack: Stack):
    """Per instance: (Σ‖W‖² over non-output weights and biases, [‖W_out,k‖² + ‖b_out,k‖² per step])."""
    other = 0.0
    outs = []
    for step in stack.steps:
        names = OUTPUT_MAPS[step.kind]
        out_k = 0.0
        for pname, p in step.sublayer.named_parameters():
            if pname in names:
                out_k = out_k + _sq(p)
            else:
                other = other + _sq(p)
        outs.append(out_k)
    return _np(other if torch.is_tensor(other) else torch.zeros(stack.n_instances)), np.stack([_np(o) for o in outs], 1)


@register("S3", title="co-design of Δt with the placement",
          statement="(a) pre: Δt absorbed by the output maps, decay λ → λ/Δt²; (b) N_ε(αX + F) = N_{ε/α²}(X + F/α) "
                    "(DeepNorm = post with Δt = 1/α), deviation at equal ε in closed form; (c) peri: Δt not "
                    "absorbable by module weights (update rows have norm Δt|γ|√d), only by γ_out",
          provenance="paper claim K5, our statement; DeepNorm: neighbour: Wang et al. 2022",
          theory=("theory.codesign.pre_effective_output_decay", "theory.codesign.deepnorm_as_post",
                  "theory.codesign.deepnorm_post_deviation", "theory.codesign.deepnorm_post_deviation_sup",
                  "theory.codesign.peri_update_row_norm", "theory.codesign.peri_dt_as_output_gain"),
          tests=("tests/test_codesign.py",))
def check_s3(ctx: Context, *, absorbed_scale: Callable = pre_absorbed_output_scale,
             effective_decay: Callable = pre_effective_output_decay, as_post: Callable = deepnorm_as_post,
             deviation: Callable = deepnorm_post_deviation, deviation_sup: Callable = deepnorm_post_deviation_sup,
             update_norm: Callable = peri_update_row_norm, as_output_gain: Callable = peri_dt_as_output_gain,
             parts=("pre", "post", "peri")) -> list[Tally]:
    tol = f"rtol {IDENTITY_RTOL:g}, atol {IDENTITY_ATOL:g}: two float64 paths to the same map (module constant)"
    # The zoo against itself under a reparametrisation: these identities hold by the linearity of the output maps
    # and the norm's scale invariance in the code (regression guards, not evidence). The deviation's closed form,
    # its sup and the peri update norm are theory against the zoo: independent.
    same = dict(evidence="code-identity", instances="random")
    ind = dict(evidence="independent", instances="random")
    a_map = Tally("S3", "(a) pre: Δt absorbed by output maps — same forward map", "identity", tol, **same)
    a_obj = Tally("S3", "(a) pre: objective at Δt, λ = objective at Δt=1, λ/Δt² on outputs", "identity", tol, **same)
    b_map = Tally("S3", "(b) DeepNorm(α, ε) = post(Δt/α, ε/α²) — whole stacks", "identity", tol, **same)
    b_dev = Tally("S3", "(b) equal-ε deviation = closed form (per row)", "identity", tol, **ind)
    b_sup = Tally("S3", "(b) equal-ε deviation ≤ its sup over σ", "inequality", tol, **ind)
    b_wit = Tally("S3", "(b) witness: the sup is attained at σ*", "witness",
                  f"threshold {WITNESS_THRESHOLD}: exact at σ = σ*", evidence="independent", instances="witness")
    c_inv = Tally("S3", "(c) peri: output maps × c leave the step unchanged (ε_out = 0)", "identity", tol, **same)
    c_norm = Tally("S3", "(c) peri: every update row has norm Δt|γ|√d, whatever the weights", "identity", tol, **ind)
    c_gain = Tally("S3", "(c) peri: (Δt, γ_out, β_out) = (1, Δtγ_out, Δtβ_out)", "identity", tol, **same)
    c_pre = Tally("S3", "(c) contrast, pre: output maps × c scale the update by c", "identity", tol, **same)
    dev = ctx.device

    if "pre" in parts:
        def one_pre(case):
            cfg = case["cfg"]
            K = cfg.n_steps
            stack = Stack(cfg, 3, seed=case["seed"])
            x0 = sample_inputs(cfg, 3, case["n_tokens"], seed=case["seed"] + 1, scale=case["scale"], mean=case["mean"])
            unit = Stack(cfg.replace(dt=1.0), 3, seed=case["seed"])
            _copy_params(unit, stack)
            scale = absorbed_scale(cfg.dts, K)
            with torch.no_grad():
                for step, s in zip(unit.steps, scale):
                    for pname in OUTPUT_MAPS[step.kind]:
                        p = getattr(step.sublayer, pname)
                        if p is not None:
                            p.mul_(float(s))
                y_dt = stack(x0)
                y_1 = unit(x0)
            desc = dict(placement="pre", d=cfg.d, steps=K, seed=case["seed"])
            a_map.identity(y_1, y_dt, rtol=IDENTITY_RTOL, atol=IDENTITY_ATOL, case=desc)
            target = torch.sin(3.0 * sample_inputs(cfg, 3, case["n_tokens"], seed=case["seed"] + 2))
            loss_dt = _np(0.5 * _sq(y_dt - target))
            loss_1 = _np(0.5 * _sq(y_1 - target))
            lam = case["lam"]
            other_dt, out_dt = _decay_split(stack)
            other_1, out_1 = _decay_split(unit)
            decays = effective_decay(lam, cfg.dts, K)
            for i in range(3):
                j_dt = pre_decay_objective(loss_dt[i], other_dt[i], out_dt[i], lam)
                j_1 = pre_decay_objective(loss_1[i], other_1[i], out_1[i], lam, output_decays=decays)
                a_obj.identity(j_1, j_dt, rtol=IDENTITY_RTOL, atol=IDENTITY_ATOL, case=dict(desc, lam=lam))
            # contrast for (c): in pre, scaling step 0's output maps by c scales its update by c
            one = Stack(cfg.replace(n_blocks=1, sublayers=cfg.sublayers[:1], dt=cfg.dts[0]), 3, seed=case["seed"])
            with torch.no_grad():
                u0 = one(x0) - x0
                for pname in OUTPUT_MAPS[one.steps[0].kind]:
                    p = getattr(one.steps[0].sublayer, pname)
                    if p is not None:
                        p.mul_(case["c"])
                u1 = one(x0) - x0
            c_pre.identity(u1, case["c"] * u0, rtol=IDENTITY_RTOL, atol=IDENTITY_ATOL * case["c"], case=desc)

        run_over(codesign_cases("pre", dev), one_pre, examples=ctx.examples(6, 30), seed=ctx.seed + 501)

    if "post" in parts:
        def one_post(case):
            cfg = case["cfg"].replace(placement="deepnorm", deepnorm_alpha=case["alpha"])
            alpha = case["alpha"]
            K = cfg.n_steps
            deep = Stack(cfg, 3, seed=case["seed"])
            x0 = sample_inputs(cfg, 3, case["n_tokens"], seed=case["seed"] + 1, scale=case["scale"], mean=case["mean"])
            post_dt, post_eps = zip(*[as_post(alpha, h, cfg.eps) for h in cfg.dts])
            post = Stack(cfg.replace(placement="post", dt=tuple(post_dt), eps=post_eps[0]), 3, seed=case["seed"])
            _copy_params(post, deep)
            with torch.no_grad():
                y_deep, y_post = deep(x0), post(x0)
            desc = dict(alpha=alpha, eps=cfg.eps, d=cfg.d, steps=K, norm=cfg.norm, seed=case["seed"])
            b_map.identity(y_post, y_deep, rtol=IDENTITY_RTOL, atol=IDENTITY_ATOL, case=desc)
            # equal ε, one step: ‖N_ε(αz) − N_ε(z)‖ per row, z = x + Δt F(x)/α
            if cfg.eps > 0:
                step_d = deep.steps[0]
                same = Stack(cfg.replace(placement="post", n_blocks=1, sublayers=cfg.sublayers[:1],
                                         dt=cfg.dts[0] / alpha), 3, seed=case["seed"])
                with torch.no_grad():
                    for p_dst, p_src in zip(same.steps[0].parameters(), step_d.parameters()):
                        p_dst.copy_(p_src)
                    y_a = step_d(x0)
                    y_b = same.steps[0](x0)
                    z = x0 + (cfg.dts[0] / alpha) * step_d.branch(x0)
                    sigma = _np(row_scale(z, cfg.norm))
                measured = _np((y_a - y_b).norm(dim=-1))
                theory = deviation(sigma, alpha, cfg.eps, abs(cfg.gamma), cfg.d)
                b_dev.identity(measured, theory, rtol=IDENTITY_RTOL, atol=IDENTITY_ATOL * math.sqrt(cfg.d), case=desc)
                sup, _ = deviation_sup(alpha, abs(cfg.gamma), cfg.d, cfg.eps)
                b_sup.inequality(measured, sup, rtol=IDENTITY_RTOL, case=desc)

        run_over(codesign_cases("post", dev), one_post, examples=ctx.examples(6, 30), seed=ctx.seed + 502)
        # One fixed case on which every (b) identity can fail: ε > 0 (the ε-rescaling and the equal-ε deviation are
        # only exercised there) and LayerNorm. The drawn cases need not contain one: hypothesis tries ε = 0 first,
        # and soak seeds 1438851349, 37102960 and 1063060208 drew only ε = 0 cases, so the meta-tests passed vacuously.
        one_post(dict(cfg=StackConfig(d=6, n_blocks=2, placement="post", n_heads=2, sublayers=("attn", "mlp"),
                                      d_mlp=12, norm="layer", eps=1e-2, gamma=1.3, beta=0.3, activation="gelu",
                                      causal=True, weight_scale=0.8, bias_std=0.2, dt=(0.3, 1.7, 0.05, 0.6),
                                      device=dev),
                      n_tokens=3, seed=12345, scale=1.2, mean=1.0, c=3.0, alpha=2.5))
        # witness: F ≡ 0 (zero output maps) and a row with scale exactly σ*, for several α
        for alpha in (1.5, 4.0, 20.0):
            for norm in ("layer", "rms"):
                eps, d = 1e-3, 8
                cfg = StackConfig(d=d, n_blocks=1, placement="deepnorm", sublayers=("mlp",), norm=norm, eps=eps,
                                  gamma=1.3, deepnorm_alpha=alpha, out_scale=0.0, dt=1.0, device=dev)
                deep = Stack(cfg, 1, seed=1)
                post = Stack(cfg.replace(placement="post", dt=1.0 / alpha), 1, seed=1)
                _copy_params(post, deep)
                sup, sigma_star = deviation_sup(alpha, 1.3, d, eps)
                v, _ = _directions(d)
                x0 = torch.tensor(sigma_star * math.sqrt(d) * v).view(1, 1, d).to(dev)
                with torch.no_grad():
                    meas = float(_np((deep(x0) - post(x0)).norm(dim=-1)).max())
                b_wit.witness(meas / sup, threshold=WITNESS_THRESHOLD, case=dict(alpha=alpha, norm=norm))

    if "peri" in parts:
        def one_peri(case):
            # GELU: a ReLU MLP can output an exactly zero row (every unit inactive), where N_out with ε_out = 0 is 0/0
            cfg = case["cfg"].replace(placement="peri", eps_out=0.0, beta=0.0, activation="gelu")
            K = cfg.n_steps
            stack = Stack(cfg, 3, seed=case["seed"])
            x0 = sample_inputs(cfg, 3, case["n_tokens"], seed=case["seed"] + 1, scale=case["scale"], mean=case["mean"])
            desc = dict(placement="peri", d=cfg.d, steps=K, norm=cfg.norm, c=case["c"], seed=case["seed"])
            scaled = Stack(cfg, 3, seed=case["seed"])
            _copy_params(scaled, stack)
            with torch.no_grad():
                for step in scaled.steps:
                    for pname in OUTPUT_MAPS[step.kind]:
                        p = getattr(step.sublayer, pname)
                        if p is not None:
                            p.mul_(case["c"])
                _, traj = stack(x0, trajectory=True)
                _, traj_c = scaled(x0, trajectory=True)
            c_inv.identity(traj_c[-1], traj[-1], rtol=IDENTITY_RTOL, atol=IDENTITY_ATOL, case=desc)
            upd = torch.stack([(b - a).norm(dim=-1) for a, b in zip(traj[:-1], traj[1:])], dim=0)  # (K, I, n)
            want = np.array([update_norm(h, cfg.gamma, cfg.d) for h in cfg.dts])
            c_norm.identity(_np(upd), want.reshape(K, 1, 1) * np.ones(tuple(upd.shape)),
                            rtol=IDENTITY_RTOL, atol=IDENTITY_ATOL, case=desc)
            # Δt moved into the output gain (any ε_out): copy, set Δt = 1 and (γ_out, β_out) ← (Δtγ_out, Δtβ_out)
            cfg_e = cfg.replace(eps_out=cfg.eps if cfg.eps > 0 else 1e-3, beta=0.3)
            a_st = Stack(cfg_e, 3, seed=case["seed"])
            b_st = Stack(cfg_e.replace(dt=1.0), 3, seed=case["seed"])
            _copy_params(b_st, a_st)
            with torch.no_grad():
                for step, h in zip(b_st.steps, cfg_e.dts):
                    g_new, b_new = as_output_gain(h, _np(step.norm_out.gamma), _np(step.norm_out.beta)
                                                  if step.norm_out.beta is not None else 0.0)
                    step.norm_out.gamma.copy_(torch.as_tensor(g_new))
                    if step.norm_out.beta is not None:
                        step.norm_out.beta.copy_(torch.as_tensor(b_new))
                c_gain.identity(b_st(x0), a_st(x0), rtol=IDENTITY_RTOL, atol=IDENTITY_ATOL, case=desc)

        run_over(codesign_cases("peri", dev), one_peri, examples=ctx.examples(6, 30), seed=ctx.seed + 503)
        # One fixed case on which every (c) identity can fail: LayerNorm with β ≠ 0 and Δt ≠ 1 on every step. The
        # drawn cases need not contain one (hypothesis draws Δt = 10**0 = 1 first, RMSNorm has no β): the soak
        # seeds 1410480894 and 2541017012 drew only such cases, and moving Δt into γ_out but not β_out passed.
        one_peri(dict(cfg=StackConfig(d=6, n_blocks=2, placement="peri", n_heads=2, sublayers=("attn", "mlp"),
                                      d_mlp=12, norm="layer", eps=1e-5, gamma=1.3, beta=0.3, activation="gelu",
                                      causal=True, weight_scale=0.8, bias_std=0.2, dt=(0.3, 1.7, 0.05, 0.6),
                                      device=dev),
                      n_tokens=3, seed=12345, scale=1.2, mean=1.0, c=3.0))
    out = [a_map, a_obj, c_pre, b_map, b_dev, b_sup, b_wit, c_inv, c_norm, c_gain]
    return [x for x in out if x.cases]
