"""The optional short training (``--train-steps N``): each instance an independent byte-level language model.

Per-instance token embedding (I, 256, d) and read-out (I, d, 256) around the measured layers, so each of the I
instances trains on its own sequences from the embedded corpus and stays an independent model; AdamW with
decoupled weight decay. After training the layers are measured again on the same Gaussian input as at
initialisation, so the two curves are comparable.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from verify.check.contract import ContractError, forward_error


class InstanceLM(nn.Module):
    """A byte-level language model around the layers, one independent model per instance."""

    def __init__(self, layers: Sequence[nn.Module], n_instances: int, d: int, seed: int, vocab: int = 256):
        super().__init__()
        g = torch.Generator().manual_seed(seed + 104729)
        self.layers = nn.ModuleList(layers)
        self.embed = nn.Parameter(torch.randn(n_instances, vocab, d, generator=g, dtype=torch.float64))
        self.head = nn.Parameter(torch.randn(n_instances, d, vocab, generator=g, dtype=torch.float64) / math.sqrt(d))

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:  # idx (I, n) -> mean CE loss
        x = torch.gather(self.embed, 1, idx.unsqueeze(-1).expand(-1, -1, self.embed.shape[-1]))  # (I, n, d)
        for layer in self.layers:
            x = layer(x)
        c = x - x.mean(-1, keepdim=True)
        logits = (c / torch.sqrt((c * c).mean(-1, keepdim=True) + 1e-5)) @ self.head  # (I, n, 256)
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def train_layers(layers: Sequence[nn.Module], n_instances: int, d: int, n_tokens: int, steps: int, seed: int,
                 lr: float = 1e-3, weight_decay: float = 0.1, progress=None) -> dict:
    """Train the layers in place for ``steps`` AdamW steps on the embedded corpus; returns the loss curve ends."""
    from verify.training.corpus import default_corpus

    corpus = default_corpus(max_bytes=200_000)
    model = InstanceLM(layers, n_instances, d, seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    losses = []
    model.train()
    try:
        for _ in range(steps):
            idx, tgt = corpus.batch("train", n_instances, n_tokens, rng)  # one sequence per instance
            try:
                loss = model(idx, tgt)
            except ContractError:
                raise
            except Exception as exc:
                raise forward_error("training forward pass", exc) from exc
            if not torch.isfinite(loss):
                raise ContractError(f"training diverged: the loss is {float(loss)} after {len(losses)} steps (try a "
                                    f"smaller --lr or --dt)")
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if progress is not None:
                progress()
    finally:
        model.eval()
    return {"steps": steps, "lr": lr, "weight_decay": weight_decay, "loss_first": losses[0],
            "loss_last": losses[-1], "corpus": corpus.describe()}
