"""The main job: run every registered theorem check and print a per-theorem verdict table.

    python -m verify [--level quick|full] [--seed S] [--device cpu|cuda] [--only N1,F2] [--json PATH]
    python -m verify --all      # the checks, then every figure (python -m verify.figures), then the claim ledger

Per theorem it prints the cases tried, the worst measured/bound ratio (tightness: 1 = attained), the worst
error against its tolerance (≤ 1 passes) and the verdict; ``--json`` writes one record per theorem id with
statement, provenance, every check's numbers, seed, package versions and device. Exit status 1 if any check
fails.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from verify.checks.registry import LEVELS, Context, run_checks
from verify.cli_paths import fail, writable_dir, writable_file
from verify.engine.strategies import load_profile_from_env

FIGURES = Path(__file__).resolve().parents[1] / "figures"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m verify", description=__doc__.split("\n\n")[0])
    ap.add_argument("--level", choices=LEVELS, default="quick")
    ap.add_argument("--seed", type=int, default=20251010)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", default="", help="comma-separated theorem ids, e.g. N1,F2")
    ap.add_argument("--json", type=Path, default=None, help="write the per-theorem records here")
    ap.add_argument("--all", action="store_true",
                    help="also regenerate the figures and write the claim ledger (JSON to figures/verification.json)")
    ap.add_argument("--preset", choices=("cpu", "gpu"), default="cpu", help="figures preset, with --all")
    ap.add_argument("--retrain", action="store_true",
                    help="with --all: train every figure's models again instead of using figures/runs/")
    ap.add_argument("--list", action="store_true", help="list the registered theorem ids and exit")
    args = ap.parse_args(argv)
    if args.list:
        from verify.checks.registry import load_all

        for tid, chk in load_all().items():
            print(f"{tid:<4} {chk.title}")
        return 0
    if args.all and args.json is None:
        args.json = FIGURES / "verification.json"
    try:  # fail before the work, not after it
        if args.json is not None:
            writable_file(args.json, "--json")
        if args.all:
            writable_dir(FIGURES, "--all (the figures folder)")
    except ValueError as exc:
        fail(ap, str(exc))
    load_profile_from_env()
    # The checks are many small batched tensor operations: one intra-op thread avoids contention on small
    # machines (measured 3-10x faster on the 2-core reference machine). TORCH_NUM_THREADS overrides it.
    import os

    import torch

    torch.set_num_threads(int(os.environ.get("TORCH_NUM_THREADS", "1")))
    try:
        ctx = Context(level=args.level, seed=args.seed, device=args.device)
        only = [s.strip() for s in args.only.split(",") if s.strip()] or None
        if args.only and only is None:
            raise ValueError(f"--only {args.only!r} names no theorem id (python -m verify --list shows them)")
        t0 = time.perf_counter()
        result = run_checks(ctx, only)
    except ValueError as exc:
        ap.error(str(exc))
    n_fail = sum(r["verdict"] != "PASS" for r in result["theorems"])
    n = len(result["theorems"])
    print(f"\n{n - n_fail}/{n} theorems verified at level {args.level}, seed {args.seed}, device {args.device} "
          f"in {time.perf_counter() - t0:.0f}s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, ensure_ascii=False))
        print(f"records written to {args.json}")
    if args.all:
        import subprocess

        print("\n== figures (python -m verify.figures) ==", flush=True)
        fig_rc = subprocess.call([sys.executable, "-m", "verify.figures", "--preset", args.preset,
                                  "--out", str(FIGURES), "--records", str(args.json)]
                                 + (["--retrain"] if args.retrain else []))
        print("\n== claim ledger (python -m verify.report) ==", flush=True)
        from verify.report import main as report_main

        rep_rc = report_main(["--from", str(args.json), "--out", str(FIGURES), "--figures", str(FIGURES)])
        print(f"figures: {FIGURES.resolve()}/*.png (data beside them as JSON)")
        return 1 if (n_fail or fig_rc or rep_rc) else 0
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
