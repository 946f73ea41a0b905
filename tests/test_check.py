"""K8 — the architecture sanity check tells the truth about the zoo: regime, placement, expected curve, criterion.

Each zoo placement must be classified into the regime its theorem predicts at initialisation (F1 bounded, F5
polynomial, F4 exponential), recognised from measured invariances alone (DeepNorm as post, LayerNorm-Scaling as
pre, Mix-LN as post then pre), and its measured second moments must lie in the band of the recognised placement's
F5 expected curve. Every one of these can fail: meta-tests inject a wrong regime, a wrong placement law and a
branch constant off by 10 % and require the same comparison to fail.
"""
from __future__ import annotations

import numpy as np
import pytest

from verify.check.core import THEORY_REGIME, ZOO_PLACEMENTS, Options, run
from verify.check.expected import expected_at_init
from verify.check.layers import probe_input, zoo_blocks
from verify.check.measure import run_chain
from verify.check.placement import ZOO_EQUIVALENT, recognise
from verify.check.regime import _classify, _fits, fit_regime
from verify.checks.registry import Context
from verify.checks.sanity import check_c1
from verify.engine.zoo import Stack, StackConfig

# The size and seed C1 runs at the quick level, so the registered check and these tests share one set of runs.
SMALL = dict(d=16, depth=24, instances=64, n_tokens=3, dt_grid=(1.0,), seed=20251010)
_RUNS: dict = {}


def cached_run(opts: Options) -> dict:
    key = repr(opts)
    if key not in _RUNS:
        _RUNS[key] = run(opts)
    return _RUNS[key]


@pytest.fixture(scope="module")
def zoo_results():
    return {p: cached_run(Options(placement=p, **SMALL)) for p in ZOO_PLACEMENTS}


@pytest.mark.parametrize("placement", ZOO_PLACEMENTS)
def test_zoo_placement_regime_recognition_and_expected_curve(zoo_results, placement):
    res = zoo_results[placement]
    assert res["growth"]["regime"] == THEORY_REGIME[placement][0], res["growth"]
    assert res["placement"]["label"] == ZOO_EQUIVALENT[placement], res["placement"]["description"]
    assert res["declared"]["recognised_as_expected"] and res["declared"]["agrees"]
    assert res["expected"]["verdict"] == "PASS", res["expected"]
    # Bootstrap confidence: at least 80 % of instance resamples agree (64 instances, docs/theorems/C.md C1d).
    assert res["growth"]["confidence"] >= 0.8


def test_mixln_is_recognised_layer_by_layer(zoo_results):
    """Mix-LN is post in its first ⌊L/4⌋ blocks and pre afterwards: the recognition says so per layer."""
    runs = zoo_results["mixln"]["placement"]["runs"]
    assert [(r["label"], r["first"], r["last"]) for r in runs] == [("post", 0, 5), ("pre", 6, 23)]


def test_classification_separates_the_regimes(zoo_results):
    """Meta-test: swapping the theory of two placements (post ↔ none, pre → post) makes the comparison fail."""
    wrong = dict(THEORY_REGIME, post=THEORY_REGIME["none"], none=THEORY_REGIME["post"], pre=THEORY_REGIME["post"])
    for p in ("post", "none", "pre"):
        assert zoo_results[p]["growth"]["regime"] != wrong[p][0]


def test_polynomial_exponent_of_pre_ln_is_near_one_half(zoo_results):
    """F5: E‖x_l‖² grows additively at init, so r_l ~ √l; the deep-half exponent's 95 % interval is near 1/2
    (finite depth biases it low: r² = r0² + c·l has local slope c·l/(2(r0² + c·l)) < 1/2)."""
    lo, hi = zoo_results["pre"]["growth"]["exponent_ci95"]
    assert 0.3 < lo and hi < 0.65


def _zoo_case(placement, I=16, n=3, d=16, L=12, seed=0):
    blocks = zoo_blocks(Stack(StackConfig(d=d, n_blocks=L, placement=placement, sublayers=("mlp",)), I, seed=seed))
    traj = run_chain(blocks, probe_input(I, n, d, seed), seed)
    return blocks, traj, recognise(blocks, n, d, seed + 1, single_step=True)


