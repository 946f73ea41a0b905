"""GPAS, Gradient-Preserving Activation Scaling (Chen et al. 2025, "GPAS: Accelerating Convergence of LLM
Pretraining via Gradient-Preserving Activation Scaling"), on a Pre-LN block:

    x' = x + F(N(x)),   x⁺ = x' − SiLU(α)·sg(x')

sg the stop-gradient (``detach``), N an RMS norm (unit gain, ε = 0), F a bias-free ReLU MLP. The forward pass
multiplies the stream by λ = 1 − SiLU(α), the backward pass sees the Pre-LN block unscaled: ∂x⁺/∂x = ∂x'/∂x. α = 0
at initialisation in the paper (SiLU(0) = 0: exactly Pre-LN); with α ≠ 0 the second moment obeys
m⁺ = λ²(m + d/2) and tends to the fixed point λ²d/(2(1 − λ²)) (claim X13, docs/theorems/G.md).
"""
from __future__ import annotations

import torch
from torch import nn

from verify.check.designs._parts import MLP, rms_norm


class GPASBlock(nn.Module):
    def __init__(self, d: int, alpha: float = 0.0):
        super().__init__()
        self.mlp = MLP(d)
        self.alpha = nn.Parameter(torch.tensor(float(alpha), dtype=torch.float64))

    def pre_ln(self, x: torch.Tensor) -> torch.Tensor:
        """x' = x + F(N(x)): the Pre-LN block GPAS scales."""
        return x + self.mlp(rms_norm(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xp = self.pre_ln(x)
        return xp - torch.nn.functional.silu(self.alpha) * xp.detach()


def make_block(d: int, seed: int = 0, alpha: float = 0.0) -> nn.Module:
    return GPASBlock(d, alpha)
