"""F6 — trained pre-LN models under weight decay: stationarity identity, output-map tie, hidden-state envelope,
and the ill-posedness of the unregularised problem (statement and proofs: docs/theorems/F6.md).

The models are tiny (d = 6, two blocks = four residual steps, 8 sequences of 4 tokens, ε = 1e-2) so that they can
be optimised to a stationary point of E[loss] + (λ/2)‖θ‖² in float64 (``verify.training.train.fit_stationary``: L-BFGS,
then trust-region Newton with exact Hessians) — several λ at once, as independent instances of one batched
computation. On the stationary models every quantity of the theorem is measured by autograd: the output maps
W_k, ∂E[ℓ]/∂W_k, the activations h_k, the adjoints p_k, the exact step Jacobians A_j (``torch.func.jvp`` over a
basis, all instances and samples at once), and the achieved residual r_k = ‖∂J/∂W_k‖. The ill-posedness is
checked twice: exactly (the scale symmetry at ε = 0, on hypothesis-drawn pre-LN stacks) and as a measured trend
(tiny GPTs with trainable embeddings fitted at λ = 1e-1, 1e-2, 1e-3).

Tolerances (each next to its constant): float64 round-off for the inequalities and identities; the stationarity
identity's tolerance is the achieved gradient norm, which must itself be ≤ STATIONARITY_RTOL·λ‖θ‖.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch
from hypothesis import strategies as st

from theory.forward import peri_norm_bound
from theory.norms import norm_output_bound
from theory.trained import (
    activation_bound_attention,
    activation_bound_mlp,
    attention_balance_residual,
    output_map_norm_bound,
    pre_scale_symmetry,
    pre_weight_energy_bound,
    stationary_weight,
    trained_pre_depth_free_bound,
    trained_pre_envelope,
    trained_pre_envelope_from_backward,
    trained_pre_envelope_uniform,
)
from verify.checks.record import Tally
from verify.checks.registry import Context, register
from verify.engine.strategies import log_uniform, run_over, stack_cases
from verify.engine.zoo import StackConfig, _bmat
from verify.training.monitors import step_activation
from verify.training.train import FullBatchProblem, fit_stationary

# The solver stops when every instance has ‖∇J‖₂ ≤ GTOL (float64 round-off in ∇J is ~1e-15·‖θ‖), or after its
# iteration budget; what it achieved is then held to STATIONARITY_RTOL.
GTOL = 1e-10
# Stationarity reached: ‖∇J_i‖ ≤ 1e-6·λ_i‖θ_i‖. The identity's tolerance is then ≤ 1e-6 of the weights, far
# below the 10% a wrong constant (or a missing ½ in the decay term) would produce.
STATIONARITY_RTOL = 1e-6
# Inequalities assembled from measured float64 quantities (norms, sums over ≤ 10³ terms): relative round-off
# ≲ 1e-13; 1e-9 keeps 10⁴ headroom while any real violation (≥ 1e-3 relative) fails.
ROUNDOFF_RTOL = 1e-9
# Witness: on a single-sample, single-token model each step of the chain is an equality up to the residual
# r/(Δt‖h‖‖p‖) ≤ 1e-8, so the measured/bound ratio must be ≥ 0.99 (a 10% smaller constant gives 1.11).
WITNESS_THRESHOLD = 0.99
# Scale symmetry at ε = 0: LayerNorm of c·X against X in float64 through ≤ 64 steps: relative error
# ≲ 64·1e-15·(condition of the normalisation) — 1e-9 leaves room for ill-conditioned rows (σ ≪ |μ|).
SYMMETRY_RTOL = 1e-9

# The GPT-like ill-posedness sweep: ε = 1e-5 as in real models (no certified stationarity is needed for a trend).
ILLPOSED_SHAPE = (("d", 8), ("d_mlp", 16), ("eps", 1e-5))
ILLPOSED_LAMS = (1e-1, 1e-2, 1e-3)
ILLPOSED_ITERS = {"quick": 300, "full": 3000}
# The pre-LN growth of max‖x_K‖ from λ = 1e-1 to 1e-3 that counts as "grows": measured over the problem seeds
# 50, 83, …, 9917 (300 of them, quick level) pre grows 9.8–138× (0.5 % quantile 10.1, median 34; the soak also drew
# problem seeds 9853 and 6051 at 9.3× and 8.1×), while peri — whose increments F2 bounds, the no-growth placement —
# moves 0.76–2.9×. 4 lies between the two: no pre draw below it (≈ 380 seen), no peri draw above it (300). Until
# 2026-12-04 it was 10, from a single-seed "≈ 10²" that the distribution does not bear out (2 of 20 soak rounds).
ILLPOSED_X_GROWTH = 4.0

# The tiny models: every instance of a problem is one λ (and one seed).
# ε = 1e-2: the LayerNorm's curvature scales like 1/√(σ² + ε); with ε = 1e-5 the optimiser drives some rows
# to near-zero variance and the Hessian becomes too ill-conditioned to certify stationarity in a test's time
# (measured: ‖∇J‖ stalls at 1e-1..1e0). The theorem holds for every ε ≥ 0; the ill-posedness sweep uses 1e-5.
F6_SHAPE = dict(d=6, n_blocks=2, n_heads=2, d_mlp=12, eps=1e-2)
F6_DATA = dict(n_samples=8, n_tokens=4, vocab=4)


def f6_config(placement: str = "pre", dt=1.0, **kw) -> StackConfig:
    shape = {**F6_SHAPE, **kw}
    return StackConfig(placement=placement, dt=dt, bias=False, causal=True, final_norm=True, **shape)


# Precomputed solutions for the default tier (``python -m verify.checks.trained --refresh-cache`` rewrites them;
# about two minutes on one idle core). A cached θ is only a starting point: its gradient is recomputed, and an entry that
# does not match the problem's shape or is not stationary is polished or re-solved from scratch.
CACHE = Path(__file__).with_name("trained_f6_cache.npz")


def _cache_key(*args) -> str:
    return repr(args)


def _load_cached(key: str, n_params: int) -> torch.Tensor | None:
    if not CACHE.is_file():
        return None
    with np.load(CACHE) as z:
        if key not in z.files or z[key].shape[1] != n_params:
            return None
        return torch.from_numpy(z[key].copy())


@functools.lru_cache(maxsize=16)
def stationary_models(lams: tuple[float, ...], seed: int, dt: float = 1.0, lbfgs_iters: int = 800,
                      newton_iters: int = 15, placement: str = "pre", embeddings: bool = False,
                      shape: tuple = (), data: tuple = (), trainable: tuple[str, ...] | None = None,
                      use_cache: bool = True):
    """Fit one batched problem (one instance per λ) to stationarity; memoised, since the meta-tests reuse it.

    With ``use_cache`` a precomputed solution (``CACHE``) is the starting point when one exists for exactly these
    arguments: if it is already stationary (‖∇J_i‖ ≤ STATIONARITY_RTOL·λ_i‖θ_i‖, or, for a pure L-BFGS run
    with ``newton_iters = 0``, as stored) it is used as is; otherwise Newton polishes it.
    """
    from torch.func import grad

    cfg = f6_config(placement, dt, **dict(shape))
    prob = FullBatchProblem(cfg, list(lams), seed=seed, embeddings=embeddings, trainable=trainable,
                            **{**F6_DATA, **dict(data)})
    key = _cache_key(lams, seed, dt, lbfgs_iters, newton_iters, placement, embeddings, shape, data, trainable)
    cached = _load_cached(key, prob.n_params) if use_cache else None
    if cached is not None:
        g = grad(lambda t: prob.objective(t).sum())(cached)
        rel = g.norm(dim=1) / (prob.lam * cached.norm(dim=1))
        if newton_iters == 0 or bool((rel <= STATIONARITY_RTOL).all()):
            return prob, cached, g, {"newton_iterations": 0, "grad_norm": g.norm(dim=1).tolist(), "cached": True}
        theta, grad_j, info = fit_stationary(prob.objective, cached, 0, newton_iters, GTOL)
        theta, grad_j, info = _polish(prob, theta, grad_j, info, newton_iters)
        return prob, theta, grad_j, {**info, "cached": True}
    theta, grad_j, info = fit_stationary(prob.objective, prob.theta0, lbfgs_iters, newton_iters, GTOL)
    theta, grad_j, info = _polish(prob, theta, grad_j, info, newton_iters)
    return prob, theta, grad_j, {**info, "cached": False}


# Newton rounds beyond the first ``newton_iters`` for an instance that is not yet stationary: from some seeds the
# trust region needs a few more steps before its quadratic phase (soak seed 498736863 → problem seed 6863, λ = 0.03:
# relative residual 1.6e-5 after 15 iterations, 6e-12 after 18). A budget, not a tolerance: the stationarity tally
# still asserts ‖∇J‖ ≤ 1e-6·λ‖θ‖ on what comes back.
EXTRA_NEWTON_ROUNDS = 3


def _polish(prob, theta, grad_j, info, newton_iters):
    if newton_iters == 0:
        return theta, grad_j, info
    total = info.get("newton_iterations", 0)
    for _ in range(EXTRA_NEWTON_ROUNDS):
        rel = grad_j.norm(dim=1) / (prob.lam * theta.norm(dim=1))
        if bool((rel <= STATIONARITY_RTOL).all()):
            break
        theta, grad_j, more = fit_stationary(prob.objective, theta, 0, newton_iters, GTOL)
        total += more.get("newton_iterations", 0)
        info = {**more, "newton_iterations": total}
    return theta, grad_j, info


def refresh_cache(ctx: Context | None = None) -> list[str]:
    """Solve the default tier's problems from scratch and store their θ in ``CACHE``."""
    ctx = ctx or Context()
    calls = [((_lams(ctx), ctx.seed % 10_000), {})] + [
        ((ILLPOSED_LAMS, ctx.seed % 10_000 + 50),
         dict(lbfgs_iters=ILLPOSED_ITERS["quick"], newton_iters=0, placement=p, embeddings=True, shape=ILLPOSED_SHAPE))
        for p in ("pre", "peri")]
    store = {}
    for args, kw in calls:
        stationary_models.cache_clear()
        prob, theta, _, _ = stationary_models(*args, **kw, use_cache=False)
        full = dict(dt=1.0, lbfgs_iters=800, newton_iters=15, placement="pre", embeddings=False, shape=(), data=(),
                    trainable=None)
        full.update(kw)
        key = _cache_key(*args, *full.values())
        store[key] = theta.numpy()
    np.savez_compressed(CACHE, **store)
    stationary_models.cache_clear()
    return list(store)


