"""Sanity-check a new block design before training it (paper claim K8).

    python -m verify.check --placement peri --depth 24 --d 64            # a zoo configuration
    python -m verify.check --factory mypkg.blocks:make_block --depth 24  # your own block

A factory is ``make_block(d, n_instances, seed) -> torch.nn.Module`` whose forward maps hidden states of shape
(n_instances, n, d) to the same shape (independent weights per instance, or weights shared across the leading
dimension — both are fine). ``--depth`` blocks are drawn with seeds ``seed, seed+1, …`` and chained.

What it does, over ``--instances`` random instances at initialisation:
1. measures the forward growth of the RMS row norm r_l = ‖X_l‖_F/√n across depth and the per-layer gradient norms
   ‖∂ℓ/∂X_l‖ of a random linear read-out ℓ = ⟨G, X_L⟩;
2. fits the growth regime — bounded, polynomial (with its exponent) or exponential (with its rate) — with a
   bootstrap over instances: the confidence is the fraction of resamples that give the same regime, and the
   exponent/rate carry 95 % percentile intervals;
3. finds the nearest zoo placement (smallest distance between log-growth curves at the same width and depth) and
   states what the catalogue's theory says of it (F1/F4/F5 at initialisation);
4. applies the (B, τ) stability criterion S1 to measurements: the largest residual step Δt on a log grid whose
   measured forward gain max_l r_l/r_0 ≤ B and backward log-gain max_l log(‖p_l‖/‖p_L‖) ≤ τ; a user block is
   rescaled as X + Δt·(block(X) − X), a zoo configuration through its own Δt;
5. writes ``check.json`` and ``check.png`` to ``--out``.

Optionally (``--train-steps N``) the blocks are first trained for N AdamW steps as a byte-level language model on
the embedded corpus (each instance an independent model on its own sequences) and measured again.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from verify.engine.zoo import Placement, Stack, StackConfig

ZOO_PLACEMENTS = tuple(p.value for p in Placement)

# What the catalogue's theory says of each zoo placement's forward growth at initialisation (Gaussian weights,
# standard 1/fan_in scaling): post-type rows are bounded by the norm's range (F1); pre-type second moments grow
# additively, E‖x_k‖² = E‖x_0‖² + Σ Δt² E‖F‖² (F5), i.e. r_l ∝ √l; no-norm steps multiply E‖x‖² by (1 + c) (F4
# at init); LayerNorm-Scaling's increments shrink like 1/ℓ, so r_l² grows like the harmonic number (X4).
THEORY_REGIME = {
    "post": ("bounded", "F1: every row after a post step has norm ≤ ‖γ‖∞√d + ‖β‖"),
    "deepnorm": ("bounded", "F1 (DeepNorm is post-LN with a weighted residual)"),
    "pre": ("polynomial", "F5: E‖x_k‖² grows additively, so r_l ~ √l (exponent 1/2)"),
    "peri": ("polynomial", "F2/F5: linear norm bound; E‖x_k‖² += Δt²γ²dρ, so r_l ~ √l"),
    "outnorm": ("polynomial", "F2-like: the output norm caps each update at ‖γ‖∞√d"),
    "mixln": ("polynomial", "post blocks bounded, then pre growth (F1, F5)"),
    "lns": ("polynomial", "X4: increments scale with 1/ℓ, r_l² ~ harmonic number (slower than √l)"),
    "none": ("exponential", "F4: E‖x‖² is multiplied by (1 + c) per step at initialisation"),
}


class ContractError(ValueError):
    """The user's block does not fit the contract of ``python -m verify.check``."""


