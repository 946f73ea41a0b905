"""The batched block zoo (verify.engine.zoo) against hand-written single-instance formulas, and its input checking.

Claims: every placement's residual step is the formula in the zoo's docstring (checked against a plain-torch,
unbatched re-statement below, written from the docstring, not from the zoo's code); the batched engine computes
I independent instances (batched == a loop over single-instance stacks), extra batch dimensions broadcast,
the trajectory holds K+1 states, forward hooks on ResidualAdd see each step's two summands, a CPU and a CUDA
stack with the same seed are the same instance, and bad inputs raise ValueError naming the parameter.

Tolerances: two float64 evaluations of the same recursion in different operation orders differ by at most twice
the first-order round-off bound of verify.checks.oracle.roundoff_tolerance (each is within one bound of the exact
value); that bound is measured per instance (Jacobians) and is ~1e-14 relative for these well-conditioned cases.
"""
from __future__ import annotations

import math

import pytest
import torch

from verify.checks.oracle import roundoff_tolerance, single_thread
from verify.engine.zoo import Placement, ResidualAdd, Stack, StackConfig, sample_inputs

PLACEMENTS = [p.value for p in Placement]


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny; one intra-op thread avoids OpenMP contention on the shared 2-core machine."""
    with single_thread():
        yield


# ---- the reference: one instance, plain torch, straight from the docstring ------------------------------------
def ref_norm(z, P, prefix, kind, eps):
    g = P[f"{prefix}.gamma"]
    if kind == "layer":
        mu = z.mean(-1, keepdim=True)
        var = ((z - mu) ** 2).mean(-1, keepdim=True)
        return g * (z - mu) / torch.sqrt(var + eps) + P[f"{prefix}.beta"]
    return g * z / torch.sqrt((z ** 2).mean(-1, keepdim=True) + eps)


def ref_attention(u, P, k, n_heads, causal):
    pre = f"steps.{k}.sublayer."
    n, d = u.shape
    dh = d // n_heads
    q, kk, v = u @ P[pre + "W_q"], u @ P[pre + "W_k"], u @ P[pre + "W_v"]
    outs = []
    for h in range(n_heads):
        s = slice(h * dh, (h + 1) * dh)
        scores = q[:, s] @ kk[:, s].T / math.sqrt(dh)
        if causal:
            scores = scores + torch.triu(torch.full((n, n), -math.inf, dtype=u.dtype), 1)
        outs.append(torch.softmax(scores, -1) @ v[:, s])
    return torch.cat(outs, -1) @ P[pre + "W_o"] + P.get(pre + "b_o", 0.0)


def ref_mlp(u, P, k, activation):
    pre = f"steps.{k}.sublayer."
    z = u @ P[pre + "W1"] + P.get(pre + "b1", 0.0)
    h = torch.relu(z) if activation == "relu" else 0.5 * z * (1 + torch.erf(z / math.sqrt(2)))
    return h @ P[pre + "W2"] + P.get(pre + "b2", 0.0)


def ref_forward(cfg: StackConfig, P: dict, x: torch.Tensor) -> list[torch.Tensor]:
    """X_0..X_K (and the final-norm output) for one instance: x (n, d), P = Stack.instance_state(i)."""
    L, per = cfg.n_blocks, len(cfg.sublayers)
    alpha = cfg.deepnorm_alpha or (2 * L) ** 0.25
    n_post = cfg.mixln_post_blocks if cfg.mixln_post_blocks is not None else (max(1, L // 4) if L >= 2 else 0)
    eps_out = cfg.eps if cfg.eps_out is None else cfg.eps_out
    states = [x]
    for k in range(L * per):
        dt = cfg.dts[k]
        block = k // per
        rule = cfg.placement if cfg.placement != "mixln" else ("post" if block < n_post else "pre")

        def F(u, k=k):
            if cfg.sublayers[k % per] == "attn":
                return ref_attention(u, P, k, cfg.n_heads, cfg.causal)
            return ref_mlp(u, P, k, cfg.activation)

        def N(z, which, eps=cfg.eps, k=k):
            return ref_norm(z, P, f"steps.{k}.{which}", cfg.norm, eps)

        if rule == "post":
            x = N(x + dt * F(x), "norm_res")
        elif rule == "deepnorm":
            x = N(alpha * x + dt * F(x), "norm_res")
        elif rule == "pre":
            x = x + dt * F(N(x, "norm_in"))
        elif rule == "peri":
            x = x + dt * N(F(N(x, "norm_in")), "norm_out", eps_out)
        elif rule == "none":
            x = x + dt * F(x)
        elif rule == "outnorm":
            x = x + dt * N(F(x), "norm_out", eps_out)
        elif rule == "lns":
            x = x + dt * F(N(x, "norm_in") / math.sqrt(block + 1))
        else:  # pragma: no cover
            raise AssertionError(rule)
        states.append(x)
    if cfg.final_norm:
        states.append(ref_norm(x, P, "final", cfg.norm, cfg.eps))
    return states


def randomize_gains(stack: Stack, seed: int) -> Stack:
    """Per-instance, per-coordinate norm gains and biases (the zoo initialises them constant)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in stack.named_parameters():
            if name.endswith("gamma") or name.endswith("beta"):
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p))
    return stack