@functools.lru_cache(maxsize=16)
def stationary_measurement(*args, **kw) -> dict:
    """``measure`` on ``stationary_models(*args, **kw)``, plus fresh-input displacements; cached likewise."""
    prob, theta, _, _ = stationary_models(*args, **kw)
    m = measure(prob, theta)
    m["fresh"] = fresh_displacements(prob, theta, 101 + int(args[1]))
    return m


# ---- measuring the theorem's quantities on a fitted problem ------------------------------------------------------
def _output_map_name(prob: FullBatchProblem, k: int) -> str:
    step = prob.stack.steps[k]
    return f"steps.{k}.sublayer." + ("W_o" if step.kind == "attn" else "W2")


def step_jacobian_norms(step, x: torch.Tensor) -> torch.Tensor:
    """‖A‖₂ of the step map X ↦ X⁺ for every instance and sample: x (I, N, T, d) → (I, N).

    A step acts on each (instance, sample) separately, so one forward-mode pass per basis direction of R^{T×d},
    set in every (instance, sample) at once, yields every Jacobian block.
    """
    from torch.func import jvp, vmap

    I, N, T, d = x.shape
    basis = torch.eye(T * d, dtype=x.dtype).view(T * d, 1, 1, T, d).expand(T * d, I, N, T, d)
    cols = vmap(lambda e: jvp(step, (x,), (e,))[1])(basis)  # (Td, I, N, T, d): column j of each block
    jac = cols.reshape(T * d, I, N, T * d).permute(1, 2, 3, 0)  # (I, N, out, in)
    return torch.linalg.matrix_norm(jac, ord=2)


