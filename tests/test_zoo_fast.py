"""The engine's fast paths (issue 12) compute the same function, and validation off the hot path still refuses
bad weights.

Claims: the two ways attention projects Q, K, V (one matmul on the concatenated maps for d ≤ FUSED_QKV_MAX_D, three
matmuls above) agree to the engine's own round-off bound, with heads and extra batch dimensions; weight
finiteness is checked once per weight change — a NaN written in place after a validated call, an optimizer step
that makes a weight inf, or re-drawn weights are all caught, and an unchanged stack is not re-read.
"""
from __future__ import annotations

import pytest
import torch

from verify.checks.oracle import roundoff_tolerance
from verify.engine import zoo
from verify.engine.zoo import Stack, StackConfig, sample_inputs


@pytest.mark.parametrize("heads", [1, 2])
def test_fused_and_separate_qkv_paths_agree(monkeypatch, heads):
    """The same stack run through the fused and the separate Q/K/V path: outputs within 2× the round-off bound,
    for a (I, B, n, d) input; and a wrong path (W_K used for V) fails the same comparison."""
    cfg = StackConfig(d=8, n_blocks=2, placement="peri", n_heads=heads, causal=True, bias_std=0.3)
    stack = Stack(cfg, 3, seed=41)
    x = sample_inputs(cfg, 3, 4, seed=42, batch=(2,))
    tol = torch.stack([roundoff_tolerance(stack, x[:, b])[-1] for b in range(2)], dim=1)  # (I, B, n)
    with torch.no_grad():
        fused = stack(x)
        monkeypatch.setattr(zoo, "FUSED_QKV_MAX_D", 0)
        separate = stack(x)
        assert bool(((fused - separate).abs().amax(-1) <= 2 * tol).all())
        for step in stack.steps:
            if step.kind == "attn":
                step.sublayer.W_v, saved = step.sublayer.W_k, step.sublayer.W_v
        wrong = stack(x)
    assert float((fused - wrong).abs().amax()) > 1e3 * float(tol.max())
    del saved


def test_nan_written_after_a_validated_call_is_refused():
    """A weight made NaN in place (under no_grad) after a validated forward is caught by the next one."""
    cfg = StackConfig(d=4, n_blocks=2, placement="pre")
    stack = Stack(cfg, 2, seed=0)
    x = sample_inputs(cfg, 2, 3, seed=1)
    stack(x)
    with torch.no_grad():
        stack.steps[1].sublayer.W2[0, 1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"steps\.1\.sublayer\.W2"):
        stack(x)


def test_optimizer_step_to_inf_is_refused():
    """An optimizer step that overflows a weight to inf is caught at the next validated forward."""
    cfg = StackConfig(d=4, n_blocks=1, placement="pre")
    stack = Stack(cfg, 1, seed=0)
    x = sample_inputs(cfg, 1, 3, seed=1)
    opt = torch.optim.SGD(stack.parameters(), lr=1e308)
    stack(x).pow(2).sum().mul(1e10).backward()
    opt.step()
    with pytest.raises(ValueError, match=r"^parameter "):
        stack(x)


def test_unchanged_weights_are_read_once_and_redraws_are_reread(monkeypatch):
    """checkrequire_real runs on the first validated call, not on repeats with the same weights, again after
    reset_parameters or load_state_dict; validate=False never runs it."""
    cfg = StackConfig(d=4, n_blocks=1)
    stack = Stack(cfg, 2, seed=0)
    x = sample_inputs(cfg, 2, 3, seed=1)
    calls = []
    original = Stack.checkrequire_real
    monkeypatch.setattr(Stack, "checkrequire_real", lambda self: (calls.append(1), original(self))[1])
    stack(x, validate=False)
    assert calls == []
    stack(x)
    stack(x)
    assert len(calls) == 1
    stack.reset_parameters(3)
    stack(x)
    assert len(calls) == 2
    stack.load_state_dict(Stack(cfg, 2, seed=4).state_dict())
    stack(x)
    assert len(calls) == 3