def engine_values(stack, x, i):
    out, states = stack(x, trajectory=True)
    return [s[i] for s in states] + ([out[i]] if stack.final is not None else [])


def assert_roundoff_close(values, reference, tol, what):
    """‖value_row − reference_row‖_∞ ≤ 2·tol_row for every state and row (see the module docstring)."""
    for k, (v, r) in enumerate(zip(values, reference)):
        err = (v - r).abs().amax(-1)
        bound = 2 * tol[k]
        assert bool((err <= bound).all()), f"{what}: state {k} row error {err.tolist()} > 2·tol {bound.tolist()}"


# ---- each placement's step is the docstring formula -------------------------------------------------------------
@pytest.mark.parametrize("norm", ["layer", "rms"])
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_step_matches_single_instance_formula(placement, norm):
    """Claim: for every placement and norm, Stack's trajectory X_0..X_K (and final-norm output) equals the
    docstring's step formula evaluated on one instance in plain torch, to round-off."""
    cfg = StackConfig(d=8, n_blocks=2, placement=placement, n_heads=2, norm=norm, causal=True, final_norm=True,
                      activation="gelu" if norm == "layer" else "relu", bias_std=0.5, eps=1e-5, eps_out=1e-3,
                      dt=(0.7, 0.3, 1.1, 0.5), mixln_post_blocks=1)
    stack = randomize_gains(Stack(cfg, n_instances=3, seed=11), seed=12)
    x = sample_inputs(cfg, 3, n_tokens=5, seed=13)
    tol = roundoff_tolerance(stack, x)
    with torch.no_grad():
        for i in range(3):
            ref = ref_forward(cfg, stack.instance_state(i), x[i])
            assert len(ref) == cfg.n_steps + 2
            assert_roundoff_close(engine_values(stack, x, i), ref, tol[:, i], f"{placement}/{norm} instance {i}")


def test_reference_tells_placements_apart():
    """The reference is not vacuous: the pre formula evaluated on a peri instance differs far beyond round-off."""
    cfg = StackConfig(d=8, n_blocks=2, placement="peri", n_heads=2, bias_std=0.5)
    stack = Stack(cfg, 2, seed=3)
    x = sample_inputs(cfg, 2, 4, seed=4)
    wrong = ref_forward(cfg.replace(placement="pre"), stack.instance_state(0), x[0])
    with torch.no_grad():
        right = engine_values(stack, x, 0)
    assert float((wrong[-1] - right[-1]).abs().max()) > 1e-3


# ---- batching ---------------------------------------------------------------------------------------------------
def single_instance(stack: Stack, i: int) -> Stack:
    one = Stack(stack.cfg, n_instances=1, seed=0)
    one.load_state_dict({k: v[i:i + 1] for k, v in stack.state_dict().items()})
    return one


