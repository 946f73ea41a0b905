"""The oracle's flint backend: the same 50-digit recursion on arb matrices, certified against the mpmath backend.

Skipped cleanly when python-flint (extra ``fast``; included in ``test``) is absent. The claims: on random instances
of every placement, norm and activation both backends agree to 1e-45 relative per row (each runs at mpmath's 169
bits, unit round-off 2^-169 ≈ 1.3e-51, and the ladder shows these instances lose ≤ ~5 digits to conditioning); the
precision ladder still certifies ≥ 45 digits on flint; a deliberately wrong flint run (tanh GELU, wrong placement)
disagrees far beyond that; bad inputs raise ValueErrors naming the parameter; ``backend="auto"`` falls back to
mpmath without flint.
"""
from __future__ import annotations

import math

import mpmath
import pytest

from verify.engine import oracle as oracle_mod
from verify.engine.oracle import (
    UndefinedNormError,
    gelu_tanh,
    oracle_forward,
    precision_ladder,
)
from verify.engine.zoo import Stack, StackConfig, sample_inputs

flint = pytest.importorskip("flint")

AGREEMENT = 1e-45

CASES = [
    dict(placement="post", norm="layer", activation="gelu"),
    dict(placement="pre", norm="rms", activation="relu"),
    dict(placement="peri", norm="layer", activation="gelu", final_norm=True),
    dict(placement="none", norm="layer", activation="gelu", causal=False),
    dict(placement="outnorm", norm="rms", activation="gelu", eps_out=1e-3),
    dict(placement="deepnorm", norm="layer", activation="relu"),
    dict(placement="mixln", norm="layer", activation="gelu", n_blocks=3),
    dict(placement="lns", norm="rms", activation="gelu", final_norm=True),
]


def instance(seed: int, **changes):
    fields = dict(d=8, n_blocks=2, n_heads=2, causal=True, bias_std=0.3, dt=0.7)
    fields.update(changes)
    cfg = StackConfig(**fields)
    stack = Stack(cfg, 1, seed=seed)
    return cfg, stack.instance_state(0), sample_inputs(cfg, 1, 3, seed=seed + 1)[0]


def worst_relative_row_difference(a, b) -> float:
    """max over states and rows of ‖a_row − b_row‖_∞ / ‖b_row‖_∞, at 80 digits."""
    worst = mpmath.mpf(0)
    with mpmath.workdps(80):
        mats_a = a.states + [a.output]
        mats_b = b.states + [b.output]
        for ma, mb in zip(mats_a, mats_b):
            for ra, rb in zip(ma, mb):
                scale = max(abs(v) for v in rb)
                worst = max(worst, max(abs(u - v) for u, v in zip(ra, rb)) / scale)
    return float(worst)


@pytest.mark.parametrize("case", CASES, ids=[c["placement"] for c in CASES])
def test_flint_and_mpmath_backends_agree_to_45_digits(case):
    """Both backends, same instance (random weights, biases, Δt = 0.7), 50 digits: every row of every state and of
    the output agrees to 1e-45 relative."""
    cfg, state, x = instance(seed=len(case["placement"]), **case)
    mp = oracle_forward(cfg, state, x, backend="mpmath")
    fl = oracle_forward(cfg, state, x, backend="flint")
    assert fl.dps == mp.dps == 50 and len(fl.states) == len(mp.states) == cfg.n_steps + 1
    assert worst_relative_row_difference(fl, mp) <= AGREEMENT


def test_precision_ladder_certifies_on_flint():
    """The 50- and 70-digit flint runs agree to ≥ 45 digits (the same certificate the mpmath backend gives), and
    flint's global precision is left as found."""
    cfg, state, x = instance(seed=3, placement="peri", final_norm=True)
    before = flint.ctx.prec
    lad = precision_ladder(cfg, state, x, backend="flint")
    assert flint.ctx.prec == before
    assert lad.digits >= 45 and lad.low.dps == 50 and lad.high.dps == 70


