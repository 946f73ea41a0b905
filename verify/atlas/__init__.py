"""The divergence atlas (``python -m verify.atlas``): where the zoo's GPTs train, where S4 predicts they do, and
advice for a user's block that carries the atlas's track record.

- ``runner`` — the grid (presets ``test``/``cpu``/``gpu``), batched training per (placement, depth), the cache;
- ``analysis`` — S4, its placement-aware growth variant and baselines: fit on one half of the grid, score on the
  held-out half (McNemar's exact test between criteria on the same runs);
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
CRITERION_TEXT = {"s4_speed": "lr·m ≤ c, m the sign-step logit speed at init",
                  "s4_probe": "the loss change of one first AdamW step at that lr ≤ c', measured at init"}


def build_data(preset: str = "cpu", retrain: bool = False, workers: int | None = None, cache_dir=None,
               with_schedules: bool = True) -> dict:
    """Train (or read from the cache) every run of the preset's grid, score S4 and the baselines, compare S2."""
    from verify.atlas import analysis, runner, schedules

    grid = runner.grid_for(preset)
    name = "atlas" if preset == "cpu" else f"atlas_{preset}"
    runs = runner.atlas_runs(grid, retrain=retrain, cache_name=name, workers=workers, cache_dir=cache_dir)
    ev = analysis.evaluate(runs)
    primary = ev["primary"]
    theta = ev["criteria"][primary]["threshold"]
    max_lr: dict = {}
    measured_lr: dict = {}
    best_dt: dict = {}
    for row in ev["max_lr"].values():
        p, L = row["placement"], str(row["depth"])
        max_lr.setdefault(p, {})[L] = {f"{e['dt']:g}": e["predicted"] for e in row["per_dt"]}
        measured_lr.setdefault(p, {})[L] = {f"{e['dt']:g}": e["measured"]["estimate"] for e in row["per_dt"]}
        b = _best_setting([r for r in runs if r["config"]["placement"] == p and str(r["config"]["depth"]) == L])
        if b:
            best_dt.setdefault(p, {})[L] = b
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
        "boundary_factor_accuracy": ev["boundary_factor_accuracy"],
        "model": {"criterion": primary, "threshold": theta, "max_lr": max_lr, "measured_max_lr": measured_lr,
                  "best": best_dt, "d": grid.d, "held_out_accuracy": ev["held_out_accuracy"],
                  "best_baseline": max(ev["baselines"].items(), key=lambda kv: kv[1]["held_out_accuracy"])[0],
                  "best_baseline_accuracy": max(b["held_out_accuracy"] for b in ev["baselines"].values()),
                  "per_placement_accuracy": analysis.per_placement_accuracy(runs, primary, theta)},
    }
    # The growth-aware criterion (issue 9 §2): top-level fields of its own, the fields above unchanged.
    gr = analysis.evaluate_growth(runs, ev["criteria"], primary)
    data.update({
        "growth": gr, "growth_variant": gr["variant"], "growth_held_out_accuracy": gr["held_out_accuracy"],
        "growth_held_out_auc": gr["held_out_auc"], "growth_beats_baselines": gr["beats_baselines"],
        "growth_predicted_max_lr": {k: v["predicted_max_lr"] for k, v in gr["max_lr"].items()},
        "growth_max_lr": {p: {str(L): {f"{e['dt']:g}": e["predicted"] for row in gr["max_lr"].values()
                                       if row["placement"] == p and row["depth"] == L for e in row["per_dt"]}
                              for L in sorted({row["depth"] for row in gr["max_lr"].values()})}
                          for p in dict.fromkeys(row["placement"] for row in gr["max_lr"].values())},
    })
    # Several seeds (issue 9 §1; the guide: one seed is an anecdote): intervals on the held-out accuracies, and how
    # far the measured boundary moves between seeds.
    data["intervals"] = analysis.held_out_intervals(runs, ev, gr)
    data["seed_spread"] = analysis.seed_spread(runs, primary, theta)
    data["lr_only_brackets"] = analysis.lr_only_summary(runs)
    # Trainability (learned more than the unigram distribution) and K5's "Δt < 1 trains better", paired by seed.
    h_uni = analysis.unigram_reference(grid.sizes())
    data["trainability"] = analysis.trainability(runs, h_uni, small_dt=min(grid.dts),
                                                 ref_dt=1.0 if 1.0 in grid.dts else max(grid.dts))
    if data["trainability"]["dt_effect"]:
        data["dt_norm_effect"] = {f: analysis.dt_norm_effect(runs, f, small_dt=min(grid.dts), ref_dt=1.0)
                                  for f in ("max_hidden_norm", "max_grad_norm")}
    if sum(not analysis.learned(r, h_uni) for r in runs if r["config"]["lr"] >= analysis.LEARN_LR_FLOOR) >= 2:
        data["trainability"]["criteria"] = analysis.evaluate_trainability(runs, h_uni)
    # S4 direct growth (designed after seeing seeds 0-2; docs/theorems/atlas.md): the gain at the grown Δt.
    grown = runner.with_grown_gains(runs, f"{name}_grown", workers=workers, cache_dir=cache_dir)
    direct = analysis.evaluate_direct(grown, ev["criteria"])
    data["direct"] = direct
    overflow = analysis.evaluate_overflow(grown, ev["criteria"])
    data["overflow"] = overflow
    if preset == "cpu":
        long_runs = runner.atlas_runs(runner.grid_for("long"), retrain=retrain, cache_name="atlas_long",
                                      workers=workers, cache_dir=cache_dir)
        data["long"] = analysis.compare_long(runs, long_runs)
        # fresh seeds 3-4: every constant and choice above (and the direct variant's design) is tested on them
        fresh = runner.atlas_runs(runner.grid_for("fresh"), retrain=retrain, cache_name="atlas_fresh",
                                  workers=workers, cache_dir=cache_dir)
        fresh = runner.with_grown_gains(fresh, "atlas_fresh_grown", workers=workers, cache_dir=cache_dir)
        data["external"] = analysis.external_test(runs, fresh, ev, gr, direct, overflow)
    dmax: dict = {}
    for row in direct["max_lr"].values():
        dmax.setdefault(row["placement"], {})[str(row["depth"])] = {f"{e['dt']:g}": e["predicted"] for e in row["per_dt"]}
    ext = data.get("external", {}).get("accuracy", {})
    data["model"]["direct"] = {
        "threshold": direct["threshold"], "held_out_accuracy": direct["held_out_accuracy"],
        "beats_baselines": direct["beats_baselines"], "max_lr": dmax, "fresh_accuracy": ext.get(analysis.DIRECT),
        "per_placement_accuracy": analysis.per_placement_accuracy(grown, analysis.DIRECT, direct["threshold"],
                                                                  analysis.direct_scores(grown))}
    data["model"]["fresh_accuracy_s4"] = ext.get(primary)
    omax: dict = {}
    for row in overflow["max_lr"].values():
        omax.setdefault(row["placement"], {})[str(row["depth"])] = {f"{e['dt']:g}": e["predicted"]
                                                                     for e in row["per_dt"]}
    data["model"]["overflow"] = {
        "held_out_accuracy": overflow["held_out_accuracy"], "beats_baselines": overflow["beats_baselines"],
        "max_lr": omax, "fresh_accuracy": ext.get(analysis.OVERFLOW),
        "per_placement_accuracy": analysis.per_placement_accuracy(
            grown, analysis.OVERFLOW, 0.0, analysis.overflow_scores(grown, overflow["log_c_lr"], overflow["log_limit"]))}
    # What `advice` needs beyond S4: the growth-aware region and its per-placement record, the learned band, Δt effect.
    data["model"]["growth"] = {
        "variant": gr["variant"], "threshold": gr["threshold"], "held_out_accuracy": gr["held_out_accuracy"],
        "beats_baselines": gr["beats_baselines"], "max_lr": data["growth_max_lr"],
        "fresh_accuracy": data.get("external", {}).get("accuracy", {}).get("growth"),
        "per_placement_accuracy": analysis.per_placement_accuracy(runs, gr["variant"], gr["threshold"],
                                                                  analysis.growth_scores(runs, gr["variant"]))}
    tr = data["trainability"]
    data["model"]["learned_band"] = {p: {L: {dt: c["lrs_every_seed_learned"] for dt, c in by_dt.items()}
                                         for L, by_dt in by_L.items()} for p, by_L in tr["cells"].items()}
    data["model"]["dt_effect"] = {p: {**v["pooled"], "small_dt": tr["small_dt"], "ref_dt": tr["ref_dt"]}
                                  for p, v in tr.get("dt_effect", {}).items()}
    if with_schedules:
        data["schedules"] = schedules.compare(preset, grid, retrain=retrain, workers=workers, cache_dir=cache_dir)
    return data


