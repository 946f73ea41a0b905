"""Scoring the predictive criterion S4 and its baselines on the atlas: fit on one half, score on the other.

Every criterion is a score per run (higher ⇒ predicted to diverge) and a threshold θ: predicted stable ⇔ score ≤ θ.
θ is the only constant and is fitted (``theory.predictive.fit_threshold``) on the runs whose configuration hashes
into the ``fit`` half (``theory.predictive.split_half``); accuracy and ROC AUC are computed on the ``held_out`` half
only. Criteria:

- ``s4_speed`` — S4's first-order boundary: log(lr·m), m the sign-step logit speed at initialisation;
- ``s4_probe`` — S4 at finite step: the loss change of one full-size sign step at the run's own peak lr;
- baselines: ``grad_norm_init`` (log ‖∇L‖ at init, a practitioner's "is the gradient large?", lr-blind),
  ``lr_x_grad_norm`` (log(lr·‖∇L₀‖)), ``mup_depth`` (µP-style rule of thumb lr ∝ 1/(width·depth): log(lr·d·L)),
  ``lr_only`` (one learning-rate threshold for every design: the null model S4 must beat to be informative).

The primary criterion (top-level ``held_out_accuracy``/``held_out_auc``) is chosen among the two S4 variants by
*fit-half* accuracy alone, so the held-out half never informs a choice.

S4 growth-aware (``evaluate_growth``; docs/theorems/atlas.md): the placement-aware criterion lr·s(lr)^{2κ} ≤ c, κ the
excess over additive growth of the init gain's Δt-elasticity (measured between runs sharing θ₀ at neighbouring Δt).
Eight variants (``GROWTH_VARIANTS``); the one scored is chosen by 5-fold CV inside the fit half (``select_growth``),
and compared with every baseline on the same held-out runs by McNemar's exact test.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

from theory import predictive as pr

S4_CRITERIA = ("s4_speed", "s4_probe")
BASELINES = ("grad_norm_init", "lr_x_grad_norm", "mup_depth", "lr_only")


def config_key(cfg: dict) -> str:
    """The string the split hashes: the run's own grid coordinates (not the sizes shared by every run)."""
    return f"{cfg['placement']}|L={cfg['depth']}|dt={cfg['dt']:g}|lr={cfg['lr']:g}|seed={cfg['seed']}"


def _probe(r: dict) -> float:
    v = r["init"].get("probe_loss_change", math.inf)
    return math.inf if v is None or not math.isfinite(v) else float(v)


SCORES: dict[str, Callable[[dict], float]] = {
    "s4_speed": lambda r: float(pr.sensitivity_score(r["config"]["lr"], r["init"]["speed"])[0]),
    "s4_probe": _probe,
    "grad_norm_init": lambda r: math.log(r["init"]["grad_norm"]),
    "lr_x_grad_norm": lambda r: math.log(r["config"]["lr"] * r["init"]["grad_norm"]),
    "mup_depth": lambda r: math.log(r["config"]["lr"] * r["config"]["d"] * r["config"]["depth"]),
    "lr_only": lambda r: math.log(r["config"]["lr"]),
}


def _finite(scores: np.ndarray) -> np.ndarray:
    """±inf scores (a probe that overflowed) mapped to a large finite value of the right sign, for ranking."""
    big = 1e300
    return np.clip(np.nan_to_num(scores, nan=big, posinf=big, neginf=-big), -big, big)


