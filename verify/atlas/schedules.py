"""S2 on the atlas: does the water-filling schedule train better than a uniform Δt at equal total time T?

For a configuration (placement, depth; the cpu preset: depths 4, 12, 24) the per-step backward gains ℓ_k are measured at initialisation on the
uniform-Δt model (float64, a fixed probe batch): with p_k = mean ‖∂L/∂x_k‖, step k multiplies the adjoint by
p_k/p_{k+1}, so ℓ_k Δt = |p_k/p_{k+1} − 1| (floored at 1e-3 so no step is free). S2's two-sided water-filling
(``theory.criterion.optimal_step_sizes`` with no forward budget) gives Δt_k = (1/ℓ_k − λ)₊; τ is chosen by
bisection so that Σ Δt_k equals the uniform schedule's T = K·Δt. Both schedules are trained on the same seeds
(≥ 3) at the same learning rate; reported: each seed's final validation loss, mean ± 95 % t-interval, and the
paired difference (water − uniform) with its interval.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats

from theory.criterion import optimal_step_sizes
from verify.atlas import runner
from verify.training.batched import BatchedGPT

ELL_FLOOR = 1e-3


def step_gains(placement: str, depth: int, sizes: dict, dt: float, seed: int = 0) -> np.ndarray:
    """ℓ_k per residual step, measured at init on the uniform-Δt model (see the module docstring)."""
    text = runner.corpus(sizes["corpus_bytes"])
    cfg = runner.model_config(placement, depth, sizes, text.vocab_size, torch.float64, "cpu", dt=dt)
    model = BatchedGPT(cfg, [seed])
    idx, tgt = runner._probe_batch(text, sizes, "cpu")
    _, loss, states = model(idx[None], tgt[None], trajectory=True)
    grads = torch.autograd.grad(loss.sum(), states)
    p = np.array([float(g.norm(dim=-1).mean()) for g in grads])
    return np.maximum(np.abs(p[:-1] / p[1:] - 1.0), ELL_FLOOR) / dt


def water_filling(ell: np.ndarray, total_time: float) -> np.ndarray:
    """S2's two-sided optimum with τ chosen so that Σ Δt_k = total_time (must be < Σ 1/ℓ_k)."""
    ell = np.asarray(ell, dtype=float)
    cap = float(np.sum(1.0 / ell))
    if not total_time < cap:
        raise ValueError(f"total_time must be < Σ 1/ℓ_k = {cap:.4g}, got {total_time!r}")
    lo, hi = 1e-8, 1.0
    while optimal_step_sizes(0.0, ell, math.inf, hi).total_time < total_time:
        hi *= 2
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if optimal_step_sizes(0.0, ell, math.inf, mid).total_time < total_time:
            lo = mid
        else:
            hi = mid
        if hi / lo < 1 + 1e-12:
            break
    dt = optimal_step_sizes(0.0, ell, math.inf, hi).dt
    dt = dt * (total_time / dt.sum())
    return np.maximum(dt, OFF)  # the zoo needs Δt > 0: a step the fill switches off keeps a negligible Δt


SCHEDULE_CONFIGS = {
    "test": {"placements": ("pre",), "depths": (2,), "dt": 0.25, "lr": 0.01, "seeds": (0, 1, 2)},
    "cpu": {"placements": ("pre", "peri", "post", "none"), "depths": (4, 12, 24), "dt": 0.25, "lr": 0.01,
            "seeds": (0, 1, 2)},
    "gpu": {"placements": runner.PLACEMENTS, "depths": (12, 24), "dt": 0.25, "lr": 0.003, "seeds": (0, 1, 2, 3, 4)},
}


OFF = 1e-4  # the Δt water_filling gives a step it switches off


def shallow_control(water) -> list[float]:
    """The control for "water-filling trains better": the same total time T on the same *number* k of active steps
    (Δt > OFF), evenly spaced and uniform (T/k each), the others at OFF. Water-filling at small T switches most steps
    off; if it beats uniform only because it trains a k-step network, this control does as well; if the steps it
    chooses matter, water-filling beats this control too."""
    w = np.asarray(water, dtype=float)
    on = w > OFF * (1 + 1e-9)
    k, K = int(on.sum()), w.size
    if k == 0:
        raise ValueError("water must switch on at least one step")
    total = float(w.sum() - OFF * (K - k))
    idx = np.round(np.linspace(0, K - 1, k)).astype(int) if k > 1 else np.array([K - 1])
    out = np.full(K, OFF)
    out[idx] = total / k
    return [float(v) for v in out]


