"""The figures framework and its figures: data steps at tiny size with their key numbers, drawing smoke tests
under Agg, determinism of the data, and the command line."""
from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from verify import figures
from verify.figures import init_growth
from verify.figures.__main__ import main


@pytest.fixture(scope="module")
def growth_fast():
    return init_growth.data("cpu", fast=True, seed=0)


def test_registry_holds_every_figure_and_rejects_bad_names():
    figs = figures.load_figures()
    assert {"k7_moments", "init_growth"} <= set(figs)
    with pytest.raises(ValueError, match="^name"):
        figures.register_figure("bad name!", title="x", data=lambda *a: {}, draw=lambda d, p: None)
    with pytest.raises(ValueError, match="^name"):
        figures.build("no_such_figure", "/tmp")


def test_init_growth_matches_f5_and_f_bounds(growth_fast):
    """At ε = 0: post E‖x_k‖²/d = 1 exactly for k ≥ 1 (every row normalised); peri and pre means lie within
    5 Monte-Carlo standard errors of F5 (false-alarm rate < 1e-5 per point under normality; 12 steps × 2 runs);
    the peri slope is ∝ Δt² (ratio of the F5 increments is 0.01 exactly); every row obeys its F1/F2/F3 bound."""
    runs = {r["label"]: r for r in growth_fast["runs"]}
    post = runs["post"]
    assert np.allclose(post["mean_sq"][1:], 1.0, rtol=1e-12)  # float64, ε = 0: exact normalisation
    for lab in ("pre", "peri Δt = 1", "peri Δt = 0.1"):
        r = runs[lab]
        err = np.abs(np.array(r["mean_sq"][1:]) - np.array(r["f5"][1:]))
        assert np.all(err <= 5 * np.array(r["mc_se"][1:]) + 1e-12), lab
    slope = {lab: runs[lab]["f5"][1] - runs[lab]["f5"][0] for lab in ("peri Δt = 1", "peri Δt = 0.1")}
    assert slope["peri Δt = 0.1"] / slope["peri Δt = 1"] == pytest.approx(0.01, rel=1e-12)
    assert all(r["bound_holds"] for r in growth_fast["runs"])


def test_data_steps_are_deterministic(growth_fast):
    """Two runs with the same seed give identical data (bit for bit, through JSON); K7's: tests/test_k7.py."""
    assert json.dumps(init_growth.data("cpu", fast=True, seed=0)) == json.dumps(growth_fast)


@pytest.mark.parametrize("module", [init_growth])
def test_drawing_writes_pdf_and_png(module, growth_fast, tmp_path):
    data = growth_fast
    module.draw(data, tmp_path / module.NAME)
    for ext in ("pdf", "png"):
        f = tmp_path / f"{module.NAME}.{ext}"
        assert f.is_file() and f.stat().st_size > 1000


def test_command_line_writes_json_pdf_png_and_rejects_unknown_names(tmp_path, capsys):
    assert main(["--only", "init_growth", "--fast", "--out", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / "init_growth.json").read_text())
    assert rec["_meta"]["figure"] == "init_growth" and rec["_meta"]["fast"] is True
    assert (tmp_path / "init_growth.pdf").is_file() and (tmp_path / "init_growth.png").is_file()
    with pytest.raises(SystemExit):
        main(["--only", "nope", "--out", str(tmp_path)])
