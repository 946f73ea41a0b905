"""A plain two-layer MLP, the branch every design here uses: Linear(d, 4d) → ReLU → Linear(4d, d), no bias."""
from torch import nn


def mlp(d: int, hidden_mult: int = 4) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, hidden_mult * d, bias=False), nn.ReLU(), nn.Linear(hidden_mult * d, d, bias=False))