@pytest.mark.parametrize("placement,wrong,reference", [("pre", "post", None), ("post", "pre", None),
                                                        ("none", "pre", True)])
def test_expected_curve_fails_with_the_wrong_placement(placement, wrong, reference):
    """Meta-test: the law of a wrong placement (post's flat curve for pre, pre's additive one for post, pre's
    scale-free branch energy for a no-norm stack) fails the same band the right one passes."""
    blocks, traj, rec = _zoo_case(placement)
    assert expected_at_init(blocks, traj, rec["per_layer"])["verdict"] == "PASS"
    labels = [[wrong] for _ in blocks]
    bad = expected_at_init(blocks, traj, rec["per_layer"], labels=labels, reference_scale=reference)
    assert bad["verdict"] == "FAIL" and bad["error_over_tolerance"] > 2


@pytest.mark.parametrize("placement", ["pre", "peri"])
def test_expected_curve_fails_with_a_constant_off_by_ten_percent(placement):
    """Meta-test: every branch energy ×0.9 or ×1.1 fails at a size whose band is below 10 % (64 instances of 16
    tokens at d = 32: measured halfwidth 0.048 in log), while the right constant passes."""
    blocks, traj, rec = _zoo_case(placement, I=64, n=16, d=32, L=8, seed=3)
    assert expected_at_init(blocks, traj, rec["per_layer"])["verdict"] == "PASS"
    for factor in (0.9, 1.1):
        assert expected_at_init(blocks, traj, rec["per_layer"], branch_factor=factor)["verdict"] == "FAIL"


CRIT = dict(d=16, depth=12, instances=8, n_tokens=3)


def test_criterion_is_not_vacuous_for_no_norm_stacks():
    """A no-norm stack passes the (B, τ) criterion at small Δt and fails it at large Δt."""
    crit = run(Options(placement="none", dt_grid=(0.05, 0.5, 2.0), **CRIT))["criterion"]
    assert crit["sweep"][0]["stable"] and not crit["sweep"][-1]["stable"]
    assert crit["recommended_dt"] == 0.5 and crit["at_edge"] is None


def test_criterion_says_when_the_optimum_is_at_the_grid_edge():
    """The post stack passes at the grid's largest Δt: the result says the optimum may lie beyond; a grid where
    nothing passes says to extend it downwards."""
    crit = run(Options(placement="post", dt_grid=(0.5, 2.0), **CRIT))["criterion"]
    assert crit["recommended_dt"] == 2.0 and crit["at_edge"] == "upper" and "upwards" in crit["note"]
    low = run(Options(placement="none", dt_grid=(4.0, 8.0), **CRIT))["criterion"]
    assert low["recommended_dt"] is None and low["at_edge"] == "lower" and "downwards" in low["note"]


def test_fit_regime_on_synthetic_curves():
    """Known curves: √(1 + l) polynomial with exponent ≈ 1/2, 1.3^l exponential, a constant bounded, 0.7^l and
    1/(1 + l) decaying (the 10⁵-fold shrink the old fit called 'polynomial, exponent −8.6')."""
    l = np.arange(33.0)
    noise = 1 + 1e-3 * np.random.default_rng(0).standard_normal((20, 33))
    assert fit_regime(np.sqrt(1 + l) * noise)["regime"] == "polynomial"
    assert fit_regime(1.3 ** l * noise)["regime"] == "exponential"
    assert fit_regime(np.ones(33) * noise)["regime"] == "bounded"
    assert fit_regime(0.7 ** l * noise)["regime"] == "decaying"
    assert fit_regime(1 / (1 + l) * noise)["regime"] == "decaying"


def test_one_effective_instance_gives_no_interval():
    """A single network has nothing to resample: no confidence and no interval, rather than a false one."""
    l = np.arange(17.0)
    fit = fit_regime(np.sqrt(1 + l)[None] * np.ones((8, 1)), effective_instances=1)
    assert fit["confidence"] is None and fit["exponent_ci95"] is None and not fit["bootstrap"]