def test_single_instance_weights_broadcast_over_a_leading_batch():
    """A one-instance module applied to u of shape (3, n, d) (the leading axis a batch, as the gradient-profile
    code does) equals applying it to each (1, n, d) slice, which runs the batched fast path: within 1e-13 absolute
    (entries O(1); d = 8 matmul chains round at ~1e-15)."""
    cfg = StackConfig(d=8, n_blocks=1, placement="pre", n_heads=2, causal=True, bias_std=0.2)
    stack = Stack(cfg, 1, seed=9)
    x = sample_inputs(cfg, 3, 4, seed=10)
    with torch.no_grad():
        for step in stack.steps:
            together = step.sublayer(x)
            for b in range(3):
                alone = step.sublayer(x[b:b + 1])[0]
                assert float((together[b] - alone).abs().max()) <= 1e-13


# ---- the norm's fast path: explicit centring, then torch's native kernel -------------------------------------
def _mp_norm_rows(kind: str, z, gamma, beta, eps: float):
    """The norm of every row at 50 digits (mpmath), returned as float64: γ ⊙ (z − μ)/√(σ² + ε) + β, or RMSNorm."""
    import mpmath
    import numpy as np

    with mpmath.workdps(50):
        out = np.empty(z.shape)
        for idx in np.ndindex(*z.shape[:-1]):
            row = [mpmath.mpf(float(v)) for v in z[idx]]
            d = len(row)
            mu = mpmath.fsum(row) / d if kind == "layer" else mpmath.mpf(0)
            c = [v - mu for v in row]
            s = mpmath.sqrt(mpmath.fsum(v * v for v in c) / d + mpmath.mpf(eps))
            g, b = gamma[idx[0]], beta[idx[0]]
            out[idx] = [float(mpmath.mpf(float(g[j])) * c[j] / s + mpmath.mpf(float(b[j]))) for j in range(d)]
    return out


def _roundoff_allowance(z, gamma, beta, eps: float, kind: str):
    """Per-row allowance of the N checks' round-off model (verify.checks.norms): ‖γ‖∞·(ROUNDOFF_MODEL_FACTOR·
    √d·u(1 + log2 d)‖z‖∞/s + RTOL_ALGEBRA) + RTOL_ALGEBRA·‖β‖∞, s the row's scale √(σ² + ε) (√(mean z² + ε))."""
    import numpy as np

    from verify.checks.norms import (
        ROUNDOFF_MODEL_FACTOR,
        RTOL_ALGEBRA,
        input_roundoff_ratio,
    )

    d = z.shape[-1]
    stat = z.var(axis=-1) if kind == "layer" else (z * z).mean(axis=-1)
    s = np.sqrt(stat + eps)
    gmax = np.abs(gamma).max(axis=-1)[:, None]
    bmax = np.abs(beta).max(axis=-1)[:, None]
    cond = input_roundoff_ratio(d, np.abs(z).max(axis=-1), s)
    return gmax * (ROUNDOFF_MODEL_FACTOR * cond + RTOL_ALGEBRA) + RTOL_ALGEBRA * bmax


def _one_pass_layernorm(z, gamma, beta, eps):
    """A deliberately ill-conditioned LayerNorm (variance as E[z²] − E[z]²): cancellation at |μ| ≫ σ."""
    mu = z.mean(-1, keepdim=True)
    var = (z * z).mean(-1, keepdim=True) - mu * mu
    return gamma[:, None, :] * (z - mu) / torch.sqrt(var + eps) + beta[:, None, :]