@pytest.mark.parametrize("wrong", ["tanh_gelu", "placement"])
def test_meta_wrong_flint_run_disagrees(wrong):
    """Meta-test: the agreement test can fail — flint with the tanh GELU, or with the pre rule on a peri
    instance, differs from the mpmath reference by far more than 1e-45."""
    cfg, state, x = instance(seed=4, placement="peri")
    mp = oracle_forward(cfg, state, x, backend="mpmath")
    if wrong == "tanh_gelu":
        fl = oracle_forward(cfg, state, x, backend="flint", gelu=gelu_tanh)
    else:
        fl = oracle_forward(cfg, state, x, backend="flint", rule=lambda c, k: "pre")
    assert worst_relative_row_difference(fl, mp) > 1e-6


def test_auto_uses_flint_and_falls_back_to_mpmath(monkeypatch):
    """backend='auto' gives the flint result when flint is importable and exactly the mpmath result when not."""
    cfg, state, x = instance(seed=5, placement="pre")
    fl = oracle_forward(cfg, state, x, backend="flint")
    mp = oracle_forward(cfg, state, x, backend="mpmath")
    assert oracle_forward(cfg, state, x).states == fl.states
    monkeypatch.setattr(oracle_mod, "flint_available", lambda: False)
    assert oracle_forward(cfg, state, x).states == mp.states
    with pytest.raises(ValueError, match=r"^backend"):
        oracle_forward(cfg, state, x, backend="flint")


def test_auto_with_a_custom_gelu_runs_mpmath():
    """An injected activation the flint backend does not know makes 'auto' use mpmath, and 'flint' refuse it."""
    cfg, state, x = instance(seed=6, placement="pre")

    def doubled(v):
        return 2 * oracle_mod.gelu_erf(v)

    auto = oracle_forward(cfg, state, x, gelu=doubled)
    assert auto.states == oracle_forward(cfg, state, x, gelu=doubled, backend="mpmath").states
    with pytest.raises(ValueError, match=r"^gelu"):
        oracle_forward(cfg, state, x, gelu=doubled, backend="flint")


@pytest.mark.parametrize("what, name", [("x_nan", "x0"), ("param_inf", r"steps\.0\.sublayer\.W1"),
                                        ("missing", "state"), ("x_width", "x0"), ("backend", "backend")])
def test_flint_bad_inputs_name_the_parameter(what, name):
    """Bad inputs to the flint backend raise ValueError whose message starts with the offending parameter."""
    cfg = StackConfig(d=4, n_blocks=1, placement="pre", sublayers=("mlp",))
    state = dict(Stack(cfg, 1, seed=0).instance_state(0))
    x = [[0.1, 0.2, 0.3, 0.5]]
    backend = "flint"
    if what == "x_nan":
        x = [[0.1, math.nan, 0.3, 0.5]]
    elif what == "param_inf":
        state["steps.0.sublayer.W1"] = state["steps.0.sublayer.W1"].clone()
        state["steps.0.sublayer.W1"][1, 2] = math.inf
    elif what == "missing":
        del state["steps.0.norm_in.gamma"]
    elif what == "x_width":
        x = [[0.1, 0.2, 0.3]]
    else:
        backend = "arb"
    with pytest.raises(ValueError, match=rf"^{name}"):
        oracle_forward(cfg, state, x, backend=backend)


def test_flint_refuses_0_over_0_norm():
    """ε = 0 and a constant row: undefined (0/0), the flint backend says so like the mpmath one."""
    cfg = StackConfig(d=4, n_blocks=1, placement="pre", eps=0.0, sublayers=("mlp",))
    with pytest.raises(UndefinedNormError, match=r"^x\b"):
        oracle_forward(cfg, Stack(cfg, 1, seed=0).instance_state(0), [[1.0, 1.0, 1.0, 1.0]], backend="flint")
