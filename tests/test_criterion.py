"""S1 (the (B, τ) stability criterion) and S2 (the optimal residual schedule): one place per theorem.

The registered checks (verify/checks/criterion.py) run the zoo at the Δt the theory recommends; these tests assert
every tally passes, inject deliberately wrong theories (a dropped Δt, a constant 10% off, the peri constant used for
pre, a wrong water level) and assert the check then FAILS, and check the domain errors.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import special

from theory import criterion as C
from theory.criterion import (
    GELU_LIPSCHITZ,
    SublayerNorms,
    attention_jacobian_sup,
    backward_log_gain_bound,
    forward_gain_bound,
    max_uniform_dt,
    max_uniform_dt_closed_form,
    mlp_jacobian_sup,
    none_stability_bounds,
    one_sided_optimal_time,
    optimal_step_sizes,
    peri_stability_bounds,
    post_max_dt_closed_form,
    post_stability_bounds,
    pre_stability_bounds,
    propagated_scale_floor,
    schedule_dual_value,
    water_level,
)
from verify.checks.criterion import check_s1, check_s2
from verify.checks.registry import Context


def _failed(tallies) -> list[str]:
    return [t.check for t in tallies if not t.passed]


def _assert_all_pass(tallies):
    assert tallies, "the check recorded nothing"
    bad = [(t.check, t.worst_error, t.worst_case) for t in tallies if not t.passed]
    assert not bad, bad


# ---- S1 -------------------------------------------------------------------------------------------------------
def test_s1_criterion_certifies_measured_gains_at_the_admissible_dt(ctx):
    """S1: at each instance's admissible Δt the measured G ≤ B and Λ ≤ τ; the a priori bounds hold at every Δt
    tried; witnesses attain the bound at Δt_f/Δt_b and violate it at twice that (the criterion is not vacuous)."""
    tallies = check_s1(ctx)
    _assert_all_pass(tallies)
    names = {t.check for t in tallies}
    assert any("2Δt_f" in n for n in names) and any("2Δt_b" in n for n in names)


def test_s1_witness_part_on_each_device(ctx, device):
    """S1 witnesses on every available device (CUDA instances are the CPU ones, moved)."""
    _assert_all_pass(check_s1(Context(level=ctx.level, seed=ctx.seed, device=device), parts=("witness",)))


def _wrap(fn, **changes):
    def wrapped(dt, sublayers, **kw):
        return fn(dt, sublayers, **{**kw, **changes})
    return wrapped


def test_s1_meta_dropped_dt_fails(ctx):
    """A criterion whose bounds forget Δt (evaluated at Δt = 1 whatever the step) fails: the probe Δt = 1.5 on the
    tight witnesses exceeds it."""
    def dropped(fn):
        return lambda dt, sublayers, **kw: fn(1.0, sublayers, **kw)
    wrong = {p: dropped(C.STABILITY_BOUNDS[p]) for p in ("peri", "pre", "none", "post")}
    assert _failed(check_s1(ctx, bounds=wrong, parts=("witness",)))


def test_s1_meta_forward_constant_10_percent_small_fails(ctx):
    """peri with C_out 10% too small (γ_out·0.9) recommends a Δt_f 11% too large: the aligned witness exceeds B."""
    wrong = {"peri": _wrap(peri_stability_bounds, gamma_out=0.9)}
    failed = _failed(check_s1(ctx, bounds=wrong, parts=("witness",)))
    assert "witness: measured G ≤ B at the admissible Δt_f and Δt*" in failed


def test_s1_meta_backward_rate_10_percent_small_fails(ctx):
    """none with the Jacobian sup 10% too small (W_O norm ·0.9) recommends too large a Δt_b: Λ > τ on the witness."""
    def shrunk(dt, sublayers, **kw):
        return none_stability_bounds(dt, [dataclasses.replace(s, wo_norm=0.9 * s.wo_norm) for s in sublayers], **kw)
    failed = _failed(check_s1(ctx, bounds={"none": shrunk}, parts=("witness",)))
    assert "witness: measured Λ ≤ τ at the admissible Δt_b and Δt*" in failed


def test_s1_meta_peri_constant_applied_to_pre_fails(ctx):
    """Using peri's weight-free C_out = |γ|√d for pre ignores the weights (F3): the pre witnesses grow past B."""
    def pre_with_peri_constant(dt, sublayers, **kw):
        b = pre_stability_bounds(dt, sublayers, **kw)
        c_out = abs(kw["gamma"]) * math.sqrt(kw["d"]) + kw.get("beta_norm", 0.0)
        g = forward_gain_bound(dt if np.ndim(dt) else [dt] * len(sublayers), c_out, kw["x0_max_norm"])
        return dataclasses.replace(b, forward_gain=g)
    failed = _failed(check_s1(ctx, bounds={"pre": pre_with_peri_constant}, parts=("witness",)))
    assert "witness: measured G ≤ B at the admissible Δt_f and Δt*" in failed


