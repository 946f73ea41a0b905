"""The (B, τ) stability criterion S1 applied to measurements, over a grid of residual step sizes Δt.

A Δt passes when the measured gains stay in their band at every layer, in both directions:

    1/B ≤ r̄_l/r̄_0 ≤ B            (the signal neither blows up nor vanishes)
    −τ ≤ log(p̄_l/p̄_L) ≤ τ        (gradients neither explode nor vanish towards the input)

The recommendation is the largest passing Δt on the grid; when it is the grid's largest value (a larger Δt may
pass too) or when no Δt passes (a smaller one may), the result says so. This is the *measured* criterion; the
predicted stable (Δt, learning-rate) region from a divergence atlas is a separate section (``advice``) of the
result, left to the module that provides it.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from verify.check.measure import gains, run_chain


def sweep(build: Callable[[float], list], x0: torch.Tensor, seed: int, B: float, tau: float,
          grid: Sequence[float], progress=None) -> dict:
    rows = []
    for dt in grid:
        g = gains(run_chain(build(dt), x0, seed))
        fails = []
        if g["forward_gain"] > B:
            fails.append(f"forward gain {g['forward_gain']:.3g} > B")
        if g["forward_gain_min"] < 1.0 / B:
            fails.append(f"signal shrinks to {g['forward_gain_min']:.3g} < 1/B")
        if g["backward_log_gain"] > tau:
            fails.append(f"gradient log-gain {g['backward_log_gain']:.3g} > τ")
        if g["backward_log_gain_min"] < -tau:
            fails.append(f"gradient log-gain {g['backward_log_gain_min']:.3g} < −τ")
        rows.append({"dt": float(dt), **g, "stable": not fails, "why": "; ".join(fails)})
        if progress is not None:
            progress()
    ok = [r["dt"] for r in rows if r["stable"]]
    best = max(ok) if ok else None
    grid_sorted = sorted(float(g) for g in grid)
    if best is None:
        edge, note = "lower", (f"no Δt on the grid passes (smallest tried {grid_sorted[0]:g}: "
                               f"{next(r['why'] for r in rows if r['dt'] == grid_sorted[0])}); extend --dt-grid "
                               f"downwards")
    elif best == grid_sorted[-1]:
        edge, note = "upper", (f"the largest Δt on the grid ({best:g}) passes, so the optimum may lie beyond it; "
                               f"extend --dt-grid upwards")
    else:
        edge, note = None, f"largest passing Δt on the grid {grid_sorted[0]:g}…{grid_sorted[-1]:g}"
        if any(not r["stable"] for r in rows if r["dt"] < best):
            note += "; some smaller Δt fail (the stable set is not an interval on this grid)"
    return {"B": B, "tau": tau, "grid": grid_sorted, "recommended_dt": best, "at_edge": edge, "note": note,
            "sweep": rows}
