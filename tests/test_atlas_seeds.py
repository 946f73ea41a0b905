"""The atlas over several seeds (issue 9 §1): cluster-bootstrap intervals on held-out accuracies, the spread of the
measured boundary between seeds, and the 60- against 300-step comparison — on hand-built runs whose answers are
known, and on the committed cpu atlas."""
from __future__ import annotations

import math

import numpy as np
import pytest

from theory import predictive as pr
from verify.atlas import analysis


def _run(placement="pre", depth=1, dt=1.0, lr=1.0, seed=0, diverged=False, speed=1.0, steps=60, val=3.0):
    return {"config": {"placement": placement, "depth": depth, "dt": dt, "lr": lr, "seed": seed, "d": 32,
                       "steps": steps, "warmup": 6},
            "diverged": diverged, "val_loss": None if diverged else val,
            "init": {"speed": speed, "probe_loss_change": 0.0, "grad_norm": 1.0, "forward_gain": 1.0,
                     "backward_log_gain": 0.0}}


def _held_out_lines(n_lines=10, per_line=10):
    """Runs whose held-out part is exactly ``per_line`` runs on each of ``n_lines`` lines (Δt values)."""
    runs = []
    for j in range(n_lines):
        dt = 0.1 * (j + 1)
        kept = 0
        for k in range(1, 10_000):
            r = _run(dt=dt, lr=float(k))
            if pr.split_half(analysis.config_key(r["config"])) == "held_out":
                runs.append(r)
                kept += 1
                if kept == per_line:
                    break
    return runs


def test_cluster_bootstrap_resamples_lines_not_runs():
    """One error on every line: every resample has accuracy exactly 0.9. The same ten errors on one line: the
    accuracy moves with how often that line is drawn (Bin(10, 1/10) copies of it), so the interval is wide. A
    bootstrap over single runs would give both the same interval — this test fails it."""
    runs = _held_out_lines()
    lines = [analysis._line(r["config"]) for r in runs]
    first = {ln: i for i, ln in reversed(list(enumerate(lines)))}
    spread = np.array([i not in first.values() for i in range(len(runs))])
    bad_line = lines[0]
    lumped = np.array([ln != bad_line for ln in lines])
    assert spread.mean() == lumped.mean() == pytest.approx(0.9)
    out = analysis.cluster_bootstrap(runs, {"spread": spread, "lumped": lumped})
    assert out["clusters"] == 10
    assert out["accuracy"]["spread"] == pytest.approx([0.9, 0.9], abs=1e-12)
    lo, hi = out["accuracy"]["lumped"]
    # k copies of the bad line among 10 draws → accuracy 1 − k/10; P(k = 0) = 0.35, P(k ≥ 3) = 0.07 > 2.5 %
    assert hi == pytest.approx(1.0) and lo <= 0.7 + 1e-12


def test_meta_a_bootstrap_over_single_runs_fails_the_line_test(monkeypatch):
    """The wrong resampling unit (every run its own cluster) gives the evenly spread errors a non-degenerate
    interval, which the test above rejects."""
    runs = _held_out_lines()
    lines = [analysis._line(r["config"]) for r in runs]
    first = {ln: i for i, ln in reversed(list(enumerate(lines)))}
    spread = np.array([i not in first.values() for i in range(len(runs))])
    monkeypatch.setattr(analysis, "_line", lambda c: (c["dt"], c["lr"]))
    lo, hi = analysis.cluster_bootstrap(runs, {"spread": spread})["accuracy"]["spread"]
    assert hi - lo > 0.05


def test_cluster_bootstrap_difference_is_paired_and_deterministic():
    """A criterion right on every run minus one wrong on every line's first run: the paired difference is exactly
    +0.1 in every resample; identical criteria differ by exactly 0; the same seed gives the same intervals."""
    runs = _held_out_lines()
    lines = [analysis._line(r["config"]) for r in runs]
    first = {ln: i for i, ln in reversed(list(enumerate(lines)))}
    worse = np.array([i not in first.values() for i in range(len(runs))])
    good = np.ones(len(runs), dtype=bool)
    a = analysis.cluster_bootstrap(runs, {"good": good, "worse": worse, "copy": worse.copy()}, reference="worse")
    assert a["minus_reference"]["good"] == pytest.approx([0.1, 0.1], abs=1e-12)
    assert a["minus_reference"]["copy"] == [0.0, 0.0]
    assert analysis.cluster_bootstrap(runs, {"w": worse}) == analysis.cluster_bootstrap(runs, {"w": worse})
    with pytest.raises(ValueError, match="correct"):
        analysis.cluster_bootstrap(runs, {"w": worse[:-1]})


