"""CompleteP / depth-µP: each residual branch scaled by Δt = L^−α for a stack of depth L.

    x⁺ = x + L^−α F(N(x)),   N an RMS norm (unit gain, ε = 0), F a bias-free ReLU MLP

α = 1 is CompleteP (Dey et al. 2025, "Don't be lazy: CompleteP enables compute-efficient deep transformers"),
α = 1/2 depth-µP (Yang et al. 2023, "Tensor Programs VI"; Bordelon et al. 2023). The factory declares ``depth``, so
``verify.check`` passes the depth of every stack it builds (the coordinate check builds several). At initialisation
E‖x_L‖²/d = E‖x_0‖²/d + (1/2)·L^{1−2α} (claim X11): depth-independent at α = 1/2, → 1 at α = 1.
"""
from __future__ import annotations

from torch import nn

from verify.check.designs._parts import MLP, rms_norm


class CompletePBlock(nn.Module):
    def __init__(self, d: int, depth: int, alpha: float = 1.0):
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
        self.mlp = MLP(d)
        self.scale = float(depth) ** (-float(alpha))

    def forward(self, x):
        return x + self.scale * self.mlp(rms_norm(x))


def make_block(d: int, seed: int = 0, depth: int = 1, alpha: float = 1.0) -> nn.Module:
    return CompletePBlock(d, depth, alpha)
