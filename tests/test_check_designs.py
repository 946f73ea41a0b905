"""Issue 10 — ``verify.check`` on real architectures: plain modules, library blocks, the residual identity, the
coordinate check, the JSON and the plots.

Plain single-model modules become independent instances (``torch.func.stack_module_state`` + ``vmap``, or a loop:
the same numbers); the shipped designs (DyT, B2T, batched protocol) and from-scratch ones (tests/designs: nGPT-style,
pre-LN with attention, an unstable no-norm block) get the regime and placement their construction implies; library
blocks (``torch.nn.TransformerEncoderLayer`` post/pre, and with ``transformers`` installed GPT-2 and Llama) are
recognised as what they are. The residual identity holds where the hooked module's output is what is added, and
fails — as a check that can fail must — where a norm sits between (sandwich, post-LN, nGPT) or Δt is wrong.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from verify.check.cli import main
from verify.check.core import Options, run
from verify.check.design import Design
from verify.check.layers import probe_input, stack_instances, zoo_blocks
from verify.check.residual import check as residual_check
from verify.engine.zoo import Stack, StackConfig

TESTS = Path(__file__).resolve().parent
TINY = dict(d=8, depth=8, instances=8, n_tokens=3, dt_grid=(1.0,))


@pytest.fixture(autouse=True)
def _designs_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))


@pytest.mark.parametrize("factory,regime,placement", [
    ("verify.check.designs.dyt:make_block", "polynomial", "pre"),      # tanh saturates: bounded update, F3
    ("verify.check.designs.b2t:make_block", "bounded", "post"),        # a final LayerNorm on every row, F1
    ("designs.ngpt_style:make_block", "bounded", "post"),              # rows on the unit sphere
    ("designs.unstable:make_block", "exponential", "none"),            # no norm, doubled branch, F4
])
def test_designs_get_the_regime_and_placement_of_their_construction(factory, regime, placement):
    res = run(Options(factory=factory, **dict(TINY, d=16, depth=24, instances=16)))
    assert res["growth"]["regime"] == regime, res["growth"]
    assert res["placement"]["label"] == placement, res["placement"]["reason"]
    assert res["expected"]["verdict"] == "PASS" and res["theory"]["agrees"]


def test_plain_modules_run_as_independent_instances_vmap_and_loop_agree():
    """stack_module_state + vmap computes what a loop over the instances computes, and the instances differ."""
    import designs.prenorm as prenorm

    modules = []
    for i in range(4):
        torch.manual_seed(i)
        modules.append(prenorm.make_block(8, i).to(torch.float64))
    x = probe_input(4, 3, 8, 0)
    fast = stack_instances(modules, x, "prenorm")
    slow = stack_instances(modules, x, "prenorm", mode="loop")
    assert fast.mode == "vmap" and slow.mode == "loop"
    with torch.no_grad():
        a, b = fast(x), slow(x)
        same = fast(x[:1].expand_as(x).contiguous())
    assert torch.allclose(a, b, rtol=1e-12, atol=1e-13)
    assert not torch.allclose(same[0], same[1])  # independent weights: one input, different outputs
    assert fast.step_names == ("attention_step", "mlp_step") and len(fast.matrix_parameters()) == 4


@pytest.mark.parametrize("module,label", [("torch-encoder", "post"), ("torch-encoder-prenorm", "pre")])
def test_torch_transformer_encoder_layer_is_recognised(module, label):
    res = run(Options(module=module, heads=2, **TINY))
    assert res["placement"]["label"] == label, res["placement"]["reason"]
    assert res["design"]["steps_per_block"] == ["attention_step", "mlp_step"]
    assert res["expected"]["verdict"] == "PASS"
    expected_identity = "holds" if label == "pre" else "fails"  # post-LN: the sum is normalised after the add
    assert res["residual_identity"]["status"] == expected_identity, res["residual_identity"]["summary"]


def test_library_block_matches_the_library_forward():
    """The exposed steps compose to nn.TransformerEncoderLayer's own forward (slow path), to round-off."""
    from verify.check.library import torch_encoder

    for norm_first in (False, True):
        block = torch_encoder(8, 0, n_heads=2, norm_first=norm_first)
        x = probe_input(2, 5, 8, 1)
        assert torch.allclose(block(x), block.layer(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("module,label", [("gpt2", "pre"), ("llama", "pre")])
def test_transformers_blocks_are_recognised(module, label):
    pytest.importorskip("transformers")
    res = run(Options(module=module, heads=2, **dict(TINY, d=16)))
    assert res["placement"]["label"] == label, res["placement"]["reason"]
    assert res["residual_identity"]["status"] == "holds", res["residual_identity"]["summary"]
    assert res["expected"]["verdict"] == "PASS"


def test_progress_bar_reports_the_phases():
    import io

    from verify.check.core import Progress

    buf = io.StringIO()
    bar = Progress(True, total=3, file=buf)
    bar.phase("measuring")
    bar.tick(3)
    bar.close()
    assert "measuring" in buf.getvalue() and "/3" in buf.getvalue()


def test_transformers_blocks_without_the_package_are_a_clear_error(monkeypatch):
    from verify.check.contract import ContractError

    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    with pytest.raises(ContractError, match="optional package 'transformers'"):
        Design(module="gpt2")


# ---- the residual-contribution identity --------------------------------------------------------------------------
def _zoo(placement, dt=1.0):
    cfg = StackConfig(d=8, n_blocks=2, placement=placement, sublayers=("attn", "mlp"), dt=dt)
    return zoo_blocks(Stack(cfg, 4, seed=0)), probe_input(4, 3, 8, 0)


@pytest.mark.parametrize("placement,status", [("pre", "holds"), ("peri", "holds"), ("none", "holds"),
                                              ("post", "fails")])
def test_residual_identity_on_the_zoo(placement, status):
    """What is added equals Δt × ResidualStep.branch for the residual placements; post normalises the sum."""
    layers, x = _zoo(placement, dt=0.3)
    assert residual_check(layers, x, None)["status"] == status


def test_residual_identity_fails_with_a_wrong_dt():
    """Meta-test: the same zoo pre stack, its branch reported with Δt = 0.3 while the stream receives 0.6 × it."""
    layers, x = _zoo("pre", dt=0.6)
    for block in layers:
        for step in block.steps:
            step.dt = 0.6
    res = residual_check(layers, x, None)
    assert res["status"] == "holds"
    for block in layers:
        block.reported_branch = lambda k, x, b=block: (0.3, b.steps[k].branch(x))
    assert residual_check(layers, x, None)["status"] == "scaled"


def test_residual_identity_through_hooks_on_user_modules():
    """Hooks on a pre-LN block's attn and mlp see what is added; on a sandwich block the mlp's output is not."""
    pre = run(Options(factory="designs.prenorm:make_block", **TINY))["residual_identity"]
    assert pre["status"] == "holds" and "attn" in pre["per_layer"][0][0]["source"]
    sandwich = run(Options(factory="designs.sandwich:make_block", **TINY))["residual_identity"]
    assert sandwich["status"] == "fails" and "hooks there misreport" in sandwich["summary"]
    hooked = run(Options(factory="designs.sandwich:make_block", branch_hooks=("norm_out",), **TINY))
    assert hooked["residual_identity"]["status"] == "holds"  # the right hook: the norm after the MLP


# ---- output people look at ----------------------------------------------------------------------------------------
def test_coordinate_check_json_and_plots(tmp_path, capsys):
    argv = ["--placement", "peri", "--d", "8", "--depth", "8", "--instances", "8", "--tokens", "3", "--dt-grid", "1",
            "--coord-widths", "8,16", "--coord-depths", "4", "--train-steps", "5", "--quiet", "--out", str(tmp_path),
            "--json", str(tmp_path / "result.json")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    data = json.loads((tmp_path / "result.json").read_text())
    assert data == json.loads((tmp_path / "check.json").read_text())
    coord = data["coord_check"]
    assert [(r["d"], r["depth"]) for r in coord["configs"]] == [(8, 8), (16, 8), (8, 4)]
    assert all("trained" in r and r["init"]["expected_rms"] for r in coord["configs"])
    assert coord["checked"] == 6 and coord["verdict"] in ("PASS", "FAIL")
    for name in ("check.png", "coord.png"):
        assert (tmp_path / name).stat().st_size > 5000
    for line in ("forward growth:", "placement:", "expected curve", "residual identity:", "criterion",
                 "coordinate check", "after 5 training steps", "bound (any-weights"):
        assert line in out, line
    assert data["advice"]["lines"] and all(f"advice: {line}" in out for line in data["advice"]["lines"])  # issue 9


@pytest.mark.slow
def test_command_line_with_a_user_factory_on_pythonpath(tmp_path):
    """The documented contract: a factory found on PYTHONPATH, exit 0, the printout, and a stderr free of
    progress output when it is not a terminal (the one-line errors are tested in test_check_contract.py)."""
    env = dict(os.environ, PYTHONPATH=str(TESTS), TORCH_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "verify.check", "--d", "8", "--depth", "4", "--instances", "4", "--no-coord",
           "--dt-grid", "1", "--out", str(tmp_path)]
    ok = subprocess.run(cmd + ["--factory", "designs.rezero:make_block"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "identity-at-init" in ok.stdout and "wrote" in ok.stdout and not ok.stderr.strip()
