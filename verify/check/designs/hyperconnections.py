"""Hyper-connections with a doubly-stochastic residual mixing matrix (Zhu et al. 2025, "Hyper-Connections";
the Sinkhorn projection of DeepSeek's manifold-constrained hyper-connections, Xie et al. 2025/2026, "mHC").

The hidden state of width d is read as s streams of width d_s = d/s, X ∈ R^{s×d_s} per token:

    h = Σ_k a_k X_k,   y = F(N(h)),   X⁺_j = Σ_k H_jk X_k + b_j y

with a = σ(θ_pre), b = 2σ(θ_post), H = Sinkhorn(exp(Θ)) doubly stochastic (rows and columns sum to 1), N an RMS norm
(unit gain, ε = 0), F a bias-free ReLU MLP of width d_s. Θ, θ_pre, θ_post are parameters drawn N(0, 1); the
Sinkhorn projection runs in every forward pass, so H stays doubly stochastic for any Θ. The residual path's gain is
exactly 1: ‖H X‖_F ≤ ‖X‖_F with equality on equal streams, and every product of such H has spectral norm 1
(claim X12, docs/theorems/G.md). ``mixing="row"`` normalises rows only (the wrong design the meta-test uses).
"""
from __future__ import annotations

import torch
from torch import nn

from verify.check.designs._parts import MLP, rms_norm

SINKHORN_ITERS = 60


def sinkhorn(logits: torch.Tensor, iters: int = SINKHORN_ITERS) -> torch.Tensor:
    """Alternate row and column normalisation of exp(logits) (s × s); ends on a column step."""
    h = torch.exp(logits - logits.max())
    for _ in range(iters):
        h = h / h.sum(-1, keepdim=True)
        h = h / h.sum(-2, keepdim=True)
    return h


class HyperConnectionBlock(nn.Module):
    def __init__(self, d: int, streams: int = 4, mixing: str = "sinkhorn"):
        super().__init__()
        if isinstance(streams, bool) or not isinstance(streams, int) or streams < 1 or d % streams:
            raise ValueError(f"streams must be a positive integer dividing d = {d}, got {streams!r}")
        if mixing not in ("sinkhorn", "row"):
            raise ValueError(f"mixing must be 'sinkhorn' or 'row', got {mixing!r}")
        self.s, self.ds, self.mixing = streams, d // streams, mixing
        self.mlp = MLP(self.ds)
        self.res_logits = nn.Parameter(torch.randn(streams, streams))
        self.pre_logits = nn.Parameter(torch.randn(streams))
        self.post_logits = nn.Parameter(torch.randn(streams))

    def mixing_matrix(self) -> torch.Tensor:
        if self.mixing == "row":
            return torch.softmax(self.res_logits, dim=-1)
        return sinkhorn(self.res_logits)

    def post_weights(self) -> torch.Tensor:
        return 2.0 * torch.sigmoid(self.post_logits)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """y = F(N(Σ_k a_k X_k)) for x of shape (..., d): (..., d_s)."""
        xs = x.unflatten(-1, (self.s, self.ds))
        h = (torch.sigmoid(self.pre_logits)[:, None] * xs).sum(-2)
        return self.mlp(rms_norm(h))

    def mixed(self, x: torch.Tensor) -> torch.Tensor:
        """The residual path alone, H X (..., d)."""
        xs = x.unflatten(-1, (self.s, self.ds))
        return (self.mixing_matrix() @ xs).flatten(-2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.branch(x)
        xs = x.unflatten(-1, (self.s, self.ds))
        out = self.mixing_matrix() @ xs + self.post_weights()[:, None] * y.unsqueeze(-2)
        return out.flatten(-2)


def make_block(d: int, seed: int = 0, streams: int = 4, mixing: str = "sinkhorn") -> nn.Module:
    return HyperConnectionBlock(d, streams, mixing)
