"""Training the small GPTs: AdamW with decoupled weight decay, warm-up + cosine schedule, optional clipping.

What it is for: producing *trained* models for the K7 figure and for the trained-model bound F6, seeded and
deterministic on the CPU (same seed, same thread count → bit-identical weights), in float32 or float64, on
one process or several under torch's DistributedDataParallel (``torchrun``; gloo on CPU, NCCL on CUDA).

    python -m verify.training.train [--preset cpu|gpu] [--placement pre] [--dt 1.0] [--steps N] [--data PATH] [--json OUT]
    torchrun --nproc_per_node=2 -m verify.training.train --preset cpu        # data-parallel, identical weights on each rank

Weight decay acts on the weight matrices only (``GPT.decay_groups``); it is AdamW's decoupled decay
W ← W − lr·λ·W, not an L2 term in the loss. Presets:

- ``cpu`` (default): d = 64, 4 heads, 6 blocks (12 residual steps), context 32, batch 16, 300 steps — about
  half a minute per model on one CPU core;
- ``gpu``: GPT-2-small widths (d = 768, 12 heads), 12 blocks (``--blocks`` up to 48), context 256, batch 32,
  2000 steps, CUDA, float32 with TF32 off.

What it is not: a benchmark trainer (no mixed precision, no compile, no gradient accumulation).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from verify.training.corpus import Corpus, load_corpus
from verify.training.gpt import GPT, GPTConfig, gpt_config, state_digest
from verify.training.monitors import Monitor

PRESETS = {
    "cpu": dict(d=64, n_heads=4, n_blocks=6, block_size=32, batch_size=16, steps=300, lr=3e-3, warmup=30,
                device="cpu", dtype="float32"),
    "gpu": dict(d=768, n_heads=12, n_blocks=12, block_size=256, batch_size=32, steps=2000, lr=6e-4, warmup=200,
                device="cuda", dtype="float32"),
}
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; ``weight_decay`` is AdamW's decoupled λ on weight matrices."""

    steps: int = 600
    batch_size: int = 16
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup: int = 60
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = 1.0
    seed: int = 0
    eval_every: int = 100
    eval_batches: int = 8
    monitor_every: int = 100
    monitor_batch: int = 32
    progress: bool = True

    def __post_init__(self):
        for name in ("steps", "batch_size", "eval_batches", "monitor_batch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        for name in ("warmup", "eval_every", "monitor_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        if self.grad_clip is not None and not (math.isfinite(self.grad_clip) and self.grad_clip > 0):
            raise ValueError(f"grad_clip must be None or a finite number > 0, got {self.grad_clip!r}")

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``lr`` over ``warmup`` steps, then cosine decay to ``min_lr_ratio·lr`` at ``steps``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    span = max(1, cfg.steps - cfg.warmup)
    progress = min(1.0, (step - cfg.warmup) / span)
    lo = cfg.min_lr_ratio * cfg.lr
    return lo + 0.5 * (cfg.lr - lo) * (1 + math.cos(math.pi * progress))


def make_optimizer(model: GPT, cfg: TrainConfig) -> torch.optim.AdamW:
    decay, no_decay = model.decay_groups()
    groups = [{"params": [p for _, p in decay], "weight_decay": cfg.weight_decay},
              {"params": [p for _, p in no_decay], "weight_decay": 0.0}]
    # foreach=False: the plain per-parameter loop is the reference implementation, identical on every rank.
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=1e-8, foreach=False)


@torch.no_grad()
def evaluate(model: GPT, corpus: Corpus, split: str, cfg: TrainConfig, seed: int = 12345) -> float:
    """Mean loss over ``eval_batches`` fixed batches of ``split`` (the same batches every call)."""
    was = model.training
    model.eval()
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(cfg.eval_batches):
        x, y = corpus.batch(split, cfg.batch_size, model.cfg.block_size, rng, model.device)
        total += float(model(x, y)[1])
    model.train(was)
    return total / cfg.eval_batches


def monitor_batch(model: GPT, corpus: Corpus, cfg: TrainConfig, seed: int = 777):
    """The fixed validation batch the monitors measure on."""
    rng = np.random.default_rng(seed)
    return corpus.batch("val", cfg.monitor_batch, model.cfg.block_size, rng, model.device)


