"""HybridNorm (Zhuo et al. 2025, "HybridNorm: Towards Stable and Efficient Transformer Training via Hybrid
Normalization"): QKV-norm inside attention, Post-Norm around the FFN.

    x' = x + Attn_QKVnorm(x),   x⁺ = N(x' + F(x'))

N is an RMS norm with unit gain (ε = 0 by default), F a bias-free ReLU MLP, one attention head with Q, K, V
normalised. Every output row has norm √d exactly for any weights (F1 with equality): bounded, like Post-LN, while
the attention step's update is bounded by its QKV norm (claim X8, docs/theorems/G.md).
"""
from __future__ import annotations

import torch
from torch import nn

from verify.check.designs._parts import MLP, Attention, rms_norm


class HybridNormBlock(nn.Module):
    def __init__(self, d: int, eps: float = 0.0):
        super().__init__()
        self.attn = Attention(d, qkv_norm=True, eps=eps)
        self.mlp = MLP(d)
        self.eps = eps

    def attention_step(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attn(x)

    def presum(self, x: torch.Tensor) -> torch.Tensor:
        """x' + F(x'): the FFN's residual sum before its Post-Norm (X8b)."""
        return x + self.mlp(x)

    def mlp_step(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(self.presum(x), self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp_step(self.attention_step(x))


def make_block(d: int, seed: int = 0, eps: float = 0.0) -> nn.Module:
    return HybridNormBlock(d, eps)
