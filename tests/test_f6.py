"""F6 — trained pre-LN under weight decay (paper claim K3, our statement; docs/theorems/F6.md).

Tiny models are optimised to stationary points of E[loss] + (λ/2)‖θ‖² in float64 once per session (the fits
are cached), and every test below reads one link of the theorem off them. Meta-tests inject a wrong theory and
show the same check fails.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from theory import trained as th
from verify.checks import trained as chk
from verify.checks.registry import REGISTRY, Context


def _by_name(tallies, fragment):
    found = [t for t in tallies if fragment in t.check]
    assert found, f"no tally named like {fragment!r}"
    return found


def _assert_all_pass(tallies):
    bad = [(t.check, t.worst_error, t.worst_case) for t in tallies if not t.passed]
    assert not bad, bad


@pytest.fixture(scope="module")
def stationary(ctx):
    return chk.stationary_tallies(ctx)


@pytest.fixture(scope="module")
def witnesses(ctx):
    return chk.witness_tallies(ctx)


def test_solver_reaches_stationary_points_and_identity_holds(stationary):
    """(i) At a stationary point of E[ℓ] + (λ/2)Σ‖W‖², every output map is W_k = −(1/λ)∂E[ℓ]/∂W_k
    (to the achieved gradient norm, which is ≤ 1e-6·λ‖θ‖)."""
    _assert_all_pass(_by_name(stationary, "stationar") + _by_name(stationary, "identity W_k"))


def test_output_map_norm_is_tied_to_activation_times_adjoint(stationary, witnesses):
    """(ii) ‖W_k‖_F ≤ (Δt_k·E[Σ_i ‖h_{k,i}‖‖p_{k+1,i}‖] + r_k)/λ, attained (ratio ≥ 0.99) by one sample, one token."""
    _assert_all_pass(_by_name(stationary, "tie") + _by_name(witnesses, "tie witness"))


def test_envelope_holds_on_training_and_fresh_inputs(stationary):
    """(iii)+(iv) ‖x_{k,i} − x_{0,i}‖ ≤ Σ_{j<k} Δt_j H_j (Δt_j √n H_j Π_{j+1} G + r_j)/λ on the training data and on
    fresh inputs of scale 1 and 30 (closed-form H, exact step-Jacobian gains); h_k W_k reproduces the step."""
    _assert_all_pass(_by_name(stationary, "envelope") + _by_name(stationary, "activation h_k"))


def test_envelope_is_attained_by_the_rank_one_witness(witnesses):
    """With the measured activation norm as H, a one-sample, one-token stationary model attains the envelope."""
    t = _by_name(witnesses, "envelope witness")[0]
    assert t.passed and t.worst_ratio >= chk.WITNESS_THRESHOLD


def test_uniform_closed_form_is_exponential_in_depth_and_bounds_the_per_step_envelope(ctx, stationary):
    """The uniform-constant envelope (√n G H² Δt²/λ)((1+a)^K − 1)/a equals the per-step one with constant inputs,
    grows by the factor (1 + a) per step, and bounds the per-step envelope when fed the maxima."""
    _assert_all_pass(chk.uniform_tallies(ctx) + _by_name(stationary, "uniform closed form ≥"))


def test_unregularised_pre_ln_problem_has_a_ray_of_equal_loss_models(ctx):
    """Ill-posedness (proven): at ε = 0 scaling X_0, every output map and output bias by c scales every hidden
    state by c and leaves the output unchanged."""
    _assert_all_pass(chk.symmetry_tallies(ctx))


def test_weight_norms_and_pre_ln_hidden_states_grow_as_weight_decay_vanishes(ctx):
    """Ill-posedness (measured): λ = 1e-1 → 1e-3 grows pre-LN weight norms and max‖x_K‖ (≥ 4×), while peri-LN
    increments stay under the weight-independent F2 bound."""
    _assert_all_pass(chk.illposed_tallies(ctx))


def test_meta_illposed_growth_threshold_rejects_the_no_growth_placement(ctx):
    """The growth witness applied to peri-LN (whose increments F2 bounds: no growth) fails — the threshold tells
    growth from none; pre passes it."""
    sweep = chk.illposed_sweep(ctx)
    ratio = {p: sweep[p]["x_max"][-1, -1] / sweep[p]["x_max"][-1, 0] for p in ("pre", "peri")}
    assert ratio["peri"] < chk.ILLPOSED_X_GROWTH <= ratio["pre"], ratio


@pytest.mark.parametrize("seed", [4117139803, 512606001])
def test_illposed_soak_seeds_with_the_weakest_measured_growth(ctx, seed):
    """Regression: at these soak seeds (problem seeds 9853, 6051) pre's max‖x_K‖ grows only 9.3× and 8.1× from
    λ = 1e-1 to 1e-3 — below the old threshold 10, which came from one seed — and still grows (≥ 4×)."""
    _assert_all_pass(chk.illposed_tallies(Context(level=ctx.level, seed=seed, device=ctx.device)))


def test_registered_check_passes(ctx):
    """The registry entry the main job runs (same cached fits)."""
    _assert_all_pass(REGISTRY["F6"].run(ctx))


# ---- meta-tests: a wrong theory must fail the same check ------------------------------------------------------
def _fails(tallies):
    return any(not t.passed for t in tallies)


def test_meta_identity_off_by_ten_percent_fails(ctx):
    assert _fails(chk.stationary_tallies(ctx, stationary=lambda g, lam: 1.1 * th.stationary_weight(g, lam)))


def test_meta_identity_missing_half_in_the_decay_term_fails(ctx):
    """Writing the penalty as λ‖W‖² instead of (λ/2)‖W‖² gives W = −∇/(2λ): caught."""
    assert _fails(chk.stationary_tallies(ctx, stationary=lambda g, lam: th.stationary_weight(g, 2 * lam)))


def test_meta_tie_with_dropped_dt_fails(ctx):
    """Δt = 0.5 in the witness: a tie without Δt is twice too loose and no longer attained."""
    assert _fails(chk.witness_tallies(ctx, tie=lambda dt, lam, aa, r: th.output_map_norm_bound(1.0, lam, aa, r)))


def test_meta_envelope_without_lambda_fails(ctx):
    """Dropping the 1/λ (λ ≤ 0.3 here) shrinks the envelope below the witness."""
    wrong = lambda dt, lam, *a, **k: th.trained_pre_envelope(dt, 1.0, *a, **k)  # noqa: E731
    assert _fails(chk.witness_tallies(ctx, envelope=wrong))


def test_meta_envelope_with_ten_percent_smaller_constant_fails(ctx):
    wrong = lambda *a, **k: 0.9 * th.trained_pre_envelope(*a, **k)  # noqa: E731
    assert _fails(chk.witness_tallies(ctx, envelope=wrong))


def test_meta_uniform_form_with_wrong_exponent_fails(ctx):
    def wrong(K, dt, lam, H, a, G, n):
        return th.trained_pre_envelope_uniform(K, dt, lam, H, a, G, n) * (1 + a) ** 0.5
    assert _fails(chk.uniform_tallies(ctx, uniform=wrong))


def test_meta_scale_symmetry_with_wrong_power_fails(ctx):
    assert _fails(chk.symmetry_tallies(ctx, symmetry=lambda c: c ** 2))


# ---- domain ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, name", [
    (lambda: th.stationary_weight([1.0], 0.0), "lam"),
    (lambda: th.stationary_weight([np.nan], 1.0), "grad_loss"),
    (lambda: th.output_map_norm_bound(0.0, 1.0, 1.0), "dt"),
    (lambda: th.output_map_norm_bound(1.0, 1.0, -1.0), "activation_adjoint"),
    (lambda: th.output_map_norm_bound(1.0, 1.0, 1.0, -1.0), "grad_residual"),
    (lambda: th.activation_adjoint_bound([1.0], [-0.1], 1.0, 4), "backward_rates"),
    (lambda: th.activation_adjoint_bound([1.0], [0.1], 1.0, 0), "n_tokens"),
    (lambda: th.activation_adjoint_bound([1.0, 2.0], [0.1], 1.0, 2), "h_bound"),
    (lambda: th.trained_pre_envelope(1.0, 1.0, 1.0, 1.0), "n_steps"),
    (lambda: th.trained_pre_envelope([1.0, -1.0], 1.0, 1.0, 1.0), "dt"),
    (lambda: th.trained_pre_envelope_uniform(0, 1.0, 1.0, 1.0, 0.1, 1.0, 1), "n_steps"),
    (lambda: th.trained_pre_envelope_uniform(3, 1.0, -1.0, 1.0, 0.1, 1.0, 1), "lam"),
    (lambda: th.trained_pre_envelope_uniform(3, 1.0, 1.0, 1.0, -0.1, 1.0, 1), "backward_rate"),
    (lambda: th.envelope_moment_bounds(1.0, [0.0, 1.0], 1), "d"),
    (lambda: th.pre_scale_symmetry(0.0), "c"),
    (lambda: th.pre_weight_energy_bound(1.0, 1.0, [-1.0], [1.0]), "in_norms"),
    (lambda: th.pre_weight_energy_bound(1.0, 1.0, [1.0], [1.0, 2.0]), "out_norms"),
    (lambda: th.pre_weight_energy_bound([1.0, 0.0], 1.0, [1.0, 1.0], [1.0, 1.0]), "dt"),
    (lambda: th.pre_weight_energy_bound(1.0, [1.0, 1.0, 1.0], [1.0, 1.0], [1.0, 1.0]), "norm_range"),
    (lambda: th.trained_pre_depth_free_bound(1.0, 1.0, 1.0, 0.0), "lam"),
    (lambda: th.trained_pre_depth_free_bound(-1.0, 1.0, 1.0, 1.0), "dt"),
    (lambda: th.trained_pre_depth_free_bound(1.0, 1.0, -1.0, 1.0), "decay_energy"),
    (lambda: th.trained_pre_depth_free_bound([1.0, 1.0], [1.0, 1.0, 1.0], 1.0, 1.0), "norm_range"),
    (lambda: th.attention_balance_residual([1.0], [1.0], [1.0], [1.0], -1.0), "lam"),
    (lambda: th.attention_balance_residual([np.inf], [1.0], [1.0], [1.0], 1.0), "grad_v"),
])
def test_bad_inputs_raise_value_errors_naming_the_parameter(call, name):
    with pytest.raises(ValueError, match=f"^{name}"):
        call()


def test_closed_forms_on_hand_computed_values():
    """K = 2, a = 1: ((1+a)^K − 1)/a = 3; the per-step form with Π = (2, 1) gives the same."""
    assert th.trained_pre_envelope_uniform(2, 1.0, 0.5, 2.0, 1.0, 3.0, 4) == pytest.approx(2 * 3 * 4 / 0.5 * 3)
    env = th.trained_pre_envelope_from_backward(1.0, 0.5, [2.0, 2.0], [1.0, 1.0], 3.0, 4)
    assert env.tolist() == pytest.approx([0.0, 2 * (2 * 2 * 2 * 3) / 0.5, 2 * (2 * 2 * 2 * 3) / 0.5 + 2 * (2 * 2 * 3) / 0.5])
    assert th.output_map_norm_bound(0.5, 0.1, 2.0, 0.1) == pytest.approx(11.0)


@pytest.mark.slow
def test_solutions_solved_from_scratch_pass_the_same_checks(ctx, monkeypatch, tmp_path):
    """The default tier starts from precomputed solutions (verify/checks/trained_f6_cache.npz); here every problem
    is solved from scratch (L-BFGS, then trust-region Newton) and must pass the same check."""
    caches = (chk.stationary_models, chk.stationary_measurement, chk.illposed_sweep, chk.depth_free_measurement)
    monkeypatch.setattr(chk, "CACHE", tmp_path / "absent.npz")
    for c in caches:
        c.cache_clear()
    try:
        _assert_all_pass(chk.check_f6(ctx))
    finally:
        for c in caches:
            c.cache_clear()


# ---- F7: the depth-free bound ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def f7(ctx):
    return chk.check_f7(ctx)


def _assert_f7_beats_f6(f7) -> None:
    _assert_all_pass(f7)
    comparison = _by_name(f7, "J(θ)/λ")[0].numbers["comparison_with_F6"]
    assert comparison
    for c in comparison:
        assert c["F7_D_bound"] <= c["F7_J_bound"] and c["F7_D_bound"] < c["F6_envelope_K"], c
        if c["measured_max_displacement"] == 0.0:
            # A model that weight decay collapsed to θ ≈ 0 (soak seed 1466684592, λ = 0.1: D/λ bound 5e-27, the
            # displacement rounds to exactly 0 in float64): every tightness is 0, so "tighter" is decided by the bounds, asserted above.
            continue
        assert c["F7_D_tightness"] > c["F6_tightness"] and c["F7_D_tightness"] >= c["F7_J_tightness"], c
    # J(θ)/λ ≥ E[ℓ]/λ keeps the loss, which weight decay does not shrink, while F6's envelope and the displacement
    # do: at strong decay (λ = 0.1) the J form can be looser than F6 (soak seeds 2341240772, 498736863: 0.0058
    # against 0.054, 0.0025 against 0.063). Where the decay is weakest — the regime F6's exponential envelope is
    # about — the J form is tighter at every seed measured (docs/theorems/F6.md, F7).
    weakest = min(c["lam"] for c in comparison)
    for c in comparison:
        if c["lam"] == weakest and c["measured_max_displacement"] > 0.0:
            assert c["F7_J_tightness"] > c["F6_tightness"], c
    assert any(c["measured_max_displacement"] > 0 for c in comparison), comparison


def test_f7_depth_free_bound_holds_on_stationary_models_and_beats_f6(f7):
    """F7: on the stationary tiny models (training data and fresh inputs of scale 1 and 30) every displacement is
    ≤ Σ Δt R‖W_in‖‖W_out‖ ≤ max(Δt R)·D/λ ≤ max(Δt R)·J(θ)/λ; the D/λ form is tighter than F6's exponential
    envelope at every (seed, λ), the J(θ)/λ form at the weakest decay."""
    _assert_f7_beats_f6(f7)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [2341240772, 498736863])
def test_f7_soak_seeds_strong_decay_j_form_not_tighter_than_f6(ctx, seed):
    """Regression (slow tier, ~40 s each): at these soak seeds λ = 0.1 makes the J(θ)/λ form looser than F6 (it
    keeps the loss term); D/λ still beats F6 everywhere and J(θ)/λ at λ = 0.03; the solver reaches stationarity at
    problem seed 6863 only with the extra Newton rounds."""
    f7 = chk.check_f7(Context(level=ctx.level, seed=seed, device=ctx.device))
    _assert_f7_beats_f6(f7)
    strong = [c for c in _by_name(f7, "J(θ)/λ")[0].numbers["comparison_with_F6"] if c["lam"] == 0.1]
    assert strong and all(c["F7_J_tightness"] < c["F6_tightness"] for c in strong), strong
    _assert_all_pass(_by_name(chk.check_f6(Context(level=ctx.level, seed=seed, device=ctx.device)), "stationar"))


@pytest.mark.slow
def test_f7_soak_seed_1466684592_collapsed_model(ctx):
    """Regression (slow tier: trains the tiny models, ~20 s): at this seed λ = 0.1 decays a model to θ ≈ 0, where
    the displacement is exactly 0 and every tightness is 0; the comparison with F6 then rests on the bounds."""
    f7 = chk.check_f7(Context(level=ctx.level, seed=1466684592, device=ctx.device))
    _assert_f7_beats_f6(f7)
    assert any(c["measured_max_displacement"] == 0.0
               for c in _by_name(f7, "J(θ)/λ")[0].numbers["comparison_with_F6"])


def test_f7_witness_attains_every_form(f7):
    """The aligned rank-one ReLU step attains the product form, the AM-GM energy form and D/λ (ratio 1)."""
    t = _by_name(f7, "witness")[0]
    assert t.passed and t.worst_ratio == pytest.approx(1.0, abs=1e-9) and t.instances == "witness"


def test_f7_stationary_attention_steps_are_balanced(f7):
    """‖W_V‖_F² − ‖W_O‖_F² = (⟨∂J/∂W_V, W_V⟩ − ⟨∂J/∂W_O, W_O⟩)/λ at any weights, so ≈ 0 at stationarity."""
    t = _by_name(f7, "balanced")[0]
    assert t.passed and t.cases >= 2


def test_f7_balance_identity_is_exact_away_from_stationarity():
    """The identity needs no stationarity: away from it the gap ‖W_V‖² − ‖W_O‖² is what ⟨∂J/∂W_V, W_V⟩ −
    ⟨∂J/∂W_O, W_O⟩ says, and the Cauchy–Schwarz bound is attained when ∂J is aligned with the weights."""
    wv, wo = np.array([[3.0, 0.0]]), np.array([[1.0, 0.0]])
    # λ(‖W_V‖² − ‖W_O‖²) = 0.5·8 = 4 = ⟨g_V, W_V⟩ with g_V = (4/3, 0) ∥ W_V and g_O = 0
    gap, bound = th.attention_balance_residual([[4.0 / 3.0, 0.0]], wv, [[0.0, 0.0]], wo, 0.5)
    assert gap[0] == pytest.approx(8.0) and bound[0] == pytest.approx(8.0)


def test_meta_f7_energy_form_10_percent_small_fails(ctx):
    """A product/energy bound 10 % too small is violated by the witness."""
    def small(*args):
        product, energy = th.pre_weight_energy_bound(*args)
        return 0.9 * product, 0.9 * energy
    assert _fails(chk.check_f7(ctx, energy_bound=small))


def test_meta_f7_wrong_power_of_lambda_fails(ctx):
    """max(Δt R)·D/λ² instead of D/λ (λ = 0.5 on the witness): the witness reaches only half of it."""
    def wrong(dt, r, decay, lam):
        return th.trained_pre_depth_free_bound(dt, r, decay, lam) / lam
    assert _fails(chk.check_f7(ctx, depth_free=wrong))


def test_meta_f7_wrong_balance_law_fails(ctx):
    """Claiming ‖W_V‖ = 2‖W_O‖ at stationarity (the gap of 4‖W_V‖² against ‖W_O‖²) fails on the trained models."""
    def wrong(gv, wv, go, wo, lam):
        return th.attention_balance_residual(gv, 2.0 * np.asarray(wv), go, wo, lam)
    assert _fails(chk.check_f7(ctx, balance=wrong))


def test_f7_closed_forms_on_hand_computed_values():
    """Two steps, Δt = (1, 0.5), R = 2, norms (1, 3)·(2, 1): product 0 → 4 → 7; energy max(ΔtR)·½Σ(a² + b²):
    2·2.5 = 5 → 2·(2.5 + 5) = 15; the depth-free bound max(Δt R)·D/λ with D = λ·7.5 is 15."""
    product, energy = th.pre_weight_energy_bound([1.0, 0.5], 2.0, [1.0, 3.0], [2.0, 1.0])
    assert product.tolist() == pytest.approx([0.0, 4.0, 7.0]) and energy.tolist() == pytest.approx([0.0, 5.0, 15.0])
    assert th.trained_pre_depth_free_bound([1.0, 0.5], 2.0, 0.3 * 7.5, 0.3) == pytest.approx(15.0)


def test_envelope_moment_bounds_by_hand():
    """K7 moments under an envelope R = max‖x_0‖ + E: mean |x| ≤ R/√d, both variances ≤ R²/d (d = 16: 1/4, 1/16)."""
    out = th.envelope_moment_bounds(1.0, np.array([0.0, 1.0, 3.0]), 16)
    np.testing.assert_allclose(out["row_norm"], [1.0, 2.0, 4.0], rtol=1e-15)
    np.testing.assert_allclose(out["mean_abs"], [0.25, 0.5, 1.0], rtol=1e-15)
    np.testing.assert_allclose(out["entrywise_var"], [1 / 16, 0.25, 1.0], rtol=1e-15)
    np.testing.assert_allclose(out["datawise_var"], [1 / 16, 0.25, 1.0], rtol=1e-15)


def test_attention_balance_residual_is_per_instance_for_2d_inputs():
    """F7 balance on a (2 instances, 2 entries) batch: one gap and one bound per leading row, by hand."""
    wv = np.array([[3.0, 0.0], [1.0, 1.0]])
    wo = np.array([[0.0, 4.0], [1.0, 0.0]])
    gv = np.array([[1.0, 0.0], [0.0, 2.0]])
    go = np.array([[0.0, 0.0], [3.0, 0.0]])
    gap, bound = th.attention_balance_residual(gv, wv, go, wo, 0.5)
    np.testing.assert_allclose(gap, [abs(9 - 16), abs(2 - 1)], rtol=1e-15)
    np.testing.assert_allclose(bound, [(1 * 3 + 0 * 4) / 0.5, (2 * math.sqrt(2) + 3 * 1) / 0.5], rtol=1e-15)


@pytest.mark.xfail(strict=True, reason="open (2026-12-04 soak): at this seed (problem seed 2292) pre's max‖x_K‖ grows "
                                      "only 3.65× from λ = 1e-1 to 1e-3, below the threshold 4 that separated pre "
                                      "(9.8–138× over a 300-seed grid) from peri (≤ 2.9×); the one-seed ratio has a "
                                      "heavier lower tail than that grid showed — the fix is a pooled statistic "
                                      "(e.g. the median over several problem seeds), not a lower threshold")
def test_illposed_soak_seed_722702242_growth_below_threshold(ctx):
    _assert_all_pass(chk.illposed_tallies(Context(level=ctx.level, seed=722702242, device=ctx.device)))