def test_s1_meta_wrong_closed_form_fails(ctx):
    """A closed form with the wrong exponent ((e^τ − 1)/ℓ instead of (e^{τ/K} − 1)/ℓ) disagrees with the root search."""
    def wrong(n_steps, c, ell, x0, B, tau, a=0.0, sided="upper"):
        right = max_uniform_dt_closed_form(n_steps, c, ell, x0, B, tau, a, sided)
        return dataclasses.replace(right, dt_backward=right.dt_backward * math.expm1(tau) / math.expm1(tau / n_steps))
    failed = _failed(check_s1(ctx, closed_form=wrong, parts=("random",)))
    assert "closed-form Δt (global floors) = root search" in failed


def test_s1_closed_forms_match_the_root_search():
    """S1 closed forms: peri forward (B−1)M_0/(K C_out), uniform backward (e^{τ/K}−1)/ℓ, two-sided (1−e^{−τ/K})/ℓ,
    none Grönwall ((B+q)/(1+q))^{1/K}, post tanh(τ/2K)/J — each equals the bracketing root search of its bound."""
    s = [SublayerNorms("attn", wv_head_norms=(1.3,), wo_norm=0.8, qk_head_norms=(0.5,), head_dim=4),
         SublayerNorms("mlp", w1_norm=1.1, w2_norm=0.7, b1_norm=0.2, b2_norm=0.1, activation="relu")] * 2
    kw = dict(d=4, n_tokens=2, x0_max_norm=2.0, x0_min_scale=0.0, eps_in=1e-2, eps_out=1e-2)
    b = peri_stability_bounds(1.0, s, **kw)
    for sided in ("upper", "two"):
        num = max_uniform_dt("peri", 3.0, 0.7, s, sided=sided, **kw)
        cf = max_uniform_dt_closed_form(4, np.diff(b.row_bounds), b.rates, 2.0, 3.0, 0.7, sided=sided)
        assert num.dt_forward == pytest.approx(cf.dt_forward, rel=1e-12)
        assert num.dt_backward == pytest.approx(cf.dt_backward, rel=1e-12)
    assert cf.dt_forward == pytest.approx(2.0 * 2.0 / (4 * 2.0), rel=1e-14)  # (B−1)M_0/(K·|γ|√d), weight-free
    # none with uniform steps: Grönwall closed form
    su = [SublayerNorms("mlp", w1_norm=1.0, w2_norm=0.6, b2_norm=0.3)] * 3
    num = max_uniform_dt("none", 2.5, 0.4, su, n_tokens=1, x0_max_norm=1.5)
    a, bb = su[0].gain_offset()
    cf = max_uniform_dt_closed_form(3, bb, GELU_LIPSCHITZ * 0.6, 1.5, 2.5, 0.4, a=a)
    assert num.dt_forward == pytest.approx(cf.dt_forward, rel=1e-12)
    assert num.dt_backward == pytest.approx(cf.dt_backward, rel=1e-12)
    # post, ε = 0, input at scale |γ|: tanh(τ/2K)/J for a linear sublayer (J = m)
    sp = [SublayerNorms("attn", wv_head_norms=(0.9,), wo_norm=1.0)] * 5
    num = max_uniform_dt("post", 2.0, 1.0, sp, d=8, n_tokens=1, x0_max_norm=math.sqrt(8), x0_min_scale=1.0, eps=0.0)
    assert num.dt_backward == pytest.approx(post_max_dt_closed_form(5, 0.9, 0.9, 1.0), rel=1e-12)
    assert post_max_dt_closed_form(5, 0.9, 0.9, 1.0) == pytest.approx(math.tanh(0.1) / 0.9, rel=1e-14)
    assert num.dt_forward == math.inf  # post: Δt cannot change the forward gain


