"""ReZero (Bachlechner et al. 2021, "ReZero is All You Need: Fast Convergence at Large Depth").

    x⁺ = x + α F(x),   α = 0 at initialisation, F a bias-free ReLU MLP (a registered submodule), no norm

At α = 0 every block, and so every stack, is exactly the identity: its Jacobian is I (claim X9a). Once α ≠ 0 (the
factory's ``alpha``), E‖x_L‖² = (1 + α²/2)^L ‖x_0‖² at initialisation of F: exponential, no norm (X9b).
"""
from __future__ import annotations

import torch
from torch import nn

from verify.check.designs._parts import MLP


class ReZeroBlock(nn.Module):
    def __init__(self, d: int, alpha: float = 0.0):
        super().__init__()
        self.mlp = MLP(d)
        self.alpha = nn.Parameter(torch.tensor(float(alpha), dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.alpha * self.mlp(x)


def make_block(d: int, seed: int = 0, alpha: float = 0.0) -> nn.Module:
    return ReZeroBlock(d, alpha)