def test_seed_spread_is_each_seeds_own_bracket():
    """Seed 0 trains up to lr 2 (bracket [2, 4], estimate √8), seed 1 up to 4 ([4, 8], √32): spread 2. S4 speed with
    c = 3 and m = 1 predicts lr* = 3 for both: within 2× of √8 and of √32 (3/√32 = 0.53)."""
    lrs = (1.0, 2.0, 4.0, 8.0)
    runs = [_run(lr=lr, seed=0, diverged=lr >= 4) for lr in lrs] + [_run(lr=lr, seed=1, diverged=lr >= 8) for lr in lrs]
    out = analysis.seed_spread(runs, "s4_speed", math.log(3.0))
    row = out["cells"]["pre/L=1"]
    assert row["estimates"] == pytest.approx([math.sqrt(8), math.sqrt(32)])
    assert row["spread"] == pytest.approx(2.0)
    assert out["pairs"] == 2 and out["within_2x"] == 1.0
    # a constant 4× too large (c = 12): 12/√8 = 4.2 and 12/√32 = 2.1, both outside 2×
    assert analysis.seed_spread(runs, "s4_speed", math.log(12.0))["within_2x"] == 0.0


def test_compare_long_pairs_the_same_cells():
    """60 steps: diverges from lr 4; 300 steps: nothing diverges up to 8 → the boundary moved up, censored above."""
    lrs = (1.0, 2.0, 4.0, 8.0)
    short = [_run(lr=lr, diverged=lr >= 4) for lr in (0.5, *lrs)] + [_run(lr=1.0, depth=4)]
    long = [_run(lr=lr, steps=300, val=2.5) for lr in lrs]
    out = analysis.compare_long(short, long)
    assert out["n_cells"] == 1 and out["steps"] == {"short": 60, "long": 300}
    c = out["cells"][0]
    assert c["short"]["runs"] == 4 and c["short"]["diverged"] == 2  # lr 0.5 and depth 4 are not in the long grid
    assert c["short"]["measured"]["estimate"] == pytest.approx(math.sqrt(8))
    assert c["long"]["measured"]["censored"] == "above" and out["boundary_moved_up"] == 1
    assert c["long"]["best_val_loss"] == 2.5
    with pytest.raises(ValueError, match="share no"):
        analysis.compare_long([_run(depth=7)], long)


# ---- the committed cpu atlas -------------------------------------------------------------------------------------


# the committed cpu atlas: the ``atlas`` fixture (data, runs) is in tests/conftest.py


def test_cpu_atlas_has_three_seeds_and_the_issues_depths(atlas):
    data, runs = atlas
    assert sorted({r["config"]["seed"] for r in runs}) == [0, 1, 2]
    assert sorted({r["config"]["depth"] for r in runs}) == [4, 12, 24]
    assert min(r["config"]["lr"] for r in runs) <= 1e-3


def test_cpu_atlas_intervals_and_spread_reproduce_from_its_runs(atlas):
    data, runs = atlas
    ev = analysis.evaluate(runs)
    gr = analysis.evaluate_growth(runs, ev["criteria"], ev["primary"])
    assert analysis.held_out_intervals(runs, ev, gr) == data["intervals"]
    sp = analysis.seed_spread(runs, ev["primary"], ev["criteria"][ev["primary"]]["threshold"])
    assert sp["within_2x"] == data["seed_spread"]["within_2x"] and sp["max_spread"] == data["seed_spread"]["max_spread"]
    lo, hi = data["intervals"]["accuracy"][ev["primary"]]
    assert lo <= data["held_out_accuracy"] <= hi


# ---- trainability ---------------------------------------------------------------------------------------------


