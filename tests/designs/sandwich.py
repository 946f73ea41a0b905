"""Sandwich-LN (Ding et al. 2021, CogView): x + LN_out(MLP(LN_in(x))), written with nn.LayerNorm / nn.RMSNorm."""
from torch import nn

from designs.mlp import mlp


class Sandwich(nn.Module):
    def __init__(self, d: int, norm: str):
        super().__init__()
        Norm = nn.LayerNorm if norm == "layer" else nn.RMSNorm
        self.norm_in, self.mlp, self.norm_out = Norm(d), mlp(d), Norm(d)

    def forward(self, x):
        return x + self.norm_out(self.mlp(self.norm_in(x)))


def make_block(d, seed, norm="layer"):
    return Sandwich(d, norm)
