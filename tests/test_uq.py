"""U1 — the flow map's Lipschitz bound Π(1 + Δt_k ℓ_k) and W_p(T#μ, T#ν) ≤ Lip(T)·W_p(μ, ν), with exact OT.

The registered check (verify/checks/uq.py) pushes empirical clouds through random zoo stacks and compares exact
Wasserstein distances (assignment problem); a linear none stack with aligned spectra attains the bound. The
meta-test injects a square-rooted bound and asserts the check fails.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from theory.uq import (
    flow_lipschitz_bound,
    step_lipschitz_bounds,
    wasserstein_pushforward_bound,
)
from verify.checks.registry import Context
from verify.checks.uq import check_u1, empirical_wasserstein


def _failed(tallies) -> list[str]:
    return [t.check for t in tallies if not t.passed]


def test_u1_wasserstein_pushforward_bound_holds_and_is_attained(ctx):
    """U1: pairwise Lipschitz quotients and W_1, W_2 of pushed clouds never exceed Π L_k·W_p; the linear witness
    attains it."""
    tallies = check_u1(ctx)
    assert tallies
    bad = [(t.check, t.worst_error, t.worst_case) for t in tallies if not t.passed]
    assert not bad, bad


def test_u1_witness_on_each_device(ctx, device):
    """U1 witness on every available device."""
    tallies = check_u1(Context(level=ctx.level, seed=ctx.seed, device=device), parts=("witness",))
    assert tallies and all(t.passed for t in tallies)


def test_u1_meta_square_rooted_bound_fails(ctx):
    """U1 with √(Π L_k) in place of Π L_k is violated on the witness (and wherever the gain exceeds 1 enough)."""
    wrong = lambda lk: math.sqrt(flow_lipschitz_bound(lk))  # noqa: E731
    failed = _failed(check_u1(ctx, lipschitz=wrong, parts=("witness",)))
    assert "witness: W_p(T#μ, T#ν) ≤ Lip·W_p(μ, ν)" in failed


# Seeds at which no random pre draw exposed the dropped 1/√ε (soak, README "Mutation and soak").
U1_SOAK_SEEDS = (3163387465, 3057755704)


@pytest.mark.parametrize("seed", [None, *U1_SOAK_SEEDS], ids=["ctx", *map(str, U1_SOAK_SEEDS)])
def test_u1_meta_dropped_norm_jacobian_fails(ctx, seed):
    """U1 for pre without the norm layer's 1/√ε factor (treating N as 1-Lipschitz) is violated — by construction
    on the pre witness (a cloud about a zero-variance row, where LayerNorm's gain is exactly γ/√ε: the wrong bound
    is 4× too small there at every seed), not only when a random pre stack happens to be sensitive enough."""
    def wrong(placement, dt, jf, **kw):
        if placement == "pre":
            kw = dict(kw, eps=1.0)
        return step_lipschitz_bounds(placement, dt, jf, **kw)
    c = ctx if seed is None else Context(level=ctx.level, seed=seed, device=ctx.device)
    tallies = check_u1(c, step_bounds=wrong, parts=("witness",))
    assert "witness: W_p(T#μ, T#ν) ≤ Lip·W_p(μ, ν)" in _failed(tallies)
    pre = [t for t in tallies if t.check.startswith("witness: pre step")]
    assert pre and pre[0].worst_ratio > 3.9, pre  # measured/wrong bound = 6/1.5 = 4 up to the expansion's 1e-7


def test_u1_pre_witness_attains_the_bound(ctx):
    """The pre witness attains the correct bound 1 + Δt·s·γ/√ε = 6 (ratio 1 − O(1e-7)), so it pins the 1/√ε."""
    tallies = check_u1(ctx, parts=("witness",))
    pre = [t for t in tallies if t.check.startswith("witness: pre step")]
    assert pre and pre[0].passed and 0.999 < pre[0].worst_ratio <= 1 + 1e-10, pre


def test_u1_exact_optimal_transport():
    """The assignment solver gives exact W_p: brute force over all permutations (N = 6), and in 1-D the sorted
    coupling; a translate by v is at distance exactly ‖v‖."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    for p in (1, 2):
        brute = min(np.mean(np.linalg.norm(x - y[list(s)], axis=1) ** p) for s in itertools.permutations(range(6)))
        assert empirical_wasserstein(x, y, p) == pytest.approx(brute ** (1 / p), rel=1e-12)
        a, b = np.sort(rng.standard_normal(20)), np.sort(rng.standard_normal(20))
        assert empirical_wasserstein(a[:, None], b[:, None], p) == pytest.approx(np.mean(np.abs(a - b) ** p) ** (1 / p))
        v = np.array([0.3, -0.4, 0.0])
        assert empirical_wasserstein(x, x + v, p) == pytest.approx(0.5, rel=1e-12)


