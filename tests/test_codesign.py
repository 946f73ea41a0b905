"""S3 — co-design of the residual step Δt with the norm placement: one place per identity.

(a) pre: Δt is absorbed by the output maps and turns the weight decay on them into λ/Δt²; (b) DeepNorm's α is
post-LN with Δt = 1/α (and ε/α²), with a closed-form gap at equal ε; (c) peri: Δt lives only in γ_out, the module
weights cannot absorb it. The registered check (verify/checks/criterion.py: check_s3) verifies each to round-off
on random zoo instances; the meta-tests inject a wrong identity and assert the check fails.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from theory.codesign import (
    deepnorm_as_post,
    deepnorm_post_deviation,
    deepnorm_post_deviation_sup,
    norm_scaled_input_eps,
    peri_dt_as_output_gain,
    peri_update_row_norm,
    pre_absorbed_output_scale,
    pre_decay_objective,
    pre_effective_output_decay,
)
from verify.checks.criterion import check_s3
from verify.checks.registry import Context


def _failed(tallies) -> list[str]:
    return [t.check for t in tallies if not t.passed]


def test_s3_codesign_identities_hold_to_roundoff(ctx):
    """S3 (a)–(c) on random zoo stacks: every identity to round-off, the DeepNorm gap bound attained at σ*."""
    tallies = check_s3(ctx)
    assert tallies
    bad = [(t.check, t.worst_error, t.worst_case) for t in tallies if not t.passed]
    assert not bad, bad


def test_s3_peri_identities_on_each_device(ctx, device):
    """S3 (c) on every available device."""
    tallies = check_s3(Context(level=ctx.level, seed=ctx.seed, device=device), parts=("peri",))
    assert tallies and all(t.passed for t in tallies)


def test_s3a_meta_decay_with_wrong_exponent_fails(ctx):
    """(a) with the decay λ/Δt instead of λ/Δt² breaks the objective identity."""
    def wrong(lam, dt, n):
        return pre_effective_output_decay(lam, dt, n) * np.asarray(dt if np.ndim(dt) else [dt] * n)
    assert "(a) pre: objective at Δt, λ = objective at Δt=1, λ/Δt² on outputs" in \
        _failed(check_s3(ctx, effective_decay=wrong, parts=("pre",)))


def test_s3a_meta_dropped_dt_fails(ctx):
    """(a) absorbing nothing (scale 1 instead of Δt) changes the forward map."""
    assert "(a) pre: Δt absorbed by output maps — same forward map" in \
        _failed(check_s3(ctx, absorbed_scale=lambda dt, n: np.ones(n), parts=("pre",)))


def test_s3b_meta_wrong_eps_rescaling_fails(ctx):
    """(b) DeepNorm = post with ε/α (instead of ε/α²) is not an identity once ε > 0."""
    def wrong(alpha, dt=1.0, eps=0.0):
        return dt / alpha, eps / alpha
    assert "(b) DeepNorm(α, ε) = post(Δt/α, ε/α²) — whole stacks" in \
        _failed(check_s3(ctx, as_post=wrong, parts=("post",)))


def test_s3b_meta_deviation_10_percent_off_fails(ctx):
    """(b) a deviation formula 10% too small fails both the per-row identity and the witness-attained sup."""
    failed = _failed(check_s3(ctx, deviation=lambda *a: 0.9 * deepnorm_post_deviation(*a),
                              deviation_sup=lambda *a: (1.1 * deepnorm_post_deviation_sup(*a)[0],
                                                        deepnorm_post_deviation_sup(*a)[1]), parts=("post",)))
    assert "(b) equal-ε deviation = closed form (per row)" in failed
    assert "(b) witness: the sup is attained at σ*" in failed


def test_s3c_meta_weights_absorb_dt_fails(ctx):
    """(c) claiming the update norm is |γ|√d (as if weights had absorbed Δt) fails: it is Δt|γ|√d for all weights."""
    assert "(c) peri: every update row has norm Δt|γ|√d, whatever the weights" in \
        _failed(check_s3(ctx, update_norm=lambda dt, g, d: peri_update_row_norm(1.0, g, d), parts=("peri",)))


def test_s3c_meta_gain_without_beta_fails(ctx):
    """(c) moving Δt into γ_out but not β_out is not the same step (LayerNorm with β ≠ 0)."""
    assert "(c) peri: (Δt, γ_out, β_out) = (1, Δtγ_out, Δtβ_out)" in \
        _failed(check_s3(ctx, as_output_gain=lambda dt, g, b=0.0: (peri_dt_as_output_gain(dt, g, b)[0], b),
                         parts=("peri",)))


@pytest.mark.parametrize("seed", [1410480894, 2541017012])
def test_s3c_meta_gain_without_beta_fails_soak_seeds(seed):
    """Soak seeds whose drawn peri cases all had Δt = 1 or RMSNorm: the fixed LayerNorm case still catches it."""
    ctx = Context(level="quick", seed=seed)
    assert "(c) peri: (Δt, γ_out, β_out) = (1, Δtγ_out, Δtβ_out)" in \
        _failed(check_s3(ctx, as_output_gain=lambda dt, g, b=0.0: (peri_dt_as_output_gain(dt, g, b)[0], b),
                         parts=("peri",)))


def test_s3_closed_forms_by_hand():
    """S3 formulas: ε/c², (Δt/α, ε/α²), λ/Δt², the objective, Δt|γ|√d, the σ-sup (ε-free) and its maximiser."""
    assert norm_scaled_input_eps(1e-4, 10.0) == pytest.approx(1e-6)
    assert deepnorm_as_post(4.0, 0.5, 1e-4) == (0.125, pytest.approx(1e-4 / 16))
    assert pre_effective_output_decay(0.1, [0.5, 2.0], 2) == pytest.approx([0.4, 0.025])
    assert pre_absorbed_output_scale(0.3, 3) == pytest.approx([0.3] * 3)
    assert pre_decay_objective(1.0, 2.0, [4.0, 8.0], 0.5, [1.0, 0.25]) == pytest.approx(1 + 0.5 + 0.5 * (4 + 2))
    assert peri_update_row_norm(0.1, -2.0, 16) == pytest.approx(0.8)
    for alpha in (0.5, 1.5, 8.0):
        t = np.logspace(-4, 4, 400001)
        for eps in (1e-6, 1e-2):
            dev = deepnorm_post_deviation(np.sqrt(eps) * t, alpha, eps, 1.0, 4)
            sup, s_star = deepnorm_post_deviation_sup(alpha, 1.0, 4, eps)
            assert dev.max() == pytest.approx(sup, rel=1e-8)
            assert deepnorm_post_deviation(s_star, alpha, eps, 1.0, 4) == pytest.approx(sup, rel=1e-12)
    assert deepnorm_post_deviation_sup(1.0, 1.0, 4)[0] == 0.0


@pytest.mark.parametrize("call, name", [
    (lambda: pre_effective_output_decay(-1.0, 1.0, 2), "weight_decay"),
    (lambda: pre_effective_output_decay(1.0, 0.0, 2), "dt"),
    (lambda: deepnorm_as_post(0.0), "alpha"),
    (lambda: deepnorm_post_deviation(-1.0, 2.0, 1e-3, 1.0, 4), "sigma"),
    (lambda: deepnorm_post_deviation_sup(2.0, 1.0, 1), "d"),
    (lambda: norm_scaled_input_eps(1e-3, -1.0), "scale"),
    (lambda: peri_update_row_norm(0.0, 1.0, 4), "dt"),
    (lambda: peri_dt_as_output_gain(1.0, math.inf), "gamma_out"),
    (lambda: pre_decay_objective(math.nan, 1.0, [1.0], 0.1), "loss"),
])
def test_s3_domain_errors_name_the_parameter(call, name):
    """Outside the domain every S3 function raises a ValueError whose message starts with the parameter."""
    with pytest.raises(ValueError) as err:
        call()
    assert str(err.value).startswith(name)


def test_s3_deepnorm_default_step_is_one():
    """S3(b) with the default Δt = 1 (DeepNorm as written): Δt' = 1/α exactly, ε' = ε/α² (ε = 0 by default)."""
    assert deepnorm_as_post(4.0) == (0.25, 0.0)
    assert deepnorm_as_post(2.0, eps=1e-4) == (0.5, pytest.approx(2.5e-5))
