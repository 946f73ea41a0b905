"""A plain two-layer MLP, the branch every design here uses: Linear(d, 4d) → ReLU → Linear(4d, d), no bias."""
from torch import nn


def mlp(d: int, hidden_mult: int = 4) -> nn.Sequential:
    m = hidden_mult * d
    return nn.Sequential(nn.Linear(d, m, bias=False), nn.ReLU(), nn.Linear(m, d, bias=False))