def test_s1_pre_has_no_weight_uniform_dt_but_peri_forward_is_weight_free():
    """S1 (pre): Δt_f ∝ 1/(weight scale) → 0, and unbounded weights admit no Δt > 0; peri's Δt_f ignores the weights."""
    kw_pre = dict(d=6, n_tokens=1, x0_max_norm=2.0, eps=1e-3)
    kw_peri = dict(d=6, n_tokens=1, x0_max_norm=2.0, eps_in=1e-3, eps_out=1e-3)
    dts_pre, dts_peri = [], []
    for lam in (1.0, 10.0, 1e3):
        s = [SublayerNorms("mlp", w1_norm=1.0, w2_norm=lam)] * 4
        dts_pre.append(max_uniform_dt("pre", 2.0, 1.0, s, **kw_pre).dt_forward)
        dts_peri.append(max_uniform_dt("peri", 2.0, 1.0, s, **kw_peri).dt_forward)
    assert dts_pre[1] * 10 == pytest.approx(dts_pre[0], rel=1e-12)
    assert dts_pre[2] * 1e3 == pytest.approx(dts_pre[0], rel=1e-12)
    assert dts_peri[0] == dts_peri[1] == dts_peri[2]
    inf = [SublayerNorms("mlp", w1_norm=1.0, w2_norm=math.inf)] * 4
    adm = max_uniform_dt("pre", 2.0, 1.0, inf, **kw_pre)
    assert adm.dt == 0.0 and "unbounded weights" in adm.note


def test_s1_lemmas_gelu_constant_and_floors():
    """S1 lemmas: L_gelu = max|GELU'| (brute force), the propagated scale floor, and attention's n = 1 case (affine)."""
    x = np.linspace(-6, 6, 200001)
    gelu_prime = special.ndtr(x) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    assert np.max(np.abs(gelu_prime)) == pytest.approx(GELU_LIPSCHITZ, rel=1e-9)
    assert mlp_jacobian_sup(2.0, 3.0, "relu") == 6.0
    floors = propagated_scale_floor(1.0, [0.5, 0.5, 10.0], 4, 0.01)
    assert floors == pytest.approx([math.sqrt(1 + 0.01), math.sqrt(0.75**2 + 0.01), math.sqrt(0.5**2 + 0.01)])
    assert attention_jacobian_sup(100.0, 1, (2.0, 1.0), 3.0, (9.0, 9.0), 4) == pytest.approx(3 * math.sqrt(5))


def test_s1_generic_bounds():
    """S1 generic forms: G = 1 + ΣΔt c/M_0 (a = 0) or the Grönwall product; Λ = Σ log(1 + Δtℓ) (two-sided −log(1−·))."""
    assert forward_gain_bound([0.1, 0.2], [1.0, 2.0], 2.0) == pytest.approx(1 + (0.1 + 0.4) / 2)
    assert forward_gain_bound(0.1, 1.0, 1.0, a=[1.0, 1.0]) == pytest.approx(1.1 * 1.1 + 0.1 * 1.1 + 0.1)
    assert backward_log_gain_bound(0.5, [1.0, 2.0]) == pytest.approx(math.log(1.5) + math.log(2.0))
    assert backward_log_gain_bound(0.25, [1.0, 2.0], sided="two") == pytest.approx(-math.log(0.75) - math.log(0.5))
    assert backward_log_gain_bound(1.0, [1.0], sided="two") == math.inf


