"""Issue 11 §1: every hypothesis strategy that feeds a closed form draws each parameter away from its default.

For each audited strategy (docs/theorems/evidence.md, "Strategy coverage") two properties are asserted:

1. *coverage* — over ``N_COVERAGE`` draws with a fixed seed, each listed parameter takes at least one value that
   is not its default (the StackConfig default, or the degenerate value hypothesis tries first: Δt = 1, β = 0,
   ε = 0, one head, one token, d at its minimum, one block);
2. *first draws* — hypothesis tries the simplest example first (``log_uniform`` gives 10**0 = 1, ``sampled_from``
   its first element), and the quick level runs only 2-12 examples, so for each strategy the first ``examples``
   draws at the seed its check uses (``Context().seed + offset``) must not leave a listed parameter at its default
   in every one of them. Parameters that a check covers with a fixed non-degenerate case instead are listed in
   ``fixed`` and exempt from (2) only.

The meta-tests pin a parameter to its default and show that both assertions fail on it.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from hypothesis import strategies as st

from verify.checks import backward as bw
from verify.checks import criterion as cr
from verify.checks import forward as fw
from verify.checks import init_moments as im
from verify.checks import neighbours as nb
from verify.checks import norms as nm
from verify.checks import oracle as orc
from verify.checks import uq
from verify.checks.registry import Context
from verify.engine.strategies import StackCase, log_uniform, run_over, stack_cases

N_COVERAGE = 200
SEED = Context().seed  # the seed the main job and the quick tests run at

# What counts as "at its default" for each StackConfig-level parameter. ε's default 1e-5 is never drawn exactly;
# its degenerate value is 0 (the first draw of epsilons()), and ε_out's is None (it then falls back to ε).
CFG_DEFAULTS = dict(gamma=1.0, beta=0.0, eps=0.0, eps_out=None, dt=1.0, weight_scale=1.0, out_scale=1.0,
                    qk_scale=1.0, bias_std=0.0, n_heads=1, causal=False, activation="gelu", norm="layer",
                    depth=1)


def cfg_params(cfg, n_tokens=None) -> dict:
    """The audited parameters of a StackConfig (and the token count) as name -> value."""
    out = {k: getattr(cfg, k) for k in ("gamma", "beta", "eps", "eps_out", "dt", "weight_scale", "out_scale",
                                         "qk_scale", "bias_std", "n_heads", "causal", "activation", "norm")}
    out["depth"] = cfg.n_blocks
    out["d"] = cfg.d
    if n_tokens is not None:
        out["n_tokens"] = n_tokens
    return out


def is_default(value, default) -> bool:
    """A per-step Δt tuple is at its default when every entry is; floats compare exactly (the draws are exact)."""
    if isinstance(value, tuple) and not isinstance(default, tuple):
        return all(is_default(v, default) for v in value)
    return value == default


@dataclasses.dataclass(frozen=True)
class Audited:
    """One audited strategy: how to build it, how to read its parameters, and what its check draws."""

    name: str
    strategy: Callable[[], st.SearchStrategy]
    params: Callable[[object], dict]
    defaults: dict
    quick: int  # examples its check draws at the quick level
    offset: int  # its check's seed is Context().seed + offset
    fixed: tuple[str, ...] = ()  # parameters a fixed non-degenerate case in the check covers (exempt from (2))


def _stack(e):
    return cfg_params(e.cfg, e.n_tokens)


def _d(lo):
    return dict(CFG_DEFAULTS, d=lo, n_tokens=1)


def _only(defaults: dict, keys) -> dict:
    return {k: defaults[k] for k in keys}


ALL_CFG = ("gamma", "beta", "eps", "dt", "weight_scale", "out_scale", "qk_scale", "bias_std", "n_heads", "causal",
           "activation", "norm", "depth", "d", "n_tokens")

AUDITED = [
    # -- the shared sampler and the checks that call it directly (F1, F2, F3, F4, B1-B4, O*, F6 symmetry)
    Audited("stack_cases[F3]", lambda: stack_cases(placements=("pre", "lns", "mixln"), **fw.SPECTRAL_DRAW), _stack,
            _only(_d(2), ALL_CFG), 10, 303),
    Audited("stack_cases[F4]", lambda: stack_cases(placements=("none",), **fw.F4_LIMITS), _stack,
            _only(_d(2), ALL_CFG), 10, 404),
    Audited("forward._post_cases[F1]", lambda: fw._post_cases(), _stack, _only(_d(2), ALL_CFG), 12, 101),
    Audited("backward.small_cases[pre]", lambda: bw.small_cases(placements=("pre",)), _stack,
            _only(_d(2), ALL_CFG), 4, 1021),
    Audited("backward.small_cases[peri]", lambda: bw.small_cases(placements=("peri",)),
            lambda e: dict(_stack(e), eps_out=e.cfg.eps_out), _only(_d(2), ALL_CFG + ("eps_out",)), 4, 1022),
    Audited("oracle_cases[pre]", lambda: orc.oracle_cases("pre"), lambda e: _stack(e[0]),
            _only(_d(2), ALL_CFG), 3, 101),
    # -- check-specific strategies
    Audited("criterion_cases[peri]", lambda: cr.criterion_cases(placements=("peri",)),
            lambda e: dict(_stack(e), eps_out=e.cfg.eps_out),
            _only(_d(3), ("gamma", "beta", "eps", "eps_out", "weight_scale", "out_scale", "qk_scale", "bias_std",
                          "n_heads", "causal", "activation", "norm", "depth", "d", "n_tokens")), 3, 101),
    Audited("criterion_cases[pre]", lambda: cr.criterion_cases(placements=("pre",)), _stack,
            _only(_d(3), ("gamma", "beta", "eps", "weight_scale", "out_scale", "qk_scale", "bias_std", "n_heads",
                          "causal", "activation", "norm", "depth", "d", "n_tokens")), 3, 102),
    Audited("codesign_cases[pre]", lambda: cr.codesign_cases("pre"), lambda e: cfg_params(e["cfg"], e["n_tokens"]),
            _only(_d(3), ("gamma", "beta", "eps", "dt", "weight_scale", "out_scale", "qk_scale", "bias_std",
                          "n_heads", "causal", "activation", "norm", "depth", "d", "n_tokens")), 6, 501),
    Audited("uq_cases[peri]", lambda: uq.uq_cases(placements=("peri",)), lambda e: cfg_params(e["cfg"]),
            dict(_only(_d(2), ("gamma", "beta", "dt", "weight_scale", "out_scale", "bias_std", "n_heads",
                               "activation", "norm", "depth", "d")), eps=1e-5, eps_out=None), 3, 603),
    Audited("init_cases[peri]", lambda: im.init_cases("peri"), lambda e: dict(_stack(e), eps_out=e.cfg.eps_out),
            dict(_only(_d(8), ("gamma", "eps", "dt", "weight_scale", "out_scale", "qk_scale", "bias_std", "n_heads",
                               "causal", "activation", "norm", "depth", "d", "n_tokens")), eps_out=0.0), 8, 2),
    Audited("init_cases[pre]", lambda: im.init_cases("pre"), _stack,
            _only(_d(8), ("gamma", "eps", "dt", "weight_scale", "out_scale", "qk_scale", "bias_std", "n_heads",
                          "causal", "activation", "norm", "depth", "d", "n_tokens")), 8, 1),
    Audited("neighbours._identical_token_cases[X5]", lambda: nb._identical_token_cases(),
            lambda e: cfg_params(e[0], e[1]),
            dict(_only(_d(2), ("gamma", "beta", "eps", "dt", "weight_scale", "out_scale", "qk_scale", "bias_std",
                               "n_heads", "causal", "activation", "norm", "depth", "d")), n_tokens=2), 8, 1101),
    Audited("neighbours._lns_cases[X4]", lambda: nb._lns_cases(),
            lambda e: dict(d=e[0], depth=e[1], activation=e[2], dt=e[4], input_scale=e[5]),
            dict(d=16, depth=2, activation="gelu", dt=1.0, input_scale=1.0), 3, 1001),
    Audited("neighbours._noci_cases[X5]", lambda: nb._noci_cases(),
            lambda e: dict(d=e[0], depth=e[1], dt=e[2], n_tokens=e[3]),
            dict(d=32, depth=1, dt=1.0, n_tokens=2), 3, 1111),
    Audited("neighbours._softmax_cases[X6]", lambda: nb._softmax_cases(),
            lambda e: dict(n=e[0], logit_scale=e[1], tau=e[2]), dict(n=2, logit_scale=1.0, tau=1.0), 20, 1201),
    Audited("norms.norm_cases[N*]", lambda: nm.norm_cases(),
            lambda e: dict(kind=e.kind, d=e.d, eps=e.eps, gamma_scale=e.gamma_scale, beta_scale=e.beta_scale,
                           input_scale=e.input_scale, input_mean=e.input_mean, gamma_mode=e.gamma_mode),
            dict(kind="layer", d=2, eps=0.0, gamma_scale=1.0, beta_scale=0.0, input_scale=1.0, input_mean=0.0,
                 gamma_mode="scalar"), 20, 0),
]


def draws(strategy: st.SearchStrategy, n: int, seed: int) -> list:
    out: list = []
    run_over(strategy, out.append, examples=n, seed=seed)
    return out


def at_default_everywhere(examples: list, params: Callable, defaults: dict) -> list[str]:
    """The listed parameters that sit at their default in every example."""
    values = [params(e) for e in examples]
    return [k for k, dflt in defaults.items() if all(is_default(v[k], dflt) for v in values)]


@pytest.mark.parametrize("a", AUDITED, ids=lambda a: a.name)
def test_every_listed_parameter_leaves_its_default(a: Audited):
    examples = draws(a.strategy(), N_COVERAGE, seed=12345)
    assert len(examples) >= N_COVERAGE
    stuck = at_default_everywhere(examples, a.params, a.defaults)
    assert not stuck, f"{a.name}: {stuck} never leave their defaults in {len(examples)} draws"


@pytest.mark.parametrize("a", AUDITED, ids=lambda a: a.name)
def test_first_quick_draws_are_not_all_degenerate(a: Audited):
    examples = draws(a.strategy(), a.quick, SEED + a.offset)
    defaults = {k: v for k, v in a.defaults.items() if k not in a.fixed}
    stuck = at_default_everywhere(examples, a.params, defaults)
    assert not stuck, (f"{a.name}: the first {len(examples)} draws at seed Context().seed + {a.offset} leave "
                       f"{stuck} at their defaults (add a fixed non-degenerate case or reorder the draw)")


# ---- meta-tests: a strategy with a parameter pinned to its default fails both assertions ---------------------------
@st.composite
def _pinned_dt_cases(draw):
    """stack_cases with Δt pinned to its default (what X4's strategy did before issue 11 §1)."""
    case = draw(stack_cases(placements=("pre",), d_range=(2, 16), max_steps=4, max_tokens=4))
    return StackCase(cfg=case.cfg.replace(dt=1.0), n_instances=case.n_instances, n_tokens=case.n_tokens,
                     seed=case.seed)


@st.composite
def _simplest_first_cases(draw):
    """Δt drawn log-uniform on [0.1, 10]: hypothesis's first draw is 10**0 = 1 (the subtle form)."""
    return dict(dt=draw(log_uniform(0.1, 10.0)), beta=draw(st.sampled_from([0.0, 0.5])))


def test_meta_pinned_parameter_fails_coverage():
    examples = draws(_pinned_dt_cases(), N_COVERAGE, seed=12345)
    assert at_default_everywhere(examples, _stack, _only(_d(2), ("dt",))) == ["dt"]
    # and the same draws with Δt free pass: the assertion reads the parameter, not the strategy's name
    free = draws(stack_cases(placements=("pre",), d_range=(2, 16), max_steps=4, max_tokens=4), N_COVERAGE, 12345)
    assert at_default_everywhere(free, _stack, _only(_d(2), ("dt",))) == []


def test_meta_simplest_first_draw_sits_at_the_default():
    """With one example, log_uniform and a default-first sampled_from give exactly the defaults."""
    first = draws(_simplest_first_cases(), 1, SEED)
    assert first[0]["dt"] == 1.0 and first[0]["beta"] == 0.0
    assert at_default_everywhere(first, lambda e: e, dict(dt=1.0, beta=0.0)) == ["dt", "beta"]


def test_meta_audited_table_would_catch_a_pinned_strategy():
    """The parametrised test's own assertion fails on an Audited entry whose strategy pins a listed parameter."""
    pinned = Audited("pinned", _pinned_dt_cases, _stack, _only(_d(2), ("dt", "gamma")), 4, 0)
    with pytest.raises(AssertionError, match="dt"):
        test_every_listed_parameter_leaves_its_default(pinned)
    with pytest.raises(AssertionError, match="dt"):
        test_first_quick_draws_are_not_all_degenerate(pinned)


# ---- X4: the newly drawn Δt is compared with the closed form -----------------------------------------------------
def test_x4_meta_theory_without_dt_fails(ctx):
    """X4 now draws Δt ≠ 1: a closed form that forgets the Δt² factor fails the band (it passed when Δt was 1)."""
    def no_dt(blocks, d, activation="relu", dt=1.0, x0_energy=None, attention="one-token"):
        return nb.lns_energy(blocks, d, activation, dt=1.0, x0_energy=x0_energy, attention=attention)

    tallies = nb.check_x4(ctx, energy=no_dt)
    failed = [t.check for t in tallies if not t.passed]
    assert "LNS one token: E‖x_l‖² − E‖x_0‖² vs theory" in failed


# ---- log_uniform(first=...) -------------------------------------------------------------------------------------
def test_log_uniform_first_is_the_first_try_and_draws_stay_in_range():
    plain = draws(log_uniform(1e-3, 2.0), 1, SEED)
    assert plain == [1.0]  # the subtle form: the simplest draw is the default Δt
    shifted = draws(log_uniform(1e-3, 2.0, first=0.5), N_COVERAGE, SEED)
    assert abs(shifted[0] - 0.5) <= 1e-12 * 0.5  # 10**(log10 0.5) rounds within a few ulps
    assert all(1e-3 <= v <= 2.0 for v in shifted)
    # both decades at the ends of the range are reached: the rotation does not fold the range onto part of it
    assert min(shifted) < 1e-2 and max(shifted) > 1.0


def test_log_uniform_rejects_a_first_outside_the_range():
    with pytest.raises(ValueError, match="first"):
        log_uniform(0.1, 1.0, first=2.0)
    with pytest.raises(ValueError, match="lo"):
        log_uniform(0.0, 1.0)
