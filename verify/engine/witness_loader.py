"""Load a witness spec from ``theory.witnesses`` into a batched ``verify.engine.zoo.Stack``.

A spec names zoo parameters with their leading instance dimension; everything it does not name keeps the zoo's
seeded initialisation (``spec["seed"]``). Loading goes through ``load_state_dict(strict=False)``, and an unknown
name or a wrong shape is a ValueError naming the parameter, so a witness can never be silently half-loaded.
"""
from __future__ import annotations

import numpy as np
import torch

from verify.engine.zoo import Stack, StackConfig


def load_witness(spec: dict, device: str = "cpu", dtype: torch.dtype = torch.float64) -> tuple[Stack, torch.Tensor]:
    """Return ``(stack, x0)`` on ``device`` for a witness spec (see ``theory.witnesses``)."""
    for key in ("config", "params", "x0"):
        if key not in spec:
            raise ValueError(f"spec must have a {key!r} entry, got keys {sorted(spec)}")
    x0 = np.asarray(spec["x0"], dtype=float)
    if x0.ndim < 3:
        raise ValueError(f"x0 must have shape (I, *batch, n, d), got {x0.shape}")
    cfg = StackConfig(**spec["config"], dtype=dtype, device=device)
    stack = Stack(cfg, n_instances=x0.shape[0], seed=int(spec.get("seed", 0)))
    own = stack.state_dict()
    state = {}
    for name, value in spec["params"].items():
        if name not in own:
            raise ValueError(f"params names {name!r}, which is not a parameter of this stack")
        arr = np.asarray(value, dtype=float)
        if tuple(arr.shape) != tuple(own[name].shape):
            raise ValueError(f"params[{name!r}] must have shape {tuple(own[name].shape)}, got {arr.shape}")
        state[name] = torch.from_numpy(np.ascontiguousarray(arr))  # float64; load_state_dict casts and moves
    stack.load_state_dict(state, strict=False)
    x = torch.from_numpy(np.ascontiguousarray(x0)).to(device=stack.device, dtype=dtype)
    return stack, x
