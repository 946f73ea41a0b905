"""F1–F4 — forward stability: hidden-state growth bounds per LayerNorm placement, their witnesses, and meta-tests.

Each theorem test runs the registered check (the same function the main job runs) and asserts every tally passed;
each meta-test injects a deliberately wrong theory and asserts the check notices. Statements and proofs:
docs/theorems/F1-F4.md.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from theory import forward as fw
from theory import witnesses as wt
from verify.checks import forward as checks
from verify.checks.registry import REGISTRY, Context
from verify.engine.witness_loader import load_witness

META_EXAMPLES = 2  # meta-tests: a couple of drawn cases plus every witness; the witnesses alone must expose the error


def _assert_all_passed(tallies):
    assert tallies, "the check recorded nothing"
    bad = [t.summary() + f"\n    worst case: {t.worst_case}" for t in tallies if not t.passed]
    assert not bad, "\n".join(bad)


def _failed(tallies) -> list[str]:
    return [t.check for t in tallies if not t.passed]


# ---- F1 -------------------------------------------------------------------------------------------------------------
def test_f1_post_rows_never_exceed_the_norm_range(ctx):
    """F1: after a post (or DeepNorm, Mix-LN post block, final norm) step every row has ‖x_i‖ ≤ ‖γ‖_∞√d + ‖β‖₂,
    for any weights, Δt and depth; constant γ, β = 0 attains it (ε = 0) or approaches it (ε > 0, large input)."""
    _assert_all_passed(checks.check_f1(ctx))


def test_f1_meta_constant_without_sqrt_d_fails(ctx):
    """A post bound missing √d (‖γ‖_∞ + ‖β‖₂) is violated by every post row once d ≥ 2."""
    def wrong(d, gamma_max, beta_norm=0.0, eps=0.0):
        return fw.post_row_bound(d, gamma_max, beta_norm, eps) / math.sqrt(d)

    assert _failed(checks.check_f1(ctx, bound=wrong, examples=META_EXAMPLES))


def test_f1_meta_bound_ten_percent_too_large_fails_the_witness(ctx):
    """Tightness is checked too: a constant 10% too large leaves the witness at ratio ≈ 0.91 < 0.99."""
    def loose(d, gamma_max, beta_norm=0.0, eps=0.0):
        return 1.1 * fw.post_row_bound(d, gamma_max, beta_norm, eps)

    assert "witness: constant γ, β=0, large input" in _failed(checks.check_f1(ctx, bound=loose,
                                                                             examples=META_EXAMPLES))


def test_f1_witness_ratio_rises_to_one_with_the_input_scale():
    """F1 witness with ε > 0: the first post step's ratio √(σ²/(σ²+ε)) increases with the input scale towards 1."""
    spec = wt.f1_post_witness(eps=1e-5, input_scales=(1e-4, 1e-3, 1e-2, 1.0, 1e2))
    stack, x = load_witness(spec)
    with torch.no_grad():
        _, states = stack(x, trajectory=True)
    c = fw.post_row_bound(spec["config"]["d"], abs(spec["config"]["gamma"]))
    ratio = (states[1].norm(dim=-1).min(dim=-1).values / c).numpy()
    assert np.all(np.diff(ratio) > 0) and ratio[0] < 0.5 and ratio[-1] > 1 - 1e-6


# ---- F2 -------------------------------------------------------------------------------------------------------------
def test_f2_peri_rows_grow_at_most_linearly_whatever_the_weights(device):
    """F2: peri (and output-norm-only) rows obey ‖x_{k,i}‖ ≤ ‖x_{0,i}‖ + Σ Δt_j C_out,j for weight scales over six
    decades; the K7 moments obey mean|x| ≤ R/√d, variances ≤ R²/d; aligned witnesses attain all of these, and their
    growth is the same for output-map scales λ from 1e-2 to 1e2 (weight independence)."""
    _assert_all_passed(checks.check_f2(Context(device=device)))