def test_unigram_reference_is_the_byte_frequency_cross_entropy():
    """Recomputed another way: collections.Counter over the raw training bytes, the evaluation tokens redrawn with
    the same generator the evaluation uses."""
    from collections import Counter

    from verify.atlas import runner

    g = runner.grid_for("test")
    text = runner.corpus(g.corpus_bytes)
    cnt = Counter(text.split("train").tolist())
    n = sum(cnt.values())
    rng = np.random.default_rng(12345)
    toks = []
    for _ in range(g.eval_batches):
        toks += text.batch("val", g.batch_size, g.block_size, rng, "cpu")[1].flatten().tolist()
    want = -sum(math.log(cnt[t] / n) for t in toks) / len(toks)
    assert analysis.unigram_reference(g.sizes()) == pytest.approx(want, rel=1e-12)


def test_trainability_counts_and_pairs_by_seed():
    """Two seeds; at Δt = 0.25 the best losses are 2.0 and 2.2, at Δt = 1 they are 2.5 and 2.9: differences −0.5
    and −0.7, mean −0.6, t-interval −0.6 ± 12.706·0.1414/√2 (t₀.₉₇₅ with 1 degree of freedom)."""
    h = 3.0
    runs = []
    for s, (lo, hi) in enumerate(((2.0, 2.5), (2.2, 2.9))):
        runs += [_run(dt=0.25, lr=0.1, seed=s, val=lo), _run(dt=0.25, lr=1.0, seed=s, val=2.93),
                 _run(dt=0.25, lr=8.0, seed=s, diverged=True)]
        runs += [_run(dt=1.0, lr=0.1, seed=s, val=hi), _run(dt=1.0, lr=1.0, seed=s, val=3.5),
                 _run(dt=1.0, lr=8.0, seed=s, diverged=True)]
    out = analysis.trainability(runs, h)
    c = out["cells"]["pre"]["1"]
    assert c["0.25"]["learned_fraction"] == pytest.approx(2 / 6)  # 2.93 is within the 0.1 margin of H_uni
    assert c["0.25"]["learned_fraction_margins"]["0.05"] == pytest.approx(4 / 6)
    assert c["0.25"]["lrs_every_seed_learned"] == [0.1]
    d = out["dt_effect"]["pre"]["1"]
    assert d["differences"] == pytest.approx([-0.5, -0.7])
    half = 12.706204736174707 * math.sqrt(0.02) / math.sqrt(2)
    assert d["ci95"] == pytest.approx([-0.6 - half, -0.6 + half], rel=1e-9)
    pooled = out["dt_effect"]["pre"]["pooled"]
    assert pooled["n"] == 2 and not pooled["small_dt_better"]  # two seeds cannot exclude 0 here


def test_k5_seed_long_and_trainability_parts_decide_from_the_record():
    """The ledger parts are decided by the record's numbers: a spread beyond one grid step, a boundary that moves
    with the run length, a Δt effect whose interval excludes 0 for some placements only — each flips its verdict."""
    from verify.report import claims as cl

    def bracket(est, cens=None):
        return {"low": est, "high": None, "estimate": est, "censored": cens}

    def stub(spread=2.0, long_est=2.83, effects=((-0.2, -0.1), (-0.3, -0.05))):
        cells = {"pre/L=4": {"spread": spread, "per_dt": [{"dt": 1.0, "spread": spread}]}}
        eff = {p: {"pooled": {"n": 9, "mean": sum(ci) / 2, "ci95": list(ci), "small_dt_better": ci[1] < 0,
                              "small_dt_worse": ci[0] > 0}} for p, ci in zip(("pre", "peri"), effects)}
        return {"grid": {"seeds": [0, 1, 2]},
                "seed_spread": {"cells": cells, "max_spread": spread, "within_2x": 0.5, "pairs": 2},
                "long": {"n_cells": 1, "steps": {"short": 60, "long": 300}, "boundary_moved_up": int(long_est > 2.83),
                         "censored_above_long": int(long_est >= 8),
                         "cells": [{"placement": "pre", "depth": 12, "dt": 1.0, "seed": 0,
                                    "short": {"measured": bracket(2.83)},
                                    "long": {"measured": bracket(long_est, "above" if long_est >= 8 else None)}}]},
                "trainability": {"small_dt": 0.25, "ref_dt": 1.0, "dt_effect": eff}}

    def verdicts(atlas):
        return [p.verdict for p in (*cl.atlas_seed_parts(atlas, "stub"), *cl.atlas_trainability_parts(atlas, "stub"))]

    assert verdicts(stub()) == ["reproduced", "undecided", "reproduced", "reproduced", "not tested"]
    assert verdicts(stub(spread=4.0))[0] == "not reproduced"
    assert verdicts(stub(long_est=8.0))[2] == "not reproduced"
    assert verdicts(stub(effects=((-0.2, -0.1), (-0.1, 0.2))))[3] == "undecided"
    assert verdicts(stub(effects=((0.1, 0.2), (-0.1, 0.2))))[3] == "not reproduced"
    assert [p.verdict for p in cl.atlas_seed_parts({"grid": {"seeds": [0]}}, "stub")] == ["not tested"] * 3


