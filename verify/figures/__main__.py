"""Regenerate every figure (or one): ``python -m verify.figures [--only NAME] [--preset cpu|gpu] [--fast] [--out DIR]``.

Each figure's data are computed by its module (training small GPTs for K7), written as JSON next to the
PDF and PNG in ``--out`` (default ``figures/``). ``--fast`` shrinks every run to a smoke test (seconds).
"""
from __future__ import annotations

import argparse
import inspect
import os
import sys
import time
from pathlib import Path


def _accepted(fn, options: dict) -> dict:
    """The options ``fn`` takes: each figure declares the keywords it understands (or ``**options`` for all)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(options)
    return {k: v for k, v in options.items() if k in params}


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from verify.figures import PRESETS

    ap = argparse.ArgumentParser(prog="python -m verify.figures", description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="comma-separated figure names")
    ap.add_argument("--preset", choices=PRESETS, default="cpu")
    ap.add_argument("--fast", action="store_true", help="tiny runs (a smoke test of the whole pipeline)")
    ap.add_argument("--out", type=Path, default=Path("figures"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=None, help="training text or uint16 token file for the GPT figures")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: the matmuls are tiny, extra threads mostly contend, "
                         "and a fixed count keeps the data bit-reproducible)")
    ap.add_argument("--module", action="append", default=[], help="extra module that registers figures")
    ap.add_argument("--retrain", action="store_true",
                    help="ignore the committed training results in figures/runs/ and train every model again")
    ap.add_argument("--workers", type=int, default=None,
                    help="processes for independent training runs (default: one per core)")
    ap.add_argument("--records", default=None,
                    help="records from `python -m verify --json` for the figures that summarise checks (tightness); "
                         "without it those figures run the quick checks themselves")
    ap.add_argument("--list", action="store_true", help="list the figure names and exit")
    args = ap.parse_args(argv)
    if args.list:
        from verify.figures import FIGURES, load_figures

        load_figures(args.module)
        for name, fig in FIGURES.items():
            print(f"{name}: {fig.title}")
        return 0
    if args.threads < 1:
        ap.error(f"--threads must be >= 1, got {args.threads}")
    if args.workers is not None and args.workers < 1:
        ap.error(f"--workers must be >= 1, got {args.workers}")
    from verify.cli_paths import fail, writable_dir

    try:  # before any figure is trained or drawn
        writable_dir(args.out, "--out")
    except ValueError as exc:
        fail(ap, str(exc))
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(ap, args)
    finally:
        torch.set_num_threads(previous)


def _run(ap, args) -> int:
    from verify.figures import FIGURES, build, load_figures

    load_figures(args.module)
    names = [s.strip() for s in args.only.split(",") if s.strip()] or list(FIGURES)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        ap.error(f"--only names unknown figures {unknown}; known: {sorted(FIGURES)}")
    options = {"data_path": args.data} if args.data else {}
    options.update(retrain=args.retrain, workers=args.workers)
    if args.records:
        options["records_path"] = args.records
    t0 = time.perf_counter()
    for name in names:
        t1 = time.perf_counter()
        try:
            build(name, args.out, args.preset, args.fast, args.seed, **_accepted(FIGURES[name].data, options))
        except ValueError as exc:
            ap.error(str(exc))
        print(f"{name}: {FIGURES[name].title} -> {args.out / name}.{{pdf,png,json}} ({time.perf_counter() - t1:.0f}s)",
              flush=True)
    print(f"{len(names)} figure(s) written to {os.path.abspath(args.out)} in {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
