"""``python -m verify.atlas [--preset test|cpu|gpu] [--retrain] [--workers N] [--out DIR]``: the divergence atlas.

Trains (or reads from ``figures/runs/``) every run of the preset's grid, scores S4 and the baselines on the
held-out half, compares the S2 schedule, writes ``<out>/atlas.json`` with its PDF/PNG (the same record as
``python -m verify.figures --only atlas``) and prints the summary.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def summary_lines(data: dict) -> list[str]:
    lines = [(f"{len(data['runs'])} runs, {sum(r['diverged'] for r in data['runs'])} diverged; primary criterion "
              f"{data['primary']}: held-out accuracy {data['held_out_accuracy']:.3f}, AUC {data['held_out_auc']:.3f}")]
    for name, b in data["baselines"].items():
        lines.append(f"  baseline {name}: held-out accuracy {b['held_out_accuracy']:.3f}, AUC {b['held_out_auc']:.3f}")
    lines.append(f"  S4 beats every baseline: {data['beats_baselines']}")
    lines.append(f"  predicted max lr within 2x of measured: {data['max_lr_within_2x']:.0%} of (placement, depth, Δt)")
    for key in data["predicted_max_lr"]:
        lines.append(f"    {key}: predicted {data['predicted_max_lr'][key]:.3g}, measured "
                     f"{data['measured_max_lr'][key]:.3g}")
    gr = data.get("growth")
    if gr:
        lines.append(f"  S4 growth-aware ({gr['variant']}): held-out accuracy {gr['held_out_accuracy']:.3f}, AUC "
                     f"{gr['held_out_auc']:.3f}; beats every baseline (McNemar p < 0.05): {gr['beats_baselines']}")
    dr = data.get("direct")
    if dr:
        lines.append(f"  S4 direct growth (designed after seeing seeds 0-2): held-out accuracy {dr['held_out_accuracy']:.3f},"
                     f" AUC {dr['held_out_auc']:.3f}")
    ex = data.get("external")
    if ex:
        lines.append(f"  fresh seeds {ex['seeds']} ({ex['n_runs']} runs, constants from seeds {ex['fit_seeds']}): "
                     + ", ".join(f"{k} {v:.3f}" for k, v in sorted(ex["accuracy"].items(), key=lambda kv: -kv[1])))
    for p, v in ((data.get("trainability") or {}).get("dt_effect") or {}).items():
        pooled = v["pooled"]
        if pooled["ci95"]:
            lines.append(f"  best val loss Δt={data['trainability']['small_dt']:g} − Δt={data['trainability']['ref_dt']:g}"
                         f" {p}: {pooled['mean']:+.3f} [{pooled['ci95'][0]:+.3f}, {pooled['ci95'][1]:+.3f}]")
    for c in (data.get("schedules") or {}).get("configs", []):
        dd = c["difference"]
        vs = c.get("versus_shallow")
        lines.append(f"  S2 {c['placement']} L={c['depth']}: uniform {c['uniform']['mean']:.3f}±{c['uniform']['ci95']:.3f}"
                     f", water {c['water']['mean']:.3f}±{c['water']['ci95']:.3f} (water−uniform {dd['mean']:+.3f}"
                     f"±{dd['ci95']:.3f}" + (f"; water−control {vs['mean']:+.3f}±{vs['ci95']:.3f}" if vs else "") + ")")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m verify.atlas", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=("test", "cpu", "gpu"), default="cpu")
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("figures"))
    args = ap.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        ap.error(f"--workers must be >= 1, got {args.workers}")
    import matplotlib

    matplotlib.use("Agg")
    from verify.figures import build

    t0 = time.perf_counter()
    rec = build("atlas", args.out, preset="gpu" if args.preset == "gpu" else "cpu", fast=args.preset == "test",
                retrain=args.retrain, workers=args.workers)
    print("\n".join(summary_lines(rec)))
    print(f"written {args.out / 'atlas'}.{{json,pdf,png}} in {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
