"""Many small GPTs trained as one batched computation, each with its own seed, learning rate, weight decay and Δt.

What it is for: the experiments that need *many* trained models — K7 with several seeds and a weight-decay grid,
the divergence atlas over (placement × Δt × learning rate × depth) — without training them one after another.
Models that share a structure (placement, depth, width, context) become the I instances of one zoo ``Stack``
(leading instance dimension), with per-instance embeddings and heads, and are trained by one batched AdamW whose
learning rate, weight decay, gradient clipping and divergence handling are per instance:

- instance i of ``BatchedGPT(cfg, seeds)`` is exactly ``GPT(cfg, seed=seeds[i])`` (same weights, drawn the same
  way), and training it with ``train_batched`` on instance hyper-parameters (lr_i, λ_i, Δt_i) reproduces
  ``verify.training.train.train`` on ``TrainConfig(seed=seeds[i], lr=lr_i, weight_decay=λ_i)`` with Δt = Δt_i — the
  same batches (rank-0 stream ``default_rng([seed_i, 0])``), the same AdamW arithmetic, per-instance clipping —
  up to the round-off of batched versus unbatched matmuls (``tests/test_training.py`` checks both);
- nothing couples the instances: every operation is per instance, so a NaN in one instance stays there. An
  instance whose loss stops being finite is *frozen* (its update is zeroed from that step on) and reported as
  diverged with the step; the others train on.

Independent groups (different structures) run in parallel processes over the cores (``run_parallel``).

What it is not: faster than one model per core when models are large — on a CPU a d = 64 GPT is already
compute-bound, and batching pays off mainly for small widths and on GPUs (measured: see the README).
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as nnf
from torch import nn

from theory._domain import require_int
from verify.engine import moments
from verify.training.corpus import Corpus
from verify.training.gpt import DECAYED_LEAVES, DECAYED_TOP, GPT, GPTConfig


def _per_instance(name: str, value, n: int, *, positive: bool, allow_zero: bool = False) -> torch.Tensor:
    """A float64 vector of length n from a scalar or a length-n sequence, validated."""
    t = torch.as_tensor(value, dtype=torch.float64).flatten()
    if t.numel() == 1:
        t = t.expand(n).clone()
    if t.numel() != n:
        raise ValueError(f"{name} must be a scalar or have one entry per instance ({n}), got {t.numel()}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite, got {t.tolist()}")
    if positive and not bool((t > 0).all() if not allow_zero else (t >= 0).all()):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {t.tolist()}")
    return t


class BatchedGPT(nn.Module):
    """I GPTs of one structure as one module: wte (I, V, d), wpe (I, T, d), a zoo Stack over I, head (I, d, V).

    ``seeds[i]`` makes instance i the model ``GPT(cfg, seed=seeds[i])``; ``dt`` (scalar or one per instance)
    multiplies every residual step's own Δt from the config, so a grid over Δt is a grid over instances.
    """

    def __init__(self, cfg: GPTConfig, seeds: Sequence[int], dt=1.0):
        super().__init__()
        if not isinstance(cfg, GPTConfig):
            raise ValueError(f"cfg must be a GPTConfig, got {type(cfg).__name__}")
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise ValueError("seeds must name at least one instance")
        self.cfg, self.seeds, self.n_instances = cfg, seeds, len(seeds)
        I = self.n_instances
        self.dt_scale = _per_instance("dt", dt, I, positive=True)
        # Each instance is drawn exactly as a single GPT draws it (CPU, float64, its own generator), then stacked.
        singles = [GPT(cfg.replace(stack=cfg.stack.replace(dtype=torch.float64, device="cpu")), seed=s)
                   for s in seeds]
        from verify.engine.zoo import Stack

        self.stack = Stack(cfg.stack.replace(dtype=torch.float64, device="cpu"), n_instances=I, seed=0)
        with torch.no_grad():
            for name, p in self.stack.named_parameters():
                p.copy_(torch.cat([dict(g.stack.named_parameters())[name] for g in singles], 0))
        self.wte = nn.Parameter(torch.stack([g.wte.detach() for g in singles]))
        self.wpe = nn.Parameter(torch.stack([g.wpe.detach() for g in singles]))
        self.head = nn.Parameter(torch.stack([g.head.detach() for g in singles]))
        if cfg.head_bias:
            self.head_b = nn.Parameter(torch.stack([g.head_b.detach() for g in singles]))
        else:
            self.register_parameter("head_b", None)
        self.stack.cfg = cfg.stack  # drawn on the CPU in float64; from here on the requested dtype and device
        self.to(device=cfg.stack.device, dtype=cfg.stack.dtype)
        self._set_dt()

    def _set_dt(self) -> None:
        """Step k uses Δt_k·dt_scale_i: a float tensor broadcasting against (I, B, T, d) (zoo convention)."""
        scale = self.dt_scale.to(device=self.device, dtype=self.cfg.stack.dtype).view(-1, 1, 1, 1)
        for step, base in zip(self.stack.steps, self.cfg.stack.dts):
            step.dt = base * scale

    @property
    def device(self) -> torch.device:
        return self.wte.device

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (I, B, T) → X_0 = wte_i[idx_i] + wpe_i, shape (I, B, T, d)."""
        if idx.dim() != 3 or idx.shape[0] != self.n_instances:
            raise ValueError(f"idx must have shape (I={self.n_instances}, B, T), got {tuple(idx.shape)}")
        T = idx.shape[-1]
        if T > self.cfg.block_size:
            raise ValueError(f"idx has T={T} tokens, more than block_size={self.cfg.block_size}")
        ar = torch.arange(self.n_instances, device=idx.device).view(-1, 1, 1)
        return self.wte[ar, idx] + self.wpe[:, None, :T]

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, trajectory: bool = False):
        """Logits (I, B, T, V); with targets the per-instance mean cross-entropy (I,); with trajectory [X_0..X_K]."""
        x = self.embed(idx)
        out, states = self.stack(x, trajectory=True, validate=False)
        logits = out @ self.head[:, None]
        if self.head_b is not None:
            logits = logits + self.head_b[:, None, None]
        loss = None
        if targets is not None:
            I, V = self.n_instances, logits.shape[-1]
            loss = nnf.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), reduction="none").view(I, -1).mean(1)
        return (logits, loss, states) if trajectory else (logits, loss)

    def decay_mask(self) -> list[tuple[str, nn.Parameter, bool]]:
        """(name, parameter, decayed) for every parameter: weight decay on weight matrices only (as ``GPT``)."""
        return [(n, p, n.rsplit(".", 1)[-1] in DECAYED_LEAVES or n in DECAYED_TOP) for n, p in self.named_parameters()]

    @torch.no_grad()
    def instance(self, i: int) -> GPT:
        """Instance i as a standalone ``GPT`` (a copy, same dtype and device), e.g. for per-model measurements."""
        g = GPT(self.cfg, seed=self.seeds[i])
        own = dict(self.named_parameters())
        for name, p in g.named_parameters():
            p.copy_(own[name][i] if name in ("wte", "wpe", "head", "head_b") else own[name][i:i + 1])
        for step, base in zip(g.stack.steps, self.cfg.stack.dts):
            step.dt = base * float(self.dt_scale[i])
        return g


