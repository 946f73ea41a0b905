"""theory.witnesses — the gaps the mutation run found (issue 11 §1), each closed against an independent value.

Three kinds of independent value are used, never the spec's own ``expected_row_norms`` alone:
- the zoo (``verify.engine.zoo.Stack`` in float64 via ``load_witness``): a torch implementation that shares no
  code with the construction, run on the spec and compared with the spec's predicted row norms;
- hand-derived trajectories of the *documented* witnesses (the numbers in the docstrings of theory/witnesses.py
  and docs/theorems/F1-F4.md), worked out in closed form in this file;
- the documented domain: each input check is hit on the wrong side (a ValueError naming the parameter) and on the
  boundary (the smallest admitted value builds a witness whose stack run matches its prediction).
The hypothesis strategy draws every construction parameter away from its default (placement, width, heads,
tokens, blocks, sublayer pattern, Δt per step, γ_in, γ_out, λ, w₁, w₂, ρ_h, w_O, biases, row scales, norm,
activation, MLP kind, signed batch).

Tolerances: rtol 1e-12 between the stack run and a prediction: ≤ 12 residual steps at d ≤ 12, each a few dozen
float64 operations on numbers ≤ 1e7 (error ≲ 100 ulp ≈ 2e-14 relative); GELU with the odd MLP is exact in exact
arithmetic (φ(t) − φ(−t) = t) and torch's erf GELU keeps that to a few ulp of t.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from theory import witnesses as wt
from verify.engine.witness_loader import load_witness
from verify.engine.zoo import StackConfig

RTOL = 1e-12
SQ8 = math.sqrt(8.0)


def _run(spec) -> np.ndarray:
    """Row norms of the zoo's trajectory for a spec, shape (K+1, *x0.shape[:-1])."""
    stack, x = load_witness(spec)
    with torch.no_grad():
        _, states = stack(x, trajectory=True)
    return np.stack([s.norm(dim=-1).numpy() for s in states])


def _assert_run_matches(spec, expected=None):
    meas = _run(spec)
    np.testing.assert_allclose(meas, spec["expected_row_norms"], rtol=RTOL)
    if expected is not None:
        np.testing.assert_allclose(spec["expected_row_norms"], expected, rtol=RTOL)


