"""The three hidden-state moments of the paper's Figure 1 (claim K7), defined once for the whole suite.

For hidden states X of shape (I, B, n, d) — I independent instances (I = 1 for a trained model), B data
samples, n tokens, width d — and for each instance:

- ``mean_abs``: mean absolute value, (1/(B n d)) Σ_{b,i,j} |x_{b,i,j}|;
- ``entrywise_var``: entry-wise variance, the variance across the d entries of a row, averaged over rows:
  (1/(B n)) Σ_{b,i} (1/d) Σ_j (x_{b,i,j} − x̄_{b,i})², x̄_{b,i} = (1/d) Σ_j x_{b,i,j};
- ``datawise_var``: data-wise variance, the variance across the B data samples of one coordinate, averaged over
  coordinates: (1/(n d)) Σ_{i,j} (1/B) Σ_b (x_{b,i,j} − x̄_{i,j})², x̄_{i,j} = (1/B) Σ_b x_{b,i,j}.

Population (1/B, 1/d) normalisation throughout, so each moment is bounded by a row-norm quantity without
sample-size factors (see F2's corollaries in theory.forward): mean_abs ≤ max‖x_i‖/√d, entrywise_var ≤
max‖x_i‖²/d, datawise_var ≤ max‖x_i‖²/d.
"""
from __future__ import annotations

import torch


def _check(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"x must be a tensor of shape (I, B, n, d), got {getattr(x, 'shape', type(x))}")


def mean_abs(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute value per instance, shape (I,)."""
    _check(x)
    return x.abs().mean(dim=(1, 2, 3))


def entrywise_var(x: torch.Tensor) -> torch.Tensor:
    """Variance across a row's d entries, averaged over the B·n rows; shape (I,)."""
    _check(x)
    return x.var(dim=-1, unbiased=False).mean(dim=(1, 2))


def datawise_var(x: torch.Tensor) -> torch.Tensor:
    """Variance across the B data samples of each (token, coordinate), averaged over them; shape (I,)."""
    _check(x)
    return x.var(dim=1, unbiased=False).mean(dim=(1, 2))


def all_moments(x: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"mean_abs": mean_abs(x), "entrywise_var": entrywise_var(x), "datawise_var": datawise_var(x)}
