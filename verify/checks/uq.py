"""Registered check for U1: the flow map's Lipschitz bound and Wasserstein push-forward, with exact optimal transport.

Random zoo stacks (none, pre, peri, post; one token, so attention is affine and every sublayer has a global
Jacobian bound) push two empirical point clouds μ, ν of N points in R^d through the stack — one batched forward
pass per draw, the clouds riding in a batch axis. Measured:

- every pairwise quotient ‖T(x) − T(y)‖/‖x − y‖ over the 2N points ≤ Π_k L_k (``theory.uq``);
- W_p(T#μ, T#ν) ≤ Π_k L_k · W_p(μ, ν) for p ∈ {1, 2}, with W_p between equal-size uniform clouds computed
  *exactly* as an assignment problem (Birkhoff: an optimal plan is a permutation) by
  ``scipy.optimize.linear_sum_assignment``.

Witness: a none stack of linear one-token steps I + Δt_k W_k, W_k symmetric with a shared top eigenvector e, and
ν = μ + δe: both W_p ratios equal Π(1 + Δt_k‖W_k‖) — the bound is attained. Every theory function is a keyword
argument (the meta-test in tests/test_uq.py injects a square-rooted bound and watches the check fail).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from theory.uq import (
    flow_lipschitz_bound,
    step_lipschitz_bounds,
    wasserstein_pushforward_bound,
)
from verify.checks.criterion import stack_sublayer_norms
from verify.checks.record import Tally
from verify.checks.registry import Context, register
from verify.engine.strategies import log_uniform, run_over
from verify.engine.zoo import Stack, StackConfig

# A measured distance ratio against a product of K ≤ 6 per-step constants: the distances carry ≲ (K+1)(d + d_mlp +
# 8)·u ≈ 7·40·1.1e-16 ≈ 3e-14 relative round-off, the assignment's mean adds N ulps; 1e-10 relative is far above
# that and far below any wrong theory (the meta-test's square-rooted bound is off by a factor ≥ 1.5 on the witness).
ROUNDOFF_RTOL = 1e-10
# The witness attains the bound exactly up to round-off (ratio 1 − O(1e-15)); 0.999 is stricter than the suite's
# 0.99 because nothing but round-off separates it from 1.
WITNESS_THRESHOLD = 0.999
# The pre witness is linear only to first order about its base point: the ratio is 1 − O((δ + ρ)²/ε) ≈ 1 − 1e-6
# with δ = 1e-4, ρ = 1e-5, ε = 1e-2 (check_u1), so 0.99 leaves four orders of margin for the expansion and round-off
# (the distances there are ~1e-4 against entries ~3: relative round-off ~3·u/1e-4 ≈ 1e-11).
PRE_WITNESS_THRESHOLD = 0.99


def empirical_wasserstein(x: np.ndarray, y: np.ndarray, p: int) -> float:
    """Exact W_p between the uniform empirical measures on the rows of x and y (same count N).

    An optimal coupling of two uniform N-point measures can be taken to be a permutation (Birkhoff–von Neumann), so
    W_p^p = min_σ (1/N) Σ_i ‖x_i − y_σ(i)‖^p — a linear assignment problem, solved exactly (Hungarian method).
    """
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"x and y must be (N, D) arrays of the same shape, got {x.shape} and {y.shape}")
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p!r}")
    cost = cdist(x, y) ** p
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean() ** (1.0 / p))


@st.composite
def uq_cases(draw, device: str = "cpu", placements=("none", "pre", "peri", "post")):
    placement = draw(st.sampled_from(list(placements)))
    d = draw(st.integers(2, 8))
    subl = draw(st.sampled_from([("attn", "mlp"), ("mlp",), ("attn",)]))
    n_blocks = draw(st.integers(1, max(1, 6 // len(subl))))
    K = n_blocks * len(subl)
    heads = draw(st.sampled_from([h for h in (2, 1) if d % h == 0]))  # non-default first (issue 11 §1)
    cfg = StackConfig(
        d=d, n_blocks=n_blocks, placement=placement, n_heads=heads, sublayers=subl, d_mlp=2 * d,
        norm=draw(st.sampled_from(["layer", "rms"])), eps=draw(log_uniform(1e-3, 1.0)),
        eps_out=draw(log_uniform(1e-3, 1.0)), gamma=draw(log_uniform(0.5, 2.0)), beta=draw(st.sampled_from([0.0, 0.3])),
        activation=draw(st.sampled_from(["relu", "gelu"])), weight_scale=draw(log_uniform(0.1, 2.0, first=0.5)),
        bias_std=draw(st.sampled_from([0.2, 0.0])),  # non-default first: hypothesis tries it first
        dt=tuple(draw(st.lists(log_uniform(0.01, 1.0), min_size=K, max_size=K))), device=device,
    )
    case = dict(cfg=cfg, seed=draw(st.integers(0, 2**31 - 1)), spread=draw(log_uniform(0.1, 3.0)),
                shift=draw(log_uniform(0.01, 3.0)), n_points=draw(st.sampled_from([16, 24])))
    # Drawn last so that the knobs above keep the examples they had (issue 11 §1). The Lipschitz bound reads the
    # drawn weights' norms, so any output scale is admitted (one token: causal and the logit scale have no effect).
    case["cfg"] = cfg.replace(out_scale=draw(st.sampled_from([0.5, 1.0, 2.0])))
    return case


def lipschitz_bound_of(stack: Stack, step_bounds: Callable, lipschitz: Callable) -> np.ndarray:
    """Per instance: Π_k L_k from the stack's weight norms (one token: every J_k is global)."""
    cfg = stack.cfg
    out = []
    for subl in stack_sublayer_norms(stack):
        jf = [s.jacobian_sup(0.0, 1) for s in subl]  # n = 1: affine attention, r-free
        lk = step_bounds(cfg.placement, cfg.dts, jf, gamma=abs(cfg.gamma), eps=cfg.eps, gamma_out=abs(cfg.gamma),
                         eps_out=cfg.eps_output)
        out.append(lipschitz(lk))
    return np.asarray(out, dtype=float)