def test_f2_meta_c_out_ten_percent_too_small_fails(ctx):
    """C_out 10% too small is violated by the witness (equality) — the bound is tight."""
    def wrong(x0_norm, dt, c_out, n_steps=None):
        return fw.peri_norm_bound(x0_norm, dt, 0.9 * np.asarray(c_out), n_steps=n_steps)

    assert "rows ≤ ‖x_0,i‖ + Σ Δt C_out (peri, outnorm)" in _failed(
        checks.check_f2(ctx, bound=wrong, examples=META_EXAMPLES))


def test_f2_meta_dropped_dt_fails(ctx):
    """Σ C_out instead of Σ Δt_j C_out: the witness mixes Δt > 1 (violation) and Δt < 1 (ratio < 0.99)."""
    def wrong(x0_norm, dt, c_out, n_steps=None):
        return fw.peri_norm_bound(x0_norm, np.ones_like(np.asarray(dt, dtype=float)), c_out, n_steps=n_steps)

    failed = _failed(checks.check_f2(ctx, bound=wrong, examples=META_EXAMPLES))
    assert {"rows ≤ ‖x_0,i‖ + Σ Δt C_out (peri, outnorm)", "witness rows ≤ ‖x_0,i‖ + Σ Δt C_out"} & set(failed)
    assert "witness: aligned updates attain the bound" in failed


def test_f2_meta_moment_bounds_without_sqrt_d_fail(ctx):
    """Moment bounds with R/d and R²/d² (a wrong width scaling) are violated by the ± witness pairs."""
    def wrong(x0_max_norm, dt, c_out, d, n_steps=None):
        return {k: v / math.sqrt(d) for k, v in fw.peri_moment_bounds(x0_max_norm, dt, c_out, d, n_steps).items()}

    assert "K7 moments ≤ R_k/√d, R_k²/d" in _failed(checks.check_f2(ctx, moment_bounds=wrong,
                                                                       examples=META_EXAMPLES))


def test_f2_meta_wrong_placement_pre_with_large_weights_fails(ctx):
    """F2's weight-free bound applied to pre-LN fails: with weights ≥ 10 the pre update Δt·F(N(x)) is far larger
    than Δt·C (K3: pre-LN growth is not weight-free)."""
    failed = _failed(checks.check_f2(ctx, placements=("pre",), weight_scale_range=(10.0, 1e3), examples=6))
    assert "rows ≤ ‖x_0,i‖ + Σ Δt C_out (peri, outnorm)" in failed


# ---- F3 -------------------------------------------------------------------------------------------------------------
def test_f3_pre_rows_grow_at_most_by_the_weight_dependent_rate(ctx):
    """F3: pre / LNS / Mix-LN rows obey ‖x_{k,i}‖ ≤ ‖x_{0,i}‖ + Σ Δt_j M_j with M_j the closed-form sublayer sup over
    the norm's range; the aligned witness attains it, and its growth is exactly ∝ the output-map scale λ (log-log
    slope 1 over λ ∈ [1, 1000]): no bound free of the weights exists."""
    _assert_all_passed(checks.check_f3(ctx))


def test_f3_meta_weight_free_bound_fails(ctx):
    """A 'bound' that ignores the weights (M_j = r_j) is violated by the λ = 1000 witness."""
    def weight_free_mlp(r, w1, w2, b1=0.0, b2=0.0):
        return np.asarray(r, dtype=float) * np.ones_like(np.asarray(w1, dtype=float))

    def weight_free_attn(r, wv, wo, bo=0.0):
        return np.asarray(r, dtype=float) * np.ones_like(np.asarray(wo, dtype=float))

    assert _failed(checks.check_f3(ctx, mlp_sup=weight_free_mlp, attn_sup=weight_free_attn, examples=META_EXAMPLES))


def test_f3_meta_attention_with_max_head_norm_fails(ctx):
    """Multi-head values: max_h ‖W_V^h‖ instead of √(Σ_h ‖W_V^h‖²) is violated by the two-head witness."""
    def wrong(r, wv_head_norms, wo_norm, bo_norm=0.0):
        wv = np.asarray(wv_head_norms, dtype=float)
        return fw.attention_output_sup(r, wv.max(axis=-1, keepdims=True), wo_norm, bo_norm)

    assert _failed(checks.check_f3(ctx, attn_sup=wrong, examples=META_EXAMPLES))