# ---- building the layers ----------------------------------------------------------------------------------------
def load_factory(path: str) -> Callable:
    if not isinstance(path, str) or path.count(":") != 1:
        raise ContractError(f"factory must be 'package.module:callable', got {path!r}")
    mod_name, attr = path.split(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ContractError(f"factory: cannot import module {mod_name!r} ({exc})") from exc
    fn = getattr(mod, attr, None)
    if fn is None or not callable(fn):
        raise ContractError(f"factory: {mod_name!r} has no callable {attr!r}")
    return fn


class EulerRescaled(nn.Module):
    """X + Δt·(block(X) − X): a residual step of size Δt along the block's own update."""

    def __init__(self, block: nn.Module, dt: float):
        super().__init__()
        self.block, self.dt = block, dt

    def forward(self, x):
        return x if self.dt == 0 else x + self.dt * (self.block(x) - x)


def factory_layers(factory: Callable, d: int, depth: int, n_instances: int, seed: int, n_tokens: int) -> list[nn.Module]:
    layers = []
    for l in range(depth):
        try:
            block = factory(d=d, n_instances=n_instances, seed=seed + l)
        except TypeError as exc:
            raise ContractError(f"factory must accept (d, n_instances, seed) keywords: {exc}") from exc
        if not isinstance(block, nn.Module):
            raise ContractError(f"factory must return a torch.nn.Module, got {type(block).__name__}")
        block = block.to(torch.float64)
        probe = torch.randn(n_instances, n_tokens, d, dtype=torch.float64, requires_grad=True,
                            generator=torch.Generator().manual_seed(seed))
        out = block(probe)
        if not isinstance(out, torch.Tensor) or out.shape != probe.shape:
            raise ContractError(f"block must map (n_instances, n, d) = {tuple(probe.shape)} to the same shape, "
                                f"got {getattr(out, 'shape', type(out).__name__)}")
        if not bool(torch.isfinite(out).all()):
            raise ContractError("block output contains NaN or inf on a standard Gaussian input")
        if not out.requires_grad:
            raise ContractError("block output does not depend differentiably on its input")
        layers.append(block)
    return layers


def zoo_layers(cfg: StackConfig, n_instances: int, seed: int) -> list[nn.Module]:
    return list(Stack(cfg, n_instances, seed=seed).steps)


# ---- measuring -------------------------------------------------------------------------------------------------
def measure(layers: Sequence[nn.Module], x0: torch.Tensor, seed: int) -> dict[str, np.ndarray]:
    """Per-instance RMS row norms r (I, L+1) and gradient norms g (I, L+1) of ℓ = ⟨G, X_L⟩, G a unit Gaussian."""
    states = [x0.detach().clone().requires_grad_(True)]
    x = states[0]
    for layer in layers:
        x = layer(x)
        x.retain_grad()
        states.append(x)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + 7919), dtype=x.dtype)
    g = g / g.flatten(1).norm(dim=1).view(-1, *([1] * (g.dim() - 1)))
    (x * g.to(x.device)).sum().backward()
    n = x0.shape[-2]
    r = torch.stack([s.detach().flatten(1).norm(dim=1) / math.sqrt(n) for s in states], dim=1)
    p = torch.stack([s.grad.flatten(1).norm(dim=1) for s in states], dim=1)
    if not (torch.isfinite(r).all() and torch.isfinite(p).all()):
        raise ContractError("forward or backward pass produced NaN/inf: the design overflows at this depth")
    return {"r": r.cpu().numpy(), "p": p.cpu().numpy()}


# ---- fitting the regime --------------------------------------------------------------------------------------
# Regimes are told apart on the deeper half of the stack, where the asymptotics show:
# - bounded: the log-log slope of r̄_l over the deep half is below BOUNDED_EXPONENT in magnitude (post-type rows
#   sit on the norm's range: measured slopes ~1e-8; the slowest unbounded zoo case, LayerNorm-Scaling's harmonic
#   growth, measures 0.06 at depth 64, three times the threshold);
# - exponential: the second moment follows m_{l+1} = (1 + a)·m_l + b (the form F4/F5 give at initialisation) with a
#   whose bootstrap 95 % interval excludes 0 and which at least doubles m over the deep half, (1 + a)^{L/2} ≥ 2;
#   additive growth (pre, peri: a ≈ 0.001–0.03) does not, no-norm growth (a ≈ 0.4–0.5 at d = 32) does;
# - polynomial otherwise, with the deep-half log-log slope as its exponent (1/2 for additive second moments).
BOUNDED_EXPONENT = 0.02


