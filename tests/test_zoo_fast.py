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
