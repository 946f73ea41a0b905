"""Measuring the chain: hidden states, their RMS row norm and mean |x| per layer, and per-layer gradient norms.

For I instances and L layers, starting from X_0 of shape (I, n, d):

- r_l = ‖X_l‖_F/√n (the RMS row norm; r_l² = m_l is the per-row second moment F5 speaks of),
- mean |x| over the entries of X_l (the first K7 moment),
- p_l = ‖∂ℓ/∂X_l‖_F for a random linear read-out ℓ = ⟨G, X_L⟩, ‖G‖_F = 1 per instance,

all per instance, plus the states before every residual step (the probes of ``expected`` are built from them).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch

from verify.check.contract import ContractError, forward_error
from verify.check.layers import ChainLayer


def row_mean_square(x: torch.Tensor) -> torch.Tensor:
    """m = ‖X‖_F²/n per instance, for x of shape (I, n, d)."""
    return (x * x).sum(dim=(-1, -2)) / x.shape[-2]


@dataclasses.dataclass
class Trajectory:
    r: np.ndarray  # (I, L+1) RMS row norms
    mean_abs: np.ndarray  # (I, L+1)
    p: np.ndarray  # (I, L+1) gradient norms
    step_inputs: list[list[torch.Tensor]]  # [l][k]: (I, n, d) state before step k of layer l (detached)
    x0: torch.Tensor

    @property
    def m(self) -> np.ndarray:
        return self.r ** 2

    @property
    def depth(self) -> int:
        return self.r.shape[1] - 1


def run_chain(layers: Sequence[ChainLayer], x0: torch.Tensor, seed: int, what: str = "block") -> Trajectory:
    """Run every layer on x0 (I, n, d), measure forward and backward; NaN/inf anywhere is a ContractError."""
    x = x0.detach().clone().requires_grad_(True)
    boundaries = [x]
    step_inputs = []
    for l, layer in enumerate(layers):
        ins = []
        for k in range(len(layer.step_names)):
            ins.append(x.detach())
            try:
                x = layer.run_step(k, x)
            except ContractError:
                raise
            except Exception as exc:
                raise forward_error(f"{what} {l} ({layer.step_names[k]})", exc) from exc
        if not bool(torch.isfinite(x).all()):
            raise ContractError(f"the forward pass overflows: NaN/inf after layer {l} of {len(layers)} (try a smaller "
                                f"--depth or --dt)")
        x.retain_grad()
        boundaries.append(x)
        step_inputs.append(ins)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + 7919), dtype=x.dtype)
    g = g / g.flatten(1).norm(dim=1).view(-1, *([1] * (g.dim() - 1)))
    (x * g).sum().backward()
    n = x0.shape[-2]
    with torch.no_grad():
        r = torch.stack([s.flatten(1).norm(dim=1) / math.sqrt(n) for s in boundaries], dim=1)
        mean_abs = torch.stack([s.abs().flatten(1).mean(dim=1) for s in boundaries], dim=1)
        if any(s.grad is None for s in boundaries):
            raise ContractError("the block output does not depend differentiably on its input (no gradient reached "
                                "the first layer)")
        p = torch.stack([s.grad.flatten(1).norm(dim=1) for s in boundaries], dim=1)
    if not (torch.isfinite(r).all() and torch.isfinite(p).all()):
        raise ContractError("forward or backward pass produced NaN/inf: the design overflows at this depth")
    return Trajectory(r.numpy(), mean_abs.numpy(), p.numpy(), step_inputs, x0.detach())


def gains(traj: Trajectory) -> dict[str, float]:
    """Forward gains max_l and min_l r̄_l/r̄_0 and backward log-gains max_l, min_l log(p̄_l/p̄_L) (instance means)."""
    r, p = traj.r.mean(0), traj.p.mean(0)
    logp = np.log(p / p[-1])
    return {"forward_gain": float(r.max() / r[0]), "forward_gain_min": float(r.min() / r[0]),
            "backward_log_gain": float(logp.max()), "backward_log_gain_min": float(logp.min())}
