"""F5 — second moments at initialisation, checked by batched Monte Carlo over the zoo.

Each drawn example is one ``verify.engine.zoo.Stack`` with hundreds of independent instances (leading dim I), run as
one tensor computation; per instance the squared row norms are averaged over its tokens, and the instance
averages are the iid samples of a band (``verify.engine.stats``: Student-t at a false-alarm rate of 1e-4 per tally,
Bonferroni over the tally's comparisons). Two kinds of comparison:

- *closed form*: E‖x_k‖² − E‖x_0‖² against the theory's recursion evaluated from the configuration alone
  (pre at ε = 0, the first pre step at ε > 0, peri with a known ρ, the d = 64 GELU example);
- *conditional*: the same recursion with each step's conditional expectation evaluated on the measured
  branch input (‖N(x_k)‖², the attention mixture, ‖h‖², the residual row) — exact for every ε, depth and
  sublayer, since the theory integrates out only the weights that come after what was measured. The samples
  are paired differences (measured − predicted), so the bands are narrow.

What the checks measure is the zoo's own forward pass; the branch internals (h, F) are recomputed here only to
read ‖h‖², and an identity tally shows they reproduce the zoo's sublayer output to round-off.
Theory functions are keyword arguments, so the meta-tests can inject wrong ones (tests/test_init_moments.py).
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import torch
from hypothesis import strategies as st

from theory.init_moments import (
    attention_output_rho_single_token,
    attention_output_second_moment,
    chi2_rho,
    gaussian_phi2,
    gaussian_row_norm_expect,
    gelu_phi2_closed_form,
    mlp_output_rho,
    mlp_output_rho_allowance,
    mlp_output_second_moment,
    noncentral_chi2_rho,
    peri_second_moments,
    post_second_moment,
    pre_second_moments,
    uniform_attention_mixed_sq,
)
from verify.checks.record import Tally
from verify.checks.registry import Context, register
from verify.engine.stats import DEFAULT_FALSE_ALARM, BandSet, mean_band
from verify.engine.strategies import (
    StackCase,
    epsilons,
    log_uniform,
    run_over,
    width_and_heads,
)
from verify.engine.zoo import StackConfig

THEOREM = "F5"
# Round-off of one squared row norm in float64: d ≤ 64 products summed, relative error ≤ ~d·1.1e-16 < 1e-14;
# the recursions add K ≤ 8 such terms. 1e-12 relative is that with a 10× margin.
ROUNDOFF_RTOL = 1e-12
# How many float64 weights one drawn example may hold (≈ 32 MB): sets the number of instances per example.
PARAM_BUDGET = 4_000_000
MIN_INSTANCES, MAX_INSTANCES = 128, 1024
# The worked example of THEORY.md F5 (d = 64, W₁ ~ N(0, 1/d), W₂ ~ N(0, 1/(4d)), GELU, ε = 0).
EXAMPLE_D, EXAMPLE_TOKENS, EXAMPLE_INSTANCES = 64, 32, 192
EXAMPLE_QUOTED = (27.20, 0.05)  # the 20,000-sample Monte Carlo quoted in THEORY.md (mean, standard error)


# ---- measurement ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Trace:
    """Per-row statistics of one batched run; every array is (steps, I, n) except x_sq, (steps + 1, I, n)."""

    x_sq: np.ndarray  # ‖x_k,i‖²
    signal: np.ndarray  # the norm's row signal of x_k: ‖x − x̄1‖² (layer) or ‖x‖² (rms)
    u_sq: np.ndarray  # ‖u‖², u the branch input (N_in(x) or x)
    mixed_sq: np.ndarray  # attention: mean over heads of ‖(P^H U)_i‖²; MLP: NaN
    h_sq: np.ndarray  # ‖h‖², h the output map's input (φ(u W₁ + b₁) or P U W_V)
    f_sq: np.ndarray  # ‖F‖², the branch output before Δt and N_out
    update_sq: np.ndarray  # ‖x_{k+1} − x_k‖²: Δt²‖F‖² (pre), Δt²‖N_out(F)‖² (peri); unused for post
    recompute_error: float  # max |h W + b − F_zoo| / max |F_zoo| over every step


@functools.lru_cache(maxsize=48)
def measure(case: StackCase) -> Trace:
    """Run the case's stack once (one batched computation per step) and collect the per-row statistics.

    Cached on the (frozen, hashable) case, so a meta-test that re-runs a check with a wrong theory compares it
    with exactly the data the passing run saw.
    """
    stack, x = case.build()
    cfg = stack.cfg
    rows = {k: [] for k in ("signal", "u_sq", "mixed_sq", "h_sq", "f_sq", "update_sq")}
    x_sq = [x.pow(2).sum(-1)]
    err = 0.0
    with torch.no_grad():
        for step in stack.steps:
            u = x if step.norm_in is None else step.norm_in(x)
            sub = step.sublayer
            if step.kind == "mlp":
                z = u @ sub.W1 + (0.0 if sub.b1 is None else sub.b1[:, None, :])
                h = sub.phi(z)
                w_out, b_out = sub.W2, sub.b2
                mixed = torch.full(u.shape[:-1], float("nan"), dtype=u.dtype, device=u.device)
            else:
                probs = sub.probs(u)  # (I, H, n, n)
                mixed = (probs @ u[:, None]).pow(2).sum(-1).mean(1)  # (I, n)
                i_, n_, d_ = u.shape
                v = (u @ sub.W_v).view(i_, n_, cfg.n_heads, d_ // cfg.n_heads).transpose(1, 2)  # (I, H, n, d_h)
                h = (probs @ v).transpose(1, 2).reshape(i_, n_, d_)
                w_out, b_out = sub.W_o, sub.b_o
            f = h @ w_out + (0.0 if b_out is None else b_out[:, None, :])
            f_zoo = sub(u)
            err = max(err, float((f - f_zoo).abs().max() / f_zoo.abs().max().clamp_min(1e-300)))
            centred = x - x.mean(-1, keepdim=True) if cfg.norm == "layer" else x
            rows["signal"].append(centred.pow(2).sum(-1))
            rows["u_sq"].append(u.pow(2).sum(-1))
            rows["mixed_sq"].append(mixed)
            rows["h_sq"].append(h.pow(2).sum(-1))
            rows["f_sq"].append(f_zoo.pow(2).sum(-1))
            x_next = step(x)
            rows["update_sq"].append((x_next - x).pow(2).sum(-1))
            x = x_next
            x_sq.append(x.pow(2).sum(-1))

    def stacked(ts):
        return torch.stack(ts).to("cpu", torch.float64).numpy()

    return Trace(x_sq=stacked(x_sq), recompute_error=err, **{k: stacked(v) for k, v in rows.items()})


def _variances(cfg: StackConfig, kind: str) -> dict:
    """Per-entry weight/bias variances of the zoo's initialisation for a sublayer kind."""
    w2, o2, d, m = cfg.weight_scale**2, cfg.out_scale**2, cfg.d, cfg.hidden
    b = cfg.bias_std**2 if cfg.bias else 0.0
    if kind == "mlp":
        return dict(w1_var=w2 / d, w2_var=w2 * o2 / m, b1_var=b, b2_var=b)
    return dict(wv_var=w2 / d, wo_var=w2 * o2 / d, bo_var=b)