@dataclasses.dataclass
class TrainResult:
    model: GPT
    history: dict
    monitor: Monitor | None
    seconds: float

    @property
    def final_val_loss(self) -> float:
        return self.history["val_loss"][-1]


def train(model: GPT, corpus: Corpus, cfg: TrainConfig, monitor: bool = True, rank: int = 0, world: int = 1,
          desc: str = "train") -> TrainResult:
    """Train ``model`` in place. With ``world > 1`` the process group must already be initialised.

    Rank r draws its batches from ``default_rng([seed, r])``; under DDP gradients are averaged across ranks
    before clipping and the optimiser step, so every rank ends with the same weights.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=None if model.device.type == "cpu" else [model.device])
    opt = make_optimizer(model, cfg)
    rng = np.random.default_rng([cfg.seed, rank])
    mon = Monitor(model) if monitor and rank == 0 else None
    mbatch = monitor_batch(model, corpus, cfg) if mon is not None else None
    hist = {"step": [], "train_loss": [], "lr": [], "eval_step": [], "val_loss": [], "train_eval_loss": []}
    t0 = time.perf_counter()
    # disable=None: a bar on a terminal only (no carriage-return noise in logs)
    bar = tqdm(range(cfg.steps), desc=desc, disable=None if (cfg.progress and rank == 0) else True, leave=False)
    for step in bar:
        lr = lr_at(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = corpus.batch("train", cfg.batch_size, model.cfg.block_size, rng, model.device)
        loss = net(x, y)[1]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training diverged at step {step}: loss = {float(loss.detach())}")
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        hist["step"].append(step)
        hist["train_loss"].append(float(loss.detach()))
        hist["lr"].append(lr)
        last = step == cfg.steps - 1
        if rank == 0 and ((cfg.eval_every and (step + 1) % cfg.eval_every == 0) or last):
            hist["eval_step"].append(step + 1)
            hist["val_loss"].append(evaluate(model, corpus, "val", cfg))
            hist["train_eval_loss"].append(evaluate(model, corpus, "train", cfg))
            bar.set_postfix(val=f"{hist['val_loss'][-1]:.3f}")
        if mon is not None and ((cfg.monitor_every and step % cfg.monitor_every == 0) or last):
            mon.measure(model, *mbatch, step=step + 1)
    bar.close()
    if mon is not None:
        mon.remove()
    return TrainResult(model, hist, mon, time.perf_counter() - t0)


# ---- distributed ---------------------------------------------------------------------------------------------
def init_distributed(backend: str | None = None, init_method: str | None = None, rank: int | None = None,
                     world: int | None = None) -> tuple[int, int]:
    """Join a process group (``torchrun`` sets RANK/WORLD_SIZE); gloo on CPU, NCCL when CUDA is present."""
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world = int(os.environ.get("WORLD_SIZE", 1)) if world is None else world
    if world > 1 and not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        dist.init_process_group(backend, init_method=init_method or "env://", rank=rank, world_size=world)
    return rank, world


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str, model_kw: dict, train_kw: dict,
                corpus_bytes: bytes) -> None:
    """One rank of the spawn-based CPU test: train, then write the weight digest and a parameter checksum."""
    import torch.distributed as dist

    from verify.training.corpus import from_bytes

    torch.set_num_threads(1)
    init_distributed("gloo", f"file://{init_file}", rank, world)
    try:
        corpus = from_bytes(corpus_bytes, "ddp-test")
        model = GPT(gpt_config(**model_kw), seed=0)
        train(model, corpus, TrainConfig(**train_kw), monitor=False, rank=rank, world=world)
        total = sum(float(p.double().sum()) for p in model.parameters())
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps({"digest": state_digest(model), "sum": total}))
    finally:
        dist.destroy_process_group()


def spawn_ddp(world: int, out_dir: str, model_kw: dict, train_kw: dict, corpus_bytes: bytes,
              start_method: str = "spawn") -> list[dict]:
    """Run ``world`` CPU ranks with gloo via torch.multiprocessing; return each rank's record."""
    import torch.multiprocessing as mp

    init_file = str(Path(out_dir, "rendezvous"))
    # spawn, not fork: a parent that has already run autograd cannot fork safely (torch refuses: "Unable to
    # handle autograd's threading in combination with fork-based multiprocessing").
    mp.start_processes(_ddp_worker, args=(world, init_file, out_dir, model_kw, train_kw, corpus_bytes),
                       nprocs=world, join=True, start_method=start_method)
    return [json.loads(Path(out_dir, f"rank{r}.json").read_text()) for r in range(world)]