def _fits(g: np.ndarray) -> dict:
    """Deep-half statistics of a growth curve g_l = r̄_l/r̄_0 (l = 0..L)."""
    L = g.shape[0] - 1
    half = max(1, L // 2)
    l_deep = np.arange(half, L + 1, dtype=float)
    deep = float(np.polyfit(np.log(l_deep + 1.0), np.log(g[half:]), 1)[0])
    m = g ** 2
    A = np.stack([m[half:-1], np.ones(L - half)], 1)
    (slope, b), *_ = np.linalg.lstsq(A, m[half + 1:], rcond=None)
    a = float(slope - 1.0) if np.ptp(m[half:]) > 1e-9 * m[half:].max() else 0.0
    return {"deep_exponent": deep, "affine_a": a, "affine_b": float(b),
            "rate": float(0.5 * math.log1p(a)) if a > -1 else float("nan"),
            "exponent": deep, "half": half}


def _classify(f: dict, a_lower: float | None = None) -> str:
    if abs(f["deep_exponent"]) < BOUNDED_EXPONENT:
        return "bounded"
    a = f["affine_a"] if a_lower is None else a_lower
    compounding = (1.0 + f["affine_a"]) ** f["half"] if f["affine_a"] > -1 else 0.0
    if a > 0 and compounding >= 2.0:
        return "exponential"
    return "polynomial"


def fit_regime(r: np.ndarray, n_boot: int = 200, seed: int = 0) -> dict:
    """Classify the growth of the instance-mean curve r̄_l/r̄_0, with a bootstrap over instances.

    The confidence is the fraction of bootstrap resamples (instances drawn with replacement) whose curve gets the
    same regime; exponent, rate and the affine a carry 95 % percentile intervals.
    """
    if r.ndim != 2 or r.shape[1] < 5:
        raise ValueError(f"r must have shape (instances, depth+1) with depth >= 4, got {r.shape}")
    curve = r.mean(0) / r[:, 0].mean()
    f = _fits(curve)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        rb = r[rng.integers(0, r.shape[0], r.shape[0])]
        boots.append(_fits(rb.mean(0) / rb[:, 0].mean()))
    a_ci = [float(np.percentile([b["affine_a"] for b in boots], q)) for q in (2.5, 97.5)]
    regime = _classify(f, a_lower=a_ci[0])
    same = sum(_classify(b) == regime for b in boots)

    def ci(key):  # NaN rates (a ≤ −1: a contracting fixed point, no growth rate) are left out
        vals = np.array([b[key] for b in boots], dtype=float)
        vals = vals[np.isfinite(vals)]
        return [float(np.percentile(vals, q)) for q in (2.5, 97.5)] if vals.size else [float("nan")] * 2

    return {"regime": regime, "confidence": same / n_boot, **f, "affine_a_ci95": a_ci,
            "rate_ci95": ci("rate"), "exponent_ci95": ci("exponent"), "growth_curve": curve.tolist()}


def nearest_placement(curve: np.ndarray, d: int, depth: int, n_tokens: int, n_instances: int, seed: int,
                      n_heads: int = 1) -> dict:
    """The zoo placement whose log-growth curve (same d, depth, Δt = 1, default init) is closest in RMS distance."""
    x0 = torch.randn(n_instances, n_tokens, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    dist = {}
    for p in ZOO_PLACEMENTS:
        cfg = StackConfig(d=d, n_blocks=depth, placement=p, sublayers=("mlp",), n_heads=n_heads)
        m = measure(zoo_layers(cfg, n_instances, seed), x0, seed)
        c = m["r"].mean(0) / m["r"][:, 0].mean()
        dist[p] = float(np.sqrt(np.mean((np.log(c) - np.log(curve)) ** 2)))
    best = min(dist, key=dist.get)
    return {"placement": best, "distances": dist}


# ---- optional short training ------------------------------------------------------------------------------------
class InstanceLM(nn.Module):
    """A byte-level language model around the layers, one independent model per instance.

    Per-instance token embedding (I, 256, d) and read-out (I, d, 256), the layers in between, so each of the I
    instances trains on its own sequences and stays an independent model.
    """

    def __init__(self, layers: Sequence[nn.Module], n_instances: int, d: int, seed: int, vocab: int = 256):
        super().__init__()
        g = torch.Generator().manual_seed(seed + 104729)
        self.layers = nn.ModuleList(layers)
        self.embed = nn.Parameter(torch.randn(n_instances, vocab, d, generator=g, dtype=torch.float64))
        self.head = nn.Parameter(torch.randn(n_instances, d, vocab, generator=g, dtype=torch.float64) / math.sqrt(d))

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:  # idx (I, n) -> mean CE loss
        x = torch.gather(self.embed, 1, idx.unsqueeze(-1).expand(-1, -1, self.embed.shape[-1]))
        for layer in self.layers:
            x = layer(x)
        c = x - x.mean(-1, keepdim=True)
        logits = (c / torch.sqrt((c * c).mean(-1, keepdim=True) + 1e-5)) @ self.head
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def train_layers(layers: Sequence[nn.Module], n_instances: int, d: int, n_tokens: int, steps: int, seed: int,
                 lr: float = 1e-3, weight_decay: float = 0.1) -> dict:
    """Train the layers in place for ``steps`` AdamW steps on the embedded corpus; returns the loss curve."""
    from verify.training.corpus import default_corpus

    corpus = default_corpus(max_bytes=200_000)
    model = InstanceLM(layers, n_instances, d, seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(steps):
        idx, tgt = corpus.batch("train", n_instances, n_tokens, rng)  # one sequence per instance
        loss = model(idx, tgt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return {"steps": steps, "loss_first": losses[0], "loss_last": losses[-1], "corpus": corpus.describe()}


# ---- the stability criterion on measurements ----------------------------------------------------------------
def gains(m: dict[str, np.ndarray]) -> tuple[float, float]:
    """Measured forward gain max_l r̄_l/r̄_0 and backward log-gain max_l log(p̄_l/p̄_L) (instance means)."""
    r, p = m["r"].mean(0), m["p"].mean(0)
    return float(r.max() / r[0]), float(np.log(p.max() / p[-1]))


def admissible_dt(build: Callable[[float], list[nn.Module]], x0: torch.Tensor, seed: int, forward_gain: float,
                  log_gain: float, grid: Sequence[float]) -> dict:
    """Largest Δt on the grid whose measured gains satisfy the (B, τ) criterion; the sweep is reported whole."""
    sweep = []
    for dt in grid:
        fg, bg = gains(measure(build(dt), x0, seed))
        sweep.append({"dt": float(dt), "forward_gain": fg, "backward_log_gain": bg,
                      "stable": fg <= forward_gain and bg <= log_gain})
    ok = [s["dt"] for s in sweep if s["stable"]]
    return {"B": forward_gain, "tau": log_gain, "recommended_dt": max(ok) if ok else None, "sweep": sweep}


# ---- command line ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Options:
    placement: str | None = None
    factory: str | None = None
    depth: int = 32
    d: int = 32
    n_tokens: int = 4
    instances: int = 32
    heads: int = 1
    norm: str = "layer"
    dt: float = 1.0
    init_scale: float = 1.0
    seed: int = 0
    B: float = 10.0
    tau: float = math.log(10.0)
    grid: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
    train_steps: int = 0
    out: Path = Path("figures/check")


def run(opts: Options) -> dict:
    if (opts.placement is None) == (opts.factory is None):
        raise ContractError("give exactly one of --placement (a zoo configuration) or --factory (module:callable)")
    for name in ("depth", "instances", "n_tokens"):
        if getattr(opts, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(opts, name)}")
    if opts.depth < 4:
        raise ValueError(f"depth must be >= 4 to fit a growth regime, got {opts.depth}")
    if opts.d < 2:
        raise ValueError(f"d must be >= 2, got {opts.d}")
    if not (opts.B > 1):
        raise ValueError(f"B must be > 1, got {opts.B}")
    if not (opts.tau > 0):
        raise ValueError(f"tau must be > 0, got {opts.tau}")
    torch.manual_seed(opts.seed)
    x0 = torch.randn(opts.instances, opts.n_tokens, opts.d, dtype=torch.float64,
                     generator=torch.Generator().manual_seed(opts.seed))
    if opts.placement is not None:
        base = StackConfig(d=opts.d, n_blocks=opts.depth, placement=opts.placement, norm=opts.norm,
                           n_heads=opts.heads, dt=opts.dt, weight_scale=opts.init_scale, sublayers=("mlp",))

        def build(dt: float) -> list[nn.Module]:
            return zoo_layers(base.replace(dt=dt), opts.instances, opts.seed)

        layers = build(opts.dt)
        design = f"zoo placement {opts.placement}"
    else:
        factory = load_factory(opts.factory)
        blocks = factory_layers(factory, opts.d, opts.depth, opts.instances, opts.seed, opts.n_tokens)

        def build(dt: float) -> list[nn.Module]:
            return [EulerRescaled(b, dt) for b in blocks]

        layers = blocks
        design = f"factory {opts.factory}"
    trained = None
    if opts.train_steps < 0:
        raise ValueError(f"train_steps must be >= 0, got {opts.train_steps}")
    if opts.train_steps:
        init_fit = fit_regime(measure(layers, x0, opts.seed)["r"], seed=opts.seed)
        trained = train_layers(layers, opts.instances, opts.d, max(opts.n_tokens, 8), opts.train_steps, opts.seed)
        trained["regime_at_init"] = init_fit["regime"]
    m = measure(layers, x0, opts.seed)
    fit = fit_regime(m["r"], seed=opts.seed)
    near = nearest_placement(np.asarray(fit["growth_curve"]), opts.d, opts.depth, opts.n_tokens,
                             min(opts.instances, 16), opts.seed)
    theory_regime, theory_says = THEORY_REGIME[near["placement"]]
    crit = admissible_dt(build, x0, opts.seed, opts.B, opts.tau, opts.grid)
    fg, bg = gains(m)
    result = {
        "design": design, "depth": opts.depth, "d": opts.d, "n_tokens": opts.n_tokens, "instances": opts.instances,
        "seed": opts.seed, "growth": fit, "forward_gain": fg, "backward_log_gain": bg,
        "gradient_norms": (m["p"].mean(0) / m["p"].mean(0)[-1]).tolist(),
        "nearest_placement": near, "theory": {"placement": near["placement"], "regime": theory_regime,
                                              "statement": theory_says,
                                              "agrees": theory_regime == fit["regime"]},
        "criterion": crit,
        "measured_after_training": trained,
    }
    if opts.placement is not None:
        own, own_says = THEORY_REGIME[opts.placement]
        result["theory_own_placement"] = {"regime": own, "statement": own_says, "agrees": own == fit["regime"]}
    return result


def draw(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    curve = np.asarray(result["growth"]["growth_curve"])
    layers = np.arange(len(curve))
    a.plot(layers, curve, "o-", ms=3, label="measured r̄_l / r̄_0")
    g = result["growth"]
    if g["regime"] == "exponential":
        h = g["half"]
        a.plot(layers, curve[h] * np.exp(g["rate"] * (layers - h)), "--", label=f"∝ exp({g['rate']:.3g} l)")
    elif g["regime"] == "polynomial":
        h = g["half"]
        a.plot(layers, curve[h] * ((layers + 1.0) / (h + 1.0)) ** g["exponent"], "--",
               label=f"∝ (l+1)^{g['exponent']:.2f}")
    a.set_yscale("log")
    a.set_xlabel("layer l")
    a.set_title(f"forward: {g['regime']} (confidence {g['confidence']:.0%})")
    a.legend(fontsize=7)
    b.plot(layers, result["gradient_norms"], "o-", ms=3)
    b.set_yscale("log")
    b.set_xlabel("layer l")
    b.set_title("gradient norm ‖p_l‖/‖p_L‖")
    fig.suptitle(f"{result['design']}: nearest placement {result['nearest_placement']['placement']}, "
                 f"recommended Δt {result['criterion']['recommended_dt']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m verify.check", description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--placement", choices=ZOO_PLACEMENTS)
    src.add_argument("--factory", help="package.module:callable returning a block (see the module docstring)")
    d = Options()
    ap.add_argument("--depth", type=int, default=d.depth)
    ap.add_argument("--d", type=int, default=d.d)
    ap.add_argument("--tokens", dest="n_tokens", type=int, default=d.n_tokens)
    ap.add_argument("--instances", type=int, default=d.instances)
    ap.add_argument("--heads", type=int, default=d.heads)
    ap.add_argument("--norm", choices=("layer", "rms"), default=d.norm)
    ap.add_argument("--dt", type=float, default=d.dt)
    ap.add_argument("--init-scale", type=float, default=d.init_scale)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--B", type=float, default=d.B, help="largest admissible forward gain")
    ap.add_argument("--tau", type=float, default=d.tau, help="largest admissible backward log-gain")
    ap.add_argument("--train-steps", type=int, default=d.train_steps,
                    help="first train the blocks this many AdamW steps on the embedded corpus, then measure")
    ap.add_argument("--out", type=Path, default=d.out)
    args = ap.parse_args(argv)
    opts = Options(**{k: v for k, v in vars(args).items()})
    try:
        result = run(opts)
    except (ContractError, ValueError) as exc:
        ap.error(str(exc))
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / "check.json").write_text(json.dumps(result, indent=1))
    draw(result, opts.out / "check.png")
    g, t, c = result["growth"], result["theory"], result["criterion"]
    detail = {"exponential": f"rate {g['rate']:.3g} per layer (95% CI {g['rate_ci95'][0]:.3g}..{g['rate_ci95'][1]:.3g})",
              "polynomial": f"exponent {g['exponent']:.3g} (95% CI {g['exponent_ci95'][0]:.3g}..{g['exponent_ci95'][1]:.3g})",
              "bounded": f"deep-half log-log slope {g['deep_exponent']:.3g}"}[g["regime"]]
    if result["measured_after_training"]:
        tr = result["measured_after_training"]
        print(f"trained {tr['steps']} steps (loss {tr['loss_first']:.3f} -> {tr['loss_last']:.3f}); "
              f"regime at init was {tr['regime_at_init']}, after training:")
    print(f"{result['design']}: forward growth {g['regime']}, {detail}; confidence {g['confidence']:.0%}")
    print(f"nearest zoo placement: {t['placement']} — theory: {t['statement']} "
          f"({'agrees' if t['agrees'] else 'DISAGREES'} with the measurement)")
    print(f"criterion (B={c['B']:.3g}, τ={c['tau']:.3g}): recommended Δt = {c['recommended_dt']}")
    print(f"wrote {opts.out / 'check.json'} and {opts.out / 'check.png'}")
    return 0