@pytest.mark.parametrize("call, name", [
    (lambda: max_uniform_dt("peri", 1.0, 1.0, [SublayerNorms("mlp")], d=4, n_tokens=1, x0_max_norm=1.0), "B"),
    (lambda: max_uniform_dt("peri", 2.0, 0.0, [SublayerNorms("mlp")], d=4, n_tokens=1, x0_max_norm=1.0), "tau"),
    (lambda: max_uniform_dt("sideways", 2.0, 1.0, [SublayerNorms("mlp")]), "placement"),
    (lambda: peri_stability_bounds(0.1, [SublayerNorms("mlp")], d=4, n_tokens=1, x0_max_norm=1.0, eps_out=0.0),
     "eps_out"),
    (lambda: pre_stability_bounds(0.1, [SublayerNorms("mlp")], d=4, n_tokens=0, x0_max_norm=1.0), "n_tokens"),
    (lambda: pre_stability_bounds(0.0, [SublayerNorms("mlp")], d=4, n_tokens=1, x0_max_norm=1.0), "dt"),
    (lambda: pre_stability_bounds(0.1, [SublayerNorms("mlp")], d=4, n_tokens=1, x0_max_norm=0.0), "x0_max_norm"),
    (lambda: post_stability_bounds(0.1, [SublayerNorms("mlp")], d=4, n_tokens=1, x0_max_norm=1.0, x0_min_scale=1.0,
                                   sided="two"), "sided"),
    (lambda: SublayerNorms("mlp", w1_norm=-1.0), "w1_norm"),
    (lambda: SublayerNorms("conv"), "kind"),
    (lambda: SublayerNorms("attn", wv_head_norms=(1.0, 1.0), qk_head_norms=(1.0, 1.0, 1.0)), "qk_head_norms"),
    (lambda: peri_stability_bounds(0.1, [], d=4, n_tokens=1, x0_max_norm=1.0), "sublayers"),
    (lambda: max_uniform_dt_closed_form(0, 1.0, 1.0, 1.0, 2.0, 1.0), "n_steps"),
    (lambda: post_max_dt_closed_form(2, 0.0, 0.0, 1.0), "jf"),
    (lambda: optimal_step_sizes([1.0], [0.0], 1.0, 1.0), "ell"),
    (lambda: optimal_step_sizes([1.0], [1.0], 0.0, 1.0), "forward_budget"),
    (lambda: optimal_step_sizes([1.0], [1.0], 1.0, -1.0), "tau"),
    (lambda: one_sided_optimal_time([1.0, -2.0], 1.0), "ell"),
    (lambda: water_level([np.nan], 1.0), "log_w"),
])
def test_s1_s2_domain_errors_name_the_parameter(call, name):
    """Outside the domain every S1/S2 function raises a ValueError whose message starts with the parameter."""
    with pytest.raises(ValueError) as err:
        call()
    assert str(err.value).startswith(name)


# ---- S2 -------------------------------------------------------------------------------------------------------
def test_s2_water_filling_schedule_is_optimal(ctx):
    """S2: the closed-form water-filling Δt_k = (1/ℓ_k − λ/(1 − μc_k))₊ is feasible, has zero duality gap, matches
    scipy SLSQP's optimum, and run on zoo stacks keeps gradients within e^{±τ}; the one-sided problem's optimum is
    a single step (e^τ − 1)/ℓ_min."""
    _assert_all_pass(check_s2(ctx))


_TIE_LOG_W = [0.8404606621008739, np.inf, np.inf, np.inf, np.inf, -1.1377429641008914, -1.4156637733556332,
              0.8404606621008739]


@pytest.mark.parametrize("lw, tau", [(_TIE_LOG_W, 0.27792080925474205)]  # soak seed 925024579: τ within 1 ulp of D_2
                         + [(_TIE_LOG_W + [0.3], k) for k in (1, 2, 3)])  # k: τ = D_{k+1} computed in float64
def test_water_level_on_a_tie_matches_bisection(lw, tau):
    """τ at a breakpoint D_m = Σ_{i<m}(log w_(m) − log w_(i)), where the active set changes: the water level is
    found (soak seed 925024579 drew τ one ulp from D_2 and the old two-sided test raised 'water level not found')
    and solves Σ(−log λ − log w)₊ = τ, checked by bisection on that sum directly."""
    lw = np.array(lw, dtype=float)
    fin = lw[np.isfinite(lw)]
    if isinstance(tau, int):
        srt = np.sort(fin)
        tau = float(sum(srt[tau] - srt[i] for i in range(tau)))
    loglam, active = water_level(lw, tau)
    h = lambda ll: float(np.sum(np.maximum(-ll - fin, 0.0)))  # noqa: E731
    lo, hi = -50.0, 50.0  # h decreasing in log λ
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if h(mid) > tau else (lo, mid)
    assert loglam == pytest.approx(lo, abs=1e-12)
    assert h(loglam) == pytest.approx(tau, rel=1e-12)
    assert not np.any(active & ~np.isfinite(lw))