def _best_setting(rs: list[dict]) -> dict | None:
    """The (Δt, lr) with the lowest validation loss averaged over seeds, among those where no seed diverged."""
    by: dict[tuple, list] = {}
    for r in rs:
        by.setdefault((r["config"]["dt"], r["config"]["lr"]), []).append(r)
    ok = {k: [r["val_loss"] for r in v] for k, v in by.items()
          if all(not r["diverged"] and r["val_loss"] is not None for r in v)}
    if not ok:
        return None
    (dt, lr), vals = min(ok.items(), key=lambda kv: (sum(kv[1]) / len(kv[1]), kv[0]))
    return {"dt": dt, "lr": lr, "val_loss": sum(vals) / len(vals), "seeds": len(vals)}


def _load(path: Path | None) -> dict:
    p = Path(path) if path is not None else ATLAS_JSON
    if not p.is_file():
        raise ValueError(f"atlas data {str(p)!r} not found: run `python -m verify.figures --only atlas` first")
    return json.loads(p.read_text())


def _nearest(keys, value: float) -> str:
    return min(keys, key=lambda k: abs(math.log(float(k) / value)))


def advice(placement: str, depth: int, d: int, atlas: dict | None = None, atlas_path=None, **measured) -> dict:
    """The S4-predicted stable (Δt, lr) region for a design, from the atlas's nearest placement and depth.

    ``measured`` may carry ``dt`` and ``lr`` (the user's choice, judged against the region at the nearest atlas
    Δt), and ``trained`` = {"loss_first", "loss_last"} from a short run (then the
    lines say whether the prediction held). Returns {"lines", "predicted_region", "recommended_dt",
    "atlas_accuracy", "placement", "depth", ...}.
    """
    from theory._domain import require_int
    from verify.atlas import analysis

    require_int("depth", depth, 1)
    require_int("d", d, 2)
    data = atlas if atlas is not None else _load(atlas_path)
    model = data["model"]
    near = NEAREST.get(placement, placement)
    if near not in model["max_lr"]:
        raise ValueError(f"placement must be one of the atlas placements {tuple(model['max_lr'])} "
                         f"(or {tuple(NEAREST)}), got {placement!r}")
    L = _nearest(model["max_lr"][near], depth)
    # The region comes from the criterion with the better held-out record on the atlas: growth-aware where it beats
    # every baseline (McNemar), else S4's primary variant.
    g, dr, ov = model.get("growth"), model.get("direct"), model.get("overflow")
    # the honest record is the fresh-seed accuracy (nothing was chosen on those seeds); else the held-out one
    rec = {"s4": model.get("fresh_accuracy_s4") or model["held_out_accuracy"]}
    if g and g.get("beats_baselines"):
        rec["growth"] = g.get("fresh_accuracy") or g["held_out_accuracy"]
    if dr and dr.get("beats_baselines") and dr.get("fresh_accuracy") is not None:
        rec["direct"] = dr["fresh_accuracy"]  # designed after seeing seeds 0-2: only with a fresh-seed record
    if ov and ov.get("beats_baselines") and ov.get("fresh_accuracy") is not None:
        rec["overflow"] = ov["fresh_accuracy"]  # likewise
    choice = max(rec, key=rec.get)
    use_growth = choice == "growth"
    if choice == "overflow":
        by_dt = ov["max_lr"][near][L]
        acc = ov["per_placement_accuracy"].get(near, {}).get("accuracy")
        crit_name = (f"S4 overflow, lr ≤ c and the grown stack inside float32's range; fresh-seed accuracy "
                     f"{ov['fresh_accuracy']:.1%}")
    elif choice == "direct":
        by_dt = dr["max_lr"][near][L]
        acc = dr["per_placement_accuracy"].get(near, {}).get("accuracy")
        crit_name = f"S4 direct growth, lr·A(lr) ≤ c; fresh-seed accuracy {dr['fresh_accuracy']:.1%}"
    elif use_growth:
        by_dt = g["max_lr"][near][L]
        acc = g["per_placement_accuracy"].get(near, {}).get("accuracy")
        crit_name = f"S4 growth-aware {g['variant']}, lr·s(lr)^(2κ) ≤ c"
    else:
        by_dt = model["max_lr"][near][L]
        acc = model["per_placement_accuracy"].get(near, {}).get("accuracy")
        crit_name = f"S4, {CRITERION_TEXT.get(model['criterion'], model['criterion'])}"
    region = [{"dt": float(dt), "max_lr": v} for dt, v in sorted(by_dt.items(), key=lambda kv: float(kv[0]))]
    best = model["best"].get(near, {}).get(L)
    rec_dt = best["dt"] if best else None
    lines = [f"nearest atlas design: {near}, {L} blocks, d = {model['d']} (yours: {placement}, {depth} blocks, d = {d}); "
             f"held-out accuracy of the criterion for {near}: {acc:.0%}" if acc is not None
             else f"nearest atlas design: {near}",
             f"predicted largest stable lr ({crit_name}): " +
             ", ".join(f"Δt={e['dt']:g}: {e['max_lr']:.3g}" for e in region)]
    meas = model.get("measured_max_lr", {}).get(near, {}).get(L)
    if meas:
        lines.append("measured on the atlas (largest lr that trained, grid midpoint): " +
                     ", ".join(f"Δt={float(k):g}: {v:.3g}" for k, v in sorted(meas.items(), key=lambda kv: float(kv[0]))))
    if "best_baseline" in model:
        lines.append(f"track record: S4 held-out accuracy {model['held_out_accuracy']:.1%} over all placements; the best "
                     f"baseline ({model['best_baseline']}) {model['best_baseline_accuracy']:.1%}"
                     + (" — S4 does not beat it" if model["held_out_accuracy"] <= model["best_baseline_accuracy"]
                        else "")
                     + (f"; S4 growth-aware {g['held_out_accuracy']:.1%}"
                        + (" — beats every baseline (McNemar p < 0.05), used above" if use_growth else "")
                        if g else "")
                     + (f"; S4 direct growth {dr['held_out_accuracy']:.1%} (fresh seeds "
                        f"{dr['fresh_accuracy']:.1%})" + (", used above" if choice == "direct" else "")
                        if dr and dr.get("fresh_accuracy") is not None else "")
                     + (f"; S4 overflow {ov['held_out_accuracy']:.1%} (fresh seeds {ov['fresh_accuracy']:.1%})"
                        + (", used above" if choice == "overflow" else "")
                        if ov and ov.get("fresh_accuracy") is not None else ""))
    band = model.get("learned_band", {}).get(near, {}).get(L)
    if band:
        lines.append("every atlas seed learned context (validation loss below the unigram cross-entropy) at: " +
                     "; ".join(f"Δt={float(k):g}: " + (f"lr {min(v):.3g}–{max(v):.3g}" if v else "no lr")
                               for k, v in sorted(band.items(), key=lambda kv: float(kv[0]))))
    eff = model.get("dt_effect", {}).get(near)
    if eff and eff.get("ci95"):
        lo, hi = eff["ci95"]
        verdict = ("lower — Δt < 1 trains better" if hi < 0 else "higher — Δt < 1 trains worse" if lo > 0
                   else "not resolved from 0")
        lines.append(f"best validation loss at Δt = {eff['small_dt']:g} minus at Δt = {eff['ref_dt']:g} for {near} "
                     f"(paired by seed, {eff['n']} pairs): {eff['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}] nats, {verdict}")
    if rec_dt is not None:
        lines.append(f"recommended Δt = {rec_dt:g} (lowest validation loss on the atlas, mean over "
                     f"{best.get('seeds', 1)} seed(s), among settings where no seed diverged: lr {best['lr']:.3g})")
    out = {"lines": lines, "predicted_region": region, "recommended_dt": rec_dt, "atlas_accuracy": acc,
           "criterion": {"direct": analysis.DIRECT, "growth": "growth",
                         "overflow": analysis.OVERFLOW}.get(choice, model["criterion"]),
           "learned_band": band,
           "placement": near, "depth": int(L), "atlas_d": model["d"]}
    dt, lr = measured.get("dt"), measured.get("lr")
    if dt is not None and lr is not None:
        near_dt = _nearest(by_dt, float(dt))
        max_lr = by_dt[near_dt]
        src = f"the atlas at Δt ≈ {float(near_dt):g}"
        stable = float(lr) <= max_lr
        out.update({"predicted_stable": stable, "predicted_max_lr": max_lr})
        lines.append(f"at your Δt = {float(dt):g}, lr = {float(lr):g}: predicted {'stable' if stable else 'to DIVERGE'} "
                     f"(lr* = {max_lr:.3g} from {src})")
        m_by_dt = (meas or {})
        if m_by_dt:
            m_dt = _nearest(m_by_dt, float(dt))
            m_lr = m_by_dt[m_dt]
            m_stable = float(lr) <= m_lr
            out.update({"measured_stable": m_stable, "measured_max_lr": m_lr})
            lines.append(f"the atlas's own runs at Δt ≈ {float(m_dt):g}: largest lr that trained ≈ {m_lr:.3g}, so lr = "
                         f"{float(lr):g} {'trained' if m_stable else 'DIVERGED'} there"
                         + ("" if m_stable == stable else " — the criterion and the runs disagree here: trust the runs"))
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
                     f"as far as the one-step sensitivity does")
    return out