class BatchedAdamW:
    """AdamW over parameters with a leading instance dimension; lr_i and λ_i per instance, decoupled decay.

    The arithmetic is torch.optim.AdamW's (foreach=False), elementwise in the same order — p ← p(1 − lr·λ);
    m ← lerp(m, g, 1 − β₁); v ← β₂v + (1 − β₂)g²; p ← p − (lr/(1 − β₁ᵗ))·m/(√v/√(1 − β₂ᵗ) + eps) — with lr and λ
    broadcast per instance, so one instance reproduces torch's optimiser to round-off. The state and the update
    live in one flat (I, P) buffer: a handful of large operations instead of ~10 small ones per parameter (which
    cost 15 % of a step of a 12-block d = 64 GPT here).
    """

    def __init__(self, params: Sequence[tuple[nn.Parameter, bool]], lr, weight_decay, n_instances: int,
                 betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8):
        self.I = require_int("n_instances", n_instances, 1)
        self.params = [p for p, _ in params]
        for p in self.params:
            if p.dim() < 1 or p.shape[0] != self.I:
                raise ValueError(f"every parameter must have a leading instance dimension {self.I}, got {tuple(p.shape)}")
        self.sizes = [p[0].numel() for p in self.params]
        ref = self.params[0]
        self.decayed = torch.cat([torch.full((n,), float(dec), dtype=ref.dtype, device=ref.device)
                                  for n, (_, dec) in zip(self.sizes, params)])[None]
        self.base_lr = _per_instance("lr", lr, self.I, positive=True)
        self.weight_decay = _per_instance("weight_decay", weight_decay, self.I, positive=True, allow_zero=True)
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"betas must lie in [0, 1), got {betas!r}")
        if not (eps > 0):
            raise ValueError(f"eps must be > 0, got {eps!r}")
        self.betas, self.eps, self.t = (float(b1), float(b2)), float(eps), 0
        self.m = torch.zeros(self.I, sum(self.sizes), dtype=ref.dtype, device=ref.device)
        self.v = torch.zeros_like(self.m)

    def _flat(self, tensors) -> torch.Tensor:
        return torch.cat([t.reshape(self.I, -1) for t in tensors], 1)

    def flat_grad(self) -> torch.Tensor:
        """Every parameter's gradient as one (I, P) tensor (zeros where a parameter has none)."""
        return self._flat([torch.zeros_like(p) if p.grad is None else p.grad for p in self.params])

    @torch.no_grad()
    def step(self, lr_factor: float, grad: torch.Tensor, active: torch.Tensor | None = None) -> None:
        """One step at learning rate ``lr_factor · lr_i`` with the flat gradient ``grad`` (I, P); instances with
        ``active`` False do not move, and their (possibly NaN) gradient does not enter their moments."""
        self.t += 1
        b1, b2 = self.betas
        bc1, bc2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        dev, dt = self.m.device, self.m.dtype
        lr = (self.base_lr * float(lr_factor)).to(device=dev, dtype=dt)[:, None]
        if active is not None:
            act = active.to(dev)[:, None]
            lr = torch.where(act, lr, torch.zeros_like(lr))
            grad = torch.where(act, grad, torch.zeros_like(grad))
        p = self._flat([q.detach() for q in self.params])
        p.mul_(1 - lr * self.weight_decay.to(device=dev, dtype=dt)[:, None] * self.decayed)
        self.m.lerp_(grad, 1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (self.v.sqrt() / math.sqrt(bc2)).add_(self.eps)
        p.sub_((lr / bc1) * (self.m / denom))
        for q, chunk in zip(self.params, p.split(self.sizes, 1)):
            q.copy_(chunk.view_as(q))


@dataclasses.dataclass(frozen=True)
class BatchedTrainConfig:
    """Shared schedule of a batched run; ``lr``, ``weight_decay`` (and the model's ``dt``) may differ per instance.

    The schedule is ``verify.training.train.lr_at`` (linear warm-up, cosine to ``min_lr_ratio``), as a factor that
    multiplies each instance's own lr.
    """

    steps: int = 600
    batch_size: int = 16
    lr: float | tuple[float, ...] = 3e-3
    min_lr_ratio: float = 0.1
    warmup: int = 60
    weight_decay: float | tuple[float, ...] = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = 1.0
    eval_every: int = 100
    eval_batches: int = 8
    progress: bool = True

    def __post_init__(self):
        from verify.training.train import TrainConfig

        # one set of rules for the shared fields: TrainConfig's validation (per-instance values checked below)
        TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=1.0, min_lr_ratio=self.min_lr_ratio,
                    warmup=self.warmup, weight_decay=0.0, betas=self.betas, grad_clip=self.grad_clip,
                    eval_every=self.eval_every, eval_batches=self.eval_batches)
        if isinstance(self.lr, (list, tuple)):
            object.__setattr__(self, "lr", tuple(float(v) for v in self.lr))
        if isinstance(self.weight_decay, (list, tuple)):
            object.__setattr__(self, "weight_decay", tuple(float(v) for v in self.weight_decay))

    def schedule_factor(self, step: int) -> float:
        from verify.training.train import TrainConfig, lr_at

        return lr_at(step, TrainConfig(steps=self.steps, lr=1.0, min_lr_ratio=self.min_lr_ratio, warmup=self.warmup))

    def replace(self, **changes) -> "BatchedTrainConfig":
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass
class BatchedResult:
    """Per-instance outcome: histories are lists over logged points, one value per instance each."""

    model: BatchedGPT
    history: dict
    diverged_at: list[int | None]
    seconds: float

    def instance_history(self, i: int) -> dict:
        return {k: ([row[i] for row in v] if v and isinstance(v[0], list) else v) for k, v in self.history.items()}


