"""ReZero (Bachlechner et al. 2020) as a user writes it: x + α·MLP(x) with α = 0 at initialisation, no norm."""
import torch
from torch import nn

from designs.mlp import mlp


class ReZero(nn.Module):
    def __init__(self, d: int, alpha: float):
        super().__init__()
        self.mlp = mlp(d)
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))

    def forward(self, x):  # (batch, n, d)
        return x + self.alpha * self.mlp(x)


def make_block(d, seed, alpha=0.0):
    return ReZero(d, alpha)