def _push(stack: Stack, x: np.ndarray) -> np.ndarray:
    """T applied to points x of shape (I, P, d) (one token each), batched."""
    t = torch.as_tensor(x, dtype=torch.float64, device=stack.device).unsqueeze(-2)  # (I, P, 1, d)
    with torch.no_grad():
        y = stack(t)
    return y.squeeze(-2).to("cpu").numpy()


@register("U1", title="Lipschitz / Wasserstein uncertainty quantification",
          statement="Lip(T) ≤ Π_k L_k (L_k = 1 + Δt_k ℓ_k, ℓ_k from B2 with global constants; post (|γ|/√ε)(1 + ΔtJ)); "
                    "W_p(T#μ, T#ν) ≤ Lip(T)·W_p(μ, ν)",
          provenance="paper claim K6, our statement",
          theory=("theory.uq.step_lipschitz_bounds", "theory.uq.flow_lipschitz_bound",
                  "theory.uq.wasserstein_pushforward_bound"),
          tests=("tests/test_uq.py",))
def check_u1(ctx: Context, *, step_bounds: Callable = step_lipschitz_bounds, lipschitz: Callable = flow_lipschitz_bound,
             pushforward: Callable = wasserstein_pushforward_bound, parts=("random", "witness")) -> list[Tally]:
    tol = f"rtol {ROUNDOFF_RTOL:g}: distance round-off over ≤ 6 steps (module constant)"
    ev = dict(evidence="independent", instances="random")
    ev_w = dict(evidence="independent", instances="witness")
    lip = Tally("U1", "pairwise ‖T(x)−T(y)‖/‖x−y‖ ≤ Π L_k", "inequality", tol, **ev)
    w1 = Tally("U1", "W_1(T#μ, T#ν) ≤ Lip·W_1(μ, ν) (exact OT)", "inequality", tol, **ev)
    w2 = Tally("U1", "W_2(T#μ, T#ν) ≤ Lip·W_2(μ, ν) (exact OT)", "inequality", tol, **ev)
    w_wit = Tally("U1", "witness: W_p(T#μ, T#ν) ≤ Lip·W_p(μ, ν)", "inequality", tol, **ev_w)
    # The drawn stacks are close to the identity (Δt ≤ 1 log-uniform), where any Lipschitz bound is near 1; the
    # standard-initialisation stacks at Δt = 1 show how loose the product of per-step constants is in practice.
    std_lip = Tally("U1", "standard init, Δt = 1: pairwise quotients ≤ Π L_k", "inequality", tol, **ev)
    std_w = Tally("U1", "standard init, Δt = 1: W_p(T#μ, T#ν) ≤ Lip·W_p(μ, ν)", "inequality", tol, **ev)
    wit = Tally("U1", "witness: linear none stack, ν = μ + δe attains the bound", "witness",
                f"threshold {WITNESS_THRESHOLD}: equality up to round-off", **ev_w)
    wit_pre = Tally("U1", "witness: pre step at a zero-variance point, ν = μ + δv attains the bound (1/√ε)",
                    "witness", f"threshold {PRE_WITNESS_THRESHOLD}: attained up to O((δ + ρ)²/ε) ≈ 1e-6 relative", **ev_w)
    ratios: dict[str, list[float]] = {}

    def record(stack, mu, nu, case, witness=False, tallies=None, wit_tally=None):
        t_lip, t_w1, t_w2 = tallies or ((None, w_wit, w_wit) if witness else (lip, w1, w2))
        I, N, _ = mu.shape
        bound = lipschitz_bound_of(stack, step_bounds, lipschitz)
        both = _push(stack, np.concatenate([mu, nu], axis=1))
        t_mu, t_nu = both[:, :N], both[:, N:]
        pts = np.concatenate([mu, nu], axis=1)
        for i in range(I):
            c = dict(case, instance=i, bound=float(bound[i]))
            dx = cdist(pts[i], pts[i])
            dy = cdist(both[i], both[i])
            off = ~np.eye(2 * N, dtype=bool) & (dx > 0)
            q = dy[off] / dx[off]
            if t_lip is not None:
                t_lip.inequality(q, bound[i], rtol=ROUNDOFF_RTOL, case=c)
            for p, tally in ((1, t_w1), (2, t_w2)):
                w_in = empirical_wasserstein(mu[i], nu[i], p)
                w_out = empirical_wasserstein(t_mu[i], t_nu[i], p)
                b = pushforward(float(bound[i]), w_in)
                tally.inequality(w_out, b, rtol=ROUNDOFF_RTOL, case=dict(c, p=p))
                if witness:
                    thr = WITNESS_THRESHOLD if wit_tally is None else PRE_WITNESS_THRESHOLD
                    (wit_tally or wit).witness(w_out / b, threshold=thr, case=dict(c, p=p))
                elif tallies is None:
                    ratios.setdefault(case["placement"], []).append(w_out / b)

    if "random" in parts:
        def one(case):
            cfg = case["cfg"]
            stack = Stack(cfg, 3, seed=case["seed"])
            rng = np.random.default_rng(case["seed"])
            N, d = case["n_points"], cfg.d
            mu = case["spread"] * rng.standard_normal((3, N, d))
            nu = case["spread"] * rng.standard_normal((3, N, d)) * rng.uniform(0.5, 2.0) + \
                case["shift"] * rng.standard_normal((3, 1, d))
            record(stack, mu, nu, dict(placement=cfg.placement, norm=cfg.norm, d=d, steps=cfg.n_steps,
                                       sublayers=cfg.sublayers, eps=cfg.eps, seed=case["seed"]))

        for j, placement in enumerate(("none", "pre", "peri", "post")):  # stratified: every placement is drawn
            run_over(uq_cases(ctx.device, placements=(placement,)), one, examples=ctx.examples(3, 12),
                     seed=ctx.seed + 601 + j)
        for pl, r in ratios.items():
            w1.note(**{f"max_ratio_to_bound_{pl}": float(np.max(r))})
        for j, placement in enumerate(("pre", "peri", "post", "none")):
            cfg = StackConfig(d=8, n_blocks=3, placement=placement, n_heads=2, sublayers=("attn", "mlp"), d_mlp=16,
                              eps=1e-5, eps_out=1e-5, dt=1.0, device=ctx.device)
            seed = ctx.seed + 611 + j
            stack = Stack(cfg, 2, seed=seed)
            rng = np.random.default_rng(seed)
            mu = rng.standard_normal((2, 16, cfg.d))
            nu = rng.standard_normal((2, 16, cfg.d)) + 0.5
            record(stack, mu, nu, dict(placement=placement, init="standard", d=cfg.d, steps=cfg.n_steps, seed=seed),
                   tallies=(std_lip, std_w, std_w))
    if "witness" in parts:
        d, K = 8, 4
        v = np.where(np.arange(d) % 2 == 0, 1.0, -1.0) / math.sqrt(d)
        rng = np.random.default_rng(ctx.seed + 602)
        cfg = StackConfig(d=d, n_blocks=K, placement="none", sublayers=("attn",), n_heads=1,
                          dt=(0.3, 0.1, 0.5, 0.2), device=ctx.device)
        stack = Stack(cfg, 2, seed=3)
        with torch.no_grad():
            for k, step in enumerate(stack.steps):
                # symmetric, top eigenvector v with eigenvalue s_k, the rest of the spectrum in [−s_k/2, s_k/2]
                a = rng.standard_normal((2, d, d))
                a = a + a.transpose(0, 2, 1)
                p = np.eye(d) - np.outer(v, v)
                rest = p @ a @ p
                rest = rest / np.abs(np.linalg.eigvalsh(rest)).max(axis=-1)[:, None, None] * 0.5
                s_k = 0.5 + k
                w = s_k * (np.outer(v, v)[None] + rest)
                step.sublayer.W_v.copy_(torch.as_tensor(w))
                step.sublayer.W_o.copy_(torch.eye(d, dtype=torch.float64).expand(2, d, d))
                step.sublayer.b_o.copy_(torch.as_tensor(rng.standard_normal((2, d))))
        N = 16
        mu = rng.standard_normal((2, N, d))
        nu = mu + 0.7 * v
        record(stack, mu, nu, dict(placement="none", witness="linear-aligned"), witness=True)
        # Pre witness: the norm's 1/√ε is attained, so a pre bound without it fails here by construction (not by a
        # lucky draw). One pre step x + Δt·γ·N(x)·W_V (one token, W_V = sI, W_O = I, β = 0, no bias), μ a cloud
        # of spread ρ about the zero-variance point 3·1, ν = μ + δv with v ⊥ 1: at a zero-variance row LayerNorm's
        # Jacobian is γ/√ε times the centring projector, so T moves the cloud as the linear map I + (Δt s γ/√ε)P
        # up to O((δ + ρ)²/ε) relative, and W_p(Tμ, Tν) ≥ ‖mean Tν − mean Tμ‖ ≈ (1 + Δt s γ/√ε)δ = L·W_p(μ, ν)
        # (W_p(μ, ν) = δ exactly for a translate). With ε = 1e-2, Δt s γ = 0.5 the bound is L = 1 + 0.5·10 = 6 and
        # is attained to ~1e-7 (measured); the same bound with the norm treated as 1-Lipschitz is 1.5, 4× too small.
        eps_w, dt_w, s_w, delta, rho = 1e-2, 0.5, 1.0, 1e-4, 1e-5
        cfg = StackConfig(d=d, n_blocks=1, placement="pre", sublayers=("attn",), n_heads=1, norm="layer", eps=eps_w,
                          gamma=1.0, beta=0.0, bias=False, dt=dt_w, device=ctx.device)
        stack = Stack(cfg, 2, seed=4)
        with torch.no_grad():
            for step in stack.steps:
                step.sublayer.W_v.copy_(s_w * torch.eye(d, dtype=torch.float64).expand(2, d, d))
                step.sublayer.W_o.copy_(torch.eye(d, dtype=torch.float64).expand(2, d, d))
        mu = 3.0 + rho * rng.standard_normal((2, N, d))
        record(stack, mu, mu + delta * v, dict(placement="pre", witness="zero-variance point", eps=eps_w),
               witness=True, wit_tally=wit_pre)
    return [x for x in (lip, w1, w2, std_lip, std_w, w_wit, wit, wit_pre) if x.cases]