def score(runs: list[dict], name: str, shift: float = 0.0, score_fn: Callable[[dict], float] | None = None,
          scores: np.ndarray | None = None) -> dict:
    """Fit θ on the fit half and score on the held-out half; ``shift`` moves the fitted boundary (meta-tests:
    log 2 is a boundary off by 2× in lr). ``scores`` (one per run) replaces the per-run score function (the
    growth-aware variants need each run's Δt neighbours)."""
    if scores is None:
        fn = score_fn or SCORES[name]
        s = _finite(np.array([fn(r) for r in runs], dtype=float))
    else:
        s = _finite(np.asarray(scores, dtype=float))
    y = np.array([bool(r["diverged"]) for r in runs])
    half = np.array([pr.split_half(config_key(r["config"])) for r in runs])
    fit, held = half == "fit", half == "held_out"
    theta = pr.fit_threshold(s[fit], y[fit]) + shift
    pred_unstable = s > theta
    return {"threshold": float(theta), "fit_accuracy": pr.accuracy(pred_unstable[fit], y[fit]),
            "held_out_accuracy": pr.accuracy(pred_unstable[held], y[held]),
            "held_out_auc": pr.roc_auc(s[held], y[held]), "n_fit": int(fit.sum()), "n_held_out": int(held.sum()),
            "held_out_diverged": int(y[held].sum())}


def _majority(runs: list[dict]) -> bool:
    return sum(bool(r["diverged"]) for r in runs) * 2 > len(runs)


def predicted_cell_max_lr(rs: list[dict], name: str, threshold: float) -> float:
    """S4's predicted largest stable lr for one (placement, depth, Δt): ``s4_speed`` lr* = c/m (median m over
    seeds); ``s4_probe`` the crossing of c' by ΔL₁(lr), which the cell's runs sample at every grid lr (runs that
    share a seed share their initial weights), median over seeds."""
    if name == "s4_speed":
        return pr.predicted_max_lr(float(np.median([r["init"]["speed"] for r in rs])), threshold)
    if name != "s4_probe":
        raise ValueError(f"name must be one of {S4_CRITERIA}, got {name!r}")
    out = []
    for seed in sorted({r["config"]["seed"] for r in rs}):
        row = sorted((r for r in rs if r["config"]["seed"] == seed), key=lambda r: r["config"]["lr"])
        out.append(pr.crossing_lr([r["config"]["lr"] for r in row], [_probe(r) for r in row], threshold)[0])
    return float(np.median(out))


def max_lr_table(runs: list[dict], log_threshold: float, ref_dt: float = 1.0, name: str = "s4_speed") -> dict:
    """Per placement, depth and Δt: the measured bracket of the largest stable lr (majority over seeds) and S4's
    predicted one (``predicted_cell_max_lr``), and whether they agree within 2×. Top level per
    "placement/L=depth" at ``ref_dt``."""
    table = {}
    for (p, L, dt), rs in sorted(_cells(runs).items()):
        meas = _measured_bracket(rs)
        pred = predicted_cell_max_lr(rs, name, log_threshold)
        table.setdefault(f"{p}/L={L}", {"placement": p, "depth": L, "per_dt": []})["per_dt"].append(
            {"dt": dt, "measured": meas, "predicted": pred, "within_2x": pr.within_factor(pred, meas, 2.0),
             "speed": float(np.median([r["init"]["speed"] for r in rs]))})
    return _at_reference_dt(table, ref_dt)


def evaluate(runs: list[dict], shift: float = 0.0) -> dict:
    """Every criterion scored, the primary S4 variant chosen by fit-half accuracy, and the max-lr table."""
    crit = {n: score(runs, n, shift if n in S4_CRITERIA else 0.0) for n in (*S4_CRITERIA, *BASELINES)}
    primary = max(S4_CRITERIA, key=lambda n: (crit[n]["fit_accuracy"], n == "s4_speed"))
    table = max_lr_table(runs, crit[primary]["threshold"], name=primary)
    within = [e["within_2x"] for row in table.values() for e in row["per_dt"]]
    best = max(crit[b]["held_out_accuracy"] for b in BASELINES)
    off = {f"{f:g}": boundary_accuracy(runs, primary, crit[primary]["threshold"], f) for f in (0.5, 1.0, 2.0)}
    return {"primary": primary, "criteria": crit, "boundary_factor_accuracy": off,
            "held_out_accuracy": crit[primary]["held_out_accuracy"], "held_out_auc": crit[primary]["held_out_auc"],
            "baselines": {b: {k: crit[b][k] for k in ("held_out_accuracy", "held_out_auc", "threshold")}
                          for b in BASELINES},
            "beats_baselines": bool(crit[primary]["held_out_accuracy"] > best),
            "max_lr": table, "max_lr_within_2x": float(np.mean(within)) if within else math.nan,
            "max_lr_within_2x_ref_dt": float(np.mean([row["within_2x"] for row in table.values()]))}