@pytest.mark.parametrize("kind", ["layer", "rms"])
@pytest.mark.parametrize("d", [3, 16, 64])
@pytest.mark.parametrize("eps", [0.0, 1e-7])
def test_norm_at_large_mean_small_spread_matches_mpmath(kind, d, eps):
    """Rows of mean −5 and spread 1e-3 (the N1/N3 anchor where an uncentred kernel loses digits), ε = 0 and
    ε ≈ σ²/10, vector γ and β: the zoo's norm (explicit centring, then torch's native layer_norm / rms_norm)
    equals the 50-digit value within the N checks' round-off model (it measures ≤ 0.05 of it); a one-pass
    variance E[z²] − E[z]² fails the same allowance by ≥ 10× (meta-test)."""
    import numpy as np

    from verify.checks.norms import _norm_layer

    rng = np.random.default_rng(100 * d + (kind == "rms"))
    inst, rows = 3, 4
    z = -5.0 + 1e-3 * rng.standard_normal((inst, rows, d))
    gamma = rng.choice([-1.0, 1.0], (inst, d)) * rng.uniform(0.1, 2.0, (inst, d))
    beta = rng.standard_normal((inst, d)) if kind == "layer" else np.zeros((inst, d))
    ref = _mp_norm_rows(kind, z, gamma, beta, eps)
    allow = _roundoff_allowance(z, gamma, beta, eps, kind)
    layer = _norm_layer(kind, eps, gamma, beta, torch.device("cpu"))
    with torch.no_grad():
        y = layer(torch.from_numpy(z)).numpy()
    ratio = np.abs(y - ref).max(axis=-1) / allow
    assert ratio.max() <= 1.0, ratio.max()
    if kind == "layer":
        zt, gt, bt = (torch.from_numpy(a) for a in (z, gamma, beta))
        wrong = _one_pass_layernorm(zt, gt, bt, eps).numpy()
        assert (np.abs(wrong - ref).max(axis=-1) / allow).max() >= 10.0


@pytest.mark.parametrize("kind", ["layer", "rms"])
def test_norm_jacobian_at_large_mean_matches_the_closed_form(kind):
    """The Jacobian (jacrev through the detached centring and the native backward) of rows with mean −5 and
    spread 1e-3, ε = 0, against the closed form at 50 digits — LayerNorm γ/s·(P − ccᵀ/(d s²)), RMSNorm
    γ/s·(I − zzᵀ/(d s²)) — within the N2 round-off model 4·ROUNDOFF_MODEL_FACTOR·√d·u(1 + log2 d)‖z‖∞/s relative
    to ‖γ‖∞/s (+ RTOL_ALGEBRA); the one-pass variance's Jacobian fails it (meta-test)."""
    import mpmath
    import numpy as np

    from verify.checks.norms import (
        ROUNDOFF_MODEL_FACTOR,
        RTOL_ALGEBRA,
        _norm_layer,
        input_roundoff_ratio,
        row_jacobians,
    )

    d = 8
    rng = np.random.default_rng(7)
    z = -5.0 + 1e-3 * rng.standard_normal((2, 3, d))
    gamma = rng.uniform(0.5, 1.5, (2, d))
    beta = rng.standard_normal((2, d)) if kind == "layer" else np.zeros((2, d))
    jac = row_jacobians(_norm_layer(kind, 0.0, gamma, beta, torch.device("cpu")), z, torch.device("cpu"))
    worst, worst_wrong = 0.0, 0.0
    for i in range(2):
        for r in range(3):
            with mpmath.workdps(50):
                row = [mpmath.mpf(float(v)) for v in z[i, r]]
                mu = mpmath.fsum(row) / d if kind == "layer" else mpmath.mpf(0)
                c = [v - mu for v in row]
                s2 = mpmath.fsum(v * v for v in c) / d
                s = mpmath.sqrt(s2)
                ref = np.array([[float(mpmath.mpf(float(gamma[i, a])) / s * (
                    (1 if a == b else 0) - (mpmath.mpf(1) / d if kind == "layer" else 0) - c[a] * c[b] / (d * s2)))
                    for b in range(d)] for a in range(d)])
            unit = float(np.abs(gamma[i]).max() / float(s))
            tol = 4 * ROUNDOFF_MODEL_FACTOR * float(input_roundoff_ratio(d, np.abs(z[i, r]).max(), float(s))) \
                + RTOL_ALGEBRA
            worst = max(worst, float(np.abs(jac[i, r] - ref).max() / unit / tol))
            if kind == "layer":
                zt = torch.from_numpy(z[i:i + 1, r:r + 1]).clone()
                gt, bt = torch.from_numpy(gamma[i:i + 1]), torch.from_numpy(beta[i:i + 1])
                wrong = torch.func.jacrev(lambda t, gt=gt, bt=bt: _one_pass_layernorm(t, gt, bt, 0.0).reshape(d))(
                    zt).reshape(d, d)
                worst_wrong = max(worst_wrong, float(np.abs(wrong.numpy() - ref).max() / unit / tol))
    assert worst <= 1.0, worst
    if kind == "layer":
        assert worst_wrong >= 10.0, worst_wrong