def measure(prob: FullBatchProblem, theta: torch.Tensor) -> dict:
    """Everything F6 needs, per instance (arrays with a leading instance axis)."""
    from torch.func import grad

    I, T = prob.I, prob.n_tokens
    K = prob.cfg.n_steps
    lam = prob.lam.numpy()
    g_loss = grad(lambda t: prob.loss(t).sum())(theta)  # ∂E[ℓ_i]/∂θ_i, stacked
    aux = prob.load(theta)
    x0 = prob.inputs({**prob.fixed, **prob.unflatten(theta)}).detach()
    steps = prob.stack.steps
    with torch.enable_grad():
        states = [x0.clone().requires_grad_(True)]
        for s in steps:
            states.append(s(states[-1]))
        for s in states:
            s.retain_grad()
        out = prob.stack.final(states[-1])
        logits = out @ aux["head"].view(I, 1, prob.cfg.d, prob.vocab)
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, prob.vocab), prob.targets.reshape(-1),
                                               reduction="none").view(I, -1).mean(1)
        ce.sum().backward()
    # grad of the mean loss w.r.t. sample b's state is p^(b)/N (p^(b) the per-sample adjoint), so
    # E_b[Σ_t ‖h‖‖p^(b)‖] = Σ_b Σ_t ‖h‖‖grad‖ and E_b‖p_K^(b)‖_F = Σ_b ‖grad_K^(b)‖_F.
    grads = [s.grad.detach() for s in states]
    r_norm = norm_output_bound(prob.cfg.d, 1.0, 0.0)  # N1: frozen γ = 1, β = 0, any ε ≥ 0
    rec = {k: [] for k in ("W", "W_norm", "grad_loss", "resid", "act_adj", "h_closed", "h_data", "branch_err",
                           "jac")}
    with torch.no_grad():
        for k, s in enumerate(steps):
            x = states[k].detach()
            h = step_activation(s, x)  # (I, N, T, m)
            name = _output_map_name(prob, k)
            sl = prob.flat_index(name)
            W = theta[:, sl]
            gW = g_loss[:, sl]
            rec["W"].append(W.numpy())
            rec["W_norm"].append(W.norm(dim=1).numpy())
            rec["grad_loss"].append(gW.numpy())
            rec["resid"].append((gW + prob.lam[:, None] * W).norm(dim=1).numpy())
            rec["act_adj"].append((h.norm(dim=-1) * grads[k + 1].norm(dim=-1)).sum(dim=(1, 2)).numpy())
            Wm = W.view(I, *prob.shapes[name])
            branch = s.dt * (h @ _bmat(Wm, h))
            rec["branch_err"].append(float(((states[k + 1].detach() - x) - branch).abs().max()
                                           / (branch.abs().max() + 1e-300)))
            if s.kind == "mlp":
                w1 = torch.linalg.matrix_norm(s.sublayer.W1, ord=2).numpy()
                rec["h_closed"].append(activation_bound_mlp(r_norm, w1))
            else:
                dh = prob.cfg.head_dim
                wv = s.sublayer.W_v.view(I, prob.cfg.d, prob.cfg.n_heads, dh).permute(0, 2, 1, 3)
                rec["h_closed"].append(activation_bound_attention(r_norm, torch.linalg.matrix_norm(wv, ord=2).numpy()))
            rec["h_data"].append(h.norm(dim=-1).amax(dim=(1, 2)).numpy())
            rec["jac"].append(step_jacobian_norms(s, x).numpy())
    disp = torch.stack([(st_.detach() - x0).norm(dim=-1).amax(dim=(1, 2)) for st_ in states]).numpy()  # (K+1, I)
    jac = np.stack(rec["jac"])  # (K, I, N)
    return {
        "lam": lam, "dt": np.array([s.dt for s in steps]), "n_tokens": T,
        "W": rec["W"], "grad_loss": rec["grad_loss"],
        "W_norm": np.stack(rec["W_norm"]), "resid": np.stack(rec["resid"]), "act_adj": np.stack(rec["act_adj"]),
        "h_closed": np.stack([np.broadcast_to(h, (I,)) for h in rec["h_closed"]]), "h_data": np.stack(rec["h_data"]),
        "rates": np.clip(jac.max(axis=2) - 1.0, 0.0, None),  # a_j with ‖A_j‖ ≤ 1 + a_j on every sample
        "G": grads[K].norm(dim=(-2, -1)).sum(dim=1).numpy(),
        "displacement": disp, "x0_max": float(x0.norm(dim=-1).max()), "branch_err": max(rec["branch_err"]),
        "loss": ce.detach().numpy(), "K": K,
    }


def fresh_displacements(prob: FullBatchProblem, theta: torch.Tensor, seed: int, scales=(1.0, 30.0)) -> np.ndarray:
    """max_i ‖x_{k,i} − x_{0,i}‖ on fresh Gaussian inputs of several scales: (K+1, I) (max over scales)."""
    from verify.engine.zoo import sample_inputs

    out = []
    with torch.no_grad():
        for j, sc in enumerate(scales):
            x0 = sample_inputs(prob.cfg, prob.I, prob.n_tokens, seed + j, batch=(16,), scale=sc)
            _, _, states = prob.run(theta, x0=x0)
            out.append(torch.stack([(s - x0).norm(dim=-1).amax(dim=(1, 2)) for s in states]).numpy())
    return np.max(out, axis=0)