def test_f3_meta_mlp_without_inner_bias_fails(ctx):
    """Dropping ‖W₂‖‖b₁‖ from the MLP sup is violated by the witness (its b₁ is aligned with the active unit)."""
    def wrong(r, w1, w2, b1=0.0, b2=0.0):
        return fw.mlp_output_sup(r, w1, w2, 0.0, b2)

    assert _failed(checks.check_f3(ctx, mlp_sup=wrong, examples=META_EXAMPLES))


def test_f3_meta_dropped_dt_fails(ctx):
    """Σ M_j instead of Σ Δt_j M_j: the witness mixes Δt above and below 1."""
    def wrong(x0_norm, dt, m, n_steps=None):
        return fw.pre_norm_bound(x0_norm, np.ones_like(np.asarray(dt, dtype=float)), m, n_steps=n_steps)

    assert len(_failed(checks.check_f3(ctx, bound=wrong, examples=META_EXAMPLES))) >= 2


# ---- F4 -------------------------------------------------------------------------------------------------------------
def test_f4_none_max_row_norm_obeys_discrete_gronwall(ctx):
    """F4: without normalisation M_{k+1} ≤ (1 + Δt a_k)M_k + Δt b_k, hence the product (Grönwall) closed form; the
    aligned witness follows the recursion with equality and grows at the exact rate log(1 + Δt a) per step."""
    _assert_all_passed(checks.check_f4(ctx))


def test_f4_meta_half_exponent_fails(ctx):
    """(1 + Δt a)^{k/2} instead of (1 + Δt a)^k is violated by the exponential witness."""
    def wrong(m0, dt, a, b):
        return _half_exponent(m0, dt, a, b)

    assert _failed(checks.check_f4(ctx, bound=wrong, examples=META_EXAMPLES))


def _half_exponent(m0, dt, a, b):
    """The product bound with every factor (1 + Δt a) replaced by its square root: (1 + Δt a)^{k/2} growth."""
    dt = np.asarray(dt, dtype=float).reshape((-1,) + (1,) * (np.ndim(a) - 1))
    a_half = (np.sqrt(1 + dt * np.asarray(a)) - 1) / dt
    return fw.none_gronwall_bound(m0, dt.ravel(), a_half, b)


def test_f4_meta_dropped_offset_fails(ctx):
    """Dropping the bias offset b_k is violated by the biased witness."""
    def wrong(m0, dt, a, b, n_steps=None, form="product"):
        return fw.none_gronwall_bound(m0, dt, a, np.zeros_like(np.asarray(b, dtype=float)))

    assert _failed(checks.check_f4(ctx, bound=wrong, examples=META_EXAMPLES))


# ---- closed forms ---------------------------------------------------------------------------------------------------
def test_peri_and_pre_bounds_are_the_cumulative_sums():
    """F2/F3 closed forms: x0 + Σ_{j<k} Δt_j c_j, per-step Δt and constants, instance axes broadcasting."""
    assert np.allclose(fw.peri_norm_bound(1.0, [0.5, 2.0, 1.0], 2.0), [1.0, 2.0, 6.0, 8.0], rtol=0, atol=1e-15)
    b = fw.pre_norm_bound(np.array([[1.0, 2.0]]), 0.5, np.array([[1.0], [3.0]]))  # x0 (1, 2), m (K=2, 1)
    assert b.shape == (3, 1, 2) and np.allclose(b[:, 0, 0], [1.0, 1.5, 3.0], rtol=0, atol=1e-15)
    mb = fw.peri_moment_bounds(2.0, 1.0, 1.0, 4, n_steps=2)
    assert np.allclose(mb["mean_abs"], [1.0, 1.5, 2.0]) and np.allclose(mb["entrywise_var"], [1.0, 2.25, 4.0])


