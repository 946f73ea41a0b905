"""DyT: a pre-norm block whose LayerNorm is replaced by Dynamic Tanh, γ ⊙ tanh(α z) + β (Zhu et al. 2025).

Written as a user would: plain torch, per-instance weights, no dependence on the zoo. The residual step is
X⁺ = X + MLP(DyT(X)); tanh is bounded, so each update is bounded by weight norms like pre-LN's (F3), and the
sanity check should classify it with pre-LN, not with post-LN.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class DyTBlock(nn.Module):
    def __init__(self, d: int, n_instances: int, seed: int, alpha0: float = 0.5, hidden_mult: int = 4):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        m = hidden_mult * d
        self.alpha = nn.Parameter(torch.full((n_instances, 1, 1), alpha0, dtype=torch.float64))
        self.gamma = nn.Parameter(torch.ones(n_instances, 1, d, dtype=torch.float64))
        self.beta = nn.Parameter(torch.zeros(n_instances, 1, d, dtype=torch.float64))
        self.w1 = nn.Parameter(torch.randn(n_instances, d, m, generator=g, dtype=torch.float64) / math.sqrt(d))
        self.w2 = nn.Parameter(torch.randn(n_instances, m, d, generator=g, dtype=torch.float64) / math.sqrt(m))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (I, n, d)
        u = self.gamma * torch.tanh(self.alpha * x) + self.beta
        return x + torch.relu(u @ self.w1) @ self.w2


def make_block(d: int, n_instances: int, seed: int) -> nn.Module:
    return DyTBlock(d, n_instances, seed)
