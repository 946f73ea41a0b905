"""F9 — AdamW with decoupled weight decay: the update bound C_t, the weight bound along the trajectory and the
pre-LN hidden-state envelope (docs/theorems/F8-F9.md). torch's own AdamW is the measurement; meta-tests inject a
constant 10% too small and the wrong exponent (1−ηλ)^{t/2} and show the same check fails."""
from __future__ import annotations

import math

import numpy as np
import pytest

from theory import adamw as th
from verify.checks import certificates as chk
from verify.checks.registry import REGISTRY
from verify.training import certificates as cert


def _named(tallies, fragment):
    found = [t for t in tallies if fragment in t.check]
    assert found, fragment
    return found


@pytest.fixture(scope="module")
def f9(ctx):
    return chk.check_f9(ctx)


def test_f9_registered():
    assert "F9" in REGISTRY and REGISTRY["F9"].tests == ("tests/test_adamw_bound.py",)


def test_update_bound_holds_on_torch_adam_streams(f9):
    t = _named(f9, "update: |u_t|")[0]
    assert t.passed and t.comparisons >= 1000 and t.instances == "random"


def test_witness_stream_attains_update_and_weight_bounds(f9):
    for t in _named(f9, "witness"):
        assert t.passed and t.worst_ratio >= chk.WITNESS_THRESHOLD


def test_weight_bounds_and_envelope_hold_at_every_logged_step(f9):
    """Entrywise, spectral and hidden-state bounds on tiny GPTs trained with the suite's AdamW, all 40 steps."""
    for frag in ("max|W_t", "‖W_t‖₂", "pre-LN GPTs"):
        t = _named(f9, frag)[0]
        assert t.passed and t.comparisons > 0 and t.instances == "trained"
    tight = _named(f9, "pre-LN GPTs")[0].numbers["tightness"]
    pre = [v for k, v in tight.items() if k.startswith("pre/")]
    assert pre and all(0 < v["envelope_ratio_last"] <= 1 for v in pre)


def test_meta_update_constant_ten_percent_too_small_fails(ctx):
    def wrong(t, b1, b2):
        return 0.9 * np.asarray(th.adam_update_bound(t, b1, b2))

    tallies = chk.check_f9(ctx, update_bound=wrong)
    assert not _named(tallies, "witness: scalar AdamW")[0].passed
    assert not _named(tallies, "max|W_t")[0].passed


def test_meta_wrong_decay_exponent_fails(ctx):
    """(1−ηλ)^{t/2} instead of (1−ηλ)^t is a larger bound: never violated, but the witness no longer attains it."""
    tallies = chk.check_f9(ctx, decay_exponent=0.5)
    assert not _named(tallies, "witness: scalar AdamW")[0].passed


def test_meta_wrong_update_exponent_fails():
    """Σq^i to the power 1 instead of 1/2 overshoots, to the power 1/4 is violated by the witness stream."""
    n = 50
    for b1, b2 in ((0.9, 0.95), (0.9, 0.999)):
        u = chk.adam_updates(th.adam_witness_stream(n, b1, b2, 1e-3)[:, None], b1, b2, 0.0)[:, 0]
        assert np.max(u / th.adam_update_bound(np.arange(1, n + 1), b1, b2, exponent=0.25)) > 1.01
        assert np.min(u / th.adam_update_bound(np.arange(1, n + 1), b1, b2, exponent=1.0)) < 0.99


def test_closed_forms():
    """C_1 = 1 (the first Adam step is sign(g)); C_t ↑ C_∞ = (1−β₁)/√((1−β₂)(1−β₁²/β₂)); constant η, λ:
    S_t = Σ_s ηC_s(1−ηλ)^{t−s} ≤ C_∞(1 − (1−ηλ)^t)/λ."""
    assert th.adam_update_bound(1, 0.9, 0.95) == pytest.approx(1.0, abs=1e-15)
    c = th.adam_update_bound(np.arange(1, 2000), 0.9, 0.95)
    lim = th.adam_update_bound_limit(0.9, 0.95)
    assert np.all(np.diff(c) >= -1e-15) and c[-1] == pytest.approx(lim, rel=1e-12)
    assert lim == pytest.approx(0.1 / math.sqrt(0.05 * (1 - 0.81 / 0.95)))
    assert th.adam_update_bound_limit(0.99, 0.9) == math.inf
    eta, lam, n = 1e-2, 0.1, 300
    s = th.adamw_deviation_bound(np.full(n, eta), lam, 0.9, 0.95)
    assert np.all(s <= lim * (1 - (1 - eta * lam) ** np.arange(n + 1)) / lam + 1e-15)
    np.testing.assert_allclose(th.adamw_decay_products([0.1, 0.2], 0.5), [1.0, 0.95, 0.95 * 0.9])


@pytest.mark.parametrize("call, name", [
    (lambda: th.adam_update_bound(0, 0.9, 0.95), "t"),
    (lambda: th.adam_update_bound(1, 1.0, 0.95), "beta1"),
    (lambda: th.adam_update_bound(1, 0.9, -0.1), "beta2"),
    (lambda: th.adamw_deviation_bound([1e-3, -1.0], 0.1), "lrs"),
    (lambda: th.adamw_deviation_bound([1e-3], -0.1), "weight_decay"),
    (lambda: th.adamw_deviation_bound([2.0], 1.0), "weight_decay"),
    (lambda: th.adamw_norm_bound(1.0, [1e-3], 0.1, 0), "size"),
    (lambda: th.adamw_norm_bound(-1.0, [1e-3], 0.1, 4), "w0_norm"),
])
def test_bad_input(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_api_bad_input():
    model, init, _, lrs, _ = chk.trained_logged("pre", 10)
    with pytest.raises(ValueError, match="steps"):
        cert.adamw_envelope_ratio(init, model, 1e-3, 0.1)
    with pytest.raises(ValueError, match="steps"):
        cert.adamw_envelope_ratio(init, model, lrs, 0.1, steps=len(lrs) + 1)
    with pytest.raises(ValueError, match="weight_decay"):
        cert.adamw_envelope_ratio(init, model, lrs, float("nan"))
    with pytest.raises(ValueError, match="betas"):
        cert.adamw_envelope_ratio(init, model, lrs, 0.1, betas=(0.9,))
    with pytest.raises(ValueError, match="model_init_state"):
        cert.adamw_envelope_ratio({}, model, lrs, 0.1)
    with pytest.raises(ValueError, match="history"):
        cert.adamw_envelope_ratio(init, model, lrs, 0.1, history=[(len(lrs) + 5, init)])
