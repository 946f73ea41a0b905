"""A pre-LN block with attention: x + Attn(LN(x)), then x + MLP(LN(x)), exposing its two residual steps."""
from torch import nn

from designs.mlp import mlp


class PreNorm(nn.Module):
    def __init__(self, d: int, n_heads: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, n_heads, bias=False, batch_first=True)
        self.mlp = mlp(d)

    def attention_step(self, x):
        h = self.ln1(x)
        return x + self.attn(h, h, h, need_weights=False)[0]

    def mlp_step(self, x):
        return x + self.mlp(self.ln2(x))

    def forward(self, x):
        return self.mlp_step(self.attention_step(x))


def make_block(d, seed, n_heads=1):
    return PreNorm(d, n_heads)