def boundary_accuracy(runs: list[dict], name: str, threshold: float, factor: float = 1.0,
                      half: str = "held_out") -> float:
    """Accuracy on ``half`` of the rule "stable ⇔ lr ≤ factor·lr*(cell)", lr* S4's predicted largest stable lr of
    the run's (placement, depth, Δt) at the fitted threshold (meta-tests: factor 2 or ½ is a boundary off by 2×)."""
    cells: dict[tuple, list[dict]] = {}
    for r in runs:
        c = r["config"]
        cells.setdefault((c["placement"], c["depth"], c["dt"]), []).append(r)
    star = {k: predicted_cell_max_lr(v, name, threshold) for k, v in cells.items()}
    rs = [r for r in runs if pr.split_half(config_key(r["config"])) == half]
    pred_unstable = [r["config"]["lr"] > factor * star[(r["config"]["placement"], r["config"]["depth"],
                                                          r["config"]["dt"])] * (1 + 1e-12) for r in rs]
    return pr.accuracy(pred_unstable, [r["diverged"] for r in rs])


def swap_placements(runs: list[dict], mapping: dict[str, str]) -> list[dict]:
    """A deliberately wrong criterion's input: each run's init measurements replaced by those of the run with the
    same (depth, Δt, lr, seed) in the placement ``mapping[placement]`` (meta-test: placements swapped)."""
    by = {(r["config"]["placement"], r["config"]["depth"], r["config"]["dt"], r["config"]["lr"], r["config"]["seed"]): r
          for r in runs}
    out = []
    for r in runs:
        c = r["config"]
        other = by.get((mapping.get(c["placement"], c["placement"]), c["depth"], c["dt"], c["lr"], c["seed"]), r)
        out.append({**r, "init": other["init"]})
    return out


def per_placement_accuracy(runs: list[dict], name: str, threshold: float) -> dict:
    """Held-out accuracy of criterion ``name`` at ``threshold``, per placement (advice carries it)."""
    out = {}
    for p in sorted({r["config"]["placement"] for r in runs}):
        rs = [r for r in runs if r["config"]["placement"] == p and pr.split_half(config_key(r["config"])) == "held_out"]
        if rs:
            s = _finite(np.array([SCORES[name](r) for r in rs]))
            out[p] = {"accuracy": pr.accuracy(s > threshold, [r["diverged"] for r in rs]), "n": len(rs)}
    return out


# ---- S4 growth-aware: the placement-aware criterion (docs/theorems/atlas.md, "S4 growth-aware") ----------------
#
# Eight variants, in the order the chapter fixed before any held-out score was computed: the gain G is the forward
# gain G_f or the backward gain e^Λ; the score is lr·m·G ("speed"), lr·G ("gain"), or lr·s(lr)^{2κ} with the
# weight growth s of one peak step ("step", n̄ = 1) or of the whole schedule ("run", n̄ = Σ_t lr_t/lr).

GROWTH_GAINS = ("fwd", "bwd")
GROWTH_FORMS = ("speed", "gain", "step", "run")
GROWTH_VARIANTS = tuple(f"growth_{g}_{f}" for g in GROWTH_GAINS for f in GROWTH_FORMS)
CV_FOLDS = 5
MCNEMAR_ALPHA = 0.05  # "beats" a baseline: higher held-out accuracy and McNemar's exact p below this


def _parse(name: str) -> tuple[str, str]:
    if name not in GROWTH_VARIANTS:
        raise ValueError(f"name must be one of {GROWTH_VARIANTS}, got {name!r}")
    _, g, f = name.split("_")
    return g, f


def _log_gain(init: dict, gain: str) -> float:
    return math.log(init["forward_gain"]) if gain == "fwd" else float(init["backward_log_gain"])