def instance_batches(corpus: Corpus, split: str, seeds: Sequence[int], batch_size: int, block: int,
                     rngs: list[np.random.Generator], device) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch per instance from its own generator: (I, B, T) inputs and targets."""
    xs, ys = zip(*(corpus.batch(split, batch_size, block, r, device) for r in rngs))
    return torch.stack(xs), torch.stack(ys)


@torch.no_grad()
def evaluate_batched(model: BatchedGPT, corpus: Corpus, split: str, batch_size: int, n_batches: int,
                     seed: int = 12345) -> list[float]:
    """Per-instance mean loss over ``n_batches`` fixed batches, the same for every instance (as ``evaluate``)."""
    rng = np.random.default_rng(seed)
    total = torch.zeros(model.n_instances, dtype=torch.float64)
    for _ in range(n_batches):
        x, y = corpus.batch(split, batch_size, model.cfg.block_size, rng, model.device)
        I = model.n_instances
        total += model(x.expand(I, *x.shape), y.expand(I, *y.shape))[1].double().cpu()
    return (total / n_batches).tolist()


@torch.no_grad()
def layer_moments(model: BatchedGPT, idx: torch.Tensor, targets: torch.Tensor | None = None) -> dict:
    """Per instance and hidden state X_0..X_K: the K7 moments, max row norm and max |x| (lists I × (K+1))."""
    I = model.n_instances
    if idx.dim() == 2:
        idx = idx.expand(I, *idx.shape)
    _, _, states = model(idx, trajectory=True)
    out = {k: [] for k in ("mean_abs", "entrywise_var", "datawise_var", "row_norm_max", "max_abs")}
    for x in states:
        x = x.double()
        for k, v in moments.all_moments(x).items():
            out[k].append(v.cpu())
        out["row_norm_max"].append(x.norm(dim=-1).flatten(1).max(1).values.cpu())
        out["max_abs"].append(x.abs().flatten(1).max(1).values.cpu())
    return {k: torch.stack(v, 1).tolist() for k, v in out.items()}


def train_batched(model: BatchedGPT, corpus: Corpus, cfg: BatchedTrainConfig,
                  on_log: Callable[[int, BatchedGPT, dict], None] | None = None, log_every: int = 0,
                  desc: str = "train") -> BatchedResult:
    """Train every instance of ``model`` in place; see the module docstring for what is per instance.

    Recorded per instance: the training loss at every step, the largest row norm of any hidden state and the global
    gradient norm (before clipping) at every step, the validation loss every ``eval_every`` steps and at the end,
    and the step at which the loss first stopped being finite (``diverged_at``; None if never). ``on_log(step,
    model, history)`` is called at step 0 (before training), every ``log_every`` steps and at the end.
    """
    from tqdm.auto import tqdm

    I = model.n_instances
    named = model.decay_mask()
    params = [p for _, p, _ in named]
    opt = BatchedAdamW([(p, dec) for _, p, dec in named], cfg.lr, cfg.weight_decay, I, cfg.betas)
    rngs = [np.random.default_rng([s, 0]) for s in model.seeds]
    active = torch.ones(I, dtype=torch.bool)
    diverged_at: list[int | None] = [None] * I
    hist = {"train_loss": [], "grad_norm": [], "hidden_norm_max": [], "lr_factor": [], "eval_step": [],
            "val_loss": []}
    if on_log is not None:
        on_log(0, model, hist)
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc=desc, disable=None if cfg.progress else True, leave=False)
    for step in bar:
        factor = cfg.schedule_factor(step)
        x, y = instance_batches(corpus, "train", model.seeds, cfg.batch_size, model.cfg.block_size, rngs, model.device)
        for p in params:
            p.grad = None
        _, loss, states = model(x, y, trajectory=True)
        loss.sum().backward()  # instances share nothing: the gradient of the sum is each instance's own gradient
        with torch.no_grad():
            hidden = torch.stack([s.detach().norm(dim=-1).flatten(1).max(1).values for s in states], 1).max(1).values
        lossd = loss.detach().double().cpu()
        grad = opt.flat_grad()
        norms = grad.double().norm(dim=1).cpu()
        bad = ~torch.isfinite(lossd) | ~torch.isfinite(norms)
        for i in torch.nonzero(bad & active).flatten().tolist():
            diverged_at[i] = step
        active &= ~bad
        if cfg.grad_clip is not None:  # torch's clip_grad_norm_, per instance: scale by min(1, c/(‖g_i‖ + 1e-6))
            coef = torch.clamp(cfg.grad_clip / (torch.where(active, norms, torch.ones_like(norms)) + 1e-6), max=1.0)
            grad = grad * coef.to(device=grad.device, dtype=grad.dtype)[:, None]
        opt.step(factor, grad, active)
        hist["train_loss"].append(lossd.tolist())
        hist["grad_norm"].append(norms.tolist())
        hist["hidden_norm_max"].append(hidden.double().cpu().tolist())
        hist["lr_factor"].append(factor)
        last = step == cfg.steps - 1
        if (cfg.eval_every and (step + 1) % cfg.eval_every == 0) or last:
            hist["eval_step"].append(step + 1)
            hist["val_loss"].append(evaluate_batched(model, corpus, "val", cfg.batch_size, cfg.eval_batches))
            bar.set_postfix(val=f"{np.nanmin(hist['val_loss'][-1]):.3f}")
        if on_log is not None and ((log_every and (step + 1) % log_every == 0) or last):
            on_log(step + 1, model, hist)
        if not bool(active.any()):
            break
    bar.close()
    return BatchedResult(model, hist, diverged_at, time.perf_counter() - t0)


# ---- independent groups in parallel processes -------------------------------------------------------------------
def _call(job):
    fn, kwargs, threads = job
    torch.set_num_threads(threads)
    return fn(**kwargs)


def run_parallel(fn: Callable[..., dict], jobs: Sequence[dict], workers: int | None = None,
                 threads: int = 1) -> list[dict]:
    """``[fn(**kw) for kw in jobs]``, spread over ``workers`` spawned processes (default: the cores), in order.

    ``fn`` must be importable (a module-level function) and return picklable data. With one worker (or one job)
    everything runs in this process. Each process uses ``threads`` torch threads: small models contend for the
    cores, so one thread per process and one process per core is the fastest arrangement measured here.
    """
    import os

    jobs = list(jobs)
    workers = min(len(jobs), workers or os.cpu_count() or 1)
    if workers <= 1:
        before = torch.get_num_threads()
        try:
            return [_call((fn, kw, threads)) for kw in jobs]
        finally:
            torch.set_num_threads(before)
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: a parent that has run autograd cannot fork safely (see verify.training.train.spawn_ddp)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        return list(pool.map(_call, [(fn, kw, threads) for kw in jobs]))
