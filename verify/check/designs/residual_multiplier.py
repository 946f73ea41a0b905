"""A modded-nanogpt-style residual multiplier: the stream is multiplied by λ = √1.1 at every sublayer.

    x⁺ = λ x + F(N(x)),   λ = √1.1, N an RMS norm (unit gain, ε = 0), F a bias-free ReLU MLP

One block is one sublayer (one residual step). The second moment obeys m⁺ = λ² m + d/2 at initialisation, so it
is multiplied by 1.1 per layer: exponential by design (claim X10, docs/theorems/G.md). ``lam2`` sets λ².
"""
from __future__ import annotations

import math

import torch
from torch import nn

from verify.check.designs._parts import MLP, rms_norm


class ResidualMultiplierBlock(nn.Module):
    def __init__(self, d: int, lam2: float = 1.1):
        super().__init__()
        self.mlp = MLP(d)
        self.lam = math.sqrt(lam2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lam * x + self.mlp(rms_norm(x))


def make_block(d: int, seed: int = 0, lam2: float = 1.1) -> nn.Module:
    return ResidualMultiplierBlock(d, lam2)