def drift_steps(cfg: dict, one_step: bool = False) -> float:
    """n̄ = Σ_t lr_t/lr of the run's schedule (the atlas's: linear warm-up, cosine to 0.1·lr), or 1 (one peak step)."""
    return 1.0 if one_step else _schedule_sum(int(cfg["steps"]), int(cfg["warmup"]))


@functools.lru_cache(maxsize=16)
def _schedule_sum(steps: int, warmup: int) -> float:
    # the schedule the atlas trains with (train_group)
    from verify.training.batched import BatchedTrainConfig

    tc = BatchedTrainConfig(steps=steps, warmup=warmup)
    return float(sum(tc.schedule_factor(t) for t in range(tc.steps)))


def sigma_w(cfg: dict) -> float:
    """σ_w = 1/√d: the size of a d-input weight entry at the zoo's initialisation (weight_scale/√fan_in)."""
    return 1.0 / math.sqrt(float(cfg["d"]))


def excess_table(runs: list[dict], gain: str) -> dict[tuple, float]:
    """κ = max(0, e − 1) per (placement, depth, Δt, seed): e the Δt-elasticity of log G between the run's Δt and its
    grid neighbours of the same (placement, depth, seed) — which share θ₀ — central inside the grid, one-sided at
    its ends; κ = 0 where the grid has a single Δt (no elasticity is measurable there)."""
    init: dict[tuple, dict] = {}
    for r in runs:
        c = r["config"]
        init.setdefault((c["placement"], c["depth"], c["seed"]), {}).setdefault(float(c["dt"]), r["init"])
    out = {}
    for (p, L, seed), by_dt in init.items():
        dts = sorted(by_dt)
        for i, dt in enumerate(dts):
            if len(dts) < 2:
                out[(p, L, dt, seed)] = 0.0
                continue
            lo, hi = dts[max(i - 1, 0)], dts[min(i + 1, len(dts) - 1)]
            e = pr.dt_elasticity(_log_gain(by_dt[lo], gain), _log_gain(by_dt[hi], gain), lo, hi)
            out[(p, L, dt, seed)] = pr.compounding_excess(e)
    return out


def _key4(c: dict) -> tuple:
    return (c["placement"], c["depth"], float(c["dt"]), c["seed"])


def growth_scores(runs: list[dict], name: str) -> np.ndarray:
    """The score of variant ``name`` for every run (higher ⇒ predicted to diverge)."""
    gain, form = _parse(name)
    if form in ("speed", "gain"):
        return np.array([math.log(r["config"]["lr"]) + _log_gain(r["init"], gain)
                         + (math.log(r["init"]["speed"]) if form == "speed" else 0.0) for r in runs])
    kappa = excess_table(runs, gain)
    return np.array([float(pr.growth_score(r["config"]["lr"], kappa[_key4(r["config"])], sigma_w(r["config"]),
                                           drift_steps(r["config"], one_step=form == "step"))[0]) for r in runs])


def _halves(runs: list[dict]) -> np.ndarray:
    return np.array([pr.split_half(config_key(r["config"])) for r in runs])


def select_growth(runs: list[dict]) -> dict:
    """The selection rule, on the fit half only: the highest 5-fold CV accuracy (folds by ``pr.fold_of``), ties
    broken by the fit-half AUC, then by the order of ``GROWTH_VARIANTS``. Returns the table and the choice."""
    fit = _halves(runs) == "fit"
    fr = [r for r, f in zip(runs, fit) if f]
    y = np.array([bool(r["diverged"]) for r in fr])
    folds = np.array([pr.fold_of(config_key(r["config"]), CV_FOLDS) for r in fr])
    table = {}
    for name in GROWTH_VARIANTS:
        s = _finite(growth_scores(runs, name)[fit])
        table[name] = {"cv_accuracy": pr.kfold_accuracy(s, y, folds), "fit_auc": pr.roc_auc(s, y)}
    order = {n: i for i, n in enumerate(GROWTH_VARIANTS)}
    chosen = max(GROWTH_VARIANTS, key=lambda n: (table[n]["cv_accuracy"], table[n]["fit_auc"], -order[n]))
    return {"variants": table, "chosen": chosen, "n_variants": len(GROWTH_VARIANTS), "folds": CV_FOLDS,
            "rule": "highest 5-fold CV accuracy inside the fit half; ties: fit-half AUC, then the listed order"}


