"""Mutation-run gaps in theory/forward.py, theory/certificates.py and theory/trained.py (README "Mutation and
soak"): return types of scalar inputs, shape handling of per-instance arrays, boundary values of input checks and
the fixed arguments of thin wrappers, each against a value written out by hand from the docstring's formula.
Tolerance rel 1e-12: every reference is a handful of float64 operations (round-off ~1e-16)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from theory import certificates as tc
from theory import forward as tf
from theory import trained as tt

REL = 1e-12


# ---- forward ------------------------------------------------------------------------------------------------------
def test_post_row_bound_scalar_and_mixed_shapes():
    """‖γ‖_∞√d + ‖β‖₂: a float for scalars, an elementwise array when either argument is an array."""
    out = tf.post_row_bound(9, 1.5, 0.25)
    assert type(out) is float and out == pytest.approx(1.5 * 3 + 0.25, rel=REL)
    got = tf.post_row_bound(4, 2.0, [0.0, 1.0])  # gain scalar, β array
    np.testing.assert_allclose(got, [4.0, 5.0], rtol=REL)
    got = tf.post_row_bound(4, [1.0, 3.0], 0.5)  # gain array, β scalar
    np.testing.assert_allclose(got, [2.5, 6.5], rtol=REL)


def test_n_steps_one_and_consistent_arrays():
    """n_steps = 1 is a valid depth; a per-step array whose length equals n_steps is accepted, another is not."""
    np.testing.assert_allclose(tf.peri_norm_bound(1.0, 0.5, 2.0, n_steps=1), [1.0, 2.0], rtol=REL)
    np.testing.assert_allclose(tf.peri_norm_bound(1.0, [0.5, 0.25, 1.0], 2.0, n_steps=3),
                               [1.0, 2.0, 2.5, 4.5], rtol=REL)
    with pytest.raises(ValueError, match="n_steps"):
        tf.peri_norm_bound(1.0, [0.5, 0.25, 1.0], 2.0, n_steps=2)


def test_per_instance_constants_broadcast_against_scalar_start():
    """c_out of shape (K, 3) (three instances) with a scalar x0: the bound has shape (K+1, 3), column by column."""
    c = np.array([[1.0, 2.0, 3.0], [0.5, 0.0, 4.0]])
    got = tf.peri_norm_bound(2.0, [0.5, 2.0], c)
    want = np.array([[2.0, 2.0, 2.0], [2.5, 3.0, 3.5], [3.5, 3.0, 11.5]])
    assert got.shape == (3, 3)
    np.testing.assert_allclose(got, want, rtol=REL)


# ---- certificates -------------------------------------------------------------------------------------------------
def test_forward_chain_integer_flags_and_instances():
    """normalising given as 0/1 integers equals the boolean form; c (K, 2) against a scalar R_0 gives (K+1, 2)."""
    c = np.array([[1.0, 2.0], [3.0, 0.5], [0.25, 0.25]])
    got = tc.forward_chain(1.0, [0.5, 1.0, 2.0], c, [0, 1, 0])
    want = np.array([[1.0, 1.0], [1.5, 2.0], [3.0, 0.5], [3.5, 1.0]])
    np.testing.assert_allclose(got, want, rtol=REL)
    np.testing.assert_array_equal(got, tc.forward_chain(1.0, [0.5, 1.0, 2.0], c, [False, True, False]))
    with pytest.raises(ValueError, match="normalising"):
        tc.forward_chain(1.0, [0.5], [1.0], [2])


def test_one_step_ratios_by_hand():
    """‖p_k‖/(g_k‖p_{k+1}‖) with g ≠ 1, p ≠ 1; a zero denominator gives inf (p_k > 0) or 1 (0/0, nothing lost)."""
    p = np.array([3.0, 2.0, 0.0, 0.0, 4.0])
    g = np.array([2.0, 5.0, 0.5, 3.0])
    got = tc.one_step_ratios(p, g)
    # k=0: 3/(2·2); k=1: den 5·0 = 0, p_1 = 2 > 0 -> inf; k=2: den 0, p_2 = 0 -> 1; k=3: 0/(3·4) = 0
    np.testing.assert_array_equal(got, [0.75, np.inf, 1.0, 0.0])
    # a zero gain (not a zero adjoint) also makes the denominator vanish
    np.testing.assert_array_equal(tc.one_step_ratios([0.0, 1.0], [0.0]), [1.0])
    np.testing.assert_array_equal(tc.one_step_ratios([2.0, 1.0], [0.0]), [np.inf])


# ---- trained ------------------------------------------------------------------------------------------------------
def test_activation_bounds_by_hand():
    """F6 (iii): H = ‖W₁‖r + ‖b₁‖ (MLP without its output map) and r·√(Σ_h‖W_V^h‖²) (attention before W_O)."""
    assert tt.activation_bound_mlp(2.0, 3.0, 0.5) == pytest.approx(6.5, rel=REL)
    assert tt.activation_bound_mlp(2.0, 3.0) == pytest.approx(6.0, rel=REL)
    assert tt.activation_bound_attention(2.0, [3.0, 4.0]) == pytest.approx(10.0, rel=REL)


def test_pre_weight_energy_bound_needs_steps():
    for bad in (2.0, np.zeros((0, 3))):
        with pytest.raises(ValueError, match="in_norms"):
            tt.pre_weight_energy_bound(0.5, 1.0, bad, bad)


def test_depth_free_bound_lengths_and_types():
    with pytest.raises(ValueError, match="norm_range"):
        tt.trained_pre_depth_free_bound([0.5, 0.25], [1.0, 2.0, 3.0], 1.0, 0.1)
    with pytest.raises(ValueError, match="norm_range"):
        tt.trained_pre_depth_free_bound([0.5, 0.25, 1.0], [1.0, 2.0], 1.0, 0.1)
    out = tt.trained_pre_depth_free_bound([0.5, 0.25], [1.0, 4.0], 2.0, 0.5)
    assert type(out) is float and out == pytest.approx(1.0 * 2.0 / 0.5, rel=REL)
    arr = tt.trained_pre_depth_free_bound(0.5, 2.0, np.array([1.0, 3.0]), 0.5)
    assert isinstance(arr, np.ndarray) and arr.shape == (2,)
    np.testing.assert_allclose(arr, [2.0, 6.0], rtol=REL)


def test_attention_balance_residual_by_hand():
    """1-d arguments are one instance (odd length 3); 2-d ones are flattened per leading row."""
    gv, wv, go, wo = [1.0, 2.0, 2.0], [0.0, 3.0, 4.0], [2.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    gap, bound = tt.attention_balance_residual(gv, wv, go, wo, 0.5)
    np.testing.assert_allclose(gap, [abs(25.0 - 3.0)], rtol=REL)
    np.testing.assert_allclose(bound, [(3.0 * 5.0 + 2.0 * math.sqrt(3.0)) / 0.5], rtol=REL)
    g2 = np.array([[[1.0, 0.0], [0.0, 0.0]], [[3.0, 0.0], [0.0, 4.0]]])
    w2 = np.array([[[2.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [0.0, 0.0]]])
    gap, bound = tt.attention_balance_residual(g2, w2, g2, 2 * w2, np.array([1.0, 2.0]))
    np.testing.assert_allclose(gap, [abs(4.0 - 16.0), abs(1.0 - 4.0)], rtol=REL)
    np.testing.assert_allclose(bound, [(1 * 2 + 1 * 4) / 1.0, (5 * 1 + 5 * 2) / 2.0], rtol=REL)
