"""A deliberately unstable block: no norm and a doubled branch, x + 2·MLP(x) — exponential growth."""
from torch import nn

from designs.mlp import mlp


class Unstable(nn.Module):
    def __init__(self, d: int, gain: float):
        super().__init__()
        self.mlp, self.gain = mlp(d), gain

    def forward(self, x):
        return x + self.gain * self.mlp(x)


def make_block(d, seed, gain=2.0):
    return Unstable(d, gain)