def growth_cell_max_lr(rs: list[dict], name: str, threshold: float, kappa: dict | None = None) -> float:
    """The predicted largest stable lr of one (placement, depth, Δt), median over its seeds: the root of
    score(lr) = θ (bisection for the s(lr) forms, θ − log(m·G) in closed form for the others)."""
    gain, form = _parse(name)
    if form in ("step", "run") and kappa is None:
        kappa = excess_table(rs, gain)
    out = []
    for seed in sorted({r["config"]["seed"] for r in rs}):
        r = next(x for x in rs if x["config"]["seed"] == seed)
        c = r["config"]
        if form in ("speed", "gain"):
            log_amp = _log_gain(r["init"], gain) + (math.log(r["init"]["speed"]) if form == "speed" else 0.0)
            out.append(math.exp(threshold - log_amp))
        else:
            out.append(pr.growth_max_lr(kappa[_key4(c)], threshold, sigma_w(c), drift_steps(c, one_step=form == "step")))
    return float(np.median(out))


def _measured_bracket(rs: list[dict]) -> dict:
    """The measured largest stable lr of one (placement, depth, Δt) cell, each lr's outcome the majority over seeds."""
    lrs = sorted({r["config"]["lr"] for r in rs})
    return pr.measured_max_lr(lrs, [_majority([r for r in rs if r["config"]["lr"] == lr]) for lr in lrs])


def _at_reference_dt(table: dict, ref_dt: float) -> dict:
    """Each "placement/L=depth" row summarised at the Δt of its grid nearest ``ref_dt`` (in log distance)."""
    for row in table.values():
        ref = min(row["per_dt"], key=lambda e: abs(math.log(e["dt"] / ref_dt)))
        row.update({"ref_dt": ref["dt"], "predicted_max_lr": ref["predicted"],
                    "measured_max_lr": ref["measured"]["estimate"], "measured_bracket": ref["measured"],
                    "within_2x": ref["within_2x"]})
    return table


def _cells(runs: list[dict]) -> dict[tuple, list[dict]]:
    cells: dict[tuple, list[dict]] = {}
    for r in runs:
        c = r["config"]
        cells.setdefault((c["placement"], c["depth"], float(c["dt"])), []).append(r)
    return cells


def growth_max_lr_table(runs: list[dict], name: str, threshold: float, ref_dt: float = 1.0) -> dict:
    """Per (placement, depth, Δt): the measured bracket (majority over seeds), the growth-aware predicted lr*, κ,
    and whether they agree within 2×; per "placement/L=depth" the row at ``ref_dt``."""
    gain, form = _parse(name)
    kappa = excess_table(runs, gain) if form in ("step", "run") else None
    table: dict = {}
    for (p, L, dt), rs in sorted(_cells(runs).items()):
        meas = _measured_bracket(rs)
        pred = growth_cell_max_lr(rs, name, threshold, kappa)
        k = float(np.median([kappa[_key4(r["config"])] for r in rs])) if kappa is not None else None
        table.setdefault(f"{p}/L={L}", {"placement": p, "depth": L, "per_dt": []})["per_dt"].append(
            {"dt": dt, "measured": meas, "predicted": pred, "within_2x": pr.within_factor(pred, meas, 2.0),
             "excess": k})
    return _at_reference_dt(table, ref_dt)


