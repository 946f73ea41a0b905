"""Smoke test of the engine benchmark (python -m verify.bench --quick): structure, not speed.

No absolute timing is asserted (the machine is shared); only that every measurement exists and every ratio is a
positive finite number, and that the no-gmpy oracle run really used mpmath's pure-Python backend.
"""
from __future__ import annotations

import json
import math

import pytest

from verify import bench

ENGINE_KEYS = {"d", "instances", "tokens", "steps", "gflop", "engine_seconds", "engine_gflops", "bmm_gflops",
               "loop_gflops", "ratio_to_bmm", "speedup_over_loop"}


def positive_finite(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_quick_benchmark_reports_positive_finite_ratios(tmp_path, capsys):
    """`python -m verify.bench --quick --json PATH` prints the table and writes, for every (d, I) of the quick
    plan, positive finite GFLOP/s for engine, bmm ceiling and instance loop and their ratios, plus oracle times
    with the default backend and with MPMATH_NOGMPY=1 (backend 'python')."""
    import torch

    out = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    assert bench.main(["--quick", "--threads", "1", "--json", str(out)]) == 0
    assert torch.get_num_threads() == threads  # the benchmark restores the process-global thread count
    printed = capsys.readouterr().out
    assert "engine/bmm" in printed and "mpmath backend" in printed
    result = json.loads(out.read_text())
    assert result["quick"] is True
    plan = bench.QUICK
    assert [(r["d"], r["instances"]) for r in result["engine"]] == [(d, i) for d in plan["widths"]
                                                                   for i in plan["instances"]]
    for row in result["engine"]:
        assert set(row) == ENGINE_KEYS
        assert all(positive_finite(row[k]) for k in ENGINE_KEYS - {"d", "instances", "tokens", "steps"})
    assert len(result["oracle"]) == 2
    assert result["oracle"][1]["backend"] == "python"
    for row in result["oracle"]:
        assert positive_finite(row["seconds"]) and row["dps"] == 50


def test_flop_count_of_one_block():
    """One attention + MLP block on n tokens costs 8nd² + 4n²d + 4nd·4d FLOPs per instance (matmuls only)."""
    from verify.engine.zoo import StackConfig

    cfg = StackConfig(d=16, n_blocks=1)
    n = 5
    assert bench.stack_flops(cfg, 3, n) == 3 * (8 * n * 16 ** 2 + 4 * n * n * 16 + 4 * n * 16 * 64)


def test_bad_threads_is_refused():
    """--threads 0 is an argument error naming threads."""
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--threads", "0"])
