"""Gemma-2-style sandwich norm with logit soft-capping (Gemma Team 2024, "Gemma 2: Improving Open Language Models
at a Practical Size").

    x' = x + N₂(Attn_cap(N₁(x))),   x⁺ = x' + N₄(F(N₃(x')))

N_i RMS norms with gain (1 + w_i), w_i = 0 at initialisation (ε = 1e-6 as Gemma, ``eps`` to change), the attention
logits soft-capped as c·tanh(z/c) with c = 50, F a bias-free ReLU MLP. The read-out's logits are soft-capped at
30 (:func:`final_logits`). Each residual step adds a row of norm exactly √d·(1 − O(ε)) for any weights (peri-LN,
F2), so E‖x_L‖² = E‖x_0‖² + 2Ld at initialisation; every soft-capped logit lies in (−c, c) (claim X14).
"""
from __future__ import annotations

import torch
from torch import nn

from verify.check.designs._parts import MLP, Attention, rms_norm, softcap

ATTN_LOGIT_CAP = 50.0
FINAL_LOGIT_CAP = 30.0


class GemmaRMSNorm(nn.Module):
    def __init__(self, d: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(d))
        self.eps = eps

    def forward(self, z):
        return rms_norm(z, self.eps) * (1.0 + self.weight)


class GemmaBlock(nn.Module):
    residual_steps = ("attention_step", "mlp_step")

    def __init__(self, d: int, eps: float = 1e-6, attn_cap: float = ATTN_LOGIT_CAP):
        super().__init__()
        self.pre_attn_norm, self.post_attn_norm = GemmaRMSNorm(d, eps), GemmaRMSNorm(d, eps)
        self.pre_ffw_norm, self.post_ffw_norm = GemmaRMSNorm(d, eps), GemmaRMSNorm(d, eps)
        self.attn = Attention(d, logit_cap=attn_cap)
        self.mlp = MLP(d)
        # the residual identity reads what is added: the post-norms' outputs, not the attention/MLP outputs
        self.branch_modules = ("post_attn_norm", "post_ffw_norm")

    def attention_step(self, x):
        return x + self.post_attn_norm(self.attn(self.pre_attn_norm(x)))

    def mlp_step(self, x):
        return x + self.post_ffw_norm(self.mlp(self.pre_ffw_norm(x)))

    def forward(self, x):
        return self.mlp_step(self.attention_step(x))


def final_logits(x: torch.Tensor, unembedding: torch.Tensor, cap: float = FINAL_LOGIT_CAP) -> torch.Tensor:
    """Gemma 2's read-out: cap·tanh((x Wᵤ)/cap) — every logit in (−cap, cap), whatever the hidden state."""
    return softcap(x @ unembedding, cap)


def make_block(d: int, seed: int = 0, eps: float = 1e-6, attn_cap: float = ATTN_LOGIT_CAP) -> nn.Module:
    return GemmaBlock(d, eps, attn_cap)