# ---- the check ----------------------------------------------------------------------------------------------------
@register("F6", title="trained pre-LN: stationarity, output-map tie, exponential envelope, ill-posedness",
          statement="at a stationary point of E[ℓ]+(λ/2)Σ‖W‖²: W_k = −∇E[ℓ]/λ; ‖W_k‖ ≤ (Δt_k E[Σ‖h‖‖p‖]+r_k)/λ; "
                    "‖x_k,i − x_0,i‖ ≤ Σ_{j<k} Δt_j H_j (Δt_j √n H_j Π_{j+1} G + r_j)/λ (exponential in depth, ∝ 1/λ)",
          provenance="paper claim K3 (eq. (10) unavailable), our statement",
          theory=("theory.trained.stationary_weight", "theory.trained.output_map_norm_bound",
                  "theory.trained.trained_pre_envelope_from_backward", "theory.trained.trained_pre_envelope_uniform",
                  "theory.trained.pre_scale_symmetry"),
          tests=("tests/test_f6.py",))
def check_f6(ctx: Context, stationary=stationary_weight, tie=output_map_norm_bound,
             envelope=trained_pre_envelope, envelope_backward=trained_pre_envelope_from_backward,
             uniform=trained_pre_envelope_uniform, symmetry=pre_scale_symmetry,
             illposed: bool = True) -> list[Tally]:
    tallies = []
    tallies += stationary_tallies(ctx, stationary, tie, envelope_backward, uniform)
    tallies += witness_tallies(ctx, tie, envelope)
    tallies += uniform_tallies(ctx, uniform, envelope_backward)
    tallies += symmetry_tallies(ctx, symmetry)
    if illposed:
        tallies += illposed_tallies(ctx)
    return tallies


def _lams(ctx: Context) -> tuple[float, ...]:
    # λ ≤ 0.01 is reachable too but needs far more Newton iterations from some seeds (measured: relative residual
    # 0.18 after 15); the full tier adds seeds and λ = 0.05 instead.
    return (0.1, 0.03) if ctx.level == "quick" else (0.1, 0.05, 0.03)


def _solver_budget(ctx: Context) -> dict:
    """Iterations per level (quick: the cached solutions' budget; full: measured to converge for 3 seeds)."""
    return {} if ctx.level == "quick" else dict(lbfgs_iters=1500, newton_iters=40)


def stationary_tallies(ctx, stationary=stationary_weight, tie=output_map_norm_bound,
                       envelope_backward=trained_pre_envelope_from_backward,
                       uniform=trained_pre_envelope_uniform) -> list[Tally]:
    """Identity, tie and envelope on tiny pre-LN models at stationary points, several λ, several seeds."""
    # The solver's own stopping test, the identity it implies and the activation recomputation are the code
    # checked against itself (premises of the theorem, not evidence); tie, envelope and the uniform form are
    # theory against the trained models' measurements.
    own = dict(evidence="code-identity", instances="trained")
    ind = dict(evidence="independent", instances="trained")
    t_stat = Tally("F6", "solver reached stationarity ‖∇J‖ ≤ 1e-6·λ‖θ‖", "inequality",
                   "relative residual ≤ 1e-6 (see STATIONARITY_RTOL)", **own)
    t_id = Tally("F6", "identity W_k = −∂E[ℓ]/∂W_k / λ", "identity",
                 "tolerance = achieved ‖∇J‖/λ (exact for W + ∇E[ℓ]/λ = ∇J/λ) + 1e-12‖W‖ round-off", **own)
    t_tie = Tally("F6", "tie ‖W_k‖_F ≤ (Δt E[Σ‖h‖‖p‖] + r)/λ", "inequality", "float64 round-off, rtol 1e-9", **ind)
    t_env = Tally("F6", "envelope on training data (closed-form H, exact A_j)", "inequality",
                  "float64 round-off, rtol 1e-9", **ind)
    t_fresh = Tally("F6", "envelope on fresh inputs of scale 1 and 30", "inequality", "float64 round-off, rtol 1e-9",
                    **ind)
    t_unif = Tally("F6", "uniform closed form ≥ per-step envelope (r = 0)", "inequality",
                   "float64 round-off, rtol 1e-9", **ind)
    t_ext = Tally("F6", "activation h_k reproduces the step (h_k W_k = X_{k+1} − X_k)", "identity",
                  "float64 round-off of one small matmul: 1e-12 relative", **own)
    seeds = [ctx.seed % 10_000 + j for j in range(ctx.examples(1, 3))]
    for seed in seeds:
        prob, theta, grad_j, info = stationary_models(_lams(ctx), seed, **_solver_budget(ctx))
        m = stationary_measurement(_lams(ctx), seed, **_solver_budget(ctx))
        gnorm = grad_j.norm(dim=1).numpy()
        rel = gnorm / (prob.lam.numpy() * theta.norm(dim=1).numpy())
        t_stat.inequality(rel, STATIONARITY_RTOL, rtol=ROUNDOFF_RTOL,
                          case={"seed": seed, "grad_norm": gnorm.tolist(), "relative": rel.tolist()})
        K = m["K"]
        t_ext.identity(m["branch_err"], 0.0, rtol=0.0, atol=1e-12, case={"seed": seed})
        t_stat.note(**{f"W_norms_seed{seed}": m["W_norm"].T.tolist(), f"loss_seed{seed}": m["loss"].tolist()})
        for i, lam in enumerate(m["lam"]):
            case = {"seed": seed, "lam": float(lam), "loss": float(m["loss"][i])}
            for k in range(K):
                ref = stationary(m["grad_loss"][k][i], lam)
                err = np.linalg.norm(m["W"][k][i] - ref)
                tol = gnorm[i] / lam + 1e-12 * np.linalg.norm(m["W"][k][i])
                t_id.identity(err, 0.0, rtol=0.0, atol=tol,
                              case={**case, "step": k, "W_norm": float(np.linalg.norm(m["W"][k][i]))})
            t_tie.inequality(m["W_norm"][:, i], tie(m["dt"], lam, m["act_adj"][:, i], m["resid"][:, i]),
                             rtol=ROUNDOFF_RTOL, case=case)
            env = envelope_backward(m["dt"], lam, m["h_closed"][:, i], m["rates"][:, i], m["G"][i], m["n_tokens"],
                                    grad_residual=m["resid"][:, i])
            t_env.inequality(m["displacement"][1:, i], env[1:], rtol=ROUNDOFF_RTOL,
                             case={**case, "envelope": env.tolist(), "measured": m["displacement"][:, i].tolist()})
            fresh = m["fresh"]
            t_fresh.inequality(fresh[1:, i], env[1:], rtol=ROUNDOFF_RTOL,
                               case={**case, "measured": fresh[:, i].tolist()})
            env0 = envelope_backward(m["dt"], lam, m["h_closed"][:, i], m["rates"][:, i], m["G"][i], m["n_tokens"])
            u = uniform(K, float(m["dt"].max()), lam, float(m["h_closed"][:, i].max()),
                        float(m["rates"][:, i].max()), float(m["G"][i]), m["n_tokens"])
            t_unif.inequality(env0[-1], u, rtol=ROUNDOFF_RTOL, case=case)
            t_env.note(**{f"tightness_seed{seed}_lam{lam:g}": float((m["displacement"][1:, i] / env[1:]).max())})
        t_stat.note(newton_iterations=info["newton_iterations"])
    return [t_stat, t_id, t_tie, t_env, t_fresh, t_unif, t_ext]


