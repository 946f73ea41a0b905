"""nGPT (Loshchilov et al. 2024, "nGPT: Normalized Transformer with Representation Learning on the Hypersphere").

    h ← unit(h + α (unit(F(h)) − h)),   F a bias-free ReLU MLP, α the eigen learning rate (α₀ = 0.05 at init)

Every row of the hidden state lies on the unit sphere after every block, for any weights and any α: bounded by
construction (claim X7, docs/theorems/G.md). The sphere-bound output makes ``verify.check`` see a post-type step.
α is a vector of d entries as in the paper (all α₀ at initialisation; X7's closed forms are stated for that case).
"""
from __future__ import annotations

import torch
from torch import nn

from verify.check.designs._parts import MLP, unit


class NGPTBlock(nn.Module):
    def __init__(self, d: int, alpha: float = 0.05):
        super().__init__()
        self.mlp = MLP(d)
        self.alpha = nn.Parameter(torch.full((d,), float(alpha), dtype=torch.float64))

    def unnormalised(self, h: torch.Tensor) -> torch.Tensor:
        """The point h + α(unit(F(h)) − h) before it is put back on the sphere (X7b, X7c)."""
        return h + self.alpha * (unit(self.mlp(h)) - h)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return unit(self.unnormalised(h))


def make_block(d: int, seed: int = 0, alpha: float = 0.05) -> nn.Module:
    return NGPTBlock(d, alpha)
