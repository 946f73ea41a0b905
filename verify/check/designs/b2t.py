"""B2T: a post-LN block with a bottom-to-top skip into its last norm (after Takase et al. 2023).

    h = LN(x + MLP₁(x)),   x⁺ = LN(h + MLP₂(h) + x)

Written as a user would (plain torch, per-instance weights). Every output row passes through a final LayerNorm
with unit gain, so its norm is at most √d (F1): the sanity check should classify it as bounded, like post-LN.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def _layer_norm(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    c = z - z.mean(-1, keepdim=True)
    return c / torch.sqrt((c * c).mean(-1, keepdim=True) + eps)


class B2TBlock(nn.Module):
    def __init__(self, d: int, n_instances: int, seed: int, hidden_mult: int = 4):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        m = hidden_mult * d

        def w(a, b):
            return nn.Parameter(torch.randn(n_instances, a, b, generator=g, dtype=torch.float64) / math.sqrt(a))

        self.a1, self.a2, self.b1, self.b2 = w(d, m), w(m, d), w(d, m), w(m, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (I, n, d)
        h = _layer_norm(x + torch.relu(x @ self.a1) @ self.a2)
        return _layer_norm(h + torch.relu(h @ self.b1) @ self.b2 + x)


def make_block(d: int, n_instances: int, seed: int) -> nn.Module:
    return B2TBlock(d, n_instances, seed)
