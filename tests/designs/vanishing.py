"""A deliberately vanishing block: 0.7·x plus a small branch — the signal shrinks ~10⁵-fold over 32 blocks."""
from torch import nn

from designs.mlp import mlp


class Vanishing(nn.Module):
    def __init__(self, d: int, keep: float):
        super().__init__()
        self.mlp, self.keep = mlp(d), keep

    def forward(self, x):
        return self.keep * x + 0.01 * self.mlp(x)


def make_block(d, seed, keep=0.7):
    return Vanishing(d, keep)
