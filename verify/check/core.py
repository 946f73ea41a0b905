"""Sanity-check a block design before training it (paper claim K8): what ``python -m verify.check`` computes.

    python -m verify.check --placement peri --depth 24 --d 64              # a zoo configuration
    python -m verify.check --factory mypkg.blocks:make_block --depth 24    # your own block (plain nn.Module)
    python -m verify.check --module gpt2 --heads 4                         # a library block, random weights

Over ``--instances`` independent random instances at initialisation, :func:`run`

1. measures the RMS row norm r_l = ‖X_l‖_F/√n and mean |x| per layer, and the gradient norms ‖∂ℓ/∂X_l‖ of a
   random linear read-out ℓ = ⟨G, X_L⟩ (``measure``);
2. fits the growth regime — bounded, polynomial, exponential or decaying, or identity-at-init — with a bootstrap
   over instances (``regime``);
3. recognises the placement each residual step behaves as from measured invariances, with the evidence
   (``placement``), and states what the catalogue's theorem says of it;
4. draws that theorem's expected curve next to the measured one with a verdict and the ratio (``expected``);
5. checks the residual-contribution identity: what is added to the stream equals Δt × the reported branch output
   (``residual``);
6. applies the (B, τ) criterion over a grid of Δt (``criterion``); a later ``advice`` section (the predicted
   stable (Δt, lr) region) has its place in the result and the printout;
7. optionally repeats 1–5 after ``--train-steps`` AdamW steps (against the theorems that hold for any weights),
   and runs the same measurements for several widths and depths (the coordinate check, ``coord``).

``verify.check.cli`` is the command line; ``verify.check.report`` prints and draws a result.
"""
from __future__ import annotations

import dataclasses
import math
import sys

import numpy as np

from theory._domain import require_int, require_positive
from verify.check import expected as expected_mod
from verify.check import residual as residual_mod
from verify.check.contract import ContractError, load_factory
from verify.check.criterion import sweep
from verify.check.design import ZOO_PLACEMENTS, Built, Design
from verify.check.layers import probe_input
from verify.check.measure import Trajectory, gains, run_chain
from verify.check.placement import THEOREMS, ZOO_EQUIVALENT, recognise
from verify.check.regime import curve_regime, fit_regime
from verify.check.train import train_layers

__all__ = ["ContractError", "Options", "THEORY_REGIME", "ZOO_PLACEMENTS", "fit_regime", "load_factory", "run"]

# What the theory predicts for each zoo placement at initialisation (the regime of the placement it should be
# recognised as) — the reference the registered check C1 holds the tool to.
THEORY_REGIME = {p: THEOREMS[ZOO_EQUIVALENT[p]] for p in ZOO_PLACEMENTS if ZOO_EQUIVALENT[p] in THEOREMS}
THEORY_REGIME["mixln"] = ("polynomial", "post blocks bounded (F1), then pre growth (F5)")

# Regimes the any-weights theorems allow after training: a norm after the sum keeps rows bounded (F1), an update
# of bounded norm makes growth at most linear in depth (F2/F3: polynomial with exponent ≤ 1), no norm allows
# anything up to exponential (F4).
TRAINED_REGIMES = {"post": ("bounded", "decaying"), "bounded": ("bounded", "decaying"),
                   "pre": ("bounded", "polynomial", "decaying"), "peri": ("bounded", "polynomial", "decaying"),
                   "outnorm": ("bounded", "polynomial", "decaying"),
                   "peri|outnorm": ("bounded", "polynomial", "decaying"),
                   "identity": ("identity-at-init",)}
TRAINED_STATEMENTS = {"post": "F1 holds for any weights: rows stay bounded",
                      "bounded": "the output bound holds for any weights: rows stay bounded",
                      "pre": "F3 holds for any weights: growth at most linear in depth (with weight-norm constants)",
                      "peri": "F2 holds for any weights: growth at most linear in depth, free of the weights",
                      "outnorm": "F2-type bound for any weights: growth at most linear in depth",
                      "peri|outnorm": "F2 holds for any weights: growth at most linear in depth",
                      "identity": "still the identity map after training"}