def test_dt_norm_effect_pairs_runs_and_averages_per_line():
    """Two seeds × two lrs: at Δt = 0.25 the max hidden norm is 1/4 (seed 0) and 1/2 (seed 1) of that at Δt = 1;
    per line the mean log ratio is log ¼ and log ½; a diverged partner drops its pair; lr below the floor is ignored."""
    runs = []
    for seed, ratio in ((0, 0.25), (1, 0.5)):
        for lr in (0.01, 0.1):
            runs.append({**_run(dt=1.0, lr=lr, seed=seed), "max_hidden_norm": 8.0, "max_grad_norm": 2.0})
            runs.append({**_run(dt=0.25, lr=lr, seed=seed), "max_hidden_norm": 8.0 * ratio, "max_grad_norm": 2.0})
    runs.append({**_run(dt=1.0, lr=1.0, seed=0, diverged=True), "max_hidden_norm": 1e9, "max_grad_norm": 1e9})
    runs.append({**_run(dt=0.25, lr=1.0, seed=0), "max_hidden_norm": 1.0, "max_grad_norm": 1.0})
    runs.append({**_run(dt=1.0, lr=1e-4, seed=0), "max_hidden_norm": 1.0, "max_grad_norm": 1.0})
    runs.append({**_run(dt=0.25, lr=1e-4, seed=0), "max_hidden_norm": 100.0, "max_grad_norm": 1.0})
    out = analysis.dt_norm_effect(runs, "max_hidden_norm")["placements"]["pre"]
    assert (out["lines"], out["pairs"]) == (2, 4)
    assert out["mean_log_ratio"] == pytest.approx((math.log(0.25) + math.log(0.5)) / 2)
    g = analysis.dt_norm_effect(runs, "max_grad_norm")["placements"]["pre"]
    assert g["mean_log_ratio"] == 0.0 and not g["smaller_at_small_dt"] and not g["larger_at_small_dt"]
    with pytest.raises(ValueError, match="field"):
        analysis.dt_norm_effect(runs, "val_loss")


def test_k5_dt_parts_from_the_atlas_decide_by_the_intervals():
    """'…and after training' needs pre and peri smaller and post unresolved; 'backward stability' needs every
    placement smaller (a wrong theory — post shrinking too, or pre not — flips the verdict)."""
    from verify.report import claims as cl

    def fx(**ci):
        return {"small_dt": 0.25, "ref_dt": 1.0, "placements": {
            p: {"mean_log_ratio": sum(c) / 2, "ci95": list(c), "smaller_at_small_dt": c[1] < 0,
                "larger_at_small_dt": c[0] > 0, "lines": 9, "pairs": 80} for p, c in ci.items()}}

    atlas = {"grid": {}, "runs": []}
    good = fx(pre=(-1.5, -1.3), peri=(-1.5, -1.4), post=(-0.01, 0.07))
    assert cl._dt_after_training_part(good, atlas).verdict == "reproduced"
    assert cl._dt_after_training_part(fx(pre=(-1.5, -1.3), peri=(-1.5, -1.4), post=(-0.3, -0.1)), atlas).verdict == "undecided"
    assert cl._dt_after_training_part(fx(pre=(-0.1, 0.2), peri=(-1.5, -1.4), post=(-0.01, 0.07)), atlas).verdict == "not reproduced"
    assert cl._dt_backward_part(fx(pre=(-0.2, -0.1), post=(-0.5, -0.3)), atlas).verdict == "reproduced"
    assert cl._dt_backward_part(fx(pre=(-0.2, -0.1), peri=(-0.01, 0.07)), atlas).verdict == "undecided"
    assert cl._dt_backward_part(fx(pre=(0.1, 0.2), peri=(-0.3, -0.1)), atlas).verdict == "not reproduced"
