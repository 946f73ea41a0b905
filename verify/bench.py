"""Benchmark of the two engines: the batched torch zoo against its peers, and the 50-digit oracle's backends.

    python -m verify.bench [--quick] [--device cpu|cuda] [--threads N] [--json PATH] [--compile]
                           [--placements pre,peri] [--widths 16,64] [--instances 8,64] [--profile]

1. The batched zoo. For each placement, width d and instance count I, one pass of a :class:`verify.engine.zoo.Stack`
   over I instances (n tokens, attention + MLP steps, causal, float64) is timed forward (``fwd``, under
   ``no_grad``) and forward + backward (``fwdbwd``: the gradient of ⟨1, output⟩ w.r.t. every parameter), against
   three peers computing the same thing:
   - ``vmap``: a faithful single-instance ``nn.Module`` stack (``nn.Linear`` with a fused QKV map,
     ``nn.LayerNorm``, the same explicit softmax attention and exact GELU; :class:`PeerStack`) holding the same
     weights, ensembled over the I instances with ``torch.func.stack_module_state`` +
     ``torch.vmap(functional_call)`` — what a PyTorch user writes for "many small models at once";
   - ``loop``: a Python loop over I one-instance Stacks (sharing the engine's weight storage);
   - ``bmm``: ``torch.bmm`` on the engine's largest operand shapes, (I, n, d) @ (I, d, 4d), repeated until the
     matmul FLOPs match (a multiply-add counts 2: attention 8nd² + 4n²d and MLP 4nd·d_mlp per step and
     sequence; norms, softmax and activations are not counted), with its own backward for ``fwdbwd`` — an
     equal-FLOP ceiling for what batching these shapes can reach on this device.
   Each record has ``placement, d, instances, mode, engine_s, vmap_s, loop_s, bmm_s`` (median seconds) and the
   ratios ``vmap/engine``, ``loop/engine`` (speed-ups of the engine) and ``bmm/engine`` (fraction of the ceiling).
   ``--compile`` adds ``compiled_s``: the engine under ``torch.compile`` (:class:`verify.engine.zoo.CompiledStack`),
   with ``vmap_over_compiled`` and ``engine_over_compiled``. ``--profile`` replaces the timing by a torch.profiler
   split of engine and vmap peer into matmul kernels and the rest (:func:`profile_engine`: the *matmul floor*,
   peer time / engine matmul time, bounds the speed-up any rearrangement of the engine's other work can reach).
2. The oracle: one depth-64 (32 blocks), d = 16, 4-token forward pass at 50 digits, with mpmath on gmpy2, with
   mpmath's pure-Python backend (a subprocess with ``MPMATH_NOGMPY=1``, since mpmath picks its backend at
   import) and, when python-flint is installed, with the arb backend (:mod:`verify.engine.oracle_flint`).

Timings are medians of repeated runs after a warm-up, all in one process, the four contenders of a record timed
round-robin (:func:`time_group`) so that their ratios share the machine's state; input/weight validation is excluded (``validate=False``). One intra-op thread by default (on a shared
machine OpenMP contention otherwise slows the small kernels 3–10×). The default run takes a few minutes on the
shared 2-core reference machine; ``--quick`` (used by the test) seconds on tiny sizes. The ratios are the point,
not the absolute values.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# d = 256 runs 2 blocks (4 steps) instead of 4 so that engine, vmap copy and gradients fit a shared machine's memory.
FULL = dict(placements=("pre", "peri"), widths=(16, 64, 256), instances=(8, 64), tokens=16,
            blocks={16: 4, 64: 4, 256: 2}, min_seconds=1.0, oracle=dict(n_blocks=32, d=16, tokens=4, dps=50))
QUICK = dict(placements=("peri",), widths=(8, 16), instances=(2, 4), tokens=4, blocks={8: 1, 16: 1},
             min_seconds=0.01, oracle=dict(n_blocks=2, d=4, tokens=2, dps=50))
MODES = ("fwd", "fwdbwd")
PEER_RULES = ("post", "pre", "peri", "none")
ROOT = Path(__file__).resolve().parents[1]


# ---- FLOPs and timing ------------------------------------------------------------------------------------------
def stack_flops(cfg, n_instances: int, n_tokens: int) -> float:
    """Multiply-add FLOPs (×2) of one forward pass: matmuls only (attention 8nd² + 4n²d, MLP 4nd·d_mlp per step)."""
    d, n, total = cfg.d, n_tokens, 0.0
    for k in range(cfg.n_steps):
        if cfg.step_kind(k) == "attn":
            total += 8 * n * d * d + 4 * n * n * d
        else:
            total += 4 * n * d * cfg.hidden
    return total * n_instances


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_call(fn, device, min_seconds: float, min_repeats: int = 3) -> float:
    """Median seconds of ``fn()`` over ≥ ``min_repeats`` runs lasting ≥ ``min_seconds`` together (after a warm-up)."""
    fn()
    _sync(device)
    times: list[float] = []
    while len(times) < min_repeats or sum(times) < min_seconds:
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
        if len(times) >= 200:
            break
    return statistics.median(times)


def time_group(fns: dict, device, min_seconds: float, min_repeats: int = 5, max_repeats: int = 100) -> dict:
    """Median seconds of each ``fns[k]()``, timed round-robin (one call of each in turn, after one warm-up each),
    so that on a shared machine every contender sees the same load: the ratios are what this is for. Stops once
    every contender has ≥ ``min_repeats`` calls and the slowest has used ≥ ``min_seconds``."""
    for fn in fns.values():
        fn()
    _sync(device)
    times: dict = {k: [] for k in fns}
    while True:
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[k].append(time.perf_counter() - t0)
        n = len(times[next(iter(fns))])
        if n >= max_repeats or (n >= min_repeats and max(sum(v) for v in times.values()) >= min_seconds):
            return {k: statistics.median(v) for k, v in times.items()}


# ---- the peer: a plain nn.Module stack for ONE instance -------------------------------------------------------
@functools.cache
def _peer_classes():
    """The peer's classes, defined on first use (so importing verify.bench imports no torch)."""
    import math

    import torch
    import torch.nn.functional as nnf
    from torch import nn

    class PeerAttention(nn.Module):
        def __init__(self, d, n_heads, causal):
            super().__init__()
            self.n_heads, self.causal = n_heads, causal
            self.qkv = nn.Linear(d, 3 * d, bias=False, dtype=torch.float64)
            self.proj = nn.Linear(d, d, dtype=torch.float64)

        def forward(self, u):  # (*batch, n, d)
            *lead, n, d = u.shape
            h, dh = self.n_heads, d // self.n_heads
            q, k, v = (t.reshape(*lead, n, h, dh).transpose(-2, -3) for t in self.qkv(u).split(d, dim=-1))
            scores = q @ k.transpose(-1, -2) / math.sqrt(dh)
            if self.causal:
                mask = torch.ones(n, n, dtype=torch.bool, device=u.device).triu(1)
                scores = scores.masked_fill(mask, float("-inf"))
            out = (torch.softmax(scores, dim=-1) @ v).transpose(-2, -3).reshape(*lead, n, d)
            return self.proj(out)

    class PeerMLP(nn.Module):
        def __init__(self, d, hidden):
            super().__init__()
            self.fc1 = nn.Linear(d, hidden, dtype=torch.float64)
            self.fc2 = nn.Linear(hidden, d, dtype=torch.float64)

        def forward(self, u):
            return self.fc2(nnf.gelu(self.fc1(u)))

    class PeerStep(nn.Module):
        def __init__(self, rule, kind, d, n_heads, hidden, causal, eps, dt):
            super().__init__()
            self.rule, self.dt = rule, dt
            self.sub = PeerAttention(d, n_heads, causal) if kind == "attn" else PeerMLP(d, hidden)

            def norm():
                return nn.LayerNorm(d, eps=eps, dtype=torch.float64)

            self.norm_in = norm() if rule in ("pre", "peri") else None
            self.norm_out = norm() if rule == "peri" else None
            self.norm_res = norm() if rule == "post" else None

        def forward(self, x):
            u = x if self.norm_in is None else self.norm_in(x)
            f = self.sub(u)
            if self.norm_out is not None:
                f = self.norm_out(f)
            y = x + f if self.dt == 1.0 else x + self.dt * f  # as the engine: no kernel for 1·F
            return y if self.norm_res is None else self.norm_res(y)

    class PeerStack(nn.Module):
        """One instance of a zoo stack written as plain PyTorch (LayerNorm placements post/pre/peri/none)."""

        def __init__(self, cfg):
            super().__init__()
            if cfg.norm != "layer" or cfg.activation != "gelu" or not cfg.bias or cfg.final_norm:
                raise ValueError("the peer covers LayerNorm, GELU, biases on, no final norm")
            rules = [cfg.step_rule(k) for k in range(cfg.n_steps)]
            bad = sorted(set(rules) - set(PEER_RULES))
            if bad:
                raise ValueError(f"placement must resolve to {PEER_RULES} for the peer, got {bad}")
            self.steps = nn.ModuleList(
                PeerStep(rules[k], cfg.step_kind(k), cfg.d, cfg.n_heads, cfg.hidden, cfg.causal, cfg.eps,
                         cfg.dts[k]) for k in range(cfg.n_steps))

        def forward(self, x):
            for step in self.steps:
                x = step(x)
            return x

    return PeerStack