# ---- the aligned direction ------------------------------------------------------------------------------------------
def test_aligned_direction_is_the_documented_alternating_vector():
    """s = (+1, −1, +1, …): starts with +1 (the docstring's and F1-F4.md's convention)."""
    np.testing.assert_array_equal(wt.aligned_direction(6), [1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
    np.testing.assert_array_equal(wt.aligned_direction(2), [1.0, -1.0])


# ---- the documented default witnesses, worked out by hand -----------------------------------------------------------
def _expand(traj_per_row, shape):
    """Broadcast a (K+1,) or (K+1, I) trajectory to (K+1, *shape)."""
    t = np.asarray(traj_per_row, dtype=float)
    return np.broadcast_to(t.reshape(t.shape + (1,) * (len(shape) - t.ndim + 1)), (t.shape[0],) + shape)


@pytest.mark.parametrize("placement, traj", [
    # defaults: d = 8, 3 tokens, 2 blocks of (attn, mlp), Δt = 1, γ_in = γ_out = 1, λ = 1, w₁ = w₂ = w_O = 1, two
    # heads with ρ = (1, 1) (‖ρ‖ = √2), no biases, rows c = 1 (‖x_0‖ = √8). Attention gain at radius r: √2·r;
    # one-sided MLP gain: r.
    ("pre", [SQ8, SQ8 + 4, 2 * SQ8 + 4, 2 * SQ8 + 8, 3 * SQ8 + 8]),          # r = γ_in√d = √8 every step
    ("lns", [SQ8, SQ8 + 4, 2 * SQ8 + 4, 2 * SQ8 + 4 + 2 * math.sqrt(2), 2 * SQ8 + 6 + 2 * math.sqrt(2)]),  # r/√ℓ
    ("peri", [SQ8 * (k + 1) for k in range(5)]),                               # + γ_out√d per step
    ("outnorm", [SQ8 * (k + 1) for k in range(5)]),
    ("none", [SQ8, SQ8 * (1 + math.sqrt(2)), 2 * SQ8 * (1 + math.sqrt(2)), 2 * SQ8 * (1 + math.sqrt(2)) ** 2,
              4 * SQ8 * (1 + math.sqrt(2)) ** 2]),                            # M ← M + G(M)
])
def test_aligned_witness_defaults_follow_the_hand_derived_trajectory(placement, traj):
    spec = wt.aligned_witness(placement)
    assert spec["x0"].shape == (1, 3, 8)
    _assert_run_matches(spec, _expand(traj, (1, 3)))


def test_aligned_witness_uses_the_zoos_default_mlp_width():
    """The witness is a standard stack: its MLP width is the zoo's default (4d), at every d."""
    for d in (4, 10):
        spec = wt.aligned_witness("pre", d=d, n_heads=1)
        assert spec["config"]["d_mlp"] == StackConfig(d=d).hidden
        assert spec["params"]["steps.1.sublayer.W1"].shape == (1, d, StackConfig(d=d).hidden)


def test_f2_default_witness_is_the_documented_one():
    """f2 defaults: rows c = (1, 2, 5)·s, ± batch, Δt = (2, 0.5, 0.25, 0.25), γ_out = 0.7, three output scales:
    ‖x_k,i‖ = c_i√8 + 0.7√8·(Δt_0 + … + Δt_{k−1}) (F1-F4.md: t₁ = 2 > 1, t₄ = 3 < 4)."""
    spec = wt.f2_peri_witness()
    assert spec["x0"].shape == (3, 2, 3, 8)
    t = np.array([0.0, 2.0, 2.5, 2.75, 3.0])
    c = np.array([1.0, 2.0, 5.0])
    expected = SQ8 * (c[None, :] + 0.7 * t[:, None])  # (K+1, n)
    _assert_run_matches(spec, np.broadcast_to(expected[:, None, None, :], (5, 3, 2, 3)))


def test_f3_default_witness_is_the_documented_one():
    """f3 (docstring): w₁ = 1.5, b₁ = 0.3, w₂ = 0.9, b₂ = 0.2, ρ = (0.5, 2), w_O = 1.1, b_O = 0.1, γ = 1.3,
    Δt = (0.5, 2, 0.25, 1.5), λ ∈ {1, 10, 100, 1000} (F1-F4.md), rows c = (1, 3, 1): each step adds Δt·λ·M at
    r = γ√d, M = 1.1·‖ρ‖·r + 0.1 (attention) or 0.9(1.5 r + 0.3) + 0.2 (MLP)."""
    spec = wt.f3_pre_witness()
    assert spec["x0"].shape == (4, 3, 8)
    r = 1.3 * SQ8
    m_attn = 1.1 * math.sqrt(0.25 + 4.0) * r + 0.1
    m_mlp = 0.9 * (1.5 * r + 0.3) + 0.2
    inc = np.cumsum([0.0, 0.5 * m_attn, 2.0 * m_mlp, 0.25 * m_attn, 1.5 * m_mlp])
    lam = np.array([1.0, 10.0, 100.0, 1000.0])
    c = np.array([1.0, 3.0, 1.0])
    expected = SQ8 * c[None, None, :] + inc[:, None, None] * lam[None, :, None]
    _assert_run_matches(spec, expected)


def test_f4_default_witness_is_the_documented_one():
    """f4 (docstring): 6 blocks, Δt = 0.5, λ = (0.5, 1, 2), unit weights, ‖ρ‖ = 1, no bias, c = 1:
    M_k = (1 + Δt λ)^k·√8 over the K = 12 steps."""
    spec = wt.f4_none_witness()
    k = np.arange(13)[:, None]
    lam = np.array([0.5, 1.0, 2.0])[None, :]
    _assert_run_matches(spec, _expand(SQ8 * (1 + 0.5 * lam) ** k, (3, 3)))


def test_f1_default_witness_is_the_documented_one():
    """f1: X0 = input_scales[i]·G, G the seed-0 standard Gaussian (n, d) = (3, 8), scales (1e-4, 1e-2, 1, 1e2),
    γ = 1.5, ε = 1e-5, 2 post blocks, Δt = 1 (docstring and F1-F4.md)."""
    spec = wt.f1_post_witness()
    g = np.random.default_rng(0).standard_normal((3, 8))
    scales = [1e-4, 1e-2, 1.0, 1e2]
    np.testing.assert_array_equal(spec["x0"], np.stack([s * g for s in scales]))
    cfg = spec["config"]
    assert (cfg["d"], cfg["n_blocks"], cfg["gamma"], cfg["eps"], cfg["dt"], cfg["placement"], cfg["norm"]) == (
        8, 2, 1.5, 1e-5, 1.0, "post", "layer")


def test_f1_input_scales_multiply_the_gaussian():
    """Non-default scales and seed: instance i is scales[i]·G exactly (powers of 2: no rounding)."""
    spec = wt.f1_post_witness(d=4, n_tokens=2, input_scales=(0.25, 4.0), seed=3)
    g = np.random.default_rng(3).standard_normal((2, 4))
    np.testing.assert_array_equal(spec["x0"], np.stack([0.25 * g, 4.0 * g]))


# ---- non-default constructions against the stack -------------------------------------------------------------------
@pytest.mark.parametrize("placement", ["pre", "lns", "none"])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_odd_mlp_outside_peri_keeps_the_signed_batch_mirrored(placement, activation):
    """The odd MLP (both units ±ŝ) with a ± batch under pre/lns/none, where the module's output is not renormalised:
    the −X0 half must follow the same row norms as X0, and the odd gain λw₁w₂r must match the stack."""
    spec = wt.aligned_witness(placement, d=6, n_tokens=2, n_blocks=2, n_heads=3, sublayers=("mlp", "attn", "mlp"),
                              dt=(0.5, 1.5, 0.75, 1.25, 0.3, 2.0), activation=activation, mlp="odd",
                              gamma_in=1.7, out_scales=(0.6, 3.0), w1=1.4, w2=0.45, w_o=0.8,
                              head_gains=(0.5, 1.0, 2.0), row_scales=(1.3,), signed_batch=True)
    assert spec["notes"]["exact"]
    meas = _run(spec)
    np.testing.assert_allclose(meas, spec["expected_row_norms"], rtol=RTOL)
    np.testing.assert_allclose(meas[:, :, 1], meas[:, :, 0], rtol=RTOL)


def test_odd_mlp_gain_is_linear_in_the_radius_by_hand():
    """mlp-only 'none' stack with the odd MLP: M_{k+1} = (1 + Δt λ w₁ w₂) M_k, by hand."""
    spec = wt.aligned_witness("none", d=4, n_tokens=1, n_blocks=3, n_heads=1, sublayers=("mlp",), dt=0.5,
                              mlp="odd", out_scales=(2.0,), w1=1.5, w2=0.5, row_scales=(2.0,))
    expected = [4.0 * (1 + 0.5 * 2.0 * 1.5 * 0.5) ** k for k in range(4)]
    _assert_run_matches(spec, _expand(expected, (1, 1)))


def test_exact_flag_is_true_for_relu_or_the_odd_mlp_only():
    assert wt.aligned_witness("pre", activation="relu", mlp="one-sided")["notes"]["exact"] is True
    assert wt.aligned_witness("pre", activation="gelu", mlp="odd")["notes"]["exact"] is True
    assert wt.aligned_witness("pre", activation="relu", mlp="odd")["notes"]["exact"] is True
    assert wt.aligned_witness("pre", activation="gelu", mlp="one-sided")["notes"]["exact"] is False


@st.composite
def aligned_cases(draw):
    placement = draw(st.sampled_from(wt.ALIGNED_PLACEMENTS))
    d = draw(st.sampled_from([2, 4, 6, 12]))
    n_heads = draw(st.sampled_from([h for h in (1, 2, 3, 6) if d % h == 0 and h <= d // 2 or h == 1]))
    sublayers = draw(st.sampled_from([("attn", "mlp"), ("mlp",), ("attn",), ("mlp", "attn", "attn")]))
    n_blocks = draw(st.integers(1, 3))
    n_steps = n_blocks * len(sublayers)
    pos = st.floats(0.2, 3.0)
    dt = tuple(draw(st.lists(pos, min_size=n_steps, max_size=n_steps)))
    mlp = draw(st.sampled_from(["one-sided", "odd"]))
    signed = mlp == "odd" and draw(st.booleans())
    activation = draw(st.sampled_from(["relu", "gelu"])) if mlp == "odd" else "relu"
    biases = st.floats(0.05, 1.0)
    b1, b2 = (0.0, 0.0) if mlp == "odd" else (draw(biases), draw(biases))
    b_o = 0.0 if signed else draw(biases)
    n_tokens = draw(st.integers(1, 4))
    rows = (draw(pos),) if placement == "none" else tuple(draw(st.lists(pos, min_size=1, max_size=3)))
    return placement, dict(d=d, n_tokens=n_tokens, n_blocks=n_blocks, n_heads=n_heads, sublayers=sublayers, dt=dt,
                           norm=draw(st.sampled_from(["layer", "rms"])), activation=activation, mlp=mlp,
                           gamma_in=draw(pos), gamma_out=draw(pos),
                           out_scales=tuple(draw(st.lists(st.floats(0.1, 5.0), min_size=1, max_size=3))),
                           w1=draw(pos), w2=draw(pos), w_o=draw(pos),
                           head_gains=tuple(draw(st.lists(pos, min_size=n_heads, max_size=n_heads))),
                           b1=b1, b2=b2, b_o=b_o, row_scales=rows, signed_batch=signed, seed=draw(st.integers(0, 99)))


@settings(max_examples=25, deadline=None)
@given(aligned_cases())
def test_aligned_witness_with_every_parameter_off_default_matches_the_stack(case):
    """Any member of the aligned family: the zoo's trajectory equals the construction's prediction."""
    placement, kw = case
    spec = wt.aligned_witness(placement, **kw)
    assert spec["notes"]["exact"]
    _assert_run_matches(spec)


# ---- domain: the wrong side names the parameter, the boundary is admitted -------------------------------------------
@pytest.mark.parametrize("call, match", [
    (lambda: wt.aligned_witness("pre", out_scales=()), "^out_scales must be a non-empty"),
    (lambda: wt.aligned_witness("pre", out_scales=[[1.0, 2.0]]), "^out_scales must be a non-empty"),
    (lambda: wt.aligned_witness("pre", row_scales=[]), "^row_scales must be a non-empty"),
    (lambda: wt.aligned_witness("pre", sublayers="attn"), "^sublayers"),
    (lambda: wt.aligned_witness("pre", sublayers=()), "^sublayers"),
    (lambda: wt.aligned_witness("pre", sublayers=("attn", "ffn")), "^sublayers"),
    (lambda: wt.aligned_witness("pre", signed_batch=True, mlp="one-sided"), "^signed_batch"),
    (lambda: wt.aligned_witness("pre", signed_batch=True, mlp="odd", b_o=0.1), "^signed_batch"),
    (lambda: wt.aligned_witness("pre", mlp="odd", b1=0.1), "^b1 and b2"),
    (lambda: wt.aligned_witness("pre", mlp="odd", b2=0.1), "^b1 and b2"),
    (lambda: wt.aligned_witness("pre", n_tokens=0), "^n_tokens"),
    (lambda: wt.aligned_witness("pre", n_blocks=0), "^n_blocks"),
    (lambda: wt.aligned_witness("pre", n_heads=0), "^n_heads"),
    (lambda: wt.f1_post_witness(n_tokens=0), "^n_tokens"),
    (lambda: wt.f1_post_witness(n_blocks=0), "^n_blocks"),
    (lambda: wt.f2_peri_witness(n_heads=0), "^n_heads"),
    (lambda: wt.f3_pre_witness(n_heads=0), "^n_heads"),
    (lambda: wt.f4_none_witness(n_heads=0), "^n_heads"),
])
def test_bad_witness_inputs_raise_naming_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_signed_batch_is_admitted_with_the_odd_mlp_and_no_output_bias():
    spec = wt.aligned_witness("pre", signed_batch=True, mlp="odd", b_o=0.0)
    assert spec["x0"].shape == (1, 2, 3, 8)
    _assert_run_matches(spec)
    # biases are admitted with the one-sided MLP
    _assert_run_matches(wt.aligned_witness("pre", mlp="one-sided", b1=0.2, b2=0.3, b_o=0.4))


@pytest.mark.parametrize("make", [
    lambda: wt.aligned_witness("pre", n_tokens=1, n_blocks=1, n_heads=1),
    lambda: wt.f2_peri_witness(n_tokens=1, n_blocks=1, n_heads=1, dt=(2.0, 0.5)),
    lambda: wt.f3_pre_witness(n_tokens=1, n_blocks=1, n_heads=1, dt=(0.5, 2.0)),
    lambda: wt.f4_none_witness(n_tokens=1, n_blocks=1, n_heads=1),
])
def test_smallest_admitted_sizes_build_working_witnesses(make):
    """n_tokens = n_blocks = n_heads = 1 are in the domain (≥ 1) and give a witness the stack confirms."""
    spec = make()
    assert spec["x0"].shape[-2] == 1 and spec["expected_row_norms"].shape[0] == 3
    _assert_run_matches(spec)


def test_one_head_one_block_one_token_by_hand():
    """pre, d = 8, one head ρ = 1 (‖ρ‖ = 1), one block: ‖x‖: √8 → √8 + √8 (attention) → 3√8 (MLP)."""
    spec = wt.aligned_witness("pre", n_tokens=1, n_blocks=1, n_heads=1)
    _assert_run_matches(spec, _expand([SQ8, 2 * SQ8, 3 * SQ8], (1, 1)))


def test_f1_smallest_sizes_are_admitted():
    spec = wt.f1_post_witness(n_tokens=1, n_blocks=1)
    assert spec["x0"].shape == (4, 1, 8) and spec["config"]["n_blocks"] == 1
    stack, x = load_witness(spec)
    with torch.no_grad():
        y = stack(x)
    # one post block, ε = 1e-5, γ = 1.5: every output row has norm |γ|√d·√(σ²/(σ²+ε)) ≤ |γ|√d (F1). For input
    # scales 1 and 1e2 the first step's row is large, so the last step's input is a LayerNorm output plus an
    # update, σ² = O(1), and the ratio is 1 − O(ε) (docstring: ≈ 1 − ε/(2γ²) ≈ 1 − 2e-6; 1e-5 allows σ² ≥ 0.5)
    norms = y.norm(dim=-1).numpy()
    assert np.all(norms <= 1.5 * SQ8 * (1 + 1e-12))
    assert np.all(norms[2:] >= 1.5 * SQ8 * (1 - 1e-5))