# ---- command line --------------------------------------------------------------------------------------------
def preset_configs(preset: str, placement: str = "pre", dt: float = 1.0, weight_decay: float = 0.1,
                   steps: int | None = None, blocks: int | None = None, seed: int = 0,
                   vocab_size: int = 256, device: str | None = None) -> tuple[GPTConfig, TrainConfig]:
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {preset!r}")
    p = dict(PRESETS[preset])
    n_blocks = blocks or p["n_blocks"]
    gcfg = gpt_config(vocab_size=vocab_size, block_size=p["block_size"], d=p["d"], n_blocks=n_blocks,
                      n_heads=p["n_heads"], placement=placement, dt=dt, dtype=DTYPES[p["dtype"]],
                      device=device or p["device"])
    tcfg = TrainConfig(steps=steps or p["steps"], batch_size=p["batch_size"], lr=p["lr"], warmup=p["warmup"],
                       weight_decay=weight_decay, seed=seed)
    return gcfg, tcfg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m verify.training.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=tuple(PRESETS), default="cpu")
    ap.add_argument("--placement", default="pre")
    ap.add_argument("--dt", type=float, default=1.0)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--blocks", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=None, help="text file or flat uint16 token file (.bin); default: embedded")
    ap.add_argument("--json", type=Path, default=None, help="write the history and monitor log here")
    args = ap.parse_args(argv)
    rank, world = init_distributed()
    try:
        corpus = load_corpus(args.data)
        device = None
        if args.preset == "gpu" and world > 1:
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        gcfg, tcfg = preset_configs(args.preset, args.placement, args.dt, args.weight_decay, args.steps,
                                    args.blocks, args.seed, corpus.vocab_size, device)
        model = GPT(gcfg, seed=args.seed)
        res = train(model, corpus, tcfg, rank=rank, world=world, desc=f"{args.placement} dt={args.dt}")
    except ValueError as exc:
        ap.error(str(exc))
    if rank == 0:
        print(f"{args.placement} dt={args.dt} wd={args.weight_decay}: val loss {res.final_val_loss:.4f} "
              f"after {tcfg.steps} steps in {res.seconds:.0f}s ({world} process(es)); weights {state_digest(model)[:16]}")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"corpus": corpus.describe(), "history": res.history,
                                             "monitor": res.monitor.log if res.monitor else []}))
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return 0



