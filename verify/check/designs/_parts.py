"""Parts the gallery designs share, written in plain torch: a bias-free ReLU MLP, an RMS norm, one attention head.

Weights are drawn N(0, 1/fan_in) from torch's global generator (``verify.check`` seeds it per instance and layer
before it calls a factory), so the closed forms of ``theory.gallery`` hold exactly in expectation: for the MLP
F(x) = ReLU(x W₁) W₂ of hidden width m, E‖F(x)‖² = ‖x‖²/2 for every x and every m (each of the m pre-activations
is N(0, ‖x‖²/d), ReLU keeps half of its second moment, W₂ maps m entries of total energy m‖x‖²/(2d) to d outputs
of variance 1/m each), and E⟨y, F(x)⟩ = 0 for every y independent of W₂ (W₂ → −W₂ flips F).
"""
from __future__ import annotations

import math

import torch
from torch import nn


def linear(fan_in: int, fan_out: int) -> nn.Linear:
    lin = nn.Linear(fan_in, fan_out, bias=False)
    nn.init.normal_(lin.weight, mean=0.0, std=1.0 / math.sqrt(fan_in))
    return lin


class MLP(nn.Module):
    """F(x) = ReLU(x W₁) W₂, hidden width ``hidden_mult``·d, no biases."""

    def __init__(self, d: int, hidden_mult: int = 4):
        super().__init__()
        self.fc1 = linear(d, hidden_mult * d)
        self.fc2 = linear(hidden_mult * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def rms_norm(z: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """z/√(mean z² + ε) row by row (unit gain): every row of the output has norm √d exactly at ε = 0."""
    return z * torch.rsqrt((z * z).mean(-1, keepdim=True) + eps)


def unit(z: torch.Tensor) -> torch.Tensor:
    """z/‖z‖ row by row: the point of the unit sphere in z's direction."""
    return z / z.norm(dim=-1, keepdim=True)


def softcap(z: torch.Tensor, cap: float) -> torch.Tensor:
    """cap·tanh(z/cap): Gemma 2's logit soft-capping, |output| < cap for every z."""
    return cap * torch.tanh(z / cap)


class Attention(nn.Module):
    """One bidirectional softmax head of width d: softmax(cap(QKᵀ/√d)) V W_O, Q = X W_Q, K = X W_K, V = X W_V.

    ``qkv_norm``: Q, K and V are RMS-normalised row by row before they are used (HybridNorm's QKV-norm).
    ``logit_cap``: the attention logits are soft-capped (Gemma 2), None for none.
    """

    def __init__(self, d: int, qkv_norm: bool = False, logit_cap: float | None = None, eps: float = 0.0):
        super().__init__()
        self.q, self.k, self.v, self.o = linear(d, d), linear(d, d), linear(d, d), linear(d, d)
        self.qkv_norm, self.logit_cap, self.eps = qkv_norm, logit_cap, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.q(x), self.k(x), self.v(x)
        if self.qkv_norm:
            q, k, v = rms_norm(q, self.eps), rms_norm(k, self.eps), rms_norm(v, self.eps)
        logits = q @ k.transpose(-1, -2) / math.sqrt(x.shape[-1])
        if self.logit_cap is not None:
            logits = softcap(logits, self.logit_cap)
        return self.o(torch.softmax(logits, dim=-1) @ v)
