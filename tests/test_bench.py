"""The benchmark (python -m verify.bench): structure of its records, the peers' faithfulness, not speed.

No absolute timing and no speed ratio is asserted (the machine is shared; the measured ratios are in the README's
Benchmark section). What is asserted: every record exists with positive finite times, the torch.func peer computes
the engine's function (to the engine's own round-off bound, and a peer with the wrong placement does not), and the
loop peer shares the engine's weights.
"""
from __future__ import annotations

import json
import math

import pytest
import torch

from verify import bench
from verify.checks.oracle import roundoff_tolerance
from verify.engine.zoo import Stack, StackConfig, sample_inputs

RECORD_KEYS = {"placement", "d", "instances", "mode", "engine_s", "vmap_s", "loop_s", "bmm_s"}


def positive_finite(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_quick_benchmark_writes_every_record(tmp_path, capsys):
    """`python -m verify.bench --quick --json PATH` prints the table and writes, for every (placement, d, I) of
    the quick plan and both modes (fwd, fwdbwd), positive finite seconds for engine, vmap peer, loop and bmm
    ceiling, plus oracle times for mpmath on gmpy2, flint (when installed) and pure-Python mpmath, at 50 digits."""
    from verify.engine.oracle import flint_available

    out = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    assert bench.main(["--quick", "--json", str(out)]) == 0
    assert torch.get_num_threads() == threads  # the benchmark restores the process-global thread count
    printed = capsys.readouterr().out
    assert "vmap/engine" in printed and "mpmath-gmpy" in printed
    result = json.loads(out.read_text())
    assert result["quick"] is True and result["environment"]["threads"] == 1
    plan = bench.QUICK
    assert [(r["placement"], r["d"], r["instances"], r["mode"]) for r in result["records"]] == [
        (p, d, i, m) for p in plan["placements"] for d in plan["widths"] for i in plan["instances"]
        for m in bench.MODES]
    for row in result["records"]:
        assert RECORD_KEYS <= set(row)
        assert all(positive_finite(row[k]) for k in ("engine_s", "vmap_s", "loop_s", "bmm_s"))
        assert row["vmap_over_engine"] == row["vmap_s"] / row["engine_s"]
    backends = [r["backend"] for r in result["oracle"]]
    assert backends == ["mpmath-gmpy"] + (["flint"] if flint_available() else []) + ["mpmath-python"]
    for row in result["oracle"]:
        assert positive_finite(row["seconds"]) and row["dps"] == 50


@pytest.mark.parametrize("dt", [1.0, 0.7])
@pytest.mark.parametrize("placement", ["pre", "peri", "post", "none"])
def test_vmap_peer_computes_the_engines_function(placement, dt):
    """The torch.func ensemble of PeerStack (nn.Linear, nn.LayerNorm, same weights) equals the engine's output
    within twice the engine's own first-order round-off bound, instance by instance — the comparison is between
    two implementations of one function, not of two different amounts of work (Δt = 1, where both skip the
    1·F kernel, and Δt ≠ 1)."""
    cfg = StackConfig(d=8, n_blocks=2, placement=placement, n_heads=2, causal=True, bias_std=0.2, dt=dt)
    stack = Stack(cfg, 3, seed=5)
    x = sample_inputs(cfg, 3, 4, seed=6)
    fn, params = bench.vmap_ensemble(stack)
    tol = roundoff_tolerance(stack, x)[-1]  # (I, n)
    with torch.no_grad():
        err = (fn(params, x) - stack(x)).abs().amax(-1)
    assert bool((err <= 2 * tol).all()), (err, tol)


def test_meta_peer_with_wrong_placement_differs():
    """Meta-test: a peer built with the pre rule from a peri engine differs from it far beyond round-off, so the
    faithfulness test above can fail."""
    cfg = StackConfig(d=8, n_blocks=2, placement="peri", n_heads=2, causal=True, bias_std=0.2)
    stack = Stack(cfg, 2, seed=5)
    x = sample_inputs(cfg, 2, 4, seed=6)
    wrong = bench.peer_from_engine(stack, 0, placement="pre")
    tol = roundoff_tolerance(stack, x)[-1]
    with torch.no_grad():
        err = (wrong(x[0]) - stack(x)[0]).abs().amax(-1)
    assert bool((err > 1e6 * tol[0]).all())


def test_loop_stacks_share_the_engines_weights():
    """The loop peer's one-instance stacks are views of the engine's parameters (no copies) and reproduce its
    instances."""
    cfg = StackConfig(d=8, n_blocks=1, placement="peri", n_heads=2, causal=True, bias_std=0.2)
    stack = Stack(cfg, 3, seed=7)
    x = sample_inputs(cfg, 3, 4, seed=8)
    singles = bench._loop_stacks(stack)
    big = dict(stack.named_parameters())
    tol = roundoff_tolerance(stack, x)[-1]
    with torch.no_grad():
        for i, one in enumerate(singles):
            for name, p in one.named_parameters():
                assert p.data_ptr() == big[name][i:i + 1].data_ptr()
            assert bool(((one(x[i:i + 1])[0] - stack(x)[i]).abs().amax(-1) <= 2 * tol[i]).all())


def test_peer_refuses_what_it_does_not_model():
    """The peer covers LayerNorm post/pre/peri/none with GELU and biases; anything else is a ValueError naming it."""
    with pytest.raises(ValueError, match=r"^placement"):
        bench.peer_from_engine(Stack(StackConfig(d=4, placement="deepnorm"), 1, seed=0), 0)
    with pytest.raises(ValueError, match=r"^the peer covers"):
        bench.peer_from_engine(Stack(StackConfig(d=4, norm="rms"), 1, seed=0), 0)


def test_flop_count_of_one_block():
    """One attention + MLP block on n tokens costs 8nd² + 4n²d + 4nd·4d FLOPs per instance (matmuls only)."""
    cfg = StackConfig(d=16, n_blocks=1)
    n = 5
    assert bench.stack_flops(cfg, 3, n) == 3 * (8 * n * 16 ** 2 + 4 * n * n * 16 + 4 * n * 16 * 64)


def test_bad_threads_is_refused():
    """--threads 0 is an argument error naming threads."""
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--threads", "0"])


def test_profile_split_tells_matmul_kernels_from_the_rest():
    """profile_split attributes a bmm-only workload to matmul kernels and an elementwise-only one to the rest (so
    the README's matmul shares can come out either way), with total = matmul + other."""
    a = torch.randn(8, 32, 32, dtype=torch.float64)
    z = torch.randn(20000, dtype=torch.float64)
    split = bench.profile_split(dict(mm=lambda: torch.bmm(a, a), ew=lambda: torch.erf(z).exp()), rounds=2, calls=3)
    mm, ew = split["mm"], split["ew"]
    assert mm["matmul_s"] > 0.9 * mm["total_s"] and ew["matmul_s"] == 0.0 and ew["other_s"] > 0
    for row in split.values():
        assert row["total_s"] == pytest.approx(row["matmul_s"] + row["other_s"], rel=1e-12)


def test_quick_profile_writes_its_records(tmp_path):
    """`python -m verify.bench --profile --quick --json PATH` writes, for engine and vmap peer in both modes,
    matmul and other seconds and the matmul floor (vmap total / engine matmul), all positive and finite."""
    out = tmp_path / "profile.json"
    assert bench.main(["--profile", "--quick", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["profile"]
    assert [r["mode"] for r in rows] == list(bench.MODES)
    for r in rows:
        assert all(positive_finite(r[k]) for k in ("engine_matmul_s", "engine_other_s", "vmap_matmul_s",
                                                   "vmap_other_s", "matmul_floor"))
        assert r["matmul_floor"] >= r["profiled_vmap_over_engine"]


def test_plan_selection_refuses_what_the_plan_lacks():
    """--widths/--placements/--instances pick a subset of the plan; a value outside it is an error naming the key."""
    assert bench.select_plan(bench.FULL, widths=(16,))["widths"] == (16,)
    with pytest.raises(ValueError, match=r"^widths must be"):
        bench.select_plan(bench.FULL, widths=(32,))
    with pytest.raises(ValueError, match=r"^placements must be"):
        bench.select_plan(bench.FULL, placements=("post",))
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--widths", "x"])
