"""nGPT-style (Loshchilov et al. 2024) as a user writes it: h ← unit(h + α(unit(MLP(h)) − h)), rows on the sphere."""
import torch
from torch import nn

from designs.mlp import mlp


def unit(z):
    return z / z.norm(dim=-1, keepdim=True)


class NGPTStyle(nn.Module):
    def __init__(self, d: int, alpha: float):
        super().__init__()
        self.mlp = mlp(d)
        self.alpha = nn.Parameter(torch.full((d,), float(alpha)))

    def forward(self, h):
        return unit(h + self.alpha * (unit(self.mlp(h)) - h))


def make_block(d, seed, alpha=0.05):
    return NGPTStyle(d, alpha)
