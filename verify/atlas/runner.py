"""The divergence atlas: short training runs over placement × Δt × learning rate × depth, batched and cached.

Every (placement, depth) is one ``BatchedGPT`` whose instances are the (Δt, lr, seed) cells of that slice — one
batched computation per slice, the slices spread over the cores (``run_parallel``). Training is float32 AdamW
(``train_batched``: per-instance lr, diverged instances frozen); the quantities the predictive criterion uses are
measured at initialisation in float64 on the very same weights (``init_measurements``). Each run's record is
cached under ``figures/runs/atlas*.json`` keyed by its full configuration (``verify.training.cache``).

Recorded per run: diverged (the loss or a gradient stopped being finite, or the final training loss is not
below the initial one), the step it happened, loss spikes (steps whose loss exceeds 1.1× the best loss so far,
after the warm-up), the final validation loss, the largest hidden-state row norm and the largest gradient norm
over training; at initialisation: the loss, the gradient norm, the sign-step logit speed m (S4), the forward gain
max_k mean‖x_k‖/mean‖x_0‖ and the backward log-gain max_k log(‖∂L/∂x_k‖/‖∂L/∂x_K‖) (S1's measured quantities).
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import torch

from theory._domain import require_int
from verify.training.batched import BatchedGPT, BatchedTrainConfig, train_batched
from verify.training.gpt import gpt_config

# The zoo's placements the atlas covers (outnorm is a zoo extra, not one of the seven).
PLACEMENTS = ("post", "pre", "peri", "none", "deepnorm", "mixln", "lns")
SPIKE_FACTOR = 1.5  # a step is a spike when its loss exceeds 1.5× the best loss so far (after warm-up)
EPS_FD = 1e-6  # finite-difference step of the sign-step speed, float64: truncation O(ε·m²) ≪ m, round-off ~1e-10/ε


@dataclasses.dataclass(frozen=True)
class AtlasGrid:
    """One atlas: the grid and the sizes of every run (all runs of an atlas share d, T, batch, steps)."""

    placements: tuple[str, ...] = PLACEMENTS
    depths: tuple[int, ...] = (1, 2, 4)
    dts: tuple[float, ...] = (0.25, 1.0, 4.0)
    lrs: tuple[float, ...] = tuple(0.125 * 2.0 ** k for k in range(7))
    seeds: tuple[int, ...] = (0,)
    d: int = 32
    n_heads: int = 2
    block_size: int = 16
    batch_size: int = 8
    steps: int = 60
    warmup: int = 6
    eval_batches: int = 4
    corpus_bytes: int = 400_000
    device: str = "cpu"

    def __post_init__(self):
        from verify.engine.zoo import Placement

        known = [p.value for p in Placement]
        for p in self.placements:
            if p not in known:
                raise ValueError(f"placements must be zoo placements {tuple(known)}, got {p!r}")
        for name in ("depths", "dts", "lrs", "seeds", "placements"):
            if not getattr(self, name):
                raise ValueError(f"{name} must be non-empty")
        for L in self.depths:
            require_int("depths", L, 1)
        if any(not (v > 0 and math.isfinite(v)) for v in (*self.dts, *self.lrs)):
            raise ValueError("dts and lrs must be finite and > 0")
        if list(self.lrs) != sorted(set(self.lrs)):
            raise ValueError("lrs must be strictly ascending")
        require_int("d", self.d, 2)
        require_int("steps", self.steps, 2)

    def sizes(self) -> dict:
        """What every run shares (part of each run's cache key)."""
        return {k: getattr(self, k) for k in ("d", "n_heads", "block_size", "batch_size", "steps", "warmup",
                                              "eval_batches", "corpus_bytes")}

    def cells(self) -> list[dict]:
        """Every run's configuration, in a fixed order."""
        return [{"placement": p, "depth": L, "dt": float(dt), "lr": float(lr), "seed": int(s), **self.sizes()}
                for p in self.placements for L in self.depths for dt in self.dts for lr in self.lrs
                for s in self.seeds]


# AdamW peak learning rates of the cpu atlas: 2^-10 ≈ 1e-3 (where people train), 2^-8, 2^-6, then every octave from
# 2^-5 to 2^3 (the normalised placements' boundary sits at 2-4, the un-normalised one's at 2^-9-2^-2)
CPU_LRS = (2.0 ** -10, 2.0 ** -8, 2.0 ** -6, *(2.0 ** k for k in range(-5, 4)))

PRESETS = {
    # the default test tier: seconds
    "test": AtlasGrid(placements=("pre", "post", "none"), depths=(1, 2), dts=(1.0,), lrs=(3e-3, 0.3, 30.0),
                      d=16, block_size=8, batch_size=4, steps=12, warmup=2, eval_batches=1, corpus_bytes=64_000),
    # this 2-core machine, the depths and three seeds: 13.3 min cold at load ≈ 2 (README, Measured)
    "cpu": AtlasGrid(depths=(4, 12, 24), lrs=CPU_LRS, seeds=(0, 1, 2)),
    # two fresh seeds of the cpu grid: an external test of every constant and choice made on seeds 0-2 (cached)
    "fresh": AtlasGrid(depths=(4, 12, 24), lrs=CPU_LRS, seeds=(3, 4)),
    # 300 steps instead of 60 at depth 12, one seed: does a longer run change the boundary? (cached; ≈ 4 min cold)
    "long": AtlasGrid(depths=(12,), lrs=tuple(0.03125 * 2.0 ** k for k in range(9)), steps=300, warmup=30),
    # a GPU: a finer grid, wider and longer runs, three seeds (documented, not run in CI)
    "gpu": AtlasGrid(depths=(4, 12, 24), dts=(0.1, 0.25, 0.5, 1.0, 2.0, 4.0),
                     lrs=tuple(2.0 ** (k / 2) for k in range(-20, 7)), seeds=(0, 1, 2), d=64, n_heads=4,
                     block_size=64, batch_size=16, steps=300, warmup=30, eval_batches=8, device="cuda"),
}


def grid_for(preset: str) -> AtlasGrid:
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {preset!r}")
    return PRESETS[preset]


@functools.lru_cache(maxsize=4)
def corpus(max_bytes: int):
    from verify.training.corpus import default_corpus

    return default_corpus(max_bytes=max_bytes)


def model_config(placement: str, depth: int, sizes: dict, vocab: int, dtype=torch.float32, device="cpu",
                 dt=1.0):
    return gpt_config(vocab_size=vocab, block_size=sizes["block_size"], d=sizes["d"], n_blocks=depth,
                      n_heads=sizes["n_heads"], placement=placement, dt=dt, dtype=dtype, device=device)


def _probe_batch(text, sizes: dict, device):
    rng = np.random.default_rng(777)  # one fixed probe batch, the same for every run
    return text.batch("train", sizes["batch_size"], sizes["block_size"], rng, device)


def init_measurements(model: BatchedGPT, idx: torch.Tensor, targets: torch.Tensor, lrs=None) -> dict:
    """Per instance, at the model's current weights (float64 model): loss, ‖∇L‖, sign-step speed m, S1 gains.

    m = ‖logits(θ + ε·sign ∇L) − logits(θ)‖ / (ε·√tokens): the per-token logit change of AdamW's first update per
    unit learning rate (the first update is exactly −lr·sign(g)); measured by a central finite difference.
    With ``lrs`` (one per instance) also ``probe_loss_change``: L(θ − lr_i·sign g) − L(θ), the loss change of one
    full-size first step at the run's own peak learning rate (the nonlinear version of lr·m).
    """
    I = model.n_instances
    x = idx.expand(I, *idx.shape)
    y = targets.expand(I, *targets.shape)
    params = [p for p in model.parameters()]
    _, loss, states = model(x, y, trajectory=True)
    grads = torch.autograd.grad(loss.sum(), [*params, *states], allow_unused=True)
    gp, gs = grads[:len(params)], grads[len(params):]
    gnorm = torch.sqrt(sum((g.reshape(I, -1) ** 2).sum(1) for g in gp if g is not None))
    with torch.no_grad():
        signs = [torch.zeros_like(p) if g is None else torch.sign(g) for p, g in zip(params, gp)]
        for p, s in zip(params, signs):
            p.add_(EPS_FD * s)
        up = model(x)[0]
        for p, s in zip(params, signs):
            p.sub_(2 * EPS_FD * s)
        down = model(x)[0]
        for p, s in zip(params, signs):
            p.add_(EPS_FD * s)
        probe = None
        if lrs is not None:
            lr_t = torch.as_tensor(lrs, dtype=params[0].dtype)
            for p, s in zip(params, signs):
                p.sub_(lr_t.view(-1, *([1] * (p.dim() - 1))) * s)
            probe = (model(x, y)[1] - loss.detach())
            for p, s in zip(params, signs):
                p.add_(lr_t.view(-1, *([1] * (p.dim() - 1))) * s)
        tokens = idx.numel()
        speed = ((up - down).reshape(I, -1).norm(dim=1) / (2 * EPS_FD * math.sqrt(tokens)))
        r = torch.stack([s.norm(dim=-1).flatten(1).mean(1) for s in states], 1)  # (I, K+1)
        pn = torch.stack([torch.zeros(I, dtype=r.dtype) if g is None else g.norm(dim=-1).flatten(1).mean(1)
                          for g in gs], 1)
        fwd = (r / r[:, :1]).max(1).values
        bwd = torch.log(pn[:, :-1] / pn[:, -1:]).max(1).values if pn.shape[1] > 1 else torch.zeros(I)
    out = {"loss": loss.detach().tolist(), "grad_norm": gnorm.tolist(), "speed": speed.tolist(),
           "forward_gain": fwd.tolist(), "backward_log_gain": bwd.tolist()}
    if probe is not None:
        out["probe_loss_change"] = torch.nan_to_num(probe, nan=math.inf).tolist()
    return out


def _spikes(losses: np.ndarray, warmup: int) -> int:
    finite = np.where(np.isfinite(losses), losses, np.inf)
    best = np.minimum.accumulate(finite)
    return int(np.sum(finite[warmup + 1:] > SPIKE_FACTOR * best[warmup:-1])) if losses.size > warmup + 1 else 0


def outcome(train_loss: list[float], val_loss: float, diverged_at, warmup: int) -> dict:
    """A run's outcome from its training-loss curve: diverged, at which step, spikes, final losses."""
    tl = np.asarray(train_loss, dtype=float)
    first = float(tl[0])
    finite = tl[np.isfinite(tl)]
    last = float(np.mean(finite[-5:])) if finite.size else math.nan
    nonfinite = diverged_at is not None or not math.isfinite(val_loss)
    not_below = not (last < first)
    return {"diverged": bool(nonfinite or not_below), "nonfinite": bool(nonfinite),
            "diverged_at": diverged_at, "loss_first": first, "loss_last": last,
            "val_loss": val_loss if math.isfinite(val_loss) else None, "spikes": _spikes(tl, warmup)}


def _finite_max(rows) -> float | None:
    a = np.asarray(rows, dtype=float)
    a = a[np.isfinite(a)]
    return float(a.max()) if a.size else None


def train_group(placement: str, depth: int, cells: list[dict], sizes: dict, device: str = "cpu",
                schedule: list[float] | None = None) -> list[dict]:
    """Train the cells (dicts with dt, lr, seed) of one (placement, depth) as one batched model; one record each.

    ``schedule`` (one Δt_k per residual step) replaces the uniform Δt = 1 base the per-cell ``dt`` multiplies.
    """
    text = corpus(sizes["corpus_bytes"])
    seeds = [int(c["seed"]) for c in cells]
    dts = [float(c["dt"]) for c in cells]
    lrs = [float(c["lr"]) for c in cells]
    base = 1.0 if schedule is None else tuple(float(v) for v in schedule)
    cfg64 = model_config(placement, depth, sizes, text.vocab_size, torch.float64, "cpu", dt=base)
    probe = _probe_batch(text, sizes, "cpu")
    init = init_measurements(BatchedGPT(cfg64, seeds, dt=dts), *probe, lrs=lrs)
    cfg = model_config(placement, depth, sizes, text.vocab_size, torch.float32, device, dt=base)
    model = BatchedGPT(cfg, seeds, dt=dts)
    tcfg = BatchedTrainConfig(steps=sizes["steps"], batch_size=sizes["batch_size"], lr=tuple(lrs),
                              warmup=sizes["warmup"], eval_every=0, eval_batches=sizes["eval_batches"],
                              progress=False)
    res = train_batched(model, text, tcfg, desc=f"atlas {placement} L={depth}")
    out = []
    for i, c in enumerate(cells):
        h = res.instance_history(i)
        rec = outcome(h["train_loss"], float(h["val_loss"][-1]), res.diverged_at[i], sizes["warmup"])
        rec.update({"max_hidden_norm": _finite_max(h["hidden_norm_max"]), "max_grad_norm": _finite_max(h["grad_norm"]),
                    "init": {k: float(v[i]) for k, v in init.items()}, "seconds": res.seconds / len(cells)})
        out.append(rec)
    return out


def _group_job(placement: str, depth: int, cells: list[dict], sizes: dict, device: str,
               schedule: list[float] | None = None) -> list[dict]:
    return train_group(placement, depth, cells, sizes, device, schedule)


def run_cells(cells: list[dict], device: str = "cpu", workers: int | None = None) -> list[dict]:
    """Records for ``cells`` (same sizes each), grouped into one batched model per (placement, depth)."""
    return _per_slice(_group_job, cells, workers,
                      lambda k: {"device": device, "schedule": list(k[2]) or None})


def _per_slice(job_fn, cells: list[dict], workers: int | None, extra=lambda key: {}) -> list[dict]:
    """``job_fn(placement, depth, cells, sizes, **extra(key))`` once per (placement, depth, schedule) slice of
    ``cells``, the slices spread over the cores (costliest first), the records returned in ``cells`` order."""
    from verify.training.batched import run_parallel

    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(cells):
        groups.setdefault((c["placement"], c["depth"], tuple(c.get("schedule") or ())), []).append(i)
    keys = sorted(groups, key=lambda k: -k[1] * len(groups[k]))  # the costliest first: better load balance
    jobs = [{"placement": k[0], "depth": k[1], "cells": [cells[i] for i in groups[k]],
             "sizes": {s: cells[groups[k][0]][s] for s in AtlasGrid().sizes()}, **extra(k)} for k in keys]
    results = run_parallel(job_fn, jobs, workers=workers)
    out: list[dict | None] = [None] * len(cells)
    for k, recs in zip(keys, results):
        for i, rec in zip(groups[k], recs):
            out[i] = rec
    return out  # type: ignore[return-value]


def atlas_runs(grid: AtlasGrid, retrain: bool = False, cache_name: str = "atlas", workers: int | None = None,
               cache_dir=None) -> list[dict]:
    """Every cell of ``grid`` with its record ({"config": cell, **outcome}), from the cache where present."""
    import os

    from verify.training.cache import RunCache, run_key

    if grid.device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {grid.device!r}")
    text = corpus(grid.corpus_bytes)
    cache = RunCache(cache_name, directory=cache_dir, enabled=not retrain)
    cells = grid.cells()
    if grid.device == "cuda" and not torch.cuda.is_available() and any(
            cache.records.get(run_key(c, text.sha256)) is None for c in cells):
        raise ValueError("device 'cuda' (the gpu preset) is not available here and its runs are not all cached: run "
                         "it on a machine with a GPU, or use --preset cpu")
    keyed = [(run_key(c, text.sha256), c) for c in cells]
    # One fetch per round of `workers` (placement, depth) slices, so a long cold run saves as it goes.
    by_group: dict[tuple, list[tuple[str, dict]]] = {}
    for k, c in keyed:
        by_group.setdefault((c["placement"], c["depth"]), []).append((k, c))
    order = sorted(by_group, key=lambda g: -g[1])
    n = max(1, min(len(order), workers or os.cpu_count() or 1))
    recs: dict[str, dict] = {}
    for i in range(0, len(order), n):
        chunk = [kc for g in order[i:i + n] for kc in by_group[g]]
        for (k, _), r in zip(chunk, cache.fetch(chunk, lambda missing: run_cells(missing, grid.device, workers))):
            recs[k] = r
    if retrain:
        cache.save()
    return [{"config": c, **recs[k]} for k, c in keyed]


def cached_runs(grid: AtlasGrid, cache_name: str, cache_dir=None) -> list[dict] | None:
    """Every cell of ``grid`` with its record, only if the cache holds all of them (nothing is trained); else None."""
    from verify.training.cache import RunCache, run_key

    text = corpus(grid.corpus_bytes)
    cache = RunCache(cache_name, directory=cache_dir)
    out = []
    for c in grid.cells():
        rec = cache.get(run_key(c, text.sha256))
        if rec is None:
            return None
        out.append({"config": c, **rec})
    return out


# ---- S4 direct growth: the forward gain of θ₀ at the grown Δt (no training) ------------------------------------

GROWN_MEASURE = "grown_gain_v2"  # part of the cache key of the measurement below (v2: + the largest row norm)


def _drift_steps(sizes: dict) -> float:
    from verify.training.batched import BatchedTrainConfig

    tc = BatchedTrainConfig(steps=sizes["steps"], warmup=sizes["warmup"])
    return float(sum(tc.schedule_factor(t) for t in range(tc.steps)))


def grown_gains(placement: str, depth: int, cells: list[dict], sizes: dict) -> list[dict]:
    """Per cell: log G_f of its own θ₀ (seed) at Δt' = Δt·s(lr)² (``theory.predictive.grown_dt``), float64, on the
    fixed probe batch; G_f = max_k mean‖x_k‖/mean‖x_0‖ as in ``init_measurements``; and the log of the largest row
    norm of any hidden state there (``log_rowmax_grown``, the grown analogue of a run's max_hidden_norm). +inf
    where the float64 forward overflows."""
    from theory import predictive as pr

    text = corpus(sizes["corpus_bytes"])
    sigma = 1.0 / math.sqrt(sizes["d"])
    nbar = _drift_steps(sizes)
    dts = [float(pr.grown_dt(c["dt"], c["lr"], sigma, nbar)[0]) for c in cells]
    cfg64 = model_config(placement, depth, sizes, text.vocab_size, torch.float64, "cpu")
    model = BatchedGPT(cfg64, [int(c["seed"]) for c in cells], dt=dts)
    idx, _ = _probe_batch(text, sizes, "cpu")
    with torch.no_grad():
        _, _, states = model(idx.expand(len(cells), *idx.shape), trajectory=True)
        r = torch.stack([s.norm(dim=-1).flatten(1).mean(1) for s in states], 1)
        g = (r / r[:, :1]).max(1).values
        rowmax = torch.stack([s.norm(dim=-1).flatten(1).max(1).values for s in states], 1).max(1).values
    out = []
    for dtp, v, m in zip(dts, g.tolist(), rowmax.tolist()):
        ok, okm = math.isfinite(v) and v > 0, math.isfinite(m) and m > 0
        out.append({"grown_dt": dtp, "log_gain_grown": math.log(v) if ok else math.inf,
                    "log_rowmax_grown": math.log(m) if okm else math.inf})
    return out


def _grown_job(placement: str, depth: int, cells: list[dict], sizes: dict) -> list[dict]:
    return grown_gains(placement, depth, cells, sizes)


def with_grown_gains(runs: list[dict], cache_name: str, workers: int | None = None, cache_dir=None) -> list[dict]:
    """``runs`` with ``init["log_gain_grown"]`` and ``init["grown_dt"]`` added (cached under ``<cache_name>.json``)."""
    from verify.training.cache import RunCache, run_key

    if not runs:
        return runs
    text = corpus(runs[0]["config"]["corpus_bytes"])
    cache = RunCache(cache_name, directory=cache_dir)
    keyed = [(run_key({**r["config"], "measure": GROWN_MEASURE}, text.sha256), r) for r in runs]

    recs = cache.fetch([(k, r["config"]) for k, r in keyed], lambda missing: _per_slice(_grown_job, missing, workers))
    return [{**r, "init": {**r["init"], **rec}} for (_, r), rec in zip(keyed, recs)]
