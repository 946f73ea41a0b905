"""Issue 14 — ``verify.check`` tells the truth about a user's block: every flag acts or is refused, the verdicts
are right for identity, vanishing, sandwich and shared-weight designs, and every bad input is one line, exit 2.

The designs are written from scratch in ``tests/designs`` the way a new user writes them (plain ``nn.Module``,
``nn.Linear`` defaults in float32). Each test names the defect it guards against.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from verify.check.cli import main
from verify.check.contract import ContractError
from verify.check.core import Options, run

TESTS = Path(__file__).resolve().parent
TINY = dict(d=8, depth=8, instances=8, n_tokens=3, dt_grid=(1.0,))


@pytest.fixture(autouse=True)
def _designs_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))


def F(name: str, fn: str = "make_block") -> str:
    return f"designs.{name}:{fn}"


# ---- every flag acts or is refused ----------------------------------------------------------------------------
def test_dt_acts_on_a_factory_block():
    """--dt with --factory used to print the Δt = 1 numbers: now it rescales each step, X + Δt·(step(X) − X)."""
    one = run(Options(factory=F("sandwich"), **TINY))
    tenth = run(Options(factory=F("sandwich"), dt=0.1, **TINY))
    assert tenth["measured"]["rms"][-1] < one["measured"]["rms"][-1]
    assert any("applied outside the block" in n for n in tenth["notes"]) and not tenth["design"]["dt_inside_block"]


def test_dt_is_passed_to_a_factory_that_declares_it(monkeypatch):
    import designs.unstable as unstable

    seen = []

    def make_block(d, seed, dt=1.0):
        seen.append(dt)
        return unstable.make_block(d, seed, gain=dt)

    monkeypatch.setattr(unstable, "make_block_dt", make_block, raising=False)
    res = run(Options(factory=F("unstable", "make_block_dt"), dt=0.25, **TINY))
    assert set(seen) == {0.25, 1.0} and res["design"]["dt_inside_block"]  # 1.0: the criterion grid
    assert not any("outside" in n for n in res["notes"])


@pytest.mark.parametrize("flag,value", [("heads", 2), ("norm", "rms"), ("init_scale", 2.0)])
def test_flags_the_factory_cannot_take_are_refused(flag, value):
    with pytest.raises(ContractError, match="takes no"):
        run(Options(factory=F("unstable"), **{flag: value}, **TINY))


def test_heads_is_passed_where_the_factory_takes_it():
    res = run(Options(factory=F("prenorm"), heads=2, **TINY))
    assert res["design"]["steps_per_block"] == ["attention_step", "mlp_step"]
    with pytest.raises(ContractError, match="acts on attention only"):
        run(Options(placement="pre", heads=2, **TINY))
    one = run(Options(placement="pre", sublayers=("attn", "mlp"), heads=1, **TINY))
    two = run(Options(placement="pre", sublayers=("attn", "mlp"), heads=2, **TINY))
    assert one["measured"]["rms"] != two["measured"]["rms"]


def test_depth_is_the_depth_of_the_stack_being_built(monkeypatch):
    """A factory that needs the model depth (CompleteP's Δt = L^−α) gets the depth of each stack it builds."""
    import designs.unstable as unstable

    seen = set()

    def make_block(d, seed, **options):
        seen.add(options.pop("depth"))
        return unstable.make_block(d, seed, **options)

    monkeypatch.setattr(unstable, "make_block_depth", make_block, raising=False)
    run(Options(factory=F("unstable", "make_block_depth"), factory_args={"depth": 99}, coord_depths=(4,), **TINY))
    assert seen == {8, 4}


def test_factory_args_reach_the_factory_and_unknown_ones_are_refused():
    res = run(Options(factory=F("unstable"), factory_args={"gain": 0.0}, **TINY))
    assert res["placement"]["label"] == "identity"
    with pytest.raises(ContractError, match="takes no 'width'"):
        run(Options(factory=F("unstable"), factory_args={"width": 3}, **TINY))


# ---- right verdicts ---------------------------------------------------------------------------------------------
def test_rezero_is_identity_at_init_not_bounded():
    """ReZero was 'bounded', explained by post-LN, with 'recommended Δt = 2.0'."""
    res = run(Options(factory=F("rezero"), dt_grid=(0.5, 2.0), **{k: v for k, v in TINY.items() if k != "dt_grid"}))
    assert res["growth"]["regime"] == "identity-at-init" and res["placement"]["label"] == "identity"
    assert res["theory"]["agrees"] and res["criterion"]["recommended_dt"] is None
    assert "vacuous" in res["criterion"]["note"]
    assert res["residual_identity"]["status"] == "scaled"  # α = 0: the stream receives 0 × the MLP output


def test_trained_rezero_is_compared_with_trained_expectations():
    """After --train-steps the curves used to be compared with untrained references (DISAGREES): now the
    trained layers are recognised again (no norm: none) and held to the any-weights bound F4."""
    res = run(Options(factory=F("rezero"), train_steps=10, lr=3e-3, **dict(TINY, depth=4, instances=4)))
    t = res["after_training"]
    assert t["placement"]["label"] == "none" and t["theory"]["agrees"]
    assert t["expected"]["kind"].startswith("any-weights") and t["expected"]["verdict"] == "PASS"
    assert 0 < t["expected"]["tightness"] <= 1


def test_a_vanishing_block_is_decaying_and_fails_the_lower_gain():
    """A block that shrinks the signal 10⁵-fold was 'polynomial, exponent −8.6' and passed."""
    res = run(Options(factory=F("vanishing"), factory_args={"keep": 0.6}, d=8, depth=24, instances=8, n_tokens=3,
                      dt_grid=(1.0,)))
    g = res["growth"]
    assert g["regime"] == "decaying" and g["growth_curve"][-1] < 1e-4
    row = res["criterion"]["sweep"][0]
    assert not row["stable"] and "1/B" in row["why"] and row["forward_gain_min"] < 1e-4
    # the stream gain 0.7 is measured, and the expected curve λ²m + E‖F‖² follows the decay
    assert {round(s["gain"], 2) for s in res["expected"]["stream_gains"]} == {0.6}
    assert res["expected"]["verdict"] == "PASS" and res["theory"]["agrees"]


def test_sandwich_layernorm_is_peri_and_tells_apart_from_outnorm():
    """Sandwich-LN won 'peri' over 'outnorm' by a distance of 0.001: the row-mean shift invariance of its
    LayerNorm input separates them; the zoo's own peri and outnorm are recognised as themselves."""
    res = run(Options(factory=F("sandwich"), **TINY))
    assert res["placement"]["label"] == "peri", res["placement"]["reason"]
    assert res["placement"]["per_layer"][0][0]["evidence"]["shift_invariance"] < 1e-6
    assert run(Options(placement="peri", **TINY))["placement"]["label"] == "peri"
    assert run(Options(placement="outnorm", **TINY))["placement"]["label"] == "outnorm"


def test_indistinguishable_placements_are_reported_as_a_tie():
    """RMSNorm in, ReLU MLP without bias: N_out(F(N_in x)) = N_out(F(x)), so peri and outnorm compute the same
    update; the tool says so (with the evidence) instead of picking one."""
    res = run(Options(factory=F("sandwich"), factory_args={"norm": "rms"}, **TINY))
    assert res["placement"]["label"] == "peri|outnorm"
    assert "told apart by no measurement" in res["placement"]["reason"]


def test_shared_weights_are_rebuilt_as_independent_instances():
    """nn.Linear in the batched protocol shares weights across instances, so the bootstrap resampled inputs of one
    network; the tool detects it and draws independent instances by re-seeding."""
    res = run(Options(factory=F("shared"), **TINY))
    assert res["design"]["independent_instances"] and any("rebuilt as independent" in n for n in res["notes"])
    assert res["design"]["protocol"] == "batched" and res["growth"]["bootstrap"]


def test_a_factory_ignoring_its_seed_gives_no_interval():
    res = run(Options(factory="designs.broken:same_every_seed", **TINY))
    assert res["design"]["effective_instances"] == 1 and res["growth"]["confidence"] is None
    assert any("ignores its seed" in n for n in res["notes"])


def test_one_instance_is_flagged():
    res = run(Options(placement="pre", **dict(TINY, instances=1)))
    assert any("--instances 1" in n for n in res["notes"])
    assert res["growth"]["confidence"] is None and not res["expected"]["available"]


def test_float32_blocks_are_converted_and_said_so():
    res = run(Options(factory=F("unstable"), **TINY))
    assert any("float64" in n and "float32" in n for n in res["notes"])


# ---- one-line errors, exit status 2 -----------------------------------------------------------------------------
def _fails(capsys, argv, match):
    with pytest.raises(SystemExit) as exc:
        main(argv + ["--quiet"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert match in err, err
    return err


SIZE = ["--d", "8", "--depth", "8", "--instances", "4", "--no-coord", "--dt-grid", "1"]


@pytest.mark.parametrize("fn,match", [
    ("raises", "raised ValueError: d must be a power of two"),
    ("type_error_inside", "raised TypeError"),
    ("positional_only", "must accept the keyword d"),
    ("float32_inside", "the tool runs float64"),
    ("returns_tuple", "returned a tuple"),
    ("shrinks", "to the same shape"),
    ("makes_nan", "NaN or inf"),
    ("raises_in_forward", "raised RuntimeError: this block is broken"),
    ("not_a_module", "must return a torch.nn.Module"),
])
def test_broken_factories_and_blocks_are_one_line_errors(capsys, tmp_path, fn, match):
    _fails(capsys, ["--factory", f"designs.broken:{fn}", "--out", str(tmp_path)] + SIZE, match)


@pytest.mark.parametrize("argv,match", [
    (["--factory", "no_colon_here"], "package.module:callable"),
    (["--factory", "no_such_module_xyz:make"], "PYTHONPATH"),
    (["--factory", "designs.broken:missing"], "no callable"),
    (["--placement", "sideways"], "--placement must be one of"),
    (["--module", "bert"], "--module must be one of"),
    (["--placement", "pre", "--factory", "designs.rezero:make_block"], "exactly one"),
    (["--placement", "pre", "--dt", "-1"], "dt must be > 0"),
    (["--placement", "pre", "--dt", "nan"], "dt must be finite"),
    (["--placement", "pre", "--depth", "2"], "depth must be >= 4"),
    (["--placement", "pre", "--d", "1"], "d must be >= 2"),
    (["--placement", "pre", "--B", "0.5"], "B must be > 1"),
    (["--placement", "pre", "--dt-grid", "0.1,x"], "comma-separated numbers"),
    (["--placement", "pre", "--dt-grid", "0.1,-1"], "dt_grid[1] must be > 0"),
    (["--placement", "pre", "--seed", "-1"], "seed must be >= 0"),
    (["--placement", "pre", "--train-steps", "-1"], "train_steps must be >= 0"),
    (["--placement", "pre", "--factory-arg", "gain"], "KEY=VALUE"),
    (["--placement", "pre", "--out", "/proc/verify-check-nope"], "is not writable"),
    (["--placement", "pre", "--json", "/proc/verify-check-nope/x.json"], "is not writable"),
    (["--placement", "pre", "--no-such-flag"], "unrecognized arguments"),
])
def test_bad_inputs_are_one_line_errors(capsys, argv, match):
    _fails(capsys, argv, match)


def test_unwritable_output_fails_before_the_work(capsys, monkeypatch):
    import verify.check.cli as cli

    monkeypatch.setattr(cli, "run", lambda opts: pytest.fail("the work started before the output was checked"))
    _fails(capsys, ["--placement", "pre", "--out", "/proc/verify-check-nope"], "is not writable")


def test_json_to_stdout_has_the_same_numbers(capsys, tmp_path):
    assert main(["--placement", "pre", "--quiet", "--out", str(tmp_path), "--json", "-"] + SIZE) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((tmp_path / "check.json").read_text())
    assert printed == saved and printed["growth"]["regime"] == saved["growth"]["regime"]


def test_listing_names_placements_modules_and_shipped_designs(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in ("peri", "torch-encoder", "gpt2", "verify.check.designs.dyt:make_block", "C1"):
        assert name in out


# ---- the other command lines of the suite (issue 14) --------------------------------------------------------------
def _main_fails(capsys, fn, argv, match):
    with pytest.raises(SystemExit) as exc:
        fn(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err and match in err.strip().splitlines()[-1], err


def test_verify_main_refuses_bad_seed_and_empty_only(capsys):
    from verify.__main__ import main as verify_main

    _main_fails(capsys, verify_main, ["--seed", "-1", "--only", "N1"], "seed must be an integer")
    _main_fails(capsys, verify_main, ["--only", ","], "names no theorem id")


def test_verify_lists_theorem_and_figure_ids(capsys):
    from verify.__main__ import main as verify_main
    from verify.figures.__main__ import main as figures_main

    assert verify_main(["--list"]) == 0 and "C1" in capsys.readouterr().out
    assert figures_main(["--list"]) == 0 and "k7_moments" in capsys.readouterr().out


def test_report_refuses_malformed_input_and_missing_cuda(capsys, tmp_path):
    from verify.engine.devices import available_devices
    from verify.report import main as report_main

    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    _main_fails(capsys, report_main, ["--from", str(bad), "--out", str(tmp_path)], "is not JSON records")
    bad.write_text('{"a": 1}')
    _main_fails(capsys, report_main, ["--from", str(bad), "--out", str(tmp_path)], "'theorems' list")
    if "cuda" not in available_devices():
        _main_fails(capsys, report_main, ["--device", "cuda", "--out", str(tmp_path)], "CUDA is not available")
