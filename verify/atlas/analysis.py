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
"""
from __future__ import annotations

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


def score(runs: list[dict], name: str, shift: float = 0.0, score_fn: Callable[[dict], float] | None = None) -> dict:
    """Fit θ on the fit half and score on the held-out half; ``shift`` moves the fitted boundary (meta-tests:
    log 2 is a boundary off by 2× in lr)."""
    fn = score_fn or SCORES[name]
    s = _finite(np.array([fn(r) for r in runs], dtype=float))
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
    cells: dict[tuple, list[dict]] = {}
    for r in runs:
        c = r["config"]
        cells.setdefault((c["placement"], c["depth"], c["dt"]), []).append(r)
    table = {}
    for (p, L, dt), rs in sorted(cells.items()):
        lrs = sorted({r["config"]["lr"] for r in rs})
        outcome = [_majority([r for r in rs if r["config"]["lr"] == lr]) for lr in lrs]
        meas = pr.measured_max_lr(lrs, outcome)
        pred = predicted_cell_max_lr(rs, name, log_threshold)
        table.setdefault(f"{p}/L={L}", {"placement": p, "depth": L, "per_dt": []})["per_dt"].append(
            {"dt": dt, "measured": meas, "predicted": pred, "within_2x": pr.within_factor(pred, meas, 2.0),
             "speed": float(np.median([r["init"]["speed"] for r in rs]))})
    for row in table.values():
        ref = min(row["per_dt"], key=lambda e: abs(math.log(e["dt"] / ref_dt)))
        row.update({"ref_dt": ref["dt"], "predicted_max_lr": ref["predicted"],
                    "measured_max_lr": ref["measured"]["estimate"], "measured_bracket": ref["measured"],
                    "within_2x": ref["within_2x"]})
    return table


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