# ---- full-batch training to a stationary point (F6) ---------------------------------------------------------
class FullBatchProblem:
    """``I`` independent tiny models on a fixed full batch, as one batched computation, for F6.

    Each instance is a zoo Stack (final norm on, norm gains frozen at γ = 1, β = 0) followed by a linear head
    (d × V) and the mean next-token cross-entropy over its ``n_samples × n_tokens`` targets. ``trainable``
    (leaf names such as ``("W2",)``; default: all) selects what is optimised, the rest stays at initialisation. Inputs are either
    fixed Gaussian hidden states X_0 (``embeddings=False``: the stack acts on given representations) or
    trainable token + position embeddings (``embeddings=True``, a GPT in miniature). Every trainable parameter
    (attention and MLP matrices, head, embeddings) carries the weight decay λ_i of its instance:

        J_i(θ_i) = mean CE_i(θ_i) + (λ_i/2)·‖θ_i‖².

    Parameters are handled as one flat (I, P) tensor θ, so ``objective(θ)`` returns the I objectives and the
    gradient of their sum is the stack of per-instance gradients (instances share nothing).
    """

    def __init__(self, cfg, lams, n_samples: int, n_tokens: int, vocab: int, seed: int, embeddings: bool = False,
                 input_scale: float = 1.0, trainable: tuple[str, ...] | None = None):
        from verify.engine.zoo import Stack, sample_inputs

        if not cfg.final_norm:
            raise ValueError("cfg must have final_norm=True (the head reads the final-normed state)")
        lam = torch.as_tensor(lams, dtype=torch.float64)
        if lam.ndim != 1 or not bool((lam > 0).all()):
            raise ValueError(f"lams must be a 1-D sequence of positive weight decays, got {lams!r}")
        self.cfg, self.lam, self.I = cfg, lam, lam.numel()
        self.n_samples, self.n_tokens, self.vocab, self.embeddings = n_samples, n_tokens, vocab, embeddings
        self.stack = Stack(cfg, self.I, seed=seed)
        for name, p in self.stack.named_parameters():
            p.requires_grad_(False)
        gen = torch.Generator().manual_seed(int(seed) + 7919)
        d, I = cfg.d, self.I
        init = {n: p.detach().clone() for n, p in self.stack.named_parameters() if not n.endswith(("gamma", "beta"))}
        init["head"] = torch.randn(I, d, vocab, generator=gen, dtype=torch.float64) / math.sqrt(d)
        if embeddings:
            init["wte"] = torch.randn(I, vocab, d, generator=gen, dtype=torch.float64)
            init["wpe"] = torch.randn(I, n_tokens, d, generator=gen, dtype=torch.float64)
            self.idx = torch.randint(0, vocab, (I, n_samples, n_tokens), generator=gen)
            self.x0 = None
        else:
            self.idx = None
            self.x0 = sample_inputs(cfg, I, n_tokens, seed + 1, batch=(n_samples,), scale=input_scale)
        self.targets = torch.randint(0, vocab, (I, n_samples, n_tokens), generator=gen)
        leaf = lambda n: n.rsplit(".", 1)[-1]  # noqa: E731
        if trainable is not None:
            unknown = set(trainable) - {leaf(n) for n in init}
            if unknown:
                raise ValueError(f"trainable names unknown parameters {sorted(unknown)}")
        self.fixed = {n: v for n, v in init.items() if trainable is not None and leaf(n) not in trainable}
        self.keys = [n for n in init if n not in self.fixed]
        self.shapes = {n: init[n].shape[1:] for n in self.keys}
        self.sizes = {n: math.prod(self.shapes[n]) for n in self.keys}
        self.theta0 = torch.cat([init[n].reshape(I, -1) for n in self.keys], 1)

    @property
    def n_params(self) -> int:
        return self.theta0.shape[1]

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        out, o = {}, 0
        for n in self.keys:
            out[n] = theta[:, o:o + self.sizes[n]].reshape(self.I, *self.shapes[n])
            o += self.sizes[n]
        return out

    def flat_index(self, name: str) -> slice:
        o = 0
        for n in self.keys:
            if n == name:
                return slice(o, o + self.sizes[n])
            o += self.sizes[n]
        raise ValueError(f"name must be a trainable parameter, got {name!r}")

    def inputs(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """X_0 of shape (I, N, T, d)."""
        if not self.embeddings:
            return self.x0
        ar = torch.arange(self.I)[:, None, None]
        return params["wte"][ar, self.idx] + params["wpe"][:, None]

    def run(self, theta: torch.Tensor, x0: torch.Tensor | None = None):
        """(per-instance mean CE (I,), logits (I, N, T, V), states [X_0..X_K]) at θ (functional, differentiable).

        With ``x0`` given (other inputs of shape (I, *batch, T, d)) the loss is None."""
        from torch.func import functional_call

        p = {**self.fixed, **self.unflatten(theta)}
        frozen = {n: q for n, q in self.stack.named_parameters() if n not in p}
        x = self.inputs(p) if x0 is None else x0
        stack_params = {n: v for n, v in p.items() if n not in ("head", "wte", "wpe")}
        out, states = functional_call(self.stack, {**frozen, **stack_params}, (x,),
                                      {"validate": False, "trajectory": True})
        logits = out @ p["head"].view(self.I, 1, self.cfg.d, self.vocab)
        if x0 is not None:  # other inputs: no targets to score against
            return None, logits, states
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, self.vocab), self.targets.reshape(-1),
                                               reduction="none").view(self.I, -1).mean(1)
        return ce, logits, states

    def loss(self, theta: torch.Tensor) -> torch.Tensor:
        return self.run(theta)[0]

    def objective(self, theta: torch.Tensor) -> torch.Tensor:
        return self.loss(theta) + 0.5 * self.lam * (theta * theta).sum(1)

    @torch.no_grad()
    def load(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Copy θ into the Stack's parameters (for code that reads the modules); return the head/embeddings."""
        p = {**self.fixed, **self.unflatten(theta)}
        for n, q in self.stack.named_parameters():
            if n in p:
                q.copy_(p[n])
        return {n: p[n] for n in ("head", "wte", "wpe") if n in p}


def _trust_region_step(ev: torch.Tensor, c: torch.Tensor, radius: torch.Tensor, iters: int = 80) -> torch.Tensor:
    """Per instance, in the Hessian's eigenbasis: argmin c·z + ½Σ ev z² subject to ‖z‖ ≤ radius.

    The interior Newton step when the Hessian is positive definite and the step fits, otherwise the boundary
    solution z(μ) = −c/(ev + μ) with μ > max(0, −ev_min) found by bisection on ‖z(μ)‖ = radius.
    """
    lo = torch.clamp(-ev[:, 0], min=0)

    def znorm(mu):
        return torch.sqrt(((c / (ev + mu[:, None])) ** 2).sum(1))

    pd = ev[:, 0] > 0
    inside = pd & (znorm(torch.where(pd, torch.zeros_like(lo), lo + 1.0)) <= radius)
    a = lo + 1e-15 * (1 + lo)
    b = lo + torch.sqrt((c ** 2).sum(1)) / radius + 1e-15
    for _ in range(iters):
        m = 0.5 * (a + b)
        big = znorm(m) > radius
        a, b = torch.where(big, m, a), torch.where(big, b, m)
    mu = torch.where(inside, torch.zeros_like(lo), b)
    return -c / (ev + mu[:, None])


def fit_stationary(objective, theta: torch.Tensor, lbfgs_iters: int = 1000, newton_iters: int = 30,
                   gtol: float = 1e-11, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Drive I independent objectives (``objective(θ) -> (I,)``, θ of shape (I, P)) to stationary points.

    Phase 1: L-BFGS with a strong-Wolfe line search on the summed objective (moves far, cheaply). Phase 2:
    trust-region Newton with the exact per-instance Hessians (``torch.func``: one forward-over-reverse pass per
    parameter direction, applied to all instances at once), accepting a step per instance when the achieved
    decrease is ≥ 0.1 of the predicted one; it converges quadratically near a local minimum and stops when every
    instance has ‖∇J_i‖ ≤ gtol. Returns (θ, ∇J (I, P), info).
    """
    from torch.func import grad, jvp, vmap

    th = theta.detach().clone().requires_grad_(True)
    if lbfgs_iters:
        opt = torch.optim.LBFGS([th], lr=1, max_iter=lbfgs_iters, max_eval=2 * lbfgs_iters, history_size=100,
                                tolerance_grad=0.0, tolerance_change=0.0, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            value = objective(th).sum()
            value.backward()
            return value

        opt.step(closure)
    theta = th.detach()
    I, P = theta.shape
    gf = grad(lambda t: objective(t).sum())
    radius = torch.full((I,), 1.0, dtype=theta.dtype)
    J = objective(theta).detach()
    g = gf(theta)
    it = 0
    for it in range(newton_iters):
        if bool((g.norm(dim=1) <= gtol).all()):
            break
        basis = torch.eye(P, dtype=theta.dtype)[:, None, :].expand(P, I, P)
        H = vmap(lambda e: jvp(gf, (theta,), (e,))[1])(basis).permute(1, 2, 0)  # (I, P, P), column j = H e_j
        ev, vecs = torch.linalg.eigh(0.5 * (H + H.transpose(1, 2)))
        c = (vecs.transpose(1, 2) @ g[..., None])[..., 0]
        z = _trust_region_step(ev, c, radius)
        step = (vecs @ z[..., None])[..., 0]
        predicted = -((c * z).sum(1) + 0.5 * (ev * z * z).sum(1))
        J_new = objective(theta + step).detach()
        rho = (J - J_new) / predicted.clamp(min=1e-300)
        done = g.norm(dim=1) <= gtol
        ok = (rho > 0.1) & torch.isfinite(J_new) & ~done
        theta = torch.where(ok[:, None], theta + step, theta)
        J = torch.where(ok, J_new, J)
        size = step.norm(dim=1)
        radius = torch.where(rho < 0.25, 0.25 * size,
                             torch.where((rho > 0.75) & (size > 0.99 * radius), 2 * radius, radius))
        g = gf(theta)
        if progress:
            print(f"newton {it}: |g| max {float(g.norm(dim=1).max()):.2e}")
    return theta, g, {"newton_iterations": it + 1, "grad_norm": g.norm(dim=1).tolist()}


if __name__ == "__main__":
    sys.exit(main())
