"""The divergence atlas (``python -m verify.atlas``): where the zoo's GPTs train, where S4 predicts they do, and
advice for a user's block that carries the atlas's track record.

- ``runner`` — the grid (presets ``test``/``cpu``/``gpu``), batched training per (placement, depth), the cache;
- ``analysis`` — S4 and baselines: fit on one half of the grid, score on the held-out half;
- ``schedules`` — S2's water-filling schedule against uniform Δt at equal total time;
- ``build_data`` — the record behind ``figures/atlas.json``; ``advice`` — the predicted stable (Δt, lr) region for a
  placement, depth and width, with the held-out accuracy of the nearest atlas placement.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

ATLAS_JSON = Path(__file__).resolve().parents[2] / "figures" / "atlas.json"

# Placements the zoo has but the atlas does not train, mapped to the atlas placement whose step rule they share.
NEAREST = {"outnorm": "peri"}


def build_data(preset: str = "cpu", retrain: bool = False, workers: int | None = None, cache_dir=None,
               with_schedules: bool = True) -> dict:
    """Train (or read from the cache) every run of the preset's grid, score S4 and the baselines, compare S2."""
    from verify.atlas import analysis, runner, schedules

    grid = runner.grid_for(preset)
    name = "atlas" if preset == "cpu" else f"atlas_{preset}"
    runs = runner.atlas_runs(grid, retrain=retrain, cache_name=name, workers=workers, cache_dir=cache_dir)
    ev = analysis.evaluate(runs)
    theta = ev["criteria"]["s4_speed"]["threshold"]
    speeds: dict = {}
    best_dt: dict = {}
    for r in runs:
        c = r["config"]
        speeds.setdefault(c["placement"], {}).setdefault(str(c["depth"]), {}).setdefault(f"{c['dt']:g}", []).append(
            r["init"]["speed"])
    for p, by_depth in speeds.items():
        for L, by_dt in by_depth.items():
            for dt, v in by_dt.items():
                by_dt[dt] = float(sorted(v)[len(v) // 2])
            ok = [r for r in runs if r["config"]["placement"] == p and str(r["config"]["depth"]) == L
                  and not r["diverged"] and r["val_loss"] is not None]
            if ok:
                b = min(ok, key=lambda r: r["val_loss"])
                best_dt.setdefault(p, {})[L] = {"dt": b["config"]["dt"], "lr": b["config"]["lr"],
                                                "val_loss": b["val_loss"]}
    data = {
        "preset": preset, "grid": {k: list(v) if isinstance(v, tuple) else v
                                   for k, v in grid.__dict__.items()},
        "runs": [{"config": r["config"], "split": analysis.pr.split_half(analysis.config_key(r["config"])),
                  **{k: v for k, v in r.items() if k != "config"}} for r in runs],
        "held_out_accuracy": ev["held_out_accuracy"], "held_out_auc": ev["held_out_auc"],
        "primary": ev["primary"], "criteria": ev["criteria"], "baselines": ev["baselines"],
        "beats_baselines": ev["beats_baselines"],
        "predicted_max_lr": {k: v["predicted_max_lr"] for k, v in ev["max_lr"].items()},
        "measured_max_lr": {k: v["measured_max_lr"] for k, v in ev["max_lr"].items()},
        "max_lr": ev["max_lr"], "max_lr_within_2x": ev["max_lr_within_2x"],
        "max_lr_within_2x_ref_dt": ev["max_lr_within_2x_ref_dt"],
        "model": {"criterion": "s4_speed", "log_threshold": theta, "speed": speeds, "best": best_dt,
                  "d": grid.d, "per_placement_accuracy": analysis.per_placement_accuracy(runs, "s4_speed", theta)},
    }
    if with_schedules:
        data["schedules"] = schedules.compare(preset, grid, retrain=retrain, workers=workers, cache_dir=cache_dir)
    return data


def _load(path: Path | None) -> dict:
    p = Path(path) if path is not None else ATLAS_JSON
    if not p.is_file():
        raise ValueError(f"atlas data {str(p)!r} not found: run `python -m verify.figures --only atlas` first")
    return json.loads(p.read_text())


def _nearest(keys, value: float) -> str:
    return min(keys, key=lambda k: abs(math.log(float(k) / value)))


def advice(placement: str, depth: int, d: int, atlas: dict | None = None, atlas_path=None, **measured) -> dict:
    """The S4-predicted stable (Δt, lr) region for a design, from the atlas's nearest placement and depth.

    ``measured`` may carry ``speed`` (the design's own sign-step logit speed m at its Δt, as
    ``verify.atlas.runner.init_measurements`` defines it; then lr* = c/m uses it), ``dt`` and ``lr`` (the user's
    choice, judged against the region), and ``trained`` = {"loss_first", "loss_last"} from a short run (then the
    lines say whether the prediction held). Returns {"lines", "predicted_region", "recommended_dt",
    "atlas_accuracy", "placement", "depth", ...}.
    """
    from theory._domain import require_int

    require_int("depth", depth, 1)
    require_int("d", d, 2)
    data = atlas if atlas is not None else _load(atlas_path)
    model = data["model"]
    near = NEAREST.get(placement, placement)
    if near not in model["speed"]:
        raise ValueError(f"placement must be one of the atlas placements {tuple(model['speed'])} "
                         f"(or {tuple(NEAREST)}), got {placement!r}")
    L = _nearest(model["speed"][near], depth)
    by_dt = model["speed"][near][L]
    theta = model["log_threshold"]
    region = [{"dt": float(dt), "max_lr": math.exp(theta) / m} for dt, m in sorted(by_dt.items(), key=lambda kv: float(kv[0]))]
    acc = model["per_placement_accuracy"].get(near, {}).get("accuracy")
    best = model["best"].get(near, {}).get(L)
    rec_dt = best["dt"] if best else None
    lines = [f"nearest atlas design: {near}, {L} blocks, d = {model['d']} (yours: {placement}, {depth} blocks, d = {d}); "
             f"S4 held-out accuracy for {near}: {acc:.0%}" if acc is not None else f"nearest atlas design: {near}",
             "predicted largest stable lr (S4: lr·m ≤ c, m the sign-step logit speed at init): " +
             ", ".join(f"Δt={e['dt']:g}: {e['max_lr']:.3g}" for e in region)]
    if rec_dt is not None:
        lines.append(f"recommended Δt = {rec_dt:g} (lowest validation loss on the atlas among runs that trained, "
                     f"at lr {best['lr']:.3g})")
    out = {"lines": lines, "predicted_region": region, "recommended_dt": rec_dt, "atlas_accuracy": acc,
           "placement": near, "depth": int(L), "atlas_d": model["d"]}
    dt, lr = measured.get("dt"), measured.get("lr")
    if dt is not None and lr is not None:
        if measured.get("speed") is not None:
            max_lr = math.exp(theta) / float(measured["speed"])
            src = "your block's measured m"
        else:
            max_lr = math.exp(theta) / by_dt[_nearest(by_dt, float(dt))]
            src = f"the atlas's m at Δt ≈ {float(_nearest(by_dt, float(dt))):g}"
        stable = float(lr) <= max_lr
        out.update({"predicted_stable": stable, "predicted_max_lr": max_lr})
        lines.append(f"at your Δt = {float(dt):g}, lr = {float(lr):g}: predicted {'stable' if stable else 'to DIVERGE'} "
                     f"(lr* = {max_lr:.3g} from {src})")
        tr = measured.get("trained")
        if tr is not None:
            trained_ok = math.isfinite(tr["loss_last"]) and tr["loss_last"] < tr["loss_first"]
            held = trained_ok == stable
            out.update({"trained_stable": trained_ok, "prediction_held": held})
            lines.append(f"short run: loss {tr['loss_first']:.3g} → {tr['loss_last']:.3g}, "
                         f"{'trained' if trained_ok else 'did not train'}: the prediction "
                         f"{'HELD' if held else 'FAILED'}")
    if d != model["d"] or int(L) != depth:
        lines.append(f"caution: the atlas was measured at d = {model['d']} and {L} blocks; the region transfers only "
                     f"as far as m does (pass your own m to use your block's)")
    return out