@dataclasses.dataclass
class Options:
    placement: str | None = None
    factory: str | None = None
    module: str | None = None
    factory_args: dict = dataclasses.field(default_factory=dict)
    depth: int = 32
    d: int = 32
    n_tokens: int = 4
    instances: int = 32
    heads: int | None = None
    norm: str | None = None
    dt: float = 1.0
    init_scale: float | None = None
    sublayers: tuple[str, ...] | None = None
    seed: int = 0
    B: float = 10.0
    tau: float = math.log(10.0)
    dt_grid: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
    train_steps: int = 0
    lr: float = 1e-3
    coord_widths: tuple[int, ...] = ()
    coord_depths: tuple[int, ...] = ()
    branch_hooks: tuple[str, ...] | None = None
    progress: bool = False


def validate(opts: Options) -> None:
    """Every numeric option in its domain, or a ValueError naming it (nothing is clipped)."""
    require_int("depth", opts.depth, 4)
    require_int("d", opts.d, 2)
    require_int("n_tokens", opts.n_tokens, 1)
    require_int("instances", opts.instances, 1)
    require_int("seed", opts.seed, 0)
    require_int("train_steps", opts.train_steps, 0)
    if opts.heads is not None:
        require_int("heads", opts.heads, 1)
    for name in ("dt", "lr", "tau"):
        require_positive(name, getattr(opts, name))
    if opts.init_scale is not None:
        require_positive("init_scale", opts.init_scale)
    require_positive("B", opts.B)
    if not opts.B > 1:
        raise ValueError(f"B must be > 1, got {opts.B}")
    if opts.norm is not None and opts.norm not in ("layer", "rms"):
        raise ValueError(f"norm must be 'layer' or 'rms', got {opts.norm!r}")
    if not opts.dt_grid:
        raise ValueError("dt_grid must hold at least one Δt")
    for k, v in enumerate(opts.dt_grid):
        require_positive(f"dt_grid[{k}]", v)
    for k, w in enumerate(opts.coord_widths):
        require_int(f"coord_widths[{k}]", w, 2)
    for k, L in enumerate(opts.coord_depths):
        require_int(f"coord_depths[{k}]", L, 4)


