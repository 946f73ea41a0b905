"""F8 — a-posteriori certificates: F1/F2/F3 and B3 evaluated with a trained model's own constants
(docs/theorems/F8-F9.md). The registered check trains tiny pre/peri/post GPTs; meta-tests inject a wrong chain
(a constant 10% too small) and show the same check fails."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from theory import certificates as th
from verify.checks import certificates as chk
from verify.checks.registry import REGISTRY
from verify.training import certificates as cert


def _named(tallies, fragment):
    found = [t for t in tallies if fragment in t.check]
    assert found, fragment
    return found


@pytest.fixture(scope="module")
def f8(ctx):
    return chk.check_f8(ctx)


def test_f8_registered():
    assert "F8" in REGISTRY and REGISTRY["F8"].tests == ("tests/test_certificates.py",)


def test_forward_certificate_holds_on_trained_models_every_tier(f8):
    """max_i‖x_k,i‖ ≤ R_k at every layer for pre, peri and post, in every tier (weights, inputs, a posteriori)."""
    for t in _named(f8, "forward certificate"):
        assert t.passed and t.comparisons > 0, (t.check, t.worst_case)
        assert t.instances == "trained" and t.evidence == "independent"


def test_gradient_certificate_holds_on_trained_models(f8):
    """‖p_k‖ ≤ ∏_{j≥k}‖A_j‖‖p_K‖, ≤ ∏(1 + ‖A_j − I‖)‖p_K‖ (residual rules), and ≤ ‖∏A_jᵀ‖‖p_K‖."""
    for t in _named(f8, "gradient certificate"):
        assert t.passed and t.comparisons > 0, (t.check, t.worst_case)


def test_certificates_are_tight_on_the_tiny_models(f8):
    """The goals of issue 8 at the tests' size: forward ratio ≥ 0.1 at the last layer in the a-posteriori tier,
    gradient ratio ≥ 0.01 at k = 0 in the product-of-‖A_j‖ tier (measured, not assumed: see the note)."""
    ratios = _named(f8, "tier aposteriori")[0].numbers["last_layer_ratios"]
    assert {r.split("/")[0] for r in ratios} == {"pre", "peri", "post"}
    for r in ratios.values():
        assert r["forward"]["aposteriori"] >= 0.1
        assert r["gradient_k0"]["exact_gains"] >= 0.01
        # the tiers are nested: a posteriori ≥ inputs ≥ weights (the same chain with smaller constants)
        assert r["forward"]["aposteriori"] >= r["forward"]["inputs"] - 1e-12 >= r["forward"]["weights"] - 2e-12
        assert r["gradient_k0"]["end_to_end"] >= r["gradient_k0"]["exact_gains"] - 1e-12


def test_witnesses_attain_both_chains(f8):
    for t in _named(f8, "witness"):
        assert t.passed and t.worst_ratio >= chk.WITNESS_THRESHOLD


def test_meta_forward_chain_with_a_constant_ten_percent_too_small_fails(ctx):
    def wrong(x0, dt, c, flags):
        return th.forward_chain(x0, dt, 0.9 * np.asarray(c), flags)

    tallies = chk.check_f8(ctx, chain=wrong)
    assert not _named(tallies, "witness: aligned")[0].passed
    assert any(not t.passed for t in _named(tallies, "forward certificate"))


def test_meta_gradient_chain_with_gains_ten_percent_too_small_fails(ctx):
    def wrong(g, p):
        return th.gradient_chain(0.9 * np.asarray(g), p)

    tallies = chk.check_f8(ctx, gchain=wrong)
    # the witness catches it; the trained models (one-step ratios ≤ 0.75) are not tight enough to
    assert not _named(tallies, "witness: common top")[0].passed


def test_forward_chain_closed_form():
    """R_{j+1} = R_j + Δt c (residual) or c (normalising): a hand-computed case."""
    r = th.forward_chain(1.0, [0.5, 1.0, 2.0], [2.0, 3.0, 1.0], [False, True, False])
    np.testing.assert_allclose(r, [1.0, 2.0, 3.0, 5.0])
    np.testing.assert_allclose(th.gradient_chain([2.0, 3.0], 1.0), [6.0, 3.0, 1.0])
    np.testing.assert_allclose(th.one_step_ratios([3.0, 1.0, 1.0], [2.0, 1.0]), [1.5, 1.0])


@pytest.mark.parametrize("kw, name", [
    ({"x0_norm": -1.0, "dt": [1.0], "c": [1.0], "normalising": [False]}, "x0_norm"),
    ({"x0_norm": 1.0, "dt": [0.0], "c": [1.0], "normalising": [False]}, "dt"),
    ({"x0_norm": 1.0, "dt": [1.0], "c": [np.nan], "normalising": [False]}, "c"),
    ({"x0_norm": 1.0, "dt": [1.0, 1.0], "c": [1.0], "normalising": [False, False]}, "c"),
])
def test_forward_chain_bad_input(kw, name):
    with pytest.raises(ValueError, match=name):
        th.forward_chain(**kw)


def test_api_bad_input():
    model, _, _, _, text = chk.trained_logged("pre", 10)
    x, y = chk.probe_batch(text, 10)
    with pytest.raises(ValueError, match="model"):
        cert.forward_certificate(object(), x)
    with pytest.raises(ValueError, match="tokens"):
        cert.forward_certificate(model, x.float())
    with pytest.raises(ValueError, match="tokens"):
        cert.forward_certificate(model, torch.full((1, 4), 10**6))
    with pytest.raises(ValueError, match="targets"):
        cert.gradient_certificate(model, x, y[:, :3])
    with pytest.raises(ValueError, match="tokens"):
        cert.gradient_certificate(model, x, y, max_dense=8)
    with pytest.raises(ValueError, match="max_dense"):
        cert.gradient_certificate(model, x, y, max_dense=0)


def test_none_placement_is_refused():
    from verify.training.gpt import GPT, gpt_config

    m = GPT(gpt_config(vocab_size=8, block_size=4, d=4, n_blocks=1, n_heads=1, placement="none"))
    with pytest.raises(ValueError, match="placement"):
        cert.forward_certificate(m, torch.zeros((1, 4), dtype=torch.int64))


def test_grad_norms_figure_draws_the_certificate_from_the_trained_model():
    """Figure 3's trained row: the F8 envelopes come from that model's own Jacobians and hold per layer; the
    forward certificate is there for normalised placements and absent for 'none'."""
    from verify.figures import grad_norms as gn

    s = gn.sizes("cpu", True)
    idx, targets = gn.monitor_batch(s, 0)
    for placement in ("pre", "none"):
        state, _ = gn.trained_state("cpu", True, 0, placement, 1.0)
        rec = gn.certificate(gn.measurement_model(s, placement, 1.0, 0, state), idx, targets)
        g = rec["gradient"]
        assert g["headline"] == "end_to_end" and all(r <= 1 + 1e-9 for r in g["ratio"])
        assert all(e >= p - 1e-12 for e, p in zip(g["tiers"]["exact_gains"]["ratio"], g["tiers"]["b3_rates"]["ratio"]))
        assert (rec["forward"] is None) == (placement == "none")