def peer_from_engine(stack, i: int, placement: str | None = None):
    """Instance ``i`` of a zoo ``Stack`` as a :class:`PeerStack` holding the same weights (copies, float64).

    ``placement`` overrides the engine's (a deliberately wrong peer for the meta-test; a norm the engine lacks
    takes the step's other norm's gain and bias)."""
    import torch

    peer_stack = _peer_classes()
    cfg = stack.cfg
    peer = peer_stack(cfg if placement is None else cfg.replace(placement=placement))
    st = stack.instance_state(i)
    with torch.no_grad():
        for k, step in enumerate(peer.steps):
            pre = f"steps.{k}."
            sub = step.sub
            if cfg.step_kind(k) == "attn":
                w = torch.cat([st[pre + f"sublayer.W_{c}"] for c in "qkv"], dim=-1)  # (d, 3d), row-vector form
                sub.qkv.weight.copy_(w.T)
                sub.proj.weight.copy_(st[pre + "sublayer.W_o"].T)
                sub.proj.bias.copy_(st[pre + "sublayer.b_o"])
            else:
                sub.fc1.weight.copy_(st[pre + "sublayer.W1"].T)
                sub.fc1.bias.copy_(st[pre + "sublayer.b1"])
                sub.fc2.weight.copy_(st[pre + "sublayer.W2"].T)
                sub.fc2.bias.copy_(st[pre + "sublayer.b2"])
            for name in ("norm_in", "norm_out", "norm_res"):
                norm = getattr(step, name)
                if norm is not None:
                    src = name if pre + f"{name}.gamma" in st else next(
                        n for n in ("norm_in", "norm_out", "norm_res") if pre + f"{n}.gamma" in st)
                    norm.weight.copy_(st[pre + f"{src}.gamma"])
                    norm.bias.copy_(st[pre + f"{src}.beta"])
    return peer.to(stack.device)