def test_u1_step_constants_by_hand():
    """U1 per-step constants: none 1 + ΔtJ, pre 1 + ΔtJγ/√ε, peri 1 + Δt(γ_o/√ε_o)J(γ_i/√ε_i), post (γ/√ε)(1 + ΔtJ)."""
    assert step_lipschitz_bounds("none", 0.5, [2.0]) == pytest.approx([2.0])
    assert step_lipschitz_bounds("pre", 0.5, [2.0], gamma=2.0, eps=0.25) == pytest.approx([5.0])
    assert step_lipschitz_bounds("peri", 0.5, [2.0], gamma=2.0, eps=0.25, gamma_out=1.0, eps_out=4.0) == \
        pytest.approx([3.0])
    assert step_lipschitz_bounds("post", 0.5, [2.0], gamma=2.0, eps=0.25) == pytest.approx([8.0])
    assert flow_lipschitz_bound([2.0, 3.0, 0.5]) == pytest.approx(3.0)
    assert wasserstein_pushforward_bound(3.0, 0.5) == 1.5


@pytest.mark.parametrize("call, name", [
    (lambda: step_lipschitz_bounds("pre", 0.5, [1.0], eps=0.0), "eps"),
    (lambda: step_lipschitz_bounds("peri", 0.5, [1.0], eps=1.0, eps_out=0.0), "eps_out"),
    (lambda: step_lipschitz_bounds("sideways", 0.5, [1.0]), "placement"),
    (lambda: step_lipschitz_bounds("none", 0.5, [-1.0]), "jf"),
    (lambda: step_lipschitz_bounds("none", -0.5, [1.0]), "dt"),
    (lambda: flow_lipschitz_bound([1.0, -1.0]), "step_lipschitz"),
    (lambda: wasserstein_pushforward_bound(-1.0, 1.0), "lipschitz"),
    (lambda: wasserstein_pushforward_bound(1.0, -1.0), "w_p"),
    (lambda: empirical_wasserstein(np.zeros((3, 2)), np.zeros((4, 2)), 1), "x and y"),
    (lambda: empirical_wasserstein(np.zeros((3, 2)), np.zeros((3, 2)), 3), "p"),
])
def test_u1_domain_errors_name_the_parameter(call, name):
    """Outside the domain every U1 function raises a ValueError whose message starts with the parameter."""
    with pytest.raises(ValueError) as err:
        call()
    assert str(err.value).startswith(name)


def test_u1_default_gains_are_one_by_hand():
    """The documented defaults γ = γ_out = 1 (the zoo's initial gains), by hand: pre 1 + ΔtJ/√ε = 1 + 0.5·2/0.5,
    peri 1 + Δt(1/√ε_o)J(1/√ε_i) = 1 + 0.5·0.5·2·2, post (1/√ε)(1 + ΔtJ) = 2·2 — a default that drifted from 1
    (or a γ exercised only at its default) would change these."""
    assert step_lipschitz_bounds("pre", 0.5, [2.0], eps=0.25) == pytest.approx([3.0])
    assert step_lipschitz_bounds("peri", 0.5, [2.0], eps=0.25, eps_out=4.0) == pytest.approx([2.0])
    assert step_lipschitz_bounds("peri", 0.5, [2.0], gamma=2.0, eps=0.25, eps_out=4.0) == pytest.approx([3.0])
    assert step_lipschitz_bounds("post", 0.5, [2.0], eps=0.25) == pytest.approx([4.0])