def test_s2_schedule_meets_a_steep_forward_budget_exactly():
    """Soak seed 1006149505: both budgets bind and c·Δt is steep in μ, so brentq's few-ulp root gave
    c·Δt = β_F(1 + 1.5e-12), outside the feasibility check's round-off rtol; μ is now stepped to feasibility."""
    c = np.array([1.0, 0.10856536220950747, 4.765035218667089, 4.908097844739854, 0.1985180474993786])
    ell = np.array([0.25013194353432827, 9.999999999999998, 7.889600785751664, 1.0, 0.20918154337790612])
    tau = 0.07625996768657374
    beta = 0.05 * float(c @ optimal_step_sizes(c, ell, np.inf, tau).dt)
    sol = optimal_step_sizes(c, ell, beta, tau)
    assert sol.binding == "both"
    assert float(c @ sol.dt) <= beta
    assert float(np.sum(-np.log1p(-ell * sol.dt))) <= tau * (1 + 1e-12)
    assert schedule_dual_value(c, ell, beta, tau, sol.lam, sol.mu) == pytest.approx(sol.total_time, rel=1e-9)


def test_s2_meta_wrong_water_level_fails(ctx):
    """A water level 10% off (λ·1.1) loses optimality: scipy and the duality certificate disagree with it."""
    def wrong(c, ell, beta, tau):
        return optimal_step_sizes(c, ell, beta, tau, level_factor=1.1)
    failed = _failed(check_s2(ctx, schedule=wrong, parts=("scipy",)))
    assert "closed-form T* = scipy SLSQP optimum" in failed


def test_s2_meta_low_water_level_is_infeasible(ctx):
    """A water level 10% too low (λ·0.9) overspends the backward budget: infeasible, and the zoo run exceeds τ."""
    def wrong(c, ell, beta, tau):
        return optimal_step_sizes(c, ell, beta, tau, level_factor=0.9)
    failed = _failed(check_s2(ctx, schedule=wrong))
    assert "closed-form schedule is feasible" in failed
    assert {"zoo at the S2 schedule: −min log σ_min(J_{k→K}) ≤ τ",
            "witness at the S2 schedule: −min log σ_min(J_{k→K}) ≤ τ"} & set(failed)


def test_s2_meta_one_sided_optimum_wrong_fails(ctx):
    """Claiming the one-sided optimum is the uniform schedule K(e^{τ/K} − 1)/ℓ_max (too small) fails: scipy beats it."""
    def uniform(ell, tau):
        ell = np.asarray(ell)
        return len(ell) * math.expm1(tau / len(ell)) / float(np.max(ell)), 0
    failed = _failed(check_s2(ctx, one_sided=uniform, parts=("scipy",)))
    assert "one-sided: scipy (multi-start) ≤ (e^τ−1)/ℓ_min" in failed


def test_s2_closed_form_cases():
    """S2 by hand: uniform ℓ gives the uniform schedule (1 − e^{−τ/K})/ℓ; peri's forward budget caps T at β/C_out."""
    sol = optimal_step_sizes([0.0] * 4, [2.0] * 4, math.inf, 1.0)
    assert sol.dt == pytest.approx([-math.expm1(-0.25) / 2] * 4, rel=1e-14)
    sol = optimal_step_sizes([3.0] * 4, [1.0, 2.0, 0.5, 4.0], 0.3, 1.0)
    assert sol.total_time == pytest.approx(0.1, rel=1e-14) and sol.binding == "forward"
    sol = optimal_step_sizes([1.0, 2.0, 3.0, 0.5], [1.0, 2.0, 0.5, 4.0], 0.5, 1.0)
    assert schedule_dual_value([1.0, 2.0, 3.0, 0.5], [1.0, 2.0, 0.5, 4.0], 0.5, 1.0, sol.lam, sol.mu) == \
        pytest.approx(sol.total_time, rel=1e-12)
    assert sol.binding == "both"
    assert one_sided_optimal_time([3.0, 0.5, 2.0], 1.0) == (pytest.approx(math.expm1(1.0) / 0.5), 1)