class Progress:
    """A tqdm bar on stderr (only when enabled): phases as its description, work units as its count."""

    def __init__(self, enabled: bool, total: int, file=None):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            # disable=None: only on a terminal, so a piped or captured stderr keeps its one-line errors
            self.bar = tqdm(total=total, file=file or sys.stderr, unit="unit", dynamic_ncols=True, leave=False,
                            disable=None if file is None else False,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]")

    def phase(self, name: str) -> None:
        if self.bar is not None:
            self.bar.set_description(name)

    def tick(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _work(opts: Options) -> int:
    configs = len(coord_configs(opts))
    per_run = 2 * opts.depth + 3
    train = opts.train_steps * (1 + configs)
    return per_run * (2 if opts.train_steps else 1) + len(opts.dt_grid) + configs * per_run + train


def coord_configs(opts: Options) -> list[tuple[int, int]]:
    """(width, depth) pairs of the coordinate check: every width at the main depth, every depth at the main width."""
    pairs = [(w, opts.depth) for w in opts.coord_widths] + [(opts.d, L) for L in opts.coord_depths]
    out = []
    for p in pairs:
        if p not in out:
            out.append(p)
    return out


def analyse(built: Built, traj: Trajectory, opts: Options, d: int, stage: str,
            progress: Progress, with_residual: bool = True, n_boot: int = 200) -> dict:
    """Regime, placement, theory, expected curve (init: F5 law; trained: any-weights bound), residual identity."""
    fit = fit_regime(traj.r, n_boot=n_boot, seed=opts.seed, effective_instances=built.effective_instances)
    recog = recognise(built.layers, opts.n_tokens, d, opts.seed + 1, built.single_step, progress=progress.tick)
    if recog["label"] == "identity":
        fit["regime"] = "identity-at-init"
    deep = recog["runs"][-1]["label"]
    deep_step = deep.split("+")[-1]
    predicted, statement = THEOREMS.get(deep_step, (None, ""))
    if stage == "init":
        exp = expected_mod.expected_at_init(built.layers, traj, recog["per_layer"])
        exp["kind"] = "F5 law at initialisation"
        if exp.get("available") and predicted not in (None, "identity-at-init"):
            # the regime of the theorem's own curve at this depth (a pre-LN stack with small weights is flat here)
            rms = np.asarray(exp["expected_rms"])
            predicted = curve_regime(rms / rms[0])
        agrees = predicted == fit["regime"]
        theory = {"placement": deep_step, "regime": predicted, "statement": statement, "agrees": agrees,
                  "consistent": agrees or exp.get("verdict") == "PASS"}
    else:
        exp = expected_mod.envelope(built.layers, traj, recog["per_layer"])
        exp["kind"] = "any-weights bound after training"
        allowed = TRAINED_REGIMES.get(deep_step, ("bounded", "polynomial", "exponential", "decaying"))
        ok = fit["regime"] in allowed
        if ok and fit["regime"] == "polynomial" and fit["exponent_ci95"] is not None:
            ok = fit["exponent_ci95"][0] <= 1.0  # F2/F3 allow at most linear growth
        statement = TRAINED_STATEMENTS.get(deep_step, "F4 holds for any weights: growth at most exponential "
                                                      "(Grönwall), so every regime is allowed")
        theory = {"placement": deep_step, "regime": " or ".join(allowed), "statement": statement, "agrees": ok,
                  "consistent": ok or exp.get("verdict") == "PASS"}
    m_hat = exp.pop("m_hat", None)
    progress.tick()
    res = residual_mod.check(built.layers, traj.x0, opts.branch_hooks) if with_residual else None
    progress.tick()
    return {"growth": fit, "placement": recog, "theory": theory, "expected": exp, "residual_identity": res,
            "measured": {"rms": traj.r.mean(0).tolist(), "mean_abs": traj.mean_abs.mean(0).tolist(),
                         "gradient_norms": (traj.p.mean(0) / traj.p.mean(0)[-1]).tolist(), **gains(traj)},
            "_m_hat": m_hat}


def run(opts: Options) -> dict:
    validate(opts)
    design = Design(opts.placement, opts.factory, opts.module, opts.heads, opts.norm, opts.init_scale,
                    opts.sublayers, opts.factory_args)
    progress = Progress(opts.progress, _work(opts))
    try:
        return _run(opts, design, progress)
    finally:
        progress.close()


def _run(opts: Options, design: Design, progress: Progress) -> dict:
    I, n, d, L, seed = opts.instances, opts.n_tokens, opts.d, opts.depth, opts.seed
    x0 = probe_input(I, n, d, seed)
    progress.phase("building the blocks")
    built = design.build(d, L, opts.dt, seed, I, n, progress=progress.tick)
    notes = list(built.notes)
    if I == 1:
        notes.append("--instances 1: one network, so there is no bootstrap (no confidence, no intervals) and no "
                     "expected-curve verdict; use --instances 16 or more")
    progress.phase("measuring at initialisation")
    traj = run_chain(built.layers, x0, seed)
    progress.tick()
    progress.phase("recognising the placement")
    init = analyse(built, traj, opts, d, "init", progress)
    progress.phase("Δt sweep (criterion)")
    crit = sweep(lambda dt: design.at_dt(built, dt, d, L, seed, I, n), x0, seed, opts.B, opts.tau, opts.dt_grid,
                 progress=progress.tick)
    if init["growth"]["regime"] == "identity-at-init":
        crit["note"] = ("vacuous at initialisation: the block is the identity, so every Δt passes; the criterion "
                        "means something only after training (--train-steps)")
        crit["recommended_dt"] = None
        crit["at_edge"] = None
    coord = None
    if opts.coord_widths or opts.coord_depths:
        progress.phase("coordinate check")
        coord = _coord_check(design, opts, progress)
    trained = None
    if opts.train_steps:
        progress.phase(f"training {opts.train_steps} steps")
        tr = train_layers(built.layers, I, d, max(n, 8), opts.train_steps, seed, lr=opts.lr, progress=progress.tick)
        progress.phase("measuring after training")
        traj_t = run_chain(built.layers, x0, seed)
        progress.tick()
        trained = {"training": tr, **_public(analyse(built, traj_t, opts, d, "trained", progress))}
    result = {
        "design": {"label": design.label, "kind": design.kind, "protocol": built.protocol, "d": d, "depth": L,
                   "n_tokens": n, "instances": I, "effective_instances": built.effective_instances,
                   "independent_instances": built.effective_instances == I and I > 1, "dt": opts.dt,
                   "dt_inside_block": design.dt_inside, "seed": seed, "dtype": "float64",
                   "steps_per_block": list(built.layers[0].step_names)},
        "notes": notes,
        **_public(init),
        "criterion": crit,
        # The predicted stable (Δt, learning-rate) region from the divergence atlas (verify.atlas, S4).
        "advice": _advice(opts, design, init, trained),
        "coord_check": coord,
        "after_training": trained,
    }
    if design.kind == "zoo":
        want = ZOO_EQUIVALENT[opts.placement]
        own, own_says = THEORY_REGIME[opts.placement]
        result["declared"] = {"placement": opts.placement, "recognised_as_expected": init["placement"]["label"] == want,
                              "expected_label": want, "regime": own, "statement": own_says,
                              "agrees": own == init["growth"]["regime"]}
    return result


def _advice(opts: Options, design: Design, init: dict, trained: dict | None) -> dict | None:
    """verify.atlas.advice for the declared zoo placement (or the recognised one); None without atlas data."""
    from verify.atlas import advice

    placement = opts.placement if design.kind == "zoo" else init["placement"]["label"]
    tr = trained["training"] if trained else None
    try:
        return advice(placement, opts.depth, opts.d, dt=opts.dt, lr=opts.lr,
                      trained=None if tr is None else {"loss_first": tr["loss_first"], "loss_last": tr["loss_last"]})
    except ValueError as exc:  # no atlas data, or a placement the atlas does not cover
        return {"lines": [f"no atlas prediction: {exc}"], "predicted_region": None, "recommended_dt": None,
                "atlas_accuracy": None}


def _public(analysis: dict) -> dict:
    return {k: v for k, v in analysis.items() if not k.startswith("_")}


def _coord_check(design: Design, opts: Options, progress: Progress) -> dict:
    """Measured and expected RMS / mean |x| per layer for several (width, depth), at init and after training."""
    rows = []
    I, n = opts.instances, opts.n_tokens
    for d, L in coord_configs(opts):
        x0 = probe_input(I, n, d, opts.seed)
        built = design.build(d, L, opts.dt, opts.seed, I, n)
        traj = run_chain(built.layers, x0, opts.seed)
        a = analyse(built, traj, opts, d, "init", progress, with_residual=False, n_boot=20)
        row = {"d": d, "depth": L, "init": _coord_entry(a, d)}
        if opts.train_steps:
            train_layers(built.layers, I, d, max(n, 8), opts.train_steps, opts.seed, lr=opts.lr,
                         progress=progress.tick)
            traj_t = run_chain(built.layers, x0, opts.seed)
            row["trained"] = _coord_entry(analyse(built, traj_t, opts, d, "trained", progress,
                                                  with_residual=False, n_boot=20), d)
        rows.append(row)
    stages = [s for r in rows for s in (r["init"], r.get("trained")) if s is not None]
    verdicts = [s["verdict"] for s in stages if s["verdict"] in ("PASS", "FAIL")]
    passed = sum(v == "PASS" for v in verdicts)
    return {"configs": rows, "passed": passed, "checked": len(verdicts),
            "verdict": "PASS" if verdicts and passed == len(verdicts) else ("FAIL" if verdicts else "n/a")}


def _coord_entry(a: dict, d: int) -> dict:
    exp = a["expected"]
    curve = exp.get("expected_rms") or exp.get("bound_rms")
    law = exp.get("expected_rms")  # mean |x| is drawn against the F5 curve only: a bound says nothing of it
    return {"rms": a["measured"]["rms"], "mean_abs": a["measured"]["mean_abs"], "expected_rms": curve,
            "expected_mean_abs": expected_mod.expected_mean_abs(law, d) if law else None,
            "expected_kind": exp.get("kind"), "verdict": exp.get("verdict", "n/a"),
            "ratio": exp.get("ratio_last", exp.get("tightness")), "placement": a["placement"]["label"],
            "regime": a["growth"]["regime"]}
