"""Benchmark of the two engines: the batched torch zoo and the mpmath oracle.

    python -m verify.bench [--quick] [--device cpu|cuda] [--threads N] [--json PATH]

1. Batched zoo throughput. For each width d and instance count I, one forward pass of a peri-LN
   :class:`verify.engine.zoo.Stack` over I instances (n tokens, L blocks, attention + MLP) is timed and converted to
   GFLOP/s (a multiply-add counts 2; attention 8nd² + 4n²d and MLP 4nd·d_mlp per step and sequence; norms,
   softmax and activations are not counted). Two reference points with the same FLOP count:
   - ``bmm``: ``torch.bmm`` on the engine's largest operand shapes, (I, n, d) @ (I, d, 4d), repeated until the
     FLOPs match — a ceiling for what batching these shapes can reach on this device;
   - ``loop``: a Python loop over the I instances, each a one-instance Stack holding that instance's weights —
     what the engine would cost without the instance dimension.
   Reported: engine GFLOP/s, engine/bmm (fraction of the ceiling) and engine/loop (speed-up from batching).
2. The oracle: one depth-64 (32 blocks), d = 16, 4-token forward pass at 50 digits, with mpmath on gmpy2 and on
   its pure-Python backend (a subprocess with ``MPMATH_NOGMPY=1``, since mpmath picks its backend at import).

Timings are medians of repeated runs after a warm-up; validation of inputs/weights is excluded (``validate=False``).
The default run takes 1–3 minutes on the shared 2-core reference machine; ``--quick`` (used by the test) a few
seconds on tiny sizes. Numbers on a shared machine are noisy (there, ``--threads 1`` avoids OpenMP contention,
which otherwise slows the small kernels 3–10×); the ratios are the point, not the absolute values.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FULL = dict(widths=(16, 64, 256), instances=(8, 64), tokens=16, blocks=4, min_seconds=0.2,
            oracle=dict(n_blocks=32, d=16, tokens=4, dps=50))
QUICK = dict(widths=(8, 16), instances=(2, 4), tokens=4, blocks=1, min_seconds=0.01,
             oracle=dict(n_blocks=2, d=4, tokens=2, dps=50))
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


# ---- 1. the batched zoo ----------------------------------------------------------------------------------------
def bench_engine(d: int, n_instances: int, n_tokens: int, n_blocks: int, device: str, min_seconds: float) -> dict:
    import torch

    from verify.engine.zoo import Stack, StackConfig, sample_inputs

    cfg = StackConfig(d=d, n_blocks=n_blocks, placement="peri", n_heads=max(1, d // 16), causal=True,
                      device=device)
    stack = Stack(cfg, n_instances, seed=1)
    x = sample_inputs(cfg, n_instances, n_tokens, seed=2)
    flops = stack_flops(cfg, n_instances, n_tokens)
    singles = []
    for i in range(n_instances):
        one = Stack(cfg, 1, seed=0)
        one.load_state_dict({k: v[i:i + 1] for k, v in stack.state_dict().items()})
        singles.append(one)
    a = torch.randn(n_instances, n_tokens, d, dtype=torch.float64, device=x.device)
    b = torch.randn(n_instances, d, cfg.hidden, dtype=torch.float64, device=x.device)
    bmm_flops = 2.0 * n_instances * n_tokens * d * cfg.hidden
    reps = max(1, round(flops / bmm_flops))

    with torch.no_grad():
        t_engine = time_call(lambda: stack(x, validate=False), device, min_seconds)
        t_loop = time_call(lambda: [s(x[i:i + 1], validate=False) for i, s in enumerate(singles)], device,
                           min_seconds)

        def bmm_chain():
            for _ in range(reps):
                torch.bmm(a, b)

        t_bmm = time_call(bmm_chain, device, min_seconds)
    g_engine = flops / t_engine / 1e9
    g_bmm = reps * bmm_flops / t_bmm / 1e9
    g_loop = flops / t_loop / 1e9
    return dict(d=d, instances=n_instances, tokens=n_tokens, steps=cfg.n_steps, gflop=flops / 1e9,
                engine_seconds=t_engine, engine_gflops=g_engine, bmm_gflops=g_bmm, loop_gflops=g_loop,
                ratio_to_bmm=g_engine / g_bmm, speedup_over_loop=g_engine / g_loop)


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


def time_oracle(problem: dict, repeats: int = 2) -> dict:
    """Seconds for one oracle pass (best of ``repeats``) with the mpmath backend this process imported.

    The best of two: the first pass in a fresh process also fills mpmath's caches of constants (π, ln 2 at the
    working precision), which would otherwise be charged to whichever backend runs first."""
    import mpmath

    from verify.engine.oracle import oracle_forward

    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        oracle_forward(problem["cfg"], problem["state"], problem["x0"], dps=problem["dps"])
        best = min(best, time.perf_counter() - t0)
    return dict(backend=mpmath.libmp.BACKEND, seconds=best, steps=problem["steps"], d=problem["d"],
                tokens=problem["tokens"], dps=problem["dps"])


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
def run(quick: bool = False, device: str = "cpu", threads: int | None = None, progress=print) -> dict:
    import torch

    from verify.engine.devices import resolve_device

    resolve_device(device)
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    previous = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        return _run(QUICK if quick else FULL, quick, device, progress)
    finally:
        torch.set_num_threads(previous)  # the thread count is process-global: leave it as found


def _run(plan: dict, quick: bool, device: str, progress) -> dict:
    import torch

    engine = []
    for d in plan["widths"]:
        for inst in plan["instances"]:
            row = bench_engine(d, inst, plan["tokens"], plan["blocks"], device, plan["min_seconds"])
            engine.append(row)
            progress(f"  engine d={d:<4} I={inst:<3} {row['engine_gflops']:8.2f} GFLOP/s")
    problem = oracle_problem(**plan["oracle"])
    oracle = [time_oracle(problem)]
    progress(f"  oracle backend={oracle[0]['backend']}: {oracle[0]['seconds']:.2f} s")
    oracle.append(time_oracle_without_gmpy(problem))
    progress(f"  oracle backend={oracle[1]['backend']}: {oracle[1]['seconds']:.2f} s")
    env = dict(python=platform.python_version(), torch=torch.__version__, threads=torch.get_num_threads(),
               device=device, cpu_count=os.cpu_count(), platform=platform.platform())
    if torch.device(device).type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(torch.device(device))
    return dict(quick=quick, plan=dict(plan), engine=engine, oracle=oracle, environment=env)


def format_table(result: dict) -> str:
    lines = [f"batched zoo forward (peri, {result['engine'][0]['steps']} steps, {result['engine'][0]['tokens']} "
             f"tokens, float64, {result['environment']['device']}, {result['environment']['threads']} threads)",
             f"{'d':>5} {'I':>4} {'GFLOP':>8} {'engine GF/s':>12} {'bmm GF/s':>10} {'loop GF/s':>10} "
             f"{'engine/bmm':>11} {'engine/loop':>12}"]
    for r in result["engine"]:
        lines.append(f"{r['d']:>5} {r['instances']:>4} {r['gflop']:>8.3f} {r['engine_gflops']:>12.2f} "
                     f"{r['bmm_gflops']:>10.2f} {r['loop_gflops']:>10.2f} {r['ratio_to_bmm']:>11.3f} "
                     f"{r['speedup_over_loop']:>12.2f}")
    o = result["oracle"]
    lines.append(f"oracle forward pass ({o[0]['steps']} steps, d={o[0]['d']}, {o[0]['tokens']} tokens, "
                 f"{o[0]['dps']} digits)")
    for r in o:
        lines.append(f"  mpmath backend {r['backend']:<7} {r['seconds']:8.2f} s")
    if len(o) == 2 and o[0]["seconds"] > 0:
        lines.append(f"  {o[1]['backend']}/{o[0]['backend']} time ratio: {o[1]['seconds'] / o[0]['seconds']:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m verify.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (seconds); for the smoke test")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: torch's own choice, one per core)")
    ap.add_argument("--json", type=Path, default=None, help="write the measurements here")
    args = ap.parse_args(argv)
    if args.json is not None:
        from verify.cli_paths import fail, writable_file

        try:  # before the measurements
            writable_file(args.json, "--json")
        except ValueError as exc:
            fail(ap, str(exc))
    try:
        result = run(quick=args.quick, device=args.device, threads=args.threads)
    except ValueError as exc:
        ap.error(str(exc))
    print(format_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
        print(f"measurements written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