def _out_var(cfg: StackConfig, kind: str, h_sq: np.ndarray) -> np.ndarray:
    """a = w_out_var·‖h‖² + b_var: the per-entry variance of F's row given h."""
    v = _variances(cfg, kind)
    return (v["w2_var"] * h_sq + v["b2_var"]) if kind == "mlp" else (v["wo_var"] * h_sq + v["bo_var"])


def _update_roundoff(tr: Trace, scale) -> np.ndarray:
    """Round-off of ‖x_{k+1} − x_k‖² (divided by ``scale``): the difference of two stored states carries an
    absolute error ~u·(‖x_k‖ + ‖x_{k+1}‖) per row, so ‖·‖² is off by ≤ 2‖upd‖·u·‖x‖ ≤ u·(‖upd‖² + ‖x‖²); a
    large residual stream and a small update make this much more than u·‖upd‖²."""
    total = tr.update_sq + tr.x_sq[:-1] + tr.x_sq[1:]
    return ROUNDOFF_RTOL * _per_instance(total).mean(-1) / np.asarray(scale)


def _per_instance(rows: np.ndarray) -> np.ndarray:
    """Average over the token axis: (..., I, n) → (..., I) — the iid samples are instances, not rows."""
    return rows.mean(axis=-1)


# ---- cases ---------------------------------------------------------------------------------------------------------
def _instances(cfg: StackConfig) -> int:
    per_step = [2 * cfg.d * cfg.hidden if k == "mlp" else 4 * cfg.d * cfg.d for k in cfg.sublayers]
    total = cfg.n_blocks * sum(per_step)
    return int(min(MAX_INSTANCES, max(MIN_INSTANCES, PARAM_BUDGET // total)))


@st.composite
def init_cases(draw, placement: str, device: str = "cpu", d_range: tuple[int, int] = (8, 24), max_steps: int = 4,
               max_tokens: int = 4):
    """A :class:`StackCase` at initialisation for the F5 checks: β = 0, every other knob drawn.

    Widths d ≥ 8 keep the chi-square quadratures in their certified range; Δt_k per step log-uniform on
    [0.05, 2]; weight scale log-uniform on [0.1, 10]; ε (and for peri ε_out) either 0 or log-uniform on
    [1e-4, 1]; output scale 1 or 0.1 (small outputs make ρ < 1 visible); uniform attention (qk_scale = 0) half
    the time.
    """
    sublayers = draw(st.sampled_from([("mlp",), ("attn",), ("attn", "mlp")]))
    d, heads = draw(width_and_heads(d_range[0], d_range[1], max_heads=4))
    hidden = 4 * d  # m ≥ 32: a bias-free ReLU layer is all-off (F ≡ 0, N_out 0/0 at ε = 0) w.p. 2^-m
    n_blocks = draw(st.integers(1, max(1, max_steps // len(sublayers))))
    n_steps = n_blocks * len(sublayers)
    dt = tuple(draw(st.lists(log_uniform(0.05, 2.0), min_size=n_steps, max_size=n_steps)))
    cfg = StackConfig(
        d=d, n_blocks=n_blocks, placement=placement, n_heads=heads, d_mlp=hidden, sublayers=sublayers,
        norm=draw(st.sampled_from(["layer", "rms"])), eps=draw(epsilons(1e-4, 1.0)),
        eps_out=draw(epsilons(1e-4, 1.0)) if placement == "peri" else None,
        gamma=draw(log_uniform(0.3, 3.0)) * draw(st.sampled_from([1.0, -1.0])), beta=0.0,
        activation=draw(st.sampled_from(["relu", "gelu"])), causal=draw(st.booleans()), dt=dt,
        weight_scale=draw(log_uniform(0.1, 10.0)), qk_scale=draw(st.sampled_from([0.0, 1.0])),
        out_scale=draw(st.sampled_from([1.0, 0.1])), bias=True, bias_std=draw(st.sampled_from([0.5, 0.0])),
        device=device,
    )
    return StackCase(cfg=cfg, n_instances=_instances(cfg), n_tokens=draw(st.integers(1, max_tokens)),
                     seed=draw(st.integers(0, 2**31 - 1)), input_scale=draw(log_uniform(0.1, 3.0)),
                     input_mean=draw(st.sampled_from([0.0, 2.0])))


def _fixed_case(device: str, seed: int, n_tokens: int = 2, input_scale: float = 1.0, **cfg) -> StackCase:
    base = dict(d=16, n_blocks=3, sublayers=("mlp",), beta=0.0, dt=(0.3, 1.0, 0.7), bias=True, device=device)
    base.update(cfg)
    c = StackConfig(**base)
    return StackCase(cfg=c, n_instances=_instances(c), n_tokens=n_tokens, seed=seed, input_scale=input_scale)


def _fixed_cases(placement: str, ctx: Context) -> list[StackCase]:
    """Deterministic cases always checked besides the drawn ones, so that every branch of the theory is hit
    whatever hypothesis draws: the weight-scale sweep at ε = 0 (0.03 … 30), both φ with ε = 0 and ε > 0, small
    outputs with ε > 0 (ρ well below 1: where a ρ-free theory must fail), uniform (qk_scale = 0, causal) and
    one-token attention, per-step Δt throughout."""
    s, dev = ctx.seed, ctx.device
    two = dict(sublayers=("attn", "mlp"), n_blocks=2, dt=(0.5, 1.0, 0.8, 0.3))
    if placement == "pre":
        return [
            _fixed_case(dev, s + 11, placement="pre", eps=0.0, activation="relu", weight_scale=0.1),
            _fixed_case(dev, s + 12, placement="pre", eps=0.0, activation="gelu", weight_scale=10.0),
            _fixed_case(dev, s + 13, placement="pre", eps=0.05, activation="gelu", input_scale=0.3),
            _fixed_case(dev, s + 14, placement="pre", eps=0.05, activation="relu", qk_scale=0.0, causal=True,
                        n_tokens=4, input_scale=0.3, **two),
            _fixed_case(dev, s + 15, placement="pre", eps=0.0, activation="gelu", n_tokens=1, n_heads=2, **two),
        ]
    if placement == "peri":
        return [
            _fixed_case(dev, s + 21, placement="peri", eps=0.0, eps_out=0.0, activation="relu", weight_scale=0.03),
            _fixed_case(dev, s + 22, placement="peri", eps=0.0, eps_out=0.0, activation="gelu", weight_scale=30.0),
            _fixed_case(dev, s + 23, placement="peri", eps=0.0, eps_out=1e-2, activation="relu", out_scale=0.05),
            _fixed_case(dev, s + 24, placement="peri", eps=0.0, eps_out=1e-2, activation="gelu", out_scale=0.05),
            _fixed_case(dev, s + 25, placement="peri", eps=0.0, eps_out=1e-2, activation="gelu", out_scale=0.1,
                        n_tokens=1, **two),
            _fixed_case(dev, s + 26, placement="peri", eps=0.05, eps_out=1e-2, activation="relu", out_scale=0.1,
                        qk_scale=0.0, n_tokens=4, input_scale=0.3, **two),
        ]
    if placement == "post":
        return [
            _fixed_case(dev, s + 31, placement="post", eps=1e-2, gamma=0.1, out_scale=0.1, input_scale=0.1,
                        activation="relu"),
            _fixed_case(dev, s + 32, placement="post", eps=1e-2, gamma=0.1, out_scale=0.1, input_scale=0.1,
                        activation="gelu", qk_scale=0.0, n_tokens=3, **two),
            _fixed_case(dev, s + 33, placement="post", eps=0.0, activation="gelu", weight_scale=10.0, n_tokens=3,
                        **two),
        ]
    raise ValueError(f"placement must be 'pre', 'peri' or 'post', got {placement!r}")


def _cases(placement: str, ctx: Context, seed_offset: int) -> list[StackCase]:
    drawn: list[StackCase] = []
    run_over(init_cases(placement, ctx.device), drawn.append, examples=ctx.examples(8, 40), seed=ctx.seed + seed_offset)
    return _fixed_cases(placement, ctx) + drawn


def _internals_tally(traces) -> Tally:
    # a recomputation of the zoo's own sublayer: guards the measurement plumbing, not evidence for F5
    t = Tally(THEOREM, "recomputed h·W + b equals the zoo's F", "identity",
              tolerance="float64 matmul round-off (~1e-15 relative), 1e-12 leaves a 1000x margin",
              evidence="code-identity", instances="random")
    for trace, case in traces:
        t.identity(trace.recompute_error, 0.0, rtol=0.0, atol=1e-12, case=case.describe())
    return t


# ---- the checks ------------------------------------------------------------------------------------------------------
def check_f5_phi2(ctx: Context, *, phi2=gaussian_phi2) -> list[Tally]:
    """E[φ(z)²]: GELU quadrature = closed form (float, 13 variances over 6 decades), mpmath ladder at 30/60
    digits, and the value 0.42522 behind THEORY.md's example."""
    import mpmath

    qs = np.logspace(-3, 3, 13)
    t_float = Tally(THEOREM, "GELU E φ² quadrature = closed form (float)", "identity",
                    tolerance="quad asked for 2e-14 relative; 1e-13 covers it and the closed form's round-off",
                    evidence="independent", instances="exact")
    t_float.identity([phi2(float(q), "gelu") for q in qs], gelu_phi2_closed_form(qs), rtol=1e-13,
                     case=dict(q="logspace(-3, 3, 13)"))
    t_float.identity([phi2(float(q), "relu") for q in qs], qs / 2, rtol=1e-15, case=dict(activation="relu"))
    t_mp = Tally(THEOREM, "GELU E φ² at q = 1: mpmath 30 vs 60 digits vs closed form", "identity",
                 tolerance="precision ladder: 30-digit quad agrees with 60-digit closed form to 1e-28",
                 evidence="independent", instances="exact")
    old = mpmath.mp.dps
    try:
        mpmath.mp.dps = 30
        low = phi2(mpmath.mpf(1), "gelu")
        mpmath.mp.dps = 60
        exact = mpmath.mpf(1) / 3 + mpmath.sqrt(3) / (6 * mpmath.pi)
        high = phi2(mpmath.mpf(1), "gelu")
        t_mp.identity(float(abs(low - exact) * 1e28), 0.0, rtol=0.0, atol=1.0, case=dict(dps=30))
        t_mp.identity(float(abs(high - exact) * 1e58), 0.0, rtol=0.0, atol=1.0, case=dict(dps=60))
        t_mp.note(value_60_digits=mpmath.nstr(high, 40))
    finally:
        mpmath.mp.dps = old
    # THEORY.md quotes 0.42522 (5 digits) and 27.214 = 64·0.42522: the quoted digits are right.
    t_mp.identity(phi2(1.0, "gelu"), 0.42522, rtol=0.5e-5 / 0.42522, case=dict(quoted="0.42522"))
    return [t_float, t_mp]


def check_f5_example(ctx: Context, *, phi2=gaussian_phi2, mlp_moment=mlp_output_second_moment) -> list[Tally]:
    """THEORY.md's example: pre-LN, d = 64, m = 256, W₁ ~ N(0, 1/d), W₂ ~ N(0, 1/(4d)), GELU, ε = 0:
    E‖F(N(x))‖² = d·E[GELU(z)²] = 27.214, measured as the mean of ‖F‖² over independent instances."""
    cfg = StackConfig(d=EXAMPLE_D, placement="pre", sublayers=("mlp",), eps=0.0, activation="gelu", beta=0.0,
                      device=ctx.device)
    chunks = ctx.examples(2, 8)
    samples = []
    for c in range(chunks):  # each chunk: one batched computation over EXAMPLE_INSTANCES instances
        case = StackCase(cfg=cfg, n_instances=EXAMPLE_INSTANCES, n_tokens=EXAMPLE_TOKENS, seed=ctx.seed + 101 + c)
        samples.append(_per_instance(measure(case).f_sq[0]))
    samples = np.concatenate(samples)
    v = _variances(cfg, "mlp")
    theory = float(mlp_moment(cfg.d, cfg.hidden, v["w1_var"], v["w2_var"], cfg.gamma**2 * cfg.d, "gelu",
                              v["b1_var"], v["b2_var"], phi2=phi2))
    band = mean_band(samples, false_alarm=DEFAULT_FALSE_ALARM)
    t = Tally(THEOREM, "pre example d=64 GELU: E‖F‖² = 27.214", "band",
              tolerance=f"Student-t band, false alarm {DEFAULT_FALSE_ALARM:g}", evidence="independent",
              instances="random")
    t.band(band.estimate, theory, band.halfwidth,
           case=dict(d=64, hidden=256, instances=len(samples), tokens=EXAMPLE_TOKENS,
                     samples=len(samples) * EXAMPLE_TOKENS))
    se = float(np.std(samples, ddof=1) / math.sqrt(len(samples)))
    t.note(theory=theory, estimate=band.estimate, standard_error=se, halfwidth=band.halfwidth,
           quoted_mc=EXAMPLE_QUOTED, quoted_within_2se=abs(EXAMPLE_QUOTED[0] - theory) <= 2 * EXAMPLE_QUOTED[1])
    return [t]


def _pre_closed_branch(case: StackCase, phi2, mlp_moment, attn_moment) -> list[float]:
    """E‖F_k‖² (token-averaged) for as many leading steps as the configuration alone determines."""
    cfg, n = case.cfg, case.n_tokens
    g2d = cfg.gamma**2 * cfg.d
    out = []
    for k in range(cfg.n_steps):
        kind = cfg.step_kind(k)
        v = _variances(cfg, kind)

        def mlp(us):
            return mlp_moment(cfg.d, cfg.hidden, v["w1_var"], v["w2_var"], us, cfg.activation, v["b1_var"],
                              v["b2_var"], phi2=phi2)

        def row_expect(func):  # E func(‖N(x_0)‖²) over the Gaussian input law
            return gaussian_row_norm_expect(func, cfg.d, cfg.gamma, cfg.eps, case.input_scale**2, case.input_mean,
                                            cfg.norm)

        if kind == "mlp" and cfg.eps == 0:
            out.append(float(mlp(np.array([g2d]))[0]))
        elif kind == "mlp" and k == 0:
            out.append(row_expect(mlp))
        elif kind == "attn" and n == 1 and (cfg.eps == 0 or k == 0):
            row_sq = g2d if cfg.eps == 0 else row_expect(lambda us: us)
            out.append(float(attn_moment(cfg.d, v["wv_var"], v["wo_var"], row_sq, v["bo_var"])))
        elif kind == "attn" and k == 0 and cfg.qk_scale == 0 and (cfg.norm == "layer" or case.input_mean == 0):
            row_sq = row_expect(lambda us: us)
            per_token = [attn_moment(cfg.d, v["wv_var"], v["wo_var"],
                                     uniform_attention_mixed_sq(row_sq, i + 1 if cfg.causal else n), v["bo_var"])
                         for i in range(n)]
            out.append(float(np.mean(per_token)))
        else:
            break
    return out


def check_f5_pre(ctx: Context, *, phi2=gaussian_phi2, mlp_moment=mlp_output_second_moment,
                 attn_moment=attention_output_second_moment, pre_moments=pre_second_moments) -> list[Tally]:
    """pre: E‖x_{k+1}‖² = E‖x_k‖² + Δt_k²·E‖F_k(N(x_k))‖², closed form and conditional, MLP and attention."""
    closed, cond, traces = BandSet(), BandSet(), []
    for case in _cases("pre", ctx, 1):
        cfg, tr = case.cfg, measure(case)
        traces.append((tr, case))
        desc = case.describe()
        inc = _per_instance(tr.x_sq - tr.x_sq[0])  # (K+1, I): ‖x_k‖² − ‖x_0‖²
        branch = _pre_closed_branch(case, phi2, mlp_moment, attn_moment)
        if branch:
            kc = len(branch)
            # the branch moment itself (low variance) and the recursion (which also needs E⟨x_k, F_k⟩ = 0)
            closed.add(_per_instance(tr.f_sq[:kc]).T, np.asarray(branch),
                       roundoff=ROUNDOFF_RTOL * np.asarray(branch), case=dict(desc, compared="E‖F_k‖²"))
            theory = pre_moments(0.0, cfg.dts[:kc], np.asarray(branch))[1:]
            closed.add(inc[1:kc + 1].T, theory,
                       roundoff=ROUNDOFF_RTOL * (kc + 1) * _per_instance(tr.x_sq[1:kc + 1]).mean(-1),
                       case=dict(desc, compared="E‖x_k‖² − E‖x_0‖²"))
        b_rows = np.empty_like(tr.u_sq)
        for k in range(cfg.n_steps):
            kind = cfg.step_kind(k)
            v = _variances(cfg, kind)
            if kind == "mlp":
                b_rows[k] = mlp_moment(cfg.d, cfg.hidden, v["w1_var"], v["w2_var"], tr.u_sq[k], cfg.activation,
                                       v["b1_var"], v["b2_var"], phi2=phi2)
            else:
                b_rows[k] = attn_moment(cfg.d, v["wv_var"], v["wo_var"], tr.mixed_sq[k], v["bo_var"])
        cond.add(_per_instance(tr.f_sq - b_rows).T, _per_instance(b_rows).mean(-1),
                 estimate=_per_instance(tr.f_sq).mean(-1), roundoff=ROUNDOFF_RTOL * _per_instance(tr.f_sq).mean(-1),
                 case=dict(desc, compared="E[‖F_k‖² | N(x_k)]"))
        pred = pre_moments(tr.x_sq[0], cfg.dts, np.moveaxis(b_rows, 0, -1))  # (I, n, K+1)
        pred = np.moveaxis(pred, -1, 0)[1:]  # (K, I, n)
        diff = _per_instance(tr.x_sq[1:] - pred).T  # (I, K)
        cond.add(diff, _per_instance(pred - tr.x_sq[0]).mean(-1), estimate=inc[1:].mean(-1),
                 roundoff=ROUNDOFF_RTOL * (cfg.n_steps + 1) * _per_instance(tr.x_sq[1:]).mean(-1),
                 case=dict(desc, compared="E‖x_k‖² − E‖x_0‖²"))
    fa = f"Student-t band, false alarm {DEFAULT_FALSE_ALARM:g} per tally, Bonferroni over its comparisons"
    t_closed = closed.record(Tally(THEOREM, "pre recursion, closed form (ε=0; first step ε>0)", "band", tolerance=fa,
                                   evidence="independent", instances="random"))
    t_cond = cond.record(Tally(THEOREM, "pre recursion, conditional on N(x_k) (all ε)", "band", tolerance=fa,
                               evidence="independent", instances="random"))
    return [t_closed, t_cond, _internals_tally(traces)]


def check_f5_peri(ctx: Context, *, peri_moments=peri_second_moments, rho=chi2_rho, mlp_rho=mlp_output_rho,
                  attn_rho=attention_output_rho_single_token, phi2=gaussian_phi2) -> list[Tally]:
    """peri (β_out = 0): E‖x_{k+1}‖² = E‖x_k‖² + Δt_k²γ²dρ_k; ρ = 1 at ε_out = 0 whatever the weights."""
    closed, cond, traces = BandSet(), BandSet(), []
    for case in _cases("peri", ctx, 2):
        cfg, tr = case.cfg, measure(case)
        traces.append((tr, case))
        desc = case.describe()
        desc.update(eps_out=cfg.eps_output, out_scale=cfg.out_scale)
        inc = _per_instance(tr.x_sq - tr.x_sq[0])
        # closed form: needs ‖N_in(x)‖² = γ²d (ε_in = 0) and a branch whose output law is known (MLP, 1 token)
        if cfg.eps == 0 and (all(k == "mlp" for k in cfg.sublayers) or case.n_tokens == 1):
            g2d = cfg.gamma**2 * cfg.d
            rhos, allow = [], []
            for k in range(cfg.n_steps):
                kind = cfg.step_kind(k)
                v = _variances(cfg, kind)
                if kind == "mlp":
                    args = (cfg.d, cfg.hidden, v["w1_var"], v["w2_var"], g2d, cfg.eps_output, cfg.activation,
                            v["b1_var"], v["b2_var"], cfg.norm)
                    rhos.append(mlp_rho(*args, rho=rho, phi2=phi2))
                    allow.append(mlp_output_rho_allowance(*args))
                else:
                    rhos.append(attn_rho(cfg.d, v["wv_var"], v["wo_var"], g2d, cfg.eps_output, v["bo_var"], cfg.norm,
                                         rho=rho))
                    allow.append(1e-12)  # exact up to the certified quadrature
            # E‖N_out(F_k)‖² = γ²dρ_k itself (low variance), then the recursion (which also needs the cross term)
            dts2 = np.asarray(cfg.dts) ** 2
            closed.add((_per_instance(tr.update_sq) / dts2[:, None]).T,
                       np.diff(peri_moments(0.0, 1.0, cfg.gamma, cfg.d, np.asarray(rhos))),
                       bias=g2d * np.asarray(allow), roundoff=_update_roundoff(tr, dts2),
                       case=dict(desc, compared="E‖N_out(F_k)‖²"))
            theory = peri_moments(0.0, cfg.dts, cfg.gamma, cfg.d, np.asarray(rhos))[1:]
            bias = np.cumsum(dts2 * g2d * np.asarray(allow))
            closed.add(inc[1:].T, theory, bias=bias,
                       roundoff=ROUNDOFF_RTOL * (cfg.n_steps + 1) * _per_instance(tr.x_sq[1:]).mean(-1),
                       case=dict(desc, compared="E‖x_k‖² − E‖x_0‖²"))
        rho_rows = np.empty_like(tr.h_sq)
        for k in range(cfg.n_steps):
            kind = cfg.step_kind(k)
            rho_rows[k] = rho(_out_var(cfg, kind, tr.h_sq[k]), cfg.d, cfg.eps_output, cfg.norm)
        pred = np.moveaxis(peri_moments(tr.x_sq[0], cfg.dts, cfg.gamma, cfg.d, np.moveaxis(rho_rows, 0, -1)), -1, 0)
        step_pred = pred[1:] - pred[:-1]  # (K, I, n): Δt_k²γ²dρ_k per row
        cond.add(_per_instance(tr.update_sq - step_pred).T, _per_instance(step_pred).mean(-1),
                 estimate=_per_instance(tr.update_sq).mean(-1), roundoff=_update_roundoff(tr, 1.0),
                 case=dict(desc, compared="E[‖Δt N_out(F_k)‖² | h]"))
        pred = pred[1:]
        diff = _per_instance(tr.x_sq[1:] - pred).T
        cond.add(diff, _per_instance(pred - tr.x_sq[0]).mean(-1), estimate=inc[1:].mean(-1),
                 roundoff=ROUNDOFF_RTOL * (cfg.n_steps + 1) * _per_instance(tr.x_sq[1:]).mean(-1),
                 case=dict(desc, compared="E‖x_k‖² − E‖x_0‖²"))
    fa = (f"Student-t band, false alarm {DEFAULT_FALSE_ALARM:g} per tally, Bonferroni; "
          "GELU ρ adds its delta-method allowance")
    t_closed = closed.record(Tally(THEOREM, "peri recursion, closed-form ρ (ε_in=0)", "band", tolerance=fa,
                                   evidence="independent", instances="random"))
    t_cond = cond.record(Tally(THEOREM, "peri recursion, ρ conditional on h (all ε)", "band", tolerance=fa,
                               evidence="independent", instances="random"))
    return [t_closed, t_cond, _internals_tally(traces)]


def check_f5_post(ctx: Context, *, post_moment=post_second_moment, nc_rho=noncentral_chi2_rho) -> list[Tally]:
    """post (β = 0): E‖x_k‖² = γ²dρ_k for k ≥ 1 — every row exactly at ε = 0; at ε > 0 with ρ_k conditional on
    (x_{k−1}, h) from the noncentral chi-square law of the residual sum's row statistic."""
    cond, traces, min_rho = BandSet(), [], 1.0
    t_exact = Tally(THEOREM, "post ε=0: ‖x_k‖² = γ²d on every row", "identity",
                    tolerance=f"{ROUNDOFF_RTOL:g} relative: float64 round-off of a d-term sum of squares, 10x margin",
                    evidence="independent", instances="random")
    for case in _cases("post", ctx, 3):
        cfg, tr = case.cfg, measure(case)
        traces.append((tr, case))
        desc = case.describe()
        a_rows = np.empty_like(tr.h_sq)
        for k in range(cfg.n_steps):
            a_rows[k] = cfg.dts[k] ** 2 * _out_var(cfg, cfg.step_kind(k), tr.h_sq[k])
        rho_rows = nc_rho(a_rows, tr.signal, cfg.d, cfg.eps, cfg.norm)
        pred = post_moment(cfg.gamma, cfg.d, rho_rows)  # (K, I, n)
        if cfg.eps == 0:
            t_exact.identity(tr.x_sq[1:], pred, rtol=ROUNDOFF_RTOL, case=desc)
            continue
        diff = _per_instance(tr.x_sq[1:] - pred).T
        cond.add(diff, _per_instance(pred).mean(-1), estimate=_per_instance(tr.x_sq[1:]).mean(-1),
                 roundoff=ROUNDOFF_RTOL * _per_instance(tr.x_sq[1:]).mean(-1), case=desc)
        cond.entries[-1]["case"]["min_rho"] = float(np.min(rho_rows))
        min_rho = min(min_rho, float(np.mean(rho_rows)))
    t_cond = cond.record(Tally(THEOREM, "post ε>0: E‖x_k‖² = γ²d·E[ρ], ρ conditional", "band",
                               tolerance=f"Student-t band, false alarm {DEFAULT_FALSE_ALARM:g} per tally, Bonferroni",
                               evidence="independent", instances="random"))
    t_cond.note(min_rho=min_rho)  # the smallest case-average ρ: how far below 1 (ρ-free) the checked cases go
    return [t_exact, t_cond, _internals_tally(traces)]


@register(
    THEOREM,
    title="second moments at initialisation (pre / peri / post)",
    statement=("at init with independent layers and sign-symmetric output weights: pre E‖x_{k+1}‖² = E‖x_k‖² + "
               "Δt_k²E‖F(N(x_k))‖² (closed form via E[φ(z)²]); peri E‖x_{k+1}‖² = E‖x_k‖² + Δt_k²γ²dρ_k "
               "(ρ = 1 at ε_out = 0, weight-free); post E‖x_k‖² = γ²dρ_k"),
    provenance="paper claims K2, K3, our statement",
    theory=("theory.init_moments.gaussian_phi2", "theory.init_moments.mlp_output_second_moment",
            "theory.init_moments.attention_output_second_moment", "theory.init_moments.pre_second_moments",
            "theory.init_moments.peri_second_moments", "theory.init_moments.post_second_moment",
            "theory.init_moments.chi2_rho", "theory.init_moments.noncentral_chi2_rho",
            "theory.init_moments.mlp_output_rho"),
    tests=("tests/test_init_moments.py",),
)
def check_f5(ctx: Context, **theory) -> list[Tally]:
    """Every F5 check; keyword arguments are passed to the parts that accept them (wrong-theory injection)."""
    import inspect

    tallies = []
    for part in (check_f5_phi2, check_f5_example, check_f5_pre, check_f5_peri, check_f5_post):
        accepted = inspect.signature(part).parameters
        tallies += part(ctx, **{k: v for k, v in theory.items() if k in accepted})
    return tallies