def test_resamples_are_labelled_by_the_decision_rule():
    """Additive second moments m_l = 1 + l/2 (F5's law, a = 0) with 10 % independent noise, 16 instances: the
    decision is polynomial at every seed and at least 95 % of resamples agree (a resample is "exponential" only
    if its transported lower bound a_b − (a − a_lo) is above 0, ≤ 2.5 % by construction plus the compounding
    condition). Witness that the rule matters: labelling each resample by its point a (the old rule, soak seed
    3680913851's peri) gives confidence 0.745 at seed 2 while the decision is polynomial."""
    l = np.arange(25.0)
    old = []
    for seed in range(10):
        r = np.sqrt(1 + 0.5 * l)[None] * (1 + 0.1 * np.random.default_rng(seed).standard_normal((16, 25)))
        fit = fit_regime(r, seed=seed)
        assert fit["regime"] == "polynomial" and fit["confidence"] >= 0.95, (seed, fit["confidence"])
        rng = np.random.default_rng(seed)  # fit_regime's resamples, relabelled by the point rule
        boots = [_fits(rb.mean(0) / rb[:, 0].mean()) for rb in (r[rng.integers(0, 16, 16)] for _ in range(200))]
        old.append(sum(_classify(b) == "polynomial" for b in boots) / 200)
    assert min(old) < 0.8, old


def _c1_meta(ctx: Context, monkeypatch) -> list:
    """C1 with pre's theory regime replaced by post's, against C1 with the right theory on the same runs."""
    import verify.checks.sanity as sanity

    monkeypatch.setattr(sanity, "run", cached_run)  # both calls share the six zoo runs
    right = check_c1(ctx)
    wrong = check_c1(ctx, theory_regime=dict(THEORY_REGIME, pre=THEORY_REGIME["post"]))
    # Precondition, by construction of the zoo: pre's measured growth is polynomial (deep exponent ~0.4, 20x the
    # bounded threshold; bootstrap confidence 1.0 at every seed seen), so the injected "bounded" cannot match it.
    pre = cached_run(Options(placement="pre", seed=ctx.seed % 2**31, dt_grid=(1.0,), d=SMALL["d"],
                             depth=SMALL["depth"], instances=SMALL["instances"], n_tokens=SMALL["n_tokens"]))
    assert pre["growth"]["regime"] == "polynomial" != THEORY_REGIME["post"][0], pre["growth"]
    # The regime tally gains exactly one failure, the pre case; with the right theory pre passes.
    assert wrong[0].failures == right[0].failures + 1 and not wrong[0].passed
    if right[0].failures == 0:
        assert wrong[0].worst_case["placement"] == "pre"
    # Recognition, expected curve and bootstrap confidence do not read the theory: identical verdicts and numbers.
    for r, w in zip(right[1:], wrong[1:]):
        assert (r.passed, r.failures, r.cases, r.worst_error) == (w.passed, w.failures, w.cases, w.worst_error), r.check
    return right


def test_registered_check_c1_fails_exactly_where_the_theory_is_wrong(ctx, monkeypatch, zoo_results):
    """C1 with pre's theory regime replaced by post's: the regime tally fails on that one placement and the
    recognition, expected-curve and confidence tallies (independent of the injected theory) are unchanged.

    Compared with C1 under the right theory rather than required to pass: whether C1's bootstrap-confidence
    witness passes depends on the seed (soak seeds 3057755704, 3680913851: lns and peri below 0.8 with the right
    theory too, README "Mutation and soak"); that is C1's own finding, not the meta-test's business."""
    if ctx.level != "quick":
        pytest.skip("the cached runs are the quick size")
    _c1_meta(ctx, monkeypatch)


@pytest.mark.parametrize("seed", [3057755704, 3680913851])
def test_c1_meta_at_the_soak_seeds(seed, ctx, monkeypatch):
    """Regression (6 zoo runs each): the soak seeds at which the old meta-test failed on C1's confidence, and at
    which C1 itself failed under the right theory (lns confidence 0.605 at 3057755704: 16 instances could not
    resolve its exponent 0.063 from the 0.02 threshold; peri 0.775 at 3680913851: resamples labelled by their
    point a). With 64 instances and one rule for sample and resamples every C1 tally passes."""
    if ctx.level != "quick":
        pytest.skip("the cached runs are the quick size")
    right = _c1_meta(Context(level=ctx.level, seed=seed, device=ctx.device), monkeypatch)
    assert all(t.passed for t in right), [(t.check, t.worst_case) for t in right if not t.passed]