@pytest.mark.parametrize("placement", ["peri", "mixln", "deepnorm"])
def test_batched_instances_equal_loop_over_instances(placement):
    """Claim: instance i of a batched Stack(I) is the single-instance Stack holding instance i's parameters
    (batched == loop over instances, to round-off; usually bitwise)."""
    cfg = StackConfig(d=8, n_blocks=2, placement=placement, n_heads=2, causal=True, bias_std=0.3, final_norm=True)
    stack = Stack(cfg, n_instances=4, seed=21)
    x = sample_inputs(cfg, 4, n_tokens=4, seed=22)
    tol = roundoff_tolerance(stack, x)
    with torch.no_grad():
        out = stack(x)
        for i in range(4):
            one = single_instance(stack, i)
            single = one(x[i:i + 1])[0]
            err = (out[i] - single).abs().amax(-1)
            assert bool((err <= 2 * tol[-1, i]).all()), (i, err)


def test_extra_batch_dims_broadcast():
    """Claim: x of shape (I, B1, B2, n, d) runs every batch element through its instance's stack: the result
    has the input's shape and equals running each batch element alone."""
    cfg = StackConfig(d=8, n_blocks=2, placement="pre", n_heads=2, causal=True, bias_std=0.2)
    stack = Stack(cfg, n_instances=3, seed=31)
    x = sample_inputs(cfg, 3, n_tokens=4, seed=32, batch=(2, 3))
    assert x.shape == (3, 2, 3, 4, 8)
    with torch.no_grad():
        out, states = stack(x, trajectory=True)
        assert out.shape == x.shape and all(s.shape == x.shape for s in states)
        for b1 in range(2):
            for b2 in range(3):
                xb = x[:, b1, b2]
                tol = roundoff_tolerance(stack, xb)[-1]  # (I, n)
                err = (stack(xb) - out[:, b1, b2]).abs().amax(-1)
                assert bool((err <= 2 * tol).all())


# ---- trajectory and hooks ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("final_norm", [False, True])
def test_trajectory_has_k_plus_one_states(final_norm):
    """Claim: forward(trajectory=True) returns X_0..X_K (K = n_blocks·len(sublayers)), X_0 is the input, and the
    output is X_K (or the final norm of X_K)."""
    cfg = StackConfig(d=6, n_blocks=3, placement="peri", sublayers=("attn", "mlp", "mlp"), final_norm=final_norm)
    stack = Stack(cfg, 2, seed=41)
    x = sample_inputs(cfg, 2, 3, seed=42)
    with torch.no_grad():
        out, states = stack(x, trajectory=True)
    assert len(states) == cfg.n_steps + 1 == 10
    assert states[0] is x
    if final_norm:
        assert torch.equal(out, stack.final(states[-1]))
    else:
        assert out is states[-1]


@pytest.mark.parametrize("placement", ["pre", "post", "deepnorm", "peri"])
def test_residual_hooks_see_each_steps_summands(placement):
    """Claim: a forward hook on every ResidualAdd fires once per step, in order, with summands (x_k or α·x_k,
    Δt_k·branch(x_k)) and their sum; for pre/peri the sum is X_{k+1}, for post/deepnorm X_{k+1} = N(sum)."""
    cfg = StackConfig(d=8, n_blocks=2, placement=placement, n_heads=2, dt=(0.5, 0.25, 2.0, 1.0), bias_std=0.1)
    stack = Stack(cfg, 2, seed=51)
    x = sample_inputs(cfg, 2, 3, seed=52)
    seen = []
    handles = [m.register_forward_hook(lambda mod, inp, out: seen.append((inp, out)))
               for m in stack.modules() if isinstance(m, ResidualAdd)]
    try:
        with torch.no_grad():
            _, states = stack(x, trajectory=True)
    finally:
        for h in handles:
            h.remove()
    assert len(seen) == cfg.n_steps
    for k, ((x_in, update), total) in enumerate(seen):
        step = stack.steps[k]
        scale = cfg.alpha if placement == "deepnorm" else 1.0
        assert torch.equal(x_in, scale * states[k]) if scale != 1.0 else x_in is states[k]
        with torch.no_grad():
            assert torch.equal(update, cfg.dts[k] * step.branch(states[k]))
        assert torch.equal(total, x_in + update)
        expected_next = step.norm_res(total) if placement in ("post", "deepnorm") else total
        assert torch.equal(states[k + 1], expected_next)


