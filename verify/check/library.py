"""Library blocks for ``--module``: built from a small config with random weights, nothing downloaded.

Each entry is a plain-protocol factory ``make(d, seed, n_heads=1, **options)`` returning a module that maps
(batch, n, d) to the same shape and exposes its two residual steps (``attention_step``, ``mlp_step``, composing
to ``forward``) and the submodules an interpretability hook would read (``branch_modules``):

- ``torch-encoder`` / ``torch-encoder-prenorm`` — ``torch.nn.TransformerEncoderLayer`` with ``norm_first`` False
  (post-LN, torch's default) or True (pre-LN); ReLU MLP of width 4d, dropout 0, torch's default initialisation;
- ``gpt2`` — ``transformers``' ``GPT2Block`` (pre-LN, GELU MLP of width 4d, causal attention), weights N(0, 0.02²)
  as ``GPT2PreTrainedModel`` draws them (``n_layer=L`` adds GPT-2's 1/√(2L) on the output projections);
- ``llama`` — ``transformers``' ``LlamaDecoderLayer`` (pre-RMSNorm, SwiGLU MLP of width ⌊8d/3⌋, rotary
  positions, causal attention), weights N(0, 0.02²).

The two ``transformers`` blocks need the optional extra (``pip install 'ln-stability[hf]'``); everything else
in the tool runs without it.
"""
from __future__ import annotations

import functools
import math

import torch
from torch import nn

from verify.check.contract import ContractError

DTYPE = torch.float64


def _causal_mask(x: torch.Tensor) -> torch.Tensor:
    """Additive (1, 1, n, n) mask: 0 on and below the diagonal, −inf above (what the library models build)."""
    n = x.shape[-2]
    upper = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)
    return torch.zeros(n, n, dtype=x.dtype, device=x.device).masked_fill(upper, float("-inf"))[None, None]


class TorchEncoderBlock(nn.Module):
    """``nn.TransformerEncoderLayer`` (batch_first) with its two residual steps spelled out."""

    residual_steps = ("attention_step", "mlp_step")
    branch_modules = ("layer.self_attn", "layer.linear2")

    def __init__(self, layer: nn.TransformerEncoderLayer):
        super().__init__()
        self.layer = layer

    def train(self, mode: bool = True):
        # Dropout is 0, so training mode computes the same map; in eval mode nn.MultiheadAttention may take a fused
        # kernel (aten::_native_multi_head_attention) that has no derivative, and the tool needs gradients.
        super().train(mode)
        self.layer.train(True)
        return self

    def attention_step(self, x):  # (B, n, d)
        L = self.layer
        if L.norm_first:
            return x + L._sa_block(L.norm1(x), None, None)
        return L.norm1(x + L._sa_block(x, None, None))

    def mlp_step(self, x):
        L = self.layer
        if L.norm_first:
            return x + L._ff_block(L.norm2(x))
        return L.norm2(x + L._ff_block(x))

    def forward(self, x):
        return self.mlp_step(self.attention_step(x))


def torch_encoder(d: int, seed: int, n_heads: int = 1, norm_first: bool = False, activation: str = "relu",
                  layer_norm_eps: float = 1e-5) -> nn.Module:
    if d % n_heads:
        raise ValueError(f"n_heads must divide d, got n_heads={n_heads}, d={d}")
    torch.manual_seed(seed)
    layer = nn.TransformerEncoderLayer(d, n_heads, dim_feedforward=4 * d, dropout=0.0, activation=activation,
                                       layer_norm_eps=layer_norm_eps, batch_first=True, norm_first=bool(norm_first),
                                       dtype=DTYPE)
    return TorchEncoderBlock(layer)


def _transformers(what: str):
    try:
        import transformers
    except ImportError as exc:
        raise ContractError(f"--module {what} needs the optional package 'transformers' (pip install "
                            f"'ln-stability[hf]')") from exc
    return transformers


@torch.no_grad()
def _normal_init(module: nn.Module, std: float, gen: torch.Generator) -> None:
    """Every weight matrix N(0, std²), biases 0, norm gains 1 — the ``_init_weights`` of the library models."""
    for name, p in module.named_parameters():
        if p.dim() >= 2:
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * std)
        elif name.endswith("bias"):
            p.zero_()
        else:
            p.fill_(1.0)


class GPT2BlockWrapper(nn.Module):
    residual_steps = ("attention_step", "mlp_step")
    branch_modules = ("block.attn", "block.mlp")

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def attention_step(self, x):
        b = self.block
        return x + b.attn(b.ln_1(x), attention_mask=_causal_mask(x))[0]

    def mlp_step(self, x):
        b = self.block
        return x + b.mlp(b.ln_2(x))

    def forward(self, x):
        out = self.block(x, attention_mask=_causal_mask(x))
        return out[0] if isinstance(out, tuple) else out


