"""K8 — the architecture sanity check classifies growth as the theory says, for the zoo and for user designs.

Each zoo placement must be classified into the regime its theorem predicts at initialisation (F1 bounded, F5
polynomial, F4 exponential), and two designs that are not in the zoo — DyT and a B2T block — are plugged in through
the import path exactly as a user would. The classification must be able to fail: regimes of different theorems
are told apart (a post-LN stack is never "polynomial", a no-norm stack never "bounded").
"""
from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
from torch import nn

from verify.check.core import (
    THEORY_REGIME,
    ZOO_PLACEMENTS,
    ContractError,
    Options,
    fit_regime,
    load_factory,
    main,
    run,
)

SMALL = dict(d=16, depth=24, instances=16, n_tokens=3, grid=(0.05, 0.5, 2.0))


@pytest.fixture(scope="module")
def zoo_results():
    return {p: run(Options(placement=p, **SMALL)) for p in ZOO_PLACEMENTS}


@pytest.mark.parametrize("placement", ZOO_PLACEMENTS)
def test_zoo_placement_is_classified_as_its_theorem_predicts(zoo_results, placement):
    res = zoo_results[placement]
    expected, _ = THEORY_REGIME[placement]
    assert res["growth"]["regime"] == expected, res["growth"]
    assert res["theory_own_placement"]["agrees"]
    # Bootstrap confidence: at least 80 % of instance resamples agree (a 16-instance sample; the measured
    # confidences at this size are 0.95–1.0).
    assert res["growth"]["confidence"] >= 0.8


def test_classification_separates_the_regimes(zoo_results):
    """Meta-test: swapping the theory of two placements (post ↔ none, pre ↔ post) makes the comparison fail."""
    wrong = dict(THEORY_REGIME, post=THEORY_REGIME["none"], none=THEORY_REGIME["post"], pre=THEORY_REGIME["post"])
    for p in ("post", "none", "pre"):
        assert zoo_results[p]["growth"]["regime"] != wrong[p][0]


def test_polynomial_exponent_of_pre_ln_is_near_one_half(zoo_results):
    """F5: E‖x_l‖² grows additively at init, so r_l ~ √l; the deep-half exponent's 95 % interval is near 1/2
    (finite depth biases it low: r² = r0² + c·l has local slope c·l/(2(r0² + c·l)) < 1/2)."""
    lo, hi = zoo_results["pre"]["growth"]["exponent_ci95"]
    assert 0.3 < lo and hi < 0.6


def test_criterion_is_not_vacuous_for_no_norm_stacks(zoo_results):
    """A no-norm stack passes the (B, τ) criterion at small Δt and fails it at large Δt."""
    sweep = zoo_results["none"]["criterion"]["sweep"]
    assert sweep[0]["stable"] and not sweep[-1]["stable"]
    rec = zoo_results["none"]["criterion"]["recommended_dt"]
    assert rec is not None and rec < SMALL["grid"][-1]


@pytest.mark.parametrize("factory,regime,near", [
    ("verify.check.designs.dyt:make_block", "polynomial", None),
    ("verify.check.designs.b2t:make_block", "bounded", None),
])
def test_user_designs_through_the_import_path(factory, regime, near):
    res = run(Options(factory=factory, **SMALL))
    assert res["growth"]["regime"] == regime
    assert res["theory"]["agrees"], res["nearest_placement"]


def test_fit_regime_on_synthetic_curves():
    """Known curves: √(1 + l) is polynomial with exponent ≈ 1/2, 1.3^l exponential, a constant bounded."""
    l = np.arange(33.0)
    noise = 1 + 1e-3 * np.random.default_rng(0).standard_normal((20, 33))
    assert fit_regime(np.sqrt(1 + l) * noise)["regime"] == "polynomial"
    assert fit_regime(1.3 ** l * noise)["regime"] == "exponential"
    assert fit_regime(np.ones(33) * noise)["regime"] == "bounded"


def _user_module(monkeypatch, **attrs) -> str:
    mod = types.ModuleType("user_blocks_for_test")
    for k, v in attrs.items():
        setattr(mod, k, v)
    monkeypatch.setitem(sys.modules, "user_blocks_for_test", mod)
    return "user_blocks_for_test"


def test_contract_errors_are_clear(monkeypatch):
    class Shrink(nn.Module):
        def forward(self, x):
            return x[..., :-1]

    class Blowup(nn.Module):
        def forward(self, x):
            return x * float("inf")

    name = _user_module(monkeypatch, shrink=lambda d, n_instances, seed: Shrink(),
                        blowup=lambda d, n_instances, seed: Blowup(), notmodule=lambda d, n_instances, seed: 3,
                        positional=lambda width: Shrink())
    with pytest.raises(ContractError, match="package.module:callable"):
        load_factory("no_colon_here")
    with pytest.raises(ContractError, match="cannot import"):
        load_factory("no_such_module_xyz:make")
    with pytest.raises(ContractError, match="no callable"):
        load_factory(f"{name}:missing")
    with pytest.raises(ContractError, match="same shape"):
        run(Options(factory=f"{name}:shrink", **SMALL))
    with pytest.raises(ContractError, match="NaN or inf"):
        run(Options(factory=f"{name}:blowup", **SMALL))
    with pytest.raises(ContractError, match="nn.Module"):
        run(Options(factory=f"{name}:notmodule", **SMALL))
    with pytest.raises(ContractError, match="keywords"):
        run(Options(factory=f"{name}:positional", **SMALL))
    with pytest.raises(ValueError, match="depth"):
        run(Options(placement="pre", depth=2))
    with pytest.raises(ValueError, match="B must be"):
        run(Options(placement="pre", B=0.5))


def test_cli_writes_json_and_plot(tmp_path, capsys):
    rc = main(["--placement", "peri", "--d", "8", "--depth", "8", "--instances", "8", "--out", str(tmp_path)])
    assert rc == 0
    data = json.loads((tmp_path / "check.json").read_text())
    assert data["growth"]["regime"] in ("bounded", "polynomial", "exponential")
    assert (tmp_path / "check.png").stat().st_size > 1000
    assert "recommended Δt" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--placement", "sideways"])


def test_optional_short_training_trains_then_measures():
    """--train-steps: the blocks are trained as independent byte-level LMs first (the loss falls), then measured."""
    res = run(Options(placement="peri", d=8, depth=6, instances=4, n_tokens=4, grid=(1.0,), train_steps=40))
    tr = res["measured_after_training"]
    assert tr["steps"] == 40 and tr["loss_last"] < tr["loss_first"]
    assert tr["regime_at_init"] == "polynomial" and res["growth"]["regime"] in ("bounded", "polynomial", "exponential")
    with pytest.raises(ValueError, match="train_steps"):
        run(Options(placement="peri", train_steps=-1))