@pytest.mark.parametrize("kind", ["layer", "rms"])
def test_norm_higher_derivatives_equal_the_two_pass_formula(kind):
    """The detached centring is exact for every derivative order (the native kernel re-centres, and LayerNorm is
    shift-invariant): forward-mode jvp, and the Hessian-vector product by forward-over-reverse (as the trust-region
    training uses), equal those of the plain two-pass formula differentiated end to end, within 1e-11 relative
    (O(1) rows, d = 6: both sides round at ~1e-15; 1e-11 leaves 1e4 room). Meta: the same detached centring
    followed by a formula that does not re-centre (same forward value) has a wrong jvp and Hessian."""
    from verify.engine.zoo import BatchedNorm

    gen = torch.Generator().manual_seed(3)
    z, v, g = (torch.randn(2, 3, 6, generator=gen, dtype=torch.float64) + 0.4 for _ in range(3))
    norm = BatchedNorm(2, 6, kind, 1e-3, 1.0, 0.0)
    with torch.no_grad():
        norm.gamma.copy_(torch.rand(2, 6, generator=gen, dtype=torch.float64) + 0.5)
        if norm.beta is not None:
            norm.beta.copy_(torch.randn(2, 6, generator=gen, dtype=torch.float64))
    gamma = norm.gamma.detach()[:, None]
    beta = 0.0 if norm.beta is None else norm.beta.detach()[:, None]

    def two_pass(t, detach_mean=False):
        c = t
        if kind == "layer":
            mu = t.mean(-1, keepdim=True)
            c = t - (mu.detach() if detach_mean else mu)
        return gamma * c / torch.sqrt((c * c).mean(-1, keepdim=True) + 1e-3) + beta

    def jvp_and_hvp(f):
        jv = torch.func.jvp(f, (z,), (v,))[1]
        hv = torch.func.jvp(torch.func.grad(lambda t: (g * f(t)).sum()), (z,), (v,))[1]
        return jv.detach(), hv.detach()

    got, ref = jvp_and_hvp(norm), jvp_and_hvp(two_pass)
    for a, b in zip(got, ref):
        assert float((a - b).abs().max()) <= 1e-11 * float(b.abs().max())
    if kind == "layer":
        wrong = jvp_and_hvp(lambda t: two_pass(t, detach_mean=True))
        for a, b in zip(wrong, ref):
            assert float((a - b).abs().max()) > 1e-3 * float(b.abs().max())