def gpt2(d: int, seed: int, n_heads: int = 1, n_layer: int | None = None, initializer_range: float = 0.02,
         activation_function: str = "gelu_new") -> nn.Module:
    _transformers("gpt2")
    from transformers import GPT2Config
    from transformers.models.gpt2.modeling_gpt2 import GPT2Block

    cfg = GPT2Config(n_embd=d, n_head=n_heads, n_layer=n_layer or 1, resid_pdrop=0.0, embd_pdrop=0.0,
                     attn_pdrop=0.0, activation_function=activation_function, attn_implementation="eager")
    torch.manual_seed(seed)
    block = GPT2Block(cfg, layer_idx=0).to(DTYPE)
    gen = torch.Generator().manual_seed(seed)
    _normal_init(block, initializer_range, gen)
    if n_layer:  # GPT-2's residual-projection scaling, std/√(2L)
        with torch.no_grad():
            for name, p in block.named_parameters():
                if name.endswith("c_proj.weight"):
                    p.mul_(1.0 / math.sqrt(2 * n_layer))
    return GPT2BlockWrapper(block.eval())


class LlamaLayerWrapper(nn.Module):
    residual_steps = ("attention_step", "mlp_step")
    branch_modules = ("layer.self_attn", "layer.mlp")

    def __init__(self, layer: nn.Module, rotary: nn.Module):
        super().__init__()
        self.layer, self.rotary = layer, rotary

    def _positions(self, x):
        pos = torch.arange(x.shape[-2], device=x.device)[None]
        cos, sin = self.rotary(x, pos)
        return cos.to(x.dtype), sin.to(x.dtype)

    def attention_step(self, x):
        L = self.layer
        out = L.self_attn(hidden_states=L.input_layernorm(x), attention_mask=_causal_mask(x),
                          position_embeddings=self._positions(x))[0]
        return x + out

    def mlp_step(self, x):
        L = self.layer
        return x + L.mlp(L.post_attention_layernorm(x))

    def forward(self, x):
        out = self.layer(x, attention_mask=_causal_mask(x), position_embeddings=self._positions(x))
        return out[0] if isinstance(out, tuple) else out


def llama(d: int, seed: int, n_heads: int = 1, intermediate_size: int | None = None,
          initializer_range: float = 0.02, rms_norm_eps: float = 1e-6) -> nn.Module:
    _transformers("llama")
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

    if d % n_heads or (d // n_heads) % 2:
        raise ValueError(f"d/n_heads must be an even integer (rotary positions), got d={d}, n_heads={n_heads}")
    cfg = LlamaConfig(hidden_size=d, intermediate_size=intermediate_size or (8 * d) // 3,
                      num_attention_heads=n_heads, num_key_value_heads=n_heads, num_hidden_layers=1,
                      rms_norm_eps=rms_norm_eps, attn_implementation="eager")
    torch.manual_seed(seed)
    layer = LlamaDecoderLayer(cfg, layer_idx=0).to(DTYPE)
    _normal_init(layer, initializer_range, torch.Generator().manual_seed(seed))
    return LlamaLayerWrapper(layer.eval(), LlamaRotaryEmbedding(cfg))


LIBRARY = {
    "torch-encoder": (functools.partial(torch_encoder, norm_first=False),
                      "torch.nn.TransformerEncoderLayer, norm_first=False (post-LN)"),
    "torch-encoder-prenorm": (functools.partial(torch_encoder, norm_first=True),
                              "torch.nn.TransformerEncoderLayer, norm_first=True (pre-LN)"),
    "gpt2": (gpt2, "transformers GPT2Block (pre-LN), small config, N(0, 0.02²) weights [needs transformers]"),
    "llama": (llama, "transformers LlamaDecoderLayer (pre-RMSNorm, SwiGLU, RoPE) [needs transformers]"),
}
ALIASES = {"torch.nn.TransformerEncoderLayer": "torch-encoder", "TransformerEncoderLayer": "torch-encoder",
           "GPT2Block": "gpt2", "LlamaDecoderLayer": "llama"}


def library_factory(name: str):
    key = ALIASES.get(name, name)
    if key not in LIBRARY:
        raise ContractError(f"--module must be one of {sorted(LIBRARY)} (or {sorted(ALIASES)}), got {name!r}")
    fn, _ = LIBRARY[key]
    if key in ("gpt2", "llama"):
        _transformers(key)
    return key, fn