def test_gronwall_product_form_solves_the_recursion_and_is_below_the_exp_form():
    """F4: the product form equals M_{k+1} = (1 + Δt a_k)M_k + Δt b_k iterated, and ≤ exp(Σ Δt a)(M_0 + Σ Δt b)."""
    rng = np.random.default_rng(0)
    dt, a, b = rng.uniform(0.01, 1.0, 12), rng.uniform(0, 3, (12, 5)), rng.uniform(0, 2, (12, 5))
    m0 = rng.uniform(0, 4, 5)
    prod = fw.none_gronwall_bound(m0, dt, a, b)
    m = m0.copy()
    for k in range(12):
        m = (1 + dt[k] * a[k]) * m + dt[k] * b[k]
        # rtol 1e-14: the closed form and the recursion are both ≤ 12 multiply-adds in float64 (≤ 30 ulps).
        assert np.allclose(prod[k + 1], m, rtol=1e-14, atol=0)
    assert np.all(prod <= fw.none_gronwall_bound(m0, dt, a, b, form="exp") * (1 + 1e-14))
    assert np.isinf(fw.none_gronwall_bound(1.0, 1.0, 1e3, 0.0, n_steps=200)[-1])  # overflow is inf, never NaN
    assert fw.none_gronwall_bound(0.0, 1.0, 1e3, 0.0, n_steps=200)[-1] == 0.0


def test_sublayer_sups_are_attained_by_the_rank_one_constructions():
    """F3 equality cases: a rank-one ReLU MLP and rank-one multi-head values reach the closed-form sups exactly."""
    d, r = 6, 2.5
    u = np.linspace(-1, 1, d)
    u *= r / np.linalg.norm(u)
    u_hat, v_hat = u / r, np.eye(d)[2]
    w1, w2, b1, b2 = 1.7, 0.6, 0.4, 0.3
    W1, W2 = np.zeros((d, 3)), np.zeros((3, d))
    W1[:, 0], W2[0] = w1 * u_hat, w2 * v_hat
    out = np.maximum(u @ W1 + b1 * np.eye(3)[0], 0) @ W2 + b2 * v_hat
    assert math.isclose(np.linalg.norm(out), fw.mlp_output_sup(r, w1, w2, b1, b2), rel_tol=1e-14)
    rho, wo, bo = np.array([0.5, 2.0, 1.0]), 1.3, 0.2  # three heads of width 2
    Wv = np.zeros((d, d))
    a_hat = np.zeros(d)
    for h in range(3):
        Wv[:, 2 * h] = rho[h] * u_hat
        a_hat[2 * h] = rho[h] / np.linalg.norm(rho)
    y = (u @ Wv) @ (wo * np.outer(a_hat, v_hat)) + bo * v_hat  # every attention row averages copies of u
    assert math.isclose(np.linalg.norm(y), fw.attention_output_sup(r, rho, wo, bo), rel_tol=1e-14)


def test_spectral_norm_matches_svd():
    """The Gram-eigenvalue spectral norm used by the checks agrees with torch's SVD to 1e-13 relative."""
    gen = torch.Generator().manual_seed(1)
    for shape in [(3, 5, 20), (2, 30, 7), (4, 2, 2, 16)]:
        w = torch.randn(shape, generator=gen, dtype=torch.float64)
        ref = torch.linalg.svdvals(w)[..., 0].numpy()
        # rtol 1e-13: G = WWᵀ carries ≤ 30·u relative error, its top eigenvalue a few ulps; the sqrt halves both.
        np.testing.assert_allclose(checks.spectral_norm(w), ref, rtol=1e-13)


# ---- witnesses and loader -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [wt.f2_peri_witness, wt.f3_pre_witness, wt.f4_none_witness,
                                  lambda **k: wt.f2_peri_witness(placement="outnorm", **k),
                                  lambda **k: wt.f3_pre_witness(placement="lns", **k)])
def test_witness_trajectories_match_their_predicted_row_norms(make):
    """Every aligned witness's measured row norms equal the construction's own prediction (rtol 1e-13: ≤ 8 steps
    at d = 8, each a few dozen float64 operations)."""
    spec = make()
    stack, x = load_witness(spec)
    with torch.no_grad():
        _, states = stack(x, trajectory=True)
    meas = np.stack([s.norm(dim=-1).numpy() for s in states])
    np.testing.assert_allclose(meas, spec["expected_row_norms"], rtol=1e-13)


