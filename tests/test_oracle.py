"""E1 — the float64 zoo forward pass equals the 50-digit mpmath recursion, and the oracle certifies itself.

The check (verify.checks.oracle.check_e1) compares every hidden-state row of verify.engine.zoo.Stack with the
independent mpmath recursion of verify.engine.oracle within a first-order round-off bound measured on the instance.
Meta-tests show the comparison can fail: an oracle with the wrong placement or with the tanh approximation of
GELU, and a float32 engine held to the float64 bound, must all fail it.
"""
from __future__ import annotations

import functools
import math
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
import pytest
import torch

from verify.checks.oracle import (
    PLACEMENTS,
    check_e1,
    mp_unit_roundoff,
    roundoff_tolerance,
    single_thread,
)
from verify.engine.oracle import (
    UndefinedNormError,
    compare_ladder,
    gelu_erf,
    gelu_tanh,
    oracle_forward,
    precision_ladder,
    step_rule,
)
from verify.engine.zoo import Stack, StackConfig, sample_inputs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread avoids OpenMP contention on the shared 2-core machine."""
    with single_thread():
        yield


def failed(tallies):
    return [t for t in tallies if not t.passed]


# ---- E1 itself ------------------------------------------------------------------------------------------------
def test_e1_float64_zoo_equals_50_digit_recursion(ctx):
    """E1: for every placement (hypothesis-drawn d ≤ 16, n ≤ 4, ≤ 8 steps, every knob), each row of each hidden
    state and the final-norm output of the float64 zoo is within the instance's round-off bound of the exact
    recursion, and the 50-digit oracle agrees with the 70-digit one within the same bound at 2^-169."""
    tallies = check_e1(ctx)
    assert [t.check for t in tallies[:len(PLACEMENTS)]] == [f"zoo == oracle, {p}" for p in PLACEMENTS]
    assert not failed(tallies), [t.summary() for t in failed(tallies)]
    assert all(t.cases >= 1 for t in tallies)
    ladder, witness = tallies[len(PLACEMENTS):]
    assert ladder.check.startswith("oracle precision ladder")
    assert ladder.numbers["min_agreement_digits"] >= 40  # 50 digits less what conditioning eats (≤ ~6 here)
    assert witness.kind == "witness" and witness.worst_ratio >= 1e3  # the bound would catch float32


# ---- meta-tests: the comparison can fail -----------------------------------------------------------------------
def peri_as_pre(cfg, k):
    rule = step_rule(cfg, k)
    return "pre" if rule == "peri" else rule


def test_meta_wrong_placement_oracle_fails(ctx):
    """Meta: an oracle that runs peri steps as pre steps (drops N_out) must fail E1 on peri stacks."""
    tallies = check_e1(ctx, oracle=functools.partial(oracle_forward, rule=peri_as_pre), placements=("peri",),
                       examples=2)
    peri = tallies[0]
    assert not peri.passed and peri.failures == peri.comparisons  # every row of every state is off


def test_meta_tanh_gelu_oracle_fails(ctx):
    """Meta: an oracle with the tanh approximation of GELU instead of the exact erf form must fail E1."""
    tallies = check_e1(ctx, oracle=functools.partial(oracle_forward, gelu=gelu_tanh), placements=("pre", "none"),
                       activations=("gelu",), examples=2)
    assert len(failed(tallies[:2])) == 2 and min(t.worst_error for t in tallies[:2]) > 1e3


def test_meta_float32_engine_fails_float64_tolerance(ctx):
    """Meta: the same zoo run in float32 (its weights and inputs the float32 numbers the oracle also receives)
    must exceed the float64 round-off bound — the bound is tight enough to see a loss of precision."""
    tallies = check_e1(ctx, dtype=torch.float32, placements=("post", "peri", "none", "deepnorm"), examples=2)
    assert len(failed(tallies[:4])) == 4
    assert min(t.worst_error for t in tallies[:4]) > 1e3  # float32 round-off is 2^29 ≈ 5e8 times float64's


# ---- the oracle on its own -------------------------------------------------------------------------------------
def tiny_none_state():
    """d = 2, one token; attention with W_q = W_k = 0 (uniform) and an MLP with ReLU: exact in rationals."""
    return {
        "steps.0.sublayer.W_q": [[0.0, 0.0], [0.0, 0.0]],
        "steps.0.sublayer.W_k": [[0.0, 0.0], [0.0, 0.0]],
        "steps.0.sublayer.W_v": [[0.5, -1.0], [2.0, 0.25]],
        "steps.0.sublayer.W_o": [[1.0, 0.0], [0.5, -2.0]],
        "steps.0.sublayer.b_o": [0.125, -0.5],
        "steps.1.sublayer.W1": [[1.0, -1.0, 0.5], [0.25, 2.0, -3.0]],
        "steps.1.sublayer.b1": [0.0, -0.75, 0.5],
        "steps.1.sublayer.W2": [[1.0, 2.0], [-0.5, 0.25], [3.0, -1.0]],
        "steps.1.sublayer.b2": [0.0, 1.0],
    }


def rational_none_forward(state, x, dt):
    """The none-placement recursion for the tiny state in exact rational arithmetic (uniform attention)."""
    F = {k: [[Fraction(a) for a in r] for r in v] if isinstance(v[0], list) else [Fraction(a) for a in v]
         for k, v in state.items()}
    rows = [[Fraction(a) for a in r] for r in x]

    def mm(a, w):
        return [[sum(ai * w[i][j] for i, ai in enumerate(r)) for j in range(len(w[0]))] for r in a]

    v = mm(rows, F["steps.0.sublayer.W_v"])
    mean_v = [sum(r[j] for r in v) / len(v) for j in range(2)]
    attn = mm([mean_v] * len(rows), F["steps.0.sublayer.W_o"])
    rows = [[a + Fraction(dt) * (b + c) for a, b, c in zip(r, o, F["steps.0.sublayer.b_o"])]
            for r, o in zip(rows, attn)]
    z = [[a + b for a, b in zip(r, F["steps.1.sublayer.b1"])] for r in mm(rows, F["steps.1.sublayer.W1"])]
    h = [[max(a, Fraction(0)) for a in r] for r in z]
    out = [[a + b for a, b in zip(r, F["steps.1.sublayer.b2"])] for r in mm(h, F["steps.1.sublayer.W2"])]
    return [[a + Fraction(dt) * b for a, b in zip(r, o)] for r, o in zip(rows, out)]


def test_oracle_matches_exact_rational_recursion():
    """The oracle's none-placement recursion (uniform attention, ReLU MLP) equals exact rational arithmetic to
    10^-48 (a 50-digit run rounds each operation at 2^-169 ≈ 1e-51, a few dozen operations here)."""
    cfg = dict(d=2, n_blocks=1, placement="none", n_heads=1, sublayers=("attn", "mlp"), norm="layer", eps=0.0,
               eps_out=None, activation="relu", causal=False, dt=0.375, bias=True, final_norm=False,
               mixln_post_blocks=None, deepnorm_alpha=None)
    x = [[1.5, -0.25], [0.75, 2.0], [-1.0, 0.5]]
    result = oracle_forward(cfg, tiny_none_state(), x)
    exact = rational_none_forward(tiny_none_state(), x, 0.375)
    for row_o, row_e in zip(result.states[-1], exact):
        for a, b in zip(row_o, row_e):
            assert abs(a - mpmath.mpf(b.numerator) / b.denominator) <= 1e-48 * max(1, abs(float(b)))


def test_gelu_is_the_exact_erf_form():
    """gelu_erf(x) = x·Φ(x) at 50 digits (checked against mpmath.ncdf), and the tanh form differs from it."""
    with mpmath.workdps(50):
        for x in ("-3.5", "-1", "0.001", "1", "2.25"):
            x = mpmath.mpf(x)
            assert abs(gelu_erf(x) - x * mpmath.ncdf(x)) <= mpmath.mpf(10) ** -48
        assert abs(gelu_erf(mpmath.mpf(1)) - gelu_tanh(mpmath.mpf(1))) > 1e-5


def test_precision_ladder_agrees_to_45_digits_and_leaves_precision_alone():
    """The 50- and 70-digit runs of a benign instance agree to ≥ 45 digits; global mpmath precision unchanged."""
    cfg = StackConfig(d=6, n_blocks=2, placement="peri", n_heads=2, causal=True, bias_std=0.3, final_norm=True)
    stack = Stack(cfg, 2, seed=5)
    x = sample_inputs(cfg, 2, 3, seed=6)
    before = mpmath.mp.dps
    lad = precision_ladder(cfg, stack.instance_state(1), x[1])
    assert mpmath.mp.dps == before
    assert lad.digits >= 45 and lad.low.dps == 50 and lad.high.dps == 70
    with pytest.raises(ValueError, match=r"^hi\b"):
        compare_ladder(lad.high, lad.low)


def test_ladder_bound_uses_mpmath_unit_roundoff():
    """The ladder's unit round-off at 50 digits is 2^-169 (mpmath's 169-bit mantissa), below 10^-50."""
    assert mp_unit_roundoff(50) == 2.0 ** -169 and mp_unit_roundoff(50) < 1e-50


def test_oracle_refuses_0_over_0_norm():
    """ε = 0 and a constant row: the recursion is undefined (0/0), and the oracle says so instead of guessing."""
    cfg = StackConfig(d=4, n_blocks=1, placement="pre", eps=0.0, sublayers=("mlp",))
    stack = Stack(cfg, 1, seed=0)
    with pytest.raises(UndefinedNormError, match=r"^x\b"):
        oracle_forward(cfg, stack.instance_state(0), [[1.0, 1.0, 1.0, 1.0]])


def test_oracle_leaves_global_precision_on_error():
    """A failing oracle run does not leak its working precision."""
    cfg = StackConfig(d=4, n_blocks=1, placement="pre", eps=0.0, sublayers=("mlp",))
    before = mpmath.mp.dps
    with pytest.raises(ValueError):
        oracle_forward(cfg, Stack(cfg, 1, seed=0).instance_state(0), [[1.0, 1.0, 1.0, 1.0]], dps=60)
    assert mpmath.mp.dps == before


@pytest.mark.parametrize("what, name", [
    ("x_nan", "x0"), ("x_width", "x0"), ("missing", "state"), ("param_nan", r"steps\.0\.sublayer\.W1"),
    ("dps", "dps"), ("placement", "placement"), ("rule", "rule"), ("state_type", "state"),
])
def test_oracle_bad_inputs_name_the_parameter(what, name):
    """Bad inputs to the oracle raise ValueError whose message starts with the offending parameter."""
    cfg = StackConfig(d=4, n_blocks=1, placement="pre", sublayers=("mlp",))
    state = Stack(cfg, 1, seed=0).instance_state(0)
    x = [[0.1, 0.2, 0.3, 0.5]]
    kw = {}
    if what == "x_nan":
        x = [[0.1, math.nan, 0.3, 0.5]]
    elif what == "x_width":
        x = [[0.1, 0.2, 0.3]]
    elif what == "missing":
        state = {k: v for k, v in state.items() if not k.endswith("norm_in.gamma")}
    elif what == "param_nan":
        state = dict(state)
        state["steps.0.sublayer.W1"] = state["steps.0.sublayer.W1"].clone()
        state["steps.0.sublayer.W1"][0, 0] = math.nan
    elif what == "dps":
        kw["dps"] = 10
    elif what == "placement":
        cfg = {**cfg.__dict__, "placement": "middle"}
    elif what == "rule":
        kw["rule"] = lambda c, k: "sideways"
    elif what == "state_type":
        state = [1, 2, 3]
    with pytest.raises(ValueError, match=rf"^{name}"):
        oracle_forward(cfg, state, x, **kw)


def test_roundoff_tolerance_needs_plain_instance_batch():
    """The round-off model works on (I, n, d) inputs; extra batch dims are refused naming x."""
    cfg = StackConfig(d=4)
    stack = Stack(cfg, 2, seed=0)
    with pytest.raises(ValueError, match=r"^x\b"):
        roundoff_tolerance(stack, sample_inputs(cfg, 2, 3, seed=1, batch=(2,)))


def test_roundoff_tolerance_scales_with_unit_roundoff_and_grows_with_depth():
    """The bound is linear in u, zero at X_0, and non-decreasing along a none-placement stack (errors accumulate)."""
    cfg = StackConfig(d=4, n_blocks=3, placement="none", weight_scale=0.5)
    stack = Stack(cfg, 2, seed=0)
    x = sample_inputs(cfg, 2, 3, seed=1)
    tol = roundoff_tolerance(stack, x).numpy()
    tol2 = roundoff_tolerance(stack, x, unit_roundoff=2.0 ** -52).numpy()
    assert np.all(tol[0] == 0) and np.all(tol[1:] > 0)
    np.testing.assert_allclose(tol2, 2 * tol, rtol=1e-12)  # γ_m = mu/(1-mu) is linear in u to 1e-13 here
    assert np.all(np.diff(tol.max(axis=(1, 2))) >= 0)


def test_oracle_module_does_not_import_torch():
    """The oracle is independent of the engine: importing verify.engine.oracle pulls in mpmath, not torch."""
    code = "import sys, verify.engine.oracle; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