def growth_boundary_accuracy(runs: list[dict], name: str, threshold: float, factor: float = 1.0,
                             half: str = "held_out", star: dict | None = None) -> float:
    """Accuracy on ``half`` of "stable ⇔ lr ≤ factor·lr*(cell)" with the growth-aware lr* (factor 2 or ½: a
    boundary off by 2×, the meta-test); ``star`` (lr* per (placement, depth, Δt)) if already computed."""
    if star is None:
        gain, form = _parse(name)
        kappa = excess_table(runs, gain) if form in ("step", "run") else None
        star = {k: growth_cell_max_lr(v, name, threshold, kappa) for k, v in _cells(runs).items()}
    rs = [r for r in runs if pr.split_half(config_key(r["config"])) == half]
    pred = [r["config"]["lr"] > factor * star[_key4(r["config"])[:3]] * (1 + 1e-12) for r in rs]
    return pr.accuracy(pred, [r["diverged"] for r in rs])


def held_out_correct(runs: list[dict], scores: np.ndarray, threshold: float) -> np.ndarray:
    """Per held-out run (in ``runs`` order), whether "diverges ⇔ score > θ" was right (McNemar's input)."""
    held = _halves(runs) == "held_out"
    s = _finite(np.asarray(scores, dtype=float))
    y = np.array([bool(r["diverged"]) for r in runs])
    return ((s > threshold) == y)[held]


SWAP = {"post": "none", "none": "post", "pre": "peri", "peri": "pre", "deepnorm": "lns", "lns": "deepnorm",
        "mixln": "pre"}


def evaluate_growth(runs: list[dict], crit: dict | None = None, primary: str | None = None,
                    name: str | None = None) -> dict:
    """The growth-aware criterion: variant chosen on the fit half (``select_growth``, unless ``name`` is given),
    its one threshold fitted there, scored once on the held-out half; McNemar's exact test against every baseline
    and S4's primary on the same held-out runs; the max-lr table; the 2×-off boundaries; placements swapped."""
    sel = select_growth(runs)
    name = name or sel["chosen"]
    s = growth_scores(runs, name)
    res = score(runs, name, scores=s)
    theta = res["threshold"]
    right = held_out_correct(runs, s, theta)
    if crit is None:
        crit = {n: score(runs, n) for n in (*S4_CRITERIA, *BASELINES)}
    others = {n: held_out_correct(runs, _finite(np.array([SCORES[n](r) for r in runs], dtype=float)),
                                  crit[n]["threshold"]) for n in (*BASELINES, *S4_CRITERIA)}
    mcn = {n: {**pr.mcnemar_exact(right, c), "accuracy": float(np.mean(c))} for n, c in others.items()}
    beats = {n: bool(res["held_out_accuracy"] > crit[n]["held_out_accuracy"] and mcn[n]["p"] < MCNEMAR_ALPHA)
             for n in BASELINES}
    table = growth_max_lr_table(runs, name, theta)
    star = {(row["placement"], row["depth"], e["dt"]): e["predicted"] for row in table.values() for e in row["per_dt"]}
    within = [e["within_2x"] for row in table.values() for e in row["per_dt"]]
    swapped = swap_placements(runs, SWAP)
    sw = score(swapped, name, scores=growth_scores(swapped, name))
    return {"variant": name, "selection": sel, "threshold": theta, "fit_accuracy": res["fit_accuracy"],
            "held_out_accuracy": res["held_out_accuracy"], "held_out_auc": res["held_out_auc"],
            "n_held_out": res["n_held_out"], "held_out_diverged": res["held_out_diverged"],
            "mcnemar": mcn, "beats_baselines": bool(all(beats.values())), "beats": beats,
            "versus_s4": {"primary": primary, **mcn.get(primary, {})},
            "max_lr": table, "max_lr_within_2x": float(np.mean(within)) if within else math.nan,
            "max_lr_within_2x_ref_dt": float(np.mean([row["within_2x"] for row in table.values()])),
            "max_lr_misses_ref_dt": [k for k, row in table.items() if not row["within_2x"]],
            "boundary_factor_accuracy": {f"{f:g}": growth_boundary_accuracy(runs, name, theta, f, star=star)
                                         for f in (0.5, 1.0, 2.0)},
            "swapped": {"map": SWAP, "held_out_accuracy": sw["held_out_accuracy"],
                        "held_out_auc": sw["held_out_auc"], "threshold": sw["threshold"]}}