def test_loader_rejects_unknown_or_misshapen_parameters():
    spec = wt.f3_pre_witness()
    bad = dict(spec, params=dict(spec["params"], **{"steps.0.sublayer.W_x": np.zeros((4, 8, 8))}))
    with pytest.raises(ValueError, match="steps.0.sublayer.W_x"):
        load_witness(bad)
    bad = dict(spec, params=dict(spec["params"], **{"steps.0.sublayer.W_v": np.zeros((4, 8, 7))}))
    with pytest.raises(ValueError, match=r"params\['steps.0.sublayer.W_v'\]"):
        load_witness(bad)
    with pytest.raises(ValueError, match="^spec"):
        load_witness({"config": spec["config"]})


# ---- domains --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, name", [
    (lambda: fw.post_row_bound(1, 1.0), "d"),
    (lambda: fw.post_row_bound(4, -1.0), "gamma_max"),
    (lambda: fw.post_row_bound(4, 1.0, beta_norm=float("nan")), "beta_norm"),
    (lambda: fw.post_row_bound(4, 1.0, eps=-1e-5), "eps"),
    (lambda: fw.peri_norm_bound(-1.0, 1.0, 1.0, n_steps=2), "x0_norm"),
    (lambda: fw.peri_norm_bound(1.0, [1.0, 0.0], 1.0), "dt"),
    (lambda: fw.peri_norm_bound(1.0, [1.0, 1.0], [1.0, 1.0, 1.0]), "c_out"),
    (lambda: fw.peri_norm_bound(1.0, 1.0, 1.0), "n_steps"),
    (lambda: fw.peri_norm_bound(1.0, 1.0, -2.0, n_steps=3), "c_out"),
    (lambda: fw.peri_moment_bounds(1.0, 1.0, 1.0, 1, n_steps=2), "d"),
    (lambda: fw.mlp_output_sup(-1.0, 1.0, 1.0), "r"),
    (lambda: fw.mlp_output_sup(1.0, 1.0, float("inf")), "w2_norm"),
    (lambda: fw.attention_output_sup(1.0, [], 1.0), "wv_head_norms"),
    (lambda: fw.attention_output_sup(1.0, [1.0, -1.0], 1.0), "wv_head_norms"),
    (lambda: fw.attention_output_sup(1.0, 1.0, 1.0, bo_norm=-1.0), "bo_norm"),
    (lambda: fw.pre_norm_bound(1.0, True, 1.0, n_steps=1), "dt"),
    (lambda: fw.pre_norm_bound(1.0, 1.0, "big", n_steps=1), "m"),
    (lambda: fw.none_gronwall_bound(1.0, 1.0, -0.5, 0.0, n_steps=2), "a"),
    (lambda: fw.none_gronwall_bound(1.0, 1.0, 0.5, 0.0, n_steps=0), "n_steps"),
    (lambda: fw.none_gronwall_bound(1.0, 1.0, 0.5, 0.0, n_steps=2, form="cubic"), "form"),
    (lambda: wt.aligned_direction(7), "d"),
    (lambda: wt.aligned_witness("post"), "placement"),
    (lambda: wt.aligned_witness("none", row_scales=(1.0, 2.0)), "row_scales"),
    (lambda: wt.aligned_witness("pre", n_heads=3), "n_heads"),
    (lambda: wt.f1_post_witness(gamma=0.0), "gamma"),
    (lambda: wt.f3_pre_witness(out_scales=(1.0, -2.0)), "out_scales"),
    (lambda: wt.f4_none_witness(bias=-0.1), "bias"),
])
def test_bad_inputs_raise_value_errors_naming_the_parameter(call, name):
    with pytest.raises(ValueError, match=f"^{name}"):
        call()


def test_f1_to_f4_are_registered_with_their_theory():
    for tid in ("F1", "F2", "F3", "F4"):
        chk = REGISTRY[tid]
        assert chk.provenance.startswith("paper claim") and "tests/test_forward.py" in chk.tests
        assert all(t.startswith(("theory.forward.", "theory.norms.", "theory.witnesses.")) for t in chk.theory)


@pytest.mark.slow
def test_f1_to_f4_full_level():
    """The thorough tier: every F check at level 'full' (5× the draws)."""
    full = Context(level="full")
    for check in (checks.check_f1, checks.check_f2, checks.check_f3, checks.check_f4):
        _assert_all_passed(check(full))