def _ci(x: np.ndarray) -> float:
    return float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else math.nan


def schedule_cells(preset: str, grid: runner.AtlasGrid) -> list[dict]:
    sc = SCHEDULE_CONFIGS[preset]
    cells = []
    for depth in sc["depths"]:
        for p in sc["placements"]:
            K = 2 * depth  # attention + MLP per block
            ell = step_gains(p, depth, grid.sizes(), sc["dt"])
            water = water_filling(ell, K * sc["dt"])
            for kind, sched in (("uniform", [sc["dt"]] * K), ("water", [float(v) for v in water]),
                                ("shallow", shallow_control(water))):
                for s in sc["seeds"]:
                    cells.append({"placement": p, "depth": depth, "dt": 1.0, "lr": sc["lr"], "seed": s,
                                  "schedule": sched, "schedule_kind": kind, **grid.sizes()})
    return cells


def compare(preset: str, grid: runner.AtlasGrid, retrain: bool = False, workers: int | None = None,
            cache_dir=None) -> dict:
    """Train both schedules per configuration (cached under figures/runs/atlas_schedules.json) and compare."""
    from verify.training.cache import RunCache, run_key

    text = runner.corpus(grid.corpus_bytes)
    cells = schedule_cells(preset, grid)
    cache = RunCache("atlas_schedules" if preset != "test" else "atlas_schedules_test", directory=cache_dir,
                     enabled=not retrain)
    recs = cache.fetch([(run_key(c, text.sha256), c) for c in cells], lambda m: runner.run_cells(m, grid.device, workers))
    if retrain:
        cache.save()
    out = []
    for depth, p in ((L, p) for L in SCHEDULE_CONFIGS[preset]["depths"] for p in SCHEDULE_CONFIGS[preset]["placements"]):
        rows = {k: [(c, r) for c, r in zip(cells, recs)
                    if c["placement"] == p and c["depth"] == depth and c["schedule_kind"] == k]
                for k in ("uniform", "water", "shallow")}
        val = {k: np.array([r["val_loss"] if r["val_loss"] is not None else math.inf for _, r in v])
               for k, v in rows.items()}
        diff = val["water"] - val["uniform"]
        fin = np.isfinite(diff)
        entry = {"placement": p, "depth": depth, "lr": cells[0]["lr"],
                 "total_time": float(sum(rows["uniform"][0][0]["schedule"])),
                 "water_schedule": rows["water"][0][0]["schedule"], "seeds": [c["seed"] for c, _ in rows["uniform"]]}
        entry["shallow_schedule"] = rows["shallow"][0][0]["schedule"]
        for k in ("uniform", "water", "shallow"):
            v = val[k][np.isfinite(val[k])]
            entry[k] = {"val_loss": val[k].tolist(), "mean": float(v.mean()) if v.size else None,
                        "ci95": _ci(v) if v.size else None, "diverged": int(sum(r["diverged"] for _, r in rows[k]))}
        d = diff[fin]
        entry["difference"] = {"mean": float(d.mean()) if d.size else None, "ci95": _ci(d) if d.size else None,
                               "water_better": bool(d.size and d.mean() + _ci(d) < 0),
                               "uniform_better": bool(d.size and d.mean() - _ci(d) > 0)}
        dc = val["water"] - val["shallow"]
        dc = dc[np.isfinite(dc)]
        entry["versus_shallow"] = {"mean": float(dc.mean()) if dc.size else None, "ci95": _ci(dc) if dc.size else None,
                                   "water_better": bool(dc.size and dc.mean() + _ci(dc) < 0),
                                   "shallow_better": bool(dc.size and dc.mean() - _ci(dc) > 0)}
        out.append(entry)
    return {"configs": out, "note": "difference = water − uniform final validation loss, paired by seed; "
                                    "versus_shallow = water − the same number of active steps evenly spaced "
                                    "(shallow_control); 95 % t-interval over seeds; 'better' only when the interval "
                                    "excludes 0"}