def witness_tallies(ctx, tie=output_map_norm_bound, envelope=trained_pre_envelope) -> list[Tally]:
    """One MLP step, one sample, one token, Δt = 0.5: ∂ℓ/∂W is rank one, so the tie and the envelope (with the
    measured activation norm as H) are attained up to the residual. Only the output map W₂ is trained (the
    theorem needs stationarity in W_k alone); with W₁ trained too, (W₁, W₂) = 0 is a stationary point that a
    one-sample problem falls into, which would make the witness trivial."""
    t_tie = Tally("F6", "tie witness (one sample, one token)", "witness", f"ratio ≥ {WITNESS_THRESHOLD}",
                  evidence="independent", instances="witness")
    t_env = Tally("F6", "envelope witness (measured H)", "witness", f"ratio ≥ {WITNESS_THRESHOLD}",
                  evidence="independent", instances="witness")
    m = stationary_measurement((0.3, 0.1), ctx.seed % 10_000, dt=0.5, lbfgs_iters=300,
                               shape=(("n_blocks", 1), ("sublayers", ("mlp",))),
                               data=(("n_samples", 1), ("n_tokens", 1), ("vocab", 3)), trainable=("W2",))
    for i, lam in enumerate(m["lam"]):
        bound = tie(m["dt"], lam, m["act_adj"][:, i], m["resid"][:, i])
        t_tie.witness(m["W_norm"][:, i] / bound, threshold=WITNESS_THRESHOLD, case={"lam": float(lam)})
        env = envelope(m["dt"], lam, m["h_data"][:, i], m["act_adj"][:, i], m["resid"][:, i])
        t_env.witness(m["displacement"][1:, i] / env[1:], threshold=WITNESS_THRESHOLD, case={"lam": float(lam)})
        # the witness must also satisfy the inequality (ratio ≤ 1 up to round-off)
        t_env.inequality(m["displacement"][1:, i], env[1:], rtol=ROUNDOFF_RTOL)
        t_tie.inequality(m["W_norm"][:, i], bound, rtol=ROUNDOFF_RTOL)
    return [t_tie, t_env]


def uniform_tallies(ctx, uniform=trained_pre_envelope_uniform,
                    envelope_backward=trained_pre_envelope_from_backward) -> list[Tally]:
    """The closed form equals the per-step envelope with constant inputs, and grows by (1 + a) per step."""
    # two theory functions (closed form, step-by-step sum) against each other; then the closed form against itself
    t_eq = Tally("F6", "uniform closed form = per-step envelope, constant inputs", "identity",
                 "float64: a geometric sum of ≤ 64 terms vs expm1/log1p, rtol 1e-12", evidence="independent",
                 instances="random")
    t_exp = Tally("F6", "closed form is exponential in depth: E_{K+1}−E_K = (1+a)(E_K−E_{K−1})", "identity",
                  "float64 round-off, rtol 1e-10", evidence="code-identity", instances="random")

    @st.composite
    def params(draw):
        return dict(K=draw(st.integers(1, 64)), dt=draw(log_uniform(1e-2, 2.0)), lam=draw(log_uniform(1e-4, 10.0)),
                    H=draw(log_uniform(1e-2, 1e2)), a=draw(st.one_of(st.just(0.0), log_uniform(1e-4, 1.0))),
                    G=draw(log_uniform(1e-3, 1e2)), n=draw(st.integers(1, 64)))

    def one(p):
        u = uniform(p["K"], p["dt"], p["lam"], p["H"], p["a"], p["G"], p["n"])
        e = envelope_backward(p["dt"], p["lam"], np.full(p["K"], p["H"]), np.full(p["K"], p["a"]), p["G"], p["n"])
        t_eq.identity(u, e[-1], rtol=1e-12, case=p)
        u1 = uniform(p["K"] + 1, p["dt"], p["lam"], p["H"], p["a"], p["G"], p["n"])
        if p["K"] >= 2:
            u0 = uniform(p["K"] - 1, p["dt"], p["lam"], p["H"], p["a"], p["G"], p["n"])
            t_exp.identity(u1 - u, (1 + p["a"]) * (u - u0), rtol=1e-10, case=p)

    run_over(params(), one, examples=ctx.examples(20, 100), seed=ctx.seed)
    return [t_eq, t_exp]