# ---- devices ----------------------------------------------------------------------------------------------------
def test_same_seed_same_instance_on_every_device(device):
    """Claim: weights are drawn on the CPU from the seed and then moved, so a Stack on `device` holds bitwise the
    CPU stack's parameters and computes the same outputs to round-off."""
    cfg = StackConfig(d=16, n_blocks=2, placement="peri", n_heads=4, bias_std=0.2, final_norm=True)
    cpu = Stack(cfg, 4, seed=61)
    dev = Stack(cfg.replace(device=device), 4, seed=61)
    for (name, p), (_, q) in zip(cpu.named_parameters(), dev.named_parameters()):
        assert q.device.type == device and torch.equal(p, q.cpu()), name
    x = sample_inputs(cfg, 4, 5, seed=62)
    xd = sample_inputs(cfg.replace(device=device), 4, 5, seed=62)
    assert torch.equal(x, xd.cpu())
    tol = roundoff_tolerance(cpu, x)
    with torch.no_grad():
        err = (cpu(x) - dev(xd).cpu()).abs().amax(-1)
    assert bool((err <= 2 * tol[-1]).all())


# ---- bad inputs name the parameter ------------------------------------------------------------------------------
@pytest.mark.parametrize("changes, name", [
    (dict(d=1), "d"),
    (dict(d=2.5), "d"),
    (dict(n_blocks=0), "n_blocks"),
    (dict(dt=0.0), "dt"),
    (dict(dt=-0.1), "dt"),
    (dict(dt=float("nan")), "dt"),
    (dict(dt=(0.1, 0.0)), r"dt\[1\]"),
    (dict(dt=(0.1, 0.2, 0.3)), "dt"),
    (dict(placement="middle"), "placement"),
    (dict(norm="batch"), "norm"),
    (dict(activation="tanh"), "activation"),
    (dict(device="tpu"), "device"),
    (dict(n_heads=3), "n_heads"),
    (dict(eps=-1e-5), "eps"),
    (dict(sublayers=("attn", "conv")), "sublayers"),
])
def test_bad_config_raises_value_error_naming_parameter(changes, name):
    """Claim: an invalid config is refused at construction with a ValueError whose message starts with the name."""
    base = dict(d=4, n_blocks=1)
    with pytest.raises(ValueError, match=rf"^{name}(?!\w)"):
        StackConfig(**{**base, **changes})


def test_cuda_requested_without_cuda_names_device():
    """Claim: asking for CUDA where there is none is a ValueError naming `device`, not a torch crash."""
    if torch.cuda.is_available():
        pytest.skip("CUDA is present here")
    with pytest.raises(ValueError, match=r"^device\b"):
        StackConfig(d=4, device="cuda")


def test_bad_instance_count_and_tokens_name_parameter():
    """Claim: n_instances < 1 and n_tokens < 1 raise ValueErrors naming them."""
    cfg = StackConfig(d=4)
    with pytest.raises(ValueError, match=r"^n_instances\b"):
        Stack(cfg, n_instances=0)
    with pytest.raises(ValueError, match=r"^n_tokens\b"):
        sample_inputs(cfg, 1, n_tokens=0, seed=0)


def test_nan_weights_are_refused_naming_the_parameter():
    """Claim: a NaN in any weight makes forward raise a ValueError naming that parameter."""
    cfg = StackConfig(d=4, n_blocks=2, placement="peri")
    stack = Stack(cfg, 2, seed=0)
    with torch.no_grad():
        stack.steps[2].sublayer.W_v[1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"steps\.2\.sublayer\.W_v"):
        stack(sample_inputs(cfg, 2, 3, seed=1))


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_non_finite_input_is_refused(bad):
    """Claim: NaN or inf in the input raises a ValueError naming x."""
    cfg = StackConfig(d=4)
    stack = Stack(cfg, 2, seed=0)
    x = sample_inputs(cfg, 2, 3, seed=1)
    x[1, 2, 3] = float(bad)
    with pytest.raises(ValueError, match=r"^x\b"):
        stack(x)


@pytest.mark.parametrize("shape", [(2, 3, 5), (3, 3, 4), (3, 4), (2, 1, 3, 5)])
def test_wrong_input_shape_is_refused(shape):
    """Claim: an input whose instance count, width or rank is wrong raises a ValueError naming x."""
    stack = Stack(StackConfig(d=4), 2, seed=0)
    with pytest.raises(ValueError, match=r"^x\b"):
        stack(torch.zeros(shape, dtype=torch.float64))