def test_centring_is_one_common_shift_per_row():
    """At |μ| ≫ σ (mean −5371, spread ~1, d = 3, ε = 1: N1's full-level witness case) the centred rows are
    z − m for ONE rounded m per row (exact by Sterbenz), so ‖N(z)‖ = √(d σ²/(σ² + ε)) holds to 1e-14 relative
    against 50 digits (measured ~3e-16). Meta: a shift one ulp of m off in one lane misses it by > 1e-13. (That is
    what ``torch.add(z, Σz, alpha=−1/d)`` did here: its vector and scalar lanes round the shift differently, fma or
    not — 2e-12, which failed N1's witness; the engine subtracts the rounded mean instead.)"""
    import mpmath
    import numpy as np
    import torch.nn.functional as nnf

    from verify.engine.zoo import BatchedNorm

    rng = np.random.default_rng(3)
    z = -5371.2 + rng.standard_normal((8, 7, 3))
    with mpmath.workdps(50):
        def var(row):
            r = [mpmath.mpf(float(v)) for v in row]
            m = mpmath.fsum(r) / 3
            return mpmath.fsum((v - m) ** 2 for v in r) / 3
        truth = np.array([[float(mpmath.sqrt(3 * var(z[i, r]) / (var(z[i, r]) + 1))) for r in range(7)]
                          for i in range(8)])
    zt = torch.from_numpy(z)
    with torch.no_grad():
        y = BatchedNorm(8, 3, "layer", 1.0, 1.0, 0.0)(zt)
    assert float(np.abs(np.linalg.norm(y.numpy(), axis=-1) / truth - 1).max()) <= 1e-14
    m = zt.mean(-1, keepdim=True)
    skew = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64) * torch.from_numpy(np.spacing(m.numpy()))
    lanes = nnf.layer_norm(zt - (m + skew), (3,), eps=1.0)
    assert float(np.abs(np.linalg.norm(lanes.numpy(), axis=-1) / truth - 1).max()) > 1e-13


# ---- the optional torch.compile path (CompiledStack) ------------------------------------------------------------
def test_compiled_stack_falls_back_to_eager_when_compilation_fails(monkeypatch):
    """Where torch.compile cannot compile (no C++ toolchain, an unsupported op), CompiledStack warns once, names
    the reason, and returns the eager stack's output bit for bit; it still validates its input."""
    def broken_compile(fn, **kwargs):
        def call(*args):
            raise RuntimeError("no C++ compiler found")
        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    cfg = StackConfig(d=8, n_blocks=1, placement="peri", n_heads=2, causal=True, bias_std=0.3)
    stack = Stack(cfg, 2, seed=51)
    x = sample_inputs(cfg, 2, 4, seed=52)
    compiled = zoo.CompiledStack(stack)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        out = compiled(x)
    assert not compiled.is_compiled and "no C++ compiler" in compiled.fallback_reason
    with torch.no_grad():
        assert torch.equal(out, stack(x))
    with pytest.raises(ValueError, match="x contains NaN"):
        compiled(torch.full_like(x, float("nan")))
    with pytest.raises(ValueError, match="^stack must be"):
        zoo.CompiledStack(torch.nn.Linear(2, 2))


@pytest.mark.slow
def test_compiled_stack_matches_eager_within_roundoff():
    """The compiled forward (inductor: fused elementwise C++ loops, BLAS matmuls) and its gradients equal the eager
    stack's within twice the E1 round-off bound; and the comparison can fail: the same weights run by the pre
    rule instead of peri differ by > 1e6·tol. Slow tier: compiling takes minutes on a shared machine."""
    import shutil

    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("torch.compile needs a C++ toolchain")
    cfg = StackConfig(d=8, n_blocks=1, placement="peri", n_heads=2, causal=True, bias_std=0.3)
    stack = Stack(cfg, 2, seed=53)
    x = sample_inputs(cfg, 2, 4, seed=54)
    tol = roundoff_tolerance(stack, x)[-1]  # (I, n)
    compiled = zoo.CompiledStack(stack)
    out = compiled(x)
    assert compiled.is_compiled, compiled.fallback_reason
    eager = stack(x)
    assert bool(((out - eager).abs().amax(-1) <= 2 * tol).all())
    params = list(stack.parameters())
    g_c = torch.autograd.grad(out.sum(), params)
    g_e = torch.autograd.grad(eager.sum(), params)
    # Gradients have no E1 bound of their own: held to 1e-13 of the largest entry (≈ 450 u; measured 1.1e-15 and
    # 1.4e-15 at d = 16 and 64, 64 instances, 8 steps: the compiled backward reorders the same float64 sums).
    for a, b in zip(g_c, g_e):
        assert float((a - b).abs().max()) <= 1e-13 * max(1.0, float(b.abs().max()))
    wrong = Stack(cfg.replace(placement="pre"), 2, seed=53)
    with torch.no_grad():
        assert float((wrong(x) - eager).abs().amax()) > 1e6 * float(tol.max())