def symmetry_tallies(ctx, symmetry=pre_scale_symmetry) -> list[Tally]:
    """Pre-LN, ε = 0, final norm: scaling X_0 and every output map and output bias by c scales each X_k by c and
    leaves the output unchanged — the ray of equal-loss models behind the ill-posedness."""
    # the zoo at scaled weights against itself: the scale symmetry's algebra in the code
    t_out = Tally("F6", "ill-posed: output invariant along the scale ray (ε = 0)", "identity",
                  f"float64 LayerNorm round-off through the stack, rtol {SYMMETRY_RTOL:g}", evidence="code-identity",
                  instances="random")
    t_states = Tally("F6", "ill-posed: hidden states scale by c along the ray", "identity",
                     f"float64 round-off, rtol {SYMMETRY_RTOL:g}", evidence="code-identity", instances="random")
    strategy = st.tuples(stack_cases(placements=("pre",), max_steps=16, weight_scale_range=(1e-1, 1e1),
                                     input_scale_range=(1e-1, 1e1), work_budget=5e5),
                         log_uniform(1e-3, 1e3))

    def one(example):
        case, c = example
        cfg = case.cfg.replace(eps=0.0, final_norm=True)
        stack, x = type(case)(cfg, case.n_instances, case.n_tokens, case.seed, case.input_scale,
                              case.input_mean).build()
        with torch.no_grad():
            out, states = stack(x, trajectory=True)
            for name, p in stack.named_parameters():
                leaf = name.rsplit(".", 1)[-1]
                if leaf in ("W_o", "W2", "b_o", "b2"):
                    p.mul_(c)
            out_c, states_c = stack(c * x, trajectory=True)
        scale = symmetry(c)
        t_out.identity(out_c, out, rtol=SYMMETRY_RTOL, atol=SYMMETRY_RTOL * float(out.abs().max()),
                       case={**case.describe(), "c": c})
        for s, sc in zip(states, states_c):
            t_states.identity(sc, scale * s, rtol=SYMMETRY_RTOL, atol=SYMMETRY_RTOL * float((c * s).abs().max()),
                              case={**case.describe(), "c": c})

    run_over(strategy, one, examples=ctx.examples(10, 50), seed=ctx.seed + 6)
    return [t_out, t_states]




@functools.lru_cache(maxsize=4)
def illposed_sweep(ctx) -> dict:
    """Tiny GPTs (trainable, decayed embeddings) fitted at λ = 1e-1, 1e-2, 1e-3 for pre and peri."""
    lams = ILLPOSED_LAMS
    iters = ILLPOSED_ITERS[ctx.level]
    out = {"lams": list(lams)}
    for placement in ("pre", "peri"):
        prob, theta, grad_j, _ = stationary_models(lams, ctx.seed % 10_000 + 50, lbfgs_iters=iters, newton_iters=0,
                                                   placement=placement, embeddings=True, shape=ILLPOSED_SHAPE)
        with torch.no_grad():
            ce, _, states = prob.run(theta)
        x0 = states[0]
        out[placement] = {
            "theta_norm": theta.norm(dim=1).numpy(),
            "x_max": torch.stack([s.norm(dim=-1).amax(dim=(1, 2)) for s in states]).numpy(),  # (K+1, I)
            "increment_max": torch.stack([(s - x0).norm(dim=-1).amax(dim=(1, 2)) for s in states]).numpy(),
            "grad_norm": grad_j.norm(dim=1).numpy(), "loss": ce.numpy(), "dt": [s.dt for s in prob.stack.steps],
            "d": prob.cfg.d,
        }
    return out


def illposed_tallies(ctx) -> list[Tally]:
    """Measured: as λ → 0 pre-LN weight norms and hidden states grow; peri-LN increments stay under F2."""
    sweep = illposed_sweep(ctx)
    # Growth ratios as λ falls are trends on trained models, not tightness witnesses of a bound: "trained".
    t_w = Tally("F6", "ill-posed (measured): pre weight norm grows as λ ↓", "witness",
                "ratio of ‖θ‖ between consecutive λ (÷10) must be ≥ 1.2", evidence="independent", instances="trained")
    t_x = Tally("F6", "ill-posed (measured): pre max‖x_K‖ grows as λ ↓", "witness",
                f"ratio between λ = 1e-3 and 1e-1 must be ≥ {ILLPOSED_X_GROWTH:g}: over 300 problem seeds pre "
                "measured 9.8–138 (median 34), peri (bounded by F2, the no-growth placement) 0.76–2.9",
                evidence="independent", instances="trained")
    t_p = Tally("F6", "peri increments ≤ F2 at every λ (weight-independent)", "inequality",
                "F2 with frozen γ = 1: C_out = √d; float64 round-off rtol 1e-9", evidence="independent",
                instances="trained")
    pre, peri = sweep["pre"], sweep["peri"]
    # 1.2 per decade of λ: the CE margin alone forces ‖θ‖ to grow at least logarithmically; measured ≈ 2.
    t_w.witness(pre["theta_norm"][1:] / pre["theta_norm"][:-1], threshold=1.2,
                case={"theta_norm": pre["theta_norm"].tolist()})
    # Over two decades: at λ = 0.1 the decayed scale group (embeddings, output maps) collapses towards the
    # ε-regime, at 1e-3 it is released. The threshold separates growth from none (ILLPOSED_X_GROWTH).
    t_x.witness(pre["x_max"][-1, -1] / pre["x_max"][-1, 0], threshold=ILLPOSED_X_GROWTH,
                case={"x_max_K": pre["x_max"][-1].tolist()})
    f2 = peri_norm_bound(0.0, np.array(peri["dt"]), math.sqrt(peri["d"]))  # (K+1,)
    t_p.inequality(peri["increment_max"][1:], np.broadcast_to(f2[1:, None], peri["increment_max"][1:].shape),
                   rtol=ROUNDOFF_RTOL,
                   case={"increment_max_K": peri["increment_max"][-1].tolist()})
    for t in (t_w, t_x, t_p):
        t.note(lams=sweep["lams"], pre_x_max_K=pre["x_max"][-1].tolist(), peri_x_max_K=peri["x_max"][-1].tolist(),
               pre_theta_norm=pre["theta_norm"].tolist(), peri_theta_norm=peri["theta_norm"].tolist(),
               pre_grad_norm=pre["grad_norm"].tolist(), peri_grad_norm=peri["grad_norm"].tolist())
    return [t_w, t_x, t_p]


