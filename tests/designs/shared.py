"""The batched protocol written with nn.Linear: the weights are shared across the leading instance dimension."""
from torch import nn

from designs.mlp import mlp


class SharedPre(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.ln, self.mlp = nn.LayerNorm(d), mlp(d)

    def forward(self, x):  # (n_instances, n, d), one network for every instance
        return x + self.mlp(self.ln(x))


def make_block(d, n_instances, seed):
    return SharedPre(d)
