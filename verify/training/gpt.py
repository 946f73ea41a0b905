"""A small GPT whose blocks are the zoo's: token embedding, learned positions, a zoo Stack, final norm, head.

What it is for: training real (small) language models whose every residual step is the zoo's reference step,
so the theory (written against ``verify.engine.zoo``) applies to them verbatim and the monitors can hook each step.
The hidden state of a batch of B sequences of length T is the zoo's ``(1, B, T, d)`` (one instance, a data
batch); attention is causal. Placement, Δt (per step), norm kind and ε all come from the ``StackConfig``.

What it is not: fast. There is no fused attention, no dropout and no weight tying (a tied head would couple
the embedding's weight decay to the head's, which F6 keeps apart).
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as nnf
from torch import nn

from verify.engine.zoo import Stack, StackConfig

# Parameters that weight decay acts on: the weight matrices (embeddings, attention/MLP maps, head); never the
# norm gains/biases or the additive biases.
DECAYED_LEAVES = ("W_q", "W_k", "W_v", "W_o", "W1", "W2")
DECAYED_TOP = ("wte", "wpe", "head")


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    """A GPT: ``vocab_size`` tokens, context ``block_size``, and the zoo stack ``stack`` (causal, final norm).

    ``emb_std`` is the embedding initialisation (GPT-2 uses 0.02); ``head_bias`` adds a bias to the logits.
    """

    vocab_size: int
    block_size: int
    stack: StackConfig
    emb_std: float = 0.02
    head_bias: bool = False

    def __post_init__(self):
        for name in ("vocab_size", "block_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if not isinstance(self.stack, StackConfig):
            raise ValueError(f"stack must be a StackConfig, got {type(self.stack).__name__}")
        if not self.stack.causal:
            raise ValueError("stack must have causal=True (a GPT attends to the past only)")
        if not (isinstance(self.emb_std, (int, float)) and math.isfinite(self.emb_std) and self.emb_std > 0):
            raise ValueError(f"emb_std must be a finite number > 0, got {self.emb_std!r}")

    @property
    def d(self) -> int:
        return self.stack.d

    def replace(self, **changes) -> "GPTConfig":
        return dataclasses.replace(self, **changes)


def gpt_config(vocab_size: int = 256, block_size: int = 64, d: int = 64, n_blocks: int = 4, n_heads: int = 4,
               placement: str = "pre", dt=1.0, norm: str = "layer", eps: float = 1e-5, final_norm: bool = True,
               dtype: torch.dtype = torch.float32, device: str = "cpu", out_scale: float | None = None,
               emb_std: float = 0.02, bias: bool = True, activation: str = "gelu", head_bias: bool = False,
               **stack_kw) -> GPTConfig:
    """The usual GPT layout on the zoo. ``out_scale`` defaults to GPT-2's 1/√(2L) on the residual output maps."""
    if out_scale is None:
        out_scale = 1.0 / math.sqrt(2 * n_blocks)
    stack = StackConfig(d=d, n_blocks=n_blocks, placement=placement, n_heads=n_heads, norm=norm, eps=eps,
                        activation=activation, causal=True, dt=dt, out_scale=out_scale, bias=bias,
                        final_norm=final_norm, dtype=dtype, device=device, **stack_kw)
    return GPTConfig(vocab_size, block_size, stack, emb_std=emb_std, head_bias=head_bias)


class GPT(nn.Module):
    """Embedding → zoo Stack (I = 1) → final norm (the Stack's) → linear head, with next-token cross-entropy."""

    def __init__(self, cfg: GPTConfig, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        s = cfg.stack
        gen = torch.Generator().manual_seed(int(seed))
        # Drawn on the CPU in float64 from an explicit generator, then moved: the same seed is the same model
        # on every device and dtype (the zoo's convention).
        self.wte = nn.Parameter(cfg.emb_std * torch.randn(cfg.vocab_size, s.d, generator=gen, dtype=torch.float64))
        self.wpe = nn.Parameter(cfg.emb_std * torch.randn(cfg.block_size, s.d, generator=gen, dtype=torch.float64))
        self.head = nn.Parameter(torch.randn(s.d, cfg.vocab_size, generator=gen, dtype=torch.float64) / math.sqrt(s.d))
        if cfg.head_bias:
            self.head_b = nn.Parameter(torch.zeros(cfg.vocab_size, dtype=torch.float64))
        else:
            self.register_parameter("head_b", None)
        self.stack = Stack(s, n_instances=1, seed=int(seed) + 1)
        self.to(device=self.stack.device, dtype=s.dtype)

    @property
    def device(self) -> torch.device:
        return self.wte.device

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        """X_0 = token embedding + position embedding, as the zoo's hidden state (1, B, T, d)."""
        if idx.dim() != 2:
            raise ValueError(f"idx must have shape (B, T), got {tuple(idx.shape)}")
        T = idx.shape[1]
        if T > self.cfg.block_size:
            raise ValueError(f"idx has T={T} tokens, more than block_size={self.cfg.block_size}")
        x = self.wte[idx] + self.wpe[:T]  # (B, T, d)
        return x.unsqueeze(0)  # (1, B, T, d)

    def logits_from_hidden(self, h: torch.Tensor) -> torch.Tensor:
        """The head applied to the final-normed state h (1, B, T, d) → logits (B, T, V)."""
        out = h[0] @ self.head
        return out if self.head_b is None else out + self.head_b

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, trajectory: bool = False):
        """Logits (B, T, V); with ``targets`` also the mean cross-entropy; with ``trajectory`` also [X_0..X_K].

        Returns ``(logits, loss)`` or ``(logits, loss, states)``; ``loss`` is None without targets.
        """
        x = self.embed(idx)
        out, states = self.stack(x, trajectory=True, validate=False)  # out: (1, B, T, d) after the final norm
        logits = self.logits_from_hidden(out)
        loss = None
        if targets is not None:
            loss = nnf.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        return (logits, loss, states) if trajectory else (logits, loss)

    def decay_groups(self) -> tuple[list[tuple[str, nn.Parameter]], list[tuple[str, nn.Parameter]]]:
        """(decayed, not decayed) named parameters: weight decay acts on weight matrices only."""
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            (decay if (leaf in DECAYED_LEAVES or name in DECAYED_TOP) else no_decay).append((name, p))
        return decay, no_decay

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


@torch.no_grad()
def state_digest(model: nn.Module) -> str:
    """SHA-256 of every parameter's bytes in name order: identical weights ⇔ identical digest."""
    import hashlib

    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()