# ---- F7: the depth-free bound by the weight energy ---------------------------------------------------------------
def _input_map_name(prob: FullBatchProblem, k: int) -> str:
    step = prob.stack.steps[k]
    return f"steps.{k}.sublayer." + ("W_v" if step.kind == "attn" else "W1")


@functools.lru_cache(maxsize=16)
def depth_free_measurement(*args, **kw) -> dict:
    """F7's inputs on ``stationary_models(*args, **kw)``: per step and instance the Frobenius norms of the input
    and output maps, the objective J, the loss, the norm range R = √d (γ = 1, β = 0 frozen), and the balance
    residuals of the attention steps; with the F6 measurement (displacements, envelope) for the comparison."""

    prob, theta, grad_j, _ = stationary_models(*args, **kw)
    m = stationary_measurement(*args, **kw)
    params = prob.unflatten(theta)
    grads = prob.unflatten(grad_j)
    K, d = prob.cfg.n_steps, prob.cfg.d

    def fro(name):
        return params[name].flatten(1).norm(dim=1).numpy()

    in_norms = np.stack([fro(_input_map_name(prob, k)) for k in range(K)])  # (K, I)
    out_norms = np.stack([fro(_output_map_name(prob, k)) for k in range(K)])
    attention = []  # (step, ∂J/∂W_V, W_V, ∂J/∂W_O, W_O) of every attention step, per instance
    for k in range(K):
        if prob.stack.steps[k].kind == "attn":
            v, o = _input_map_name(prob, k), _output_map_name(prob, k)
            attention.append((k, grads[v].numpy(), params[v].numpy(), grads[o].numpy(), params[o].numpy()))
    with torch.no_grad():
        objective = prob.objective(theta).numpy()
    return {"m": m, "in_norms": in_norms, "out_norms": out_norms, "objective": objective, "loss": m["loss"],
            "norm_range": norm_output_bound(d, 1.0, 0.0), "attention": attention, "lam": m["lam"], "dt": m["dt"]}


def depth_free_witness(dt: float = 0.7, a: float = 1.7, d: int = 6, hidden: int = 4, device: str = "cpu"):
    """One pre step, ReLU MLP, ε = 0: x = û (û ⊥ 1, unit), W₁ = a·ûv̂ᵀ, W₂ = a·v̂ŵᵀ with v̂ ≥ 0. Then N(x) = √d·û,
    h = √d·a·v̂ and the update is Δt·√d·a²·ŵ: F7 (a) holds with equality in both forms (AM-GM at a = b)."""
    from verify.engine.zoo import Stack

    cfg = StackConfig(d=d, n_blocks=1, placement="pre", sublayers=("mlp",), d_mlp=hidden, eps=0.0, bias=False,
                      activation="relu", dt=dt, device=device)
    stack = Stack(cfg, 1, seed=3)
    u = torch.zeros(d, dtype=torch.float64)
    u[0], u[1] = 1.0, -1.0
    u = u / u.norm()
    v = torch.full((hidden,), hidden ** -0.5, dtype=torch.float64)
    w = torch.zeros(d, dtype=torch.float64)
    w[2] = 1.0
    with torch.no_grad():
        stack.steps[0].sublayer.W1.copy_((a * torch.outer(u, v)).unsqueeze(0))
        stack.steps[0].sublayer.W2.copy_((a * torch.outer(v, w)).unsqueeze(0))
    x = (3.0 * u).view(1, 1, d).to(device)
    return stack.to(device), x, a


@register("F7", title="trained pre-LN: a depth-free bound by the weight-decay energy",
          statement="bias-free pre-LN, any weights: ‖x_k,i − x_0,i‖ ≤ Σ_j Δt_j R‖W_in,j‖_F‖W_out,j‖_F ≤ "
                    "max_j(Δt_j R)·D/λ ≤ max_j(Δt_j R)·J(θ)/λ, D = (λ/2)Σ_j(‖W_in,j‖² + ‖W_out,j‖²); attention "
                    "steps are balanced (‖W_V‖_F = ‖W_O‖_F) at stationarity",
          provenance="our statement (depth-free alternative to F6's exponential envelope, issue 13; paper claim K3)",
          theory=("theory.trained.pre_weight_energy_bound", "theory.trained.trained_pre_depth_free_bound",
                  "theory.trained.attention_balance_residual"),
          tests=("tests/test_f6.py",))