def vmap_ensemble(stack):
    """The torch.func ensemble of the engine's instances: ``(fn, params)`` with ``fn(params, x)`` → (I, …, n, d)."""
    import copy

    import torch
    from torch.func import functional_call, stack_module_state

    models = [peer_from_engine(stack, i) for i in range(stack.n_instances)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    del models

    def one(p, b, x):
        return functional_call(base, (p, b), (x,))

    batched = torch.vmap(one)
    return (lambda p, x: batched(p, buffers, x)), params


# ---- 1. the batched zoo ----------------------------------------------------------------------------------------
def _loop_stacks(stack):
    """One-instance Stacks whose parameters are views of the engine's instance i (no copy)."""
    from verify.engine.zoo import Stack

    big = dict(stack.named_parameters())
    singles = []
    for i in range(stack.n_instances):
        one = Stack(stack.cfg, 1, seed=0)
        for name, p in one.named_parameters():
            p.data = big[name].detach()[i:i + 1]
        singles.append(one)
    return singles


def contenders(placement: str, d: int, n_instances: int, n_tokens: int, n_blocks: int, device: str,
               compiled: bool = False) -> tuple:
    """``(cfg, flops, fwd, fwdbwd)``: the benchmark's problem for one (placement, d, I) and its four contenders as
    zero-argument callables, keyed ``engine_s, vmap_s, loop_s, bmm_s`` (``fwd`` ones to be called under
    ``no_grad``); with ``compiled`` a fifth, ``compiled_s``, the engine under ``torch.compile``
    (:class:`verify.engine.zoo.CompiledStack`; its first call compiles, for minutes)."""
    import torch

    from verify.engine.zoo import Stack, StackConfig, sample_inputs

    cfg = StackConfig(d=d, n_blocks=n_blocks, placement=placement, n_heads=max(1, d // 16), causal=True,
                      bias_std=0.1, device=device)
    stack = Stack(cfg, n_instances, seed=1)
    x = sample_inputs(cfg, n_instances, n_tokens, seed=2)
    flops = stack_flops(cfg, n_instances, n_tokens)
    singles = _loop_stacks(stack)
    peer, peer_params = vmap_ensemble(stack)
    a = torch.randn(n_instances, n_tokens, d, dtype=torch.float64, device=x.device)
    b = torch.randn(n_instances, d, cfg.hidden, dtype=torch.float64, device=x.device)
    reps = max(1, round(flops / (2.0 * n_instances * n_tokens * d * cfg.hidden)))
    engine_params = list(stack.parameters())
    loop_params = [list(s.parameters()) for s in singles]
    peer_list = list(peer_params.values())
    ones = torch.ones_like(x)
    ones_bmm = torch.ones(n_instances, n_tokens, cfg.hidden, dtype=torch.float64, device=x.device)

    def bmm_chain():
        for _ in range(reps):
            torch.bmm(a, b)

    def engine_fb():
        torch.autograd.grad(stack(x, validate=False), engine_params, ones)

    def vmap_fb():
        torch.autograd.grad(peer(peer_params, x), peer_list, ones)

    def loop_fb():
        for i, s in enumerate(singles):
            torch.autograd.grad(s(x[i:i + 1], validate=False), loop_params[i], ones[i:i + 1])

    def bmm_fb():
        ag, bg = a.detach().requires_grad_(True), b.detach().requires_grad_(True)
        outs = [torch.bmm(ag, bg) for _ in range(reps)]
        torch.autograd.grad(outs, (ag, bg), [ones_bmm] * reps)

    fwd = dict(engine_s=lambda: stack(x, validate=False), vmap_s=lambda: peer(peer_params, x),
               loop_s=lambda: [s(x[i:i + 1], validate=False) for i, s in enumerate(singles)], bmm_s=bmm_chain)
    fb = dict(engine_s=engine_fb, vmap_s=vmap_fb, loop_s=loop_fb, bmm_s=bmm_fb)
    if compiled:
        from verify.engine.zoo import CompiledStack

        comp = CompiledStack(stack)
        fwd["compiled_s"] = lambda: comp(x, validate=False)
        fb["compiled_s"] = lambda: torch.autograd.grad(comp(x, validate=False), engine_params, ones)
    return cfg, flops, fwd, fb


def bench_engine(placement: str, d: int, n_instances: int, n_tokens: int, n_blocks: int, device: str,
                 min_seconds: float, compiled: bool = False) -> list[dict]:
    """The fwd and fwdbwd records of one (placement, d, I)."""
    import torch

    cfg, flops, fwd, fb = contenders(placement, d, n_instances, n_tokens, n_blocks, device, compiled)
    rows = []
    with torch.no_grad():
        rows.append(dict(mode="fwd", **time_group(fwd, device, min_seconds)))
    rows.append(dict(mode="fwdbwd", **time_group(fb, device, min_seconds)))
    out = []
    for r in rows:
        factor = 1.0 if r["mode"] == "fwd" else 3.0  # backward: two matmuls per forward matmul
        out.append(dict(placement=placement, d=d, instances=n_instances, mode=r["mode"], tokens=n_tokens,
                        steps=cfg.n_steps, gflop=factor * flops / 1e9, engine_s=r["engine_s"], vmap_s=r["vmap_s"],
                        loop_s=r["loop_s"], bmm_s=r["bmm_s"], vmap_over_engine=r["vmap_s"] / r["engine_s"],
                        loop_over_engine=r["loop_s"] / r["engine_s"], bmm_over_engine=r["bmm_s"] / r["engine_s"],
                        engine_gflops=factor * flops / r["engine_s"] / 1e9))
        if "compiled_s" in r:
            out[-1].update(compiled_s=r["compiled_s"], vmap_over_compiled=r["vmap_s"] / r["compiled_s"],
                           engine_over_compiled=r["engine_s"] / r["compiled_s"])
    return out


# ---- 1b. where the time goes: matmul kernels vs the rest ------------------------------------------------------
# The kernels that do the matmul FLOPs (self time; aten::matmul itself only dispatches to these).
MATMUL_OPS = frozenset({"aten::bmm", "aten::baddbmm", "aten::addmm", "aten::addbmm", "aten::mm"})
PROFILE = dict(placements=("pre", "peri"), widths=(16, 64), instances=(8, 64), tokens=16, blocks={16: 4, 64: 4})
QUICK_PROFILE = dict(placements=("peri",), widths=(8,), instances=(2,), tokens=4, blocks={8: 1})


def profile_split(fns: dict, rounds: int = 4, calls: int = 5) -> dict:
    """Self CPU seconds per call of each ``fns[k]()``, split by torch.profiler into matmul kernels
    (:data:`MATMUL_OPS`) and everything else, the contenders profiled round-robin (``rounds`` × ``calls`` calls
    each, after one warm-up call). The profiler inflates the many small ops more than the few large ones, so
    ``other_s`` is an upper estimate and ``matmul_s``'s share a lower one."""
    from torch.profiler import ProfilerActivity, profile

    for fn in fns.values():
        fn()
    acc = {k: [0.0, 0.0] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(calls):
                    fn()
            for e in prof.key_averages():
                acc[k][0 if e.key in MATMUL_OPS else 1] += e.self_cpu_time_total  # microseconds
    n = rounds * calls
    return {k: dict(matmul_s=m / n / 1e6, other_s=o / n / 1e6, total_s=(m + o) / n / 1e6) for k, (m, o) in acc.items()}


def profile_engine(placement: str, d: int, n_instances: int, n_tokens: int, n_blocks: int, device: str) -> list[dict]:
    """Engine and vmap peer of one (placement, d, I), fwd and fwdbwd, split into matmul and other time.

    ``matmul_floor = vmap total / engine matmul`` bounds the vmap/engine ratio the engine could reach if all its
    non-matmul work were free while it kept its matmul kernels (the peer runs the same FLOPs through the same
    batched-GEMM library)."""
    import torch

    _, _, fwd, fb = contenders(placement, d, n_instances, n_tokens, n_blocks, device)

    def no_grad(fn):
        def call():
            with torch.no_grad():
                fn()
        return call

    out = []
    for mode, fns in (("fwd", {k: no_grad(fwd[k]) for k in ("engine_s", "vmap_s")}),
                      ("fwdbwd", {k: fb[k] for k in ("engine_s", "vmap_s")})):
        split = profile_split(fns)
        e, v = split["engine_s"], split["vmap_s"]
        out.append(dict(placement=placement, d=d, instances=n_instances, mode=mode, tokens=n_tokens,
                        engine_matmul_s=e["matmul_s"], engine_other_s=e["other_s"], vmap_matmul_s=v["matmul_s"],
                        vmap_other_s=v["other_s"], profiled_vmap_over_engine=v["total_s"] / e["total_s"],
                        matmul_floor=v["total_s"] / e["matmul_s"]))
    return out


def run_profile(quick: bool = False, device: str = "cpu", threads: int | None = None, progress=print) -> list[dict]:
    """:func:`profile_engine` over the :data:`PROFILE` plan (``QUICK_PROFILE`` with ``quick``)."""
    import torch

    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    plan = QUICK_PROFILE if quick else PROFILE
    previous = torch.get_num_threads()
    rows = []
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        for placement in plan["placements"]:
            for d in plan["widths"]:
                for inst in plan["instances"]:
                    for r in profile_engine(placement, d, inst, plan["tokens"], plan["blocks"][d], device):
                        rows.append(r)
                        progress(f"  {placement:<5} d={d:<4} I={inst:<3} {r['mode']:<6} matmul share engine "
                                 f"{r['engine_matmul_s'] / (r['engine_matmul_s'] + r['engine_other_s']):5.2f} "
                                 f"vmap {r['vmap_matmul_s'] / (r['vmap_matmul_s'] + r['vmap_other_s']):5.2f}  "
                                 f"vmap/engine (profiled) {r['profiled_vmap_over_engine']:5.2f}  "
                                 f"matmul floor {r['matmul_floor']:5.2f}")
    finally:
        torch.set_num_threads(previous)
    return rows


# ---- 2. the oracle ---------------------------------------------------------------------------------------------
def oracle_problem(n_blocks: int, d: int, tokens: int, dps: int) -> dict:
    """A JSON-able oracle problem: config fields, one instance's weights, its input."""
    from verify.engine.oracle import OracleConfig
    from verify.engine.zoo import Stack, StackConfig, sample_inputs

    cfg = StackConfig(d=d, n_blocks=n_blocks, placement="peri", n_heads=2, causal=True, bias_std=0.1)
    stack = Stack(cfg, 1, seed=3)
    x = sample_inputs(cfg, 1, tokens, seed=4)[0]
    return dict(cfg=OracleConfig.of(cfg).as_dict(), state={k: v.tolist() for k, v in stack.instance_state(0).items()},
                x0=x.tolist(), dps=dps, steps=cfg.n_steps, d=d, tokens=tokens)


def time_oracle(problem: dict, repeats: int = 2, backend: str = "mpmath") -> dict:
    """Seconds for one oracle pass (best of ``repeats``) with ``backend`` ("mpmath" on whichever mpmath backend this
    process imported, or "flint").

    The best of two: the first pass in a fresh process also fills mpmath's caches of constants (π, ln 2 at the
    working precision), which would otherwise be charged to whichever backend runs first."""
    import mpmath

    from verify.engine.oracle import oracle_forward

    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        oracle_forward(problem["cfg"], problem["state"], problem["x0"], dps=problem["dps"], backend=backend)
        best = min(best, time.perf_counter() - t0)
    name = f"mpmath-{mpmath.libmp.BACKEND}" if backend == "mpmath" else backend
    return dict(backend=name, seconds=best, steps=problem["steps"], d=problem["d"], tokens=problem["tokens"],
                dps=problem["dps"])


def _oracle_worker(path: str) -> None:
    """Entry point of the subprocess: time the oracle on the problem in ``path``, print one JSON line."""
    problem = json.loads(Path(path).read_text())
    print(json.dumps(time_oracle(problem)))


def time_oracle_without_gmpy(problem: dict, timeout: float = 600) -> dict:
    """Run :func:`time_oracle` in a fresh interpreter with MPMATH_NOGMPY=1 (pure-Python mpmath backend)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "problem.json"
        path.write_text(json.dumps(problem))
        env = dict(os.environ, MPMATH_NOGMPY="1")
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        code = f"from verify.bench import _oracle_worker; _oracle_worker({str(path)!r})"
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             timeout=timeout, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- the run ---------------------------------------------------------------------------------------------------
def select_plan(plan: dict, placements=None, widths=None, instances=None) -> dict:
    """``plan`` restricted to the given placements / widths / instance counts (``None``: all of the plan's)."""
    out = dict(plan)
    for key, chosen in (("placements", placements), ("widths", widths), ("instances", instances)):
        if chosen is None:
            continue
        chosen = tuple(chosen)
        bad = [v for v in chosen if v not in plan[key]]
        if not chosen or bad:
            raise ValueError(f"{key} must be a non-empty subset of {plan[key]}, got {chosen}")
        out[key] = chosen
    return out


def run(quick: bool = False, device: str = "cpu", threads: int | None = None, progress=print,
        compiled: bool = False, placements=None, widths=None, instances=None) -> dict:
    import torch

    from verify.engine.devices import resolve_device

    resolve_device(device)
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    previous = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        plan = select_plan(QUICK if quick else FULL, placements, widths, instances)
        return _run(plan, quick, device, progress, compiled)
    finally:
        torch.set_num_threads(previous)  # the thread count is process-global: leave it as found


def _run(plan: dict, quick: bool, device: str, progress, compiled: bool = False) -> dict:
    import torch

    from verify.engine.oracle import flint_available

    records = []
    for placement in plan["placements"]:
        for d in plan["widths"]:
            for inst in plan["instances"]:
                rows = bench_engine(placement, d, inst, plan["tokens"], plan["blocks"][d], device,
                                    plan["min_seconds"], compiled)
                records.extend(rows)
                for r in rows:
                    progress(f"  {placement:<5} d={d:<4} I={inst:<3} {r['mode']:<6} vmap/engine "
                             f"{r['vmap_over_engine']:6.2f}  loop/engine {r['loop_over_engine']:6.2f}  "
                             f"bmm/engine {r['bmm_over_engine']:5.2f}"
                             + (f"  vmap/compiled {r['vmap_over_compiled']:6.2f}" if "compiled_s" in r else ""))
    problem = oracle_problem(**plan["oracle"])
    oracle = [time_oracle(problem)]
    progress(f"  oracle {oracle[-1]['backend']}: {oracle[-1]['seconds']:.2f} s")
    if flint_available():
        oracle.append(time_oracle(problem, backend="flint"))
        progress(f"  oracle {oracle[-1]['backend']}: {oracle[-1]['seconds']:.2f} s")
    oracle.append(time_oracle_without_gmpy(problem))
    progress(f"  oracle {oracle[-1]['backend']}: {oracle[-1]['seconds']:.2f} s")
    env = dict(python=platform.python_version(), torch=torch.__version__, threads=torch.get_num_threads(),
               device=device, cpu_count=os.cpu_count(), platform=platform.platform())
    if torch.device(device).type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(torch.device(device))
    return dict(quick=quick, plan={k: (v if k != "blocks" else {str(w): b for w, b in v.items()})
                                   for k, v in plan.items()},
                records=records, oracle=oracle, environment=env)


def format_table(result: dict) -> str:
    env = result["environment"]
    lines = [f"batched zoo vs peers ({result['records'][0]['tokens']} tokens, float64, {env['device']}, "
             f"{env['threads']} thread(s)); ratios are peer time / engine time",
             f"{'placement':<9} {'d':>4} {'I':>4} {'steps':>5} {'mode':<6} {'engine s':>10} {'vmap/engine':>12} "
             f"{'loop/engine':>12} {'bmm/engine':>11} {'engine GF/s':>12}"]
    for r in result["records"]:
        lines.append(f"{r['placement']:<9} {r['d']:>4} {r['instances']:>4} {r['steps']:>5} {r['mode']:<6} "
                     f"{r['engine_s']:>10.5f} {r['vmap_over_engine']:>12.2f} {r['loop_over_engine']:>12.2f} "
                     f"{r['bmm_over_engine']:>11.3f} {r['engine_gflops']:>12.2f}"
                     + (f"   vmap/compiled {r['vmap_over_compiled']:.2f}" if "compiled_s" in r else ""))
    o = result["oracle"]
    lines.append(f"oracle forward pass ({o[0]['steps']} steps, d={o[0]['d']}, {o[0]['tokens']} tokens, "
                 f"{o[0]['dps']} digits)")
    ref = o[0]["seconds"]
    for r in o:
        lines.append(f"  {r['backend']:<14} {r['seconds']:8.3f} s   {ref / r['seconds']:6.2f}× mpmath-gmpy")
    return "\n".join(lines)


def _csv(kind):
    def parse(text: str):
        try:
            return tuple(kind(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma list of {kind.__name__}, got {text!r}") from None
    return parse


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m verify.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (seconds); for the smoke test")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: the comparison is per core)")
    ap.add_argument("--json", type=Path, default=None, help="write the measurements here")
    ap.add_argument("--profile", action="store_true",
                    help="instead of timing: split engine and vmap peer time into matmul kernels and the rest "
                         "(torch.profiler, d <= 64)")
    ap.add_argument("--compile", action="store_true",
                    help="also time the engine under torch.compile (compiles every shape: minutes each)")
    ap.add_argument("--placements", type=_csv(str), default=None, help="comma list, a subset of the timing plan's")
    ap.add_argument("--widths", type=_csv(int), default=None, help="comma list of d, a subset of the timing plan's")
    ap.add_argument("--instances", type=_csv(int), default=None, help="comma list of I, a subset of the timing plan's")
    args = ap.parse_args(argv)
    if args.json is not None:
        from verify.cli_paths import fail, writable_file

        try:  # before the measurements
            writable_file(args.json, "--json")
        except ValueError as exc:
            fail(ap, str(exc))
    try:
        if args.profile:
            import torch

            result = dict(quick=args.quick, profile=run_profile(args.quick, args.device, args.threads),
                          environment=dict(torch=torch.__version__, threads=args.threads, device=args.device,
                                           cpu_count=os.cpu_count(), platform=platform.platform()))
        else:
            result = run(quick=args.quick, device=args.device, threads=args.threads, compiled=args.compile,
                         placements=args.placements, widths=args.widths, instances=args.instances)
    except ValueError as exc:
        ap.error(str(exc))
    if not args.profile:
        print(format_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
        print(f"measurements written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