def check_f7(ctx: Context, energy_bound=pre_weight_energy_bound, depth_free=trained_pre_depth_free_bound,
             balance=attention_balance_residual) -> list[Tally]:
    ind = dict(evidence="independent", instances="trained")
    t_chain = Tally("F7", "displacement ≤ Σ_j Δt_j R‖W_in,j‖_F‖W_out,j‖_F (product form)", "inequality",
                    f"float64 round-off, rtol {ROUNDOFF_RTOL:g}", **ind)
    # ab ≤ (a² + b²)/2 on the measured norms: arithmetic, but its ratio shows where AM-GM loses (1 = balanced step)
    t_amgm = Tally("F7", "product form ≤ energy form (AM-GM; ratio 1 on balanced steps)", "inequality",
                   f"float64 round-off, rtol {ROUNDOFF_RTOL:g}", evidence="code-identity", instances="trained")
    t_energy = Tally("F7", "depth-free: max‖x_k − x_0‖ ≤ max(Δt R)·D/λ (training data)", "inequality",
                     f"float64 round-off, rtol {ROUNDOFF_RTOL:g}", **ind)
    t_obj = Tally("F7", "depth-free: max‖x_k − x_0‖ ≤ max(Δt R)·J(θ)/λ (training data)", "inequality",
                  f"float64 round-off, rtol {ROUNDOFF_RTOL:g}", **ind)
    t_fresh = Tally("F7", "depth-free bound on fresh inputs of scale 1 and 30", "inequality",
                    f"float64 round-off, rtol {ROUNDOFF_RTOL:g}", **ind)
    t_bal = Tally("F7", "stationary attention steps are balanced: |‖W_V‖² − ‖W_O‖²| ≤ residual", "identity",
                  "(‖∂J/∂W_V‖‖W_V‖ + ‖∂J/∂W_O‖‖W_O‖)/λ (Cauchy–Schwarz on the exact identity) + 1e-12‖W_V‖²",
                  **ind)
    t_wit = Tally("F7", "witness: aligned rank-one MLP step attains both forms", "witness",
                  f"ratio ≥ {WITNESS_THRESHOLD}; exact (ReLU, ε = 0) up to round-off", evidence="independent",
                  instances="witness")
    comparison = []
    seeds = [ctx.seed % 10_000 + j for j in range(ctx.examples(1, 3))]
    for seed in seeds:
        f = depth_free_measurement(_lams(ctx), seed, **_solver_budget(ctx))
        m = f["m"]
        K = m["K"]
        product, energy = energy_bound(m["dt"], f["norm_range"], f["in_norms"], f["out_norms"])  # (K+1, I)
        for i, lam in enumerate(f["lam"]):
            case = {"seed": seed, "lam": float(lam), "loss": float(f["loss"][i]), "J": float(f["objective"][i])}
            disp, fresh = m["displacement"][1:, i], m["fresh"][1:, i]
            t_chain.inequality(disp, product[1:, i], rtol=ROUNDOFF_RTOL, case=case)
            t_amgm.inequality(product[1:, i], energy[1:, i], rtol=ROUNDOFF_RTOL, case=case)
            decay = 0.5 * lam * float(np.sum(f["in_norms"][:, i] ** 2 + f["out_norms"][:, i] ** 2))
            b_d = depth_free(m["dt"], f["norm_range"], decay, lam)
            b_j = depth_free(m["dt"], f["norm_range"], float(f["objective"][i]), lam)
            t_energy.inequality(disp, np.full(K, b_d), rtol=ROUNDOFF_RTOL, case=dict(case, bound=b_d))
            t_obj.inequality(disp, np.full(K, b_j), rtol=ROUNDOFF_RTOL, case=dict(case, bound=b_j))
            t_fresh.inequality(fresh, np.full(K, b_d), rtol=ROUNDOFF_RTOL, case=dict(case, bound=b_d))
            env = trained_pre_envelope_from_backward(m["dt"], lam, m["h_closed"][:, i], m["rates"][:, i], m["G"][i],
                                                     m["n_tokens"], grad_residual=m["resid"][:, i])
            comparison.append({"seed": seed, "lam": float(lam), "measured_max_displacement": float(disp.max()),
                               "F7_D_bound": b_d, "F7_J_bound": b_j, "F6_envelope_K": float(env[-1]),
                               "F7_D_tightness": float(disp.max() / b_d), "F7_J_tightness": float(disp.max() / b_j),
                               "F6_tightness": float((disp / env[1:]).max())})
        for k, g_v, w_v, g_o, w_o in f["attention"]:
            gap, tol = balance(g_v, w_v, g_o, w_o, f["lam"])
            wv2 = np.sum(w_v.reshape(len(f["lam"]), -1) ** 2, axis=1)
            t_bal.identity(gap, 0.0, rtol=0.0, atol=tol + 1e-12 * wv2,
                           case={"seed": seed, "step": k, "gap": np.asarray(gap).tolist(), "W_V_sq": wv2.tolist()})
    stack, x, a = depth_free_witness(device=ctx.device)
    with torch.no_grad():
        _, states = stack(x, trajectory=True)
    disp = float((states[1] - states[0]).norm())
    sub = stack.steps[0].sublayer
    w_in, w_out = float(sub.W1.detach().norm()), float(sub.W2.detach().norm())
    r = norm_output_bound(stack.cfg.d, 1.0, 0.0)
    product, energy = energy_bound(stack.cfg.dts, r, np.array([w_in]), np.array([w_out]))
    lam_w = 0.5  # any λ: D = (λ/2)(a² + a²) puts all the energy in this one step
    bound_w = depth_free(stack.cfg.dts, r, 0.5 * lam_w * (w_in ** 2 + w_out ** 2), lam_w)
    desc = {"witness": "aligned rank-one ReLU MLP", "a": a, "dt": stack.cfg.dts[0], "lam": lam_w}
    forms = np.array([float(product[1]), float(energy[1]), float(bound_w)])
    t_wit.witness(disp / forms, threshold=WITNESS_THRESHOLD, case=desc)
    t_wit.inequality(np.full(3, disp), forms, rtol=ROUNDOFF_RTOL, case=desc)
    t_obj.note(comparison_with_F6=comparison,
               finding=("on the stationary models the depth-free bound max(Δt R)·D/λ is "
                        + ", ".join(f"{c['F7_D_tightness']:.3g}" for c in comparison)
                        + " tight (J(θ)/λ form: " + ", ".join(f"{c['F7_J_tightness']:.3g}" for c in comparison)
                        + "), against " + ", ".join(f"{c['F6_tightness']:.3g}" for c in comparison)
                        + " for F6's exponential envelope at the same (seed, λ)"))
    return [t_chain, t_amgm, t_energy, t_obj, t_fresh, t_bal, t_wit]


if __name__ == "__main__":
    import sys
    import time

    if sys.argv[1:] != ["--refresh-cache"]:
        sys.exit("usage: python -m verify.checks.trained --refresh-cache")
    t0 = time.perf_counter()
    keys = refresh_cache()
    print(f"wrote {len(keys)} solution(s) to {CACHE} in {time.perf_counter() - t0:.0f}s")
