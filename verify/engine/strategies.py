"""Hypothesis strategies for shapes and scales, hypothesis profiles, and the loop that runs a check over them.

Instances are *built valid* rather than filtered: the number of heads is drawn from the divisors of d, the
depth from what a work budget allows at that width, ε either exactly 0 or log-uniform. Scales (Δt, weights)
are log-uniform, so six orders of magnitude are covered evenly.

Profiles (``HYPOTHESIS_PROFILE`` selects one; CI=true selects ``ci``):
- ``default`` — deterministic (derandomize, no database, no deadline), 20 examples;
- ``ci`` — the same, registered for CI runs (it prints the reproduction blob on failure);
- ``thorough`` — opt-in, 200 random examples.

:func:`run_over` runs a check function over a strategy outside pytest's ``@given`` (so the main job and the
tests share one sampler): examples are drawn from a seeded, database-free hypothesis run without shrinking,
and the check records into a :class:`~verify.checks.record.Tally` instead of asserting.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Callable, Sequence

import hypothesis
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from verify.engine.zoo import Placement, Stack, StackConfig, sample_inputs

BASE_EXAMPLES = 20  # the default profile's max_examples; run_over scales its counts by profile / BASE_EXAMPLES


def register_profiles() -> None:
    common = dict(deadline=None, database=None, print_blob=True,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    settings.register_profile("default", derandomize=True, max_examples=BASE_EXAMPLES, **common)
    settings.register_profile("ci", derandomize=True, max_examples=BASE_EXAMPLES, **common)
    settings.register_profile("thorough", derandomize=False, max_examples=10 * BASE_EXAMPLES, **common)


def load_profile_from_env() -> str:
    register_profiles()
    name = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "default")
    settings.load_profile(name)
    return name


# ---- scalar strategies ---------------------------------------------------------------------------------------
def log_uniform(lo: float, hi: float, first: float | None = None) -> st.SearchStrategy[float]:
    """Floats whose log10 is uniform on [log10 lo, log10 hi].

    Hypothesis tries the simplest value first, which for a range around 1 is 10**0 = 1 — often a parameter's
    default. ``first`` (in [lo, hi]) makes that first try ``first`` instead: u ∈ [0, 1] is rotated by the fraction
    of the log-range below ``first`` (mod 1), a measure-preserving map, so a uniform u stays log-uniform (hypothesis's
    own preference for simple floats — u = 0, 1 — moves with it to ``first``).
    """
    if not (0 < lo <= hi):
        raise ValueError(f"log_uniform needs 0 < lo <= hi, got lo={lo}, hi={hi}")
    a, b = math.log10(lo), math.log10(hi)
    if first is None:
        return st.floats(a, b).map(lambda e: float(10.0 ** e))
    if not (lo <= first <= hi):
        raise ValueError(f"log_uniform needs lo <= first <= hi, got first={first}, lo={lo}, hi={hi}")
    if a == b:
        return st.just(float(lo))
    f = (math.log10(first) - a) / (b - a)
    return st.floats(0.0, 1.0).map(lambda u: float(min(hi, max(lo, 10.0 ** (a + ((u + f) % 1.0) * (b - a))))))


def epsilons(lo: float = 1e-12, hi: float = 1e-2, allow_zero: bool = True) -> st.SearchStrategy[float]:
    s = log_uniform(lo, hi)
    return st.one_of(st.just(0.0), s) if allow_zero else s


@st.composite
def width_and_heads(draw, d_min: int = 2, d_max: int = 256, max_heads: int = 8):
    d = draw(st.integers(d_min, d_max))
    heads = [h for h in range(1, min(max_heads, d) + 1) if d % h == 0]
    return d, draw(st.sampled_from(heads))


# ---- stack cases ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class StackCase:
    """A drawn instance family: a config, how many instances, tokens, batch, and the seeds."""

    cfg: StackConfig
    n_instances: int
    n_tokens: int
    seed: int
    input_scale: float = 1.0
    input_mean: float = 0.0

    def build(self) -> tuple[Stack, torch.Tensor]:
        stack = Stack(self.cfg, self.n_instances, seed=self.seed)
        x = sample_inputs(self.cfg, self.n_instances, self.n_tokens, seed=self.seed + 1,
                          scale=self.input_scale, mean=self.input_mean)
        return stack, x

    def on_device(self, device: str) -> "StackCase":
        """The same instance family on another device (weights are still drawn on the CPU, then moved)."""
        return self if self.cfg.device == device else dataclasses.replace(self, cfg=self.cfg.replace(device=device))

    def describe(self) -> dict:
        c = self.cfg
        dt = c.dt if not isinstance(c.dt, tuple) else f"per-step[{min(c.dt):.3g}..{max(c.dt):.3g}]"
        return dict(placement=c.placement, norm=c.norm, d=c.d, heads=c.n_heads, steps=c.n_steps, n=self.n_tokens,
                    instances=self.n_instances, dt=dt, weight_scale=c.weight_scale, gamma=c.gamma, beta=c.beta,
                    eps=c.eps, activation=c.activation, seed=self.seed, input_scale=self.input_scale,
                    input_mean=self.input_mean, causal=c.causal, out_scale=c.out_scale, qk_scale=c.qk_scale,
                    eps_out=c.eps_out)


@st.composite
def stack_cases(
    draw,
    placements: Sequence[str] = tuple(p.value for p in Placement),
    norms: Sequence[str] = ("rms", "layer"),
    d_range: tuple[int, int] = (2, 256),
    max_steps: int = 64,
    max_tokens: int = 16,
    dt_range: tuple[float, float] = (1e-3, 2.0),
    per_step_dt: bool = True,
    weight_scale_range: tuple[float, float] = (1e-3, 1e3),
    gamma_range: tuple[float, float] = (0.1, 10.0),
    beta_range: tuple[float, float] = (-1.0, 1.0),
    eps_zero: bool = True,
    sublayers: Sequence[tuple[str, ...]] = (("attn", "mlp"), ("mlp",), ("attn",)),
    activations: Sequence[str] = ("relu", "gelu"),
    causal: Sequence[bool] = (True, False),
    input_scale_range: tuple[float, float] = (1e-2, 1e2),
    work_budget: float = 3e6,
    max_instances: int = 8,
    out_scale_range: tuple[float, float] | None = (0.1, 10.0),
    qk_scales: Sequence[float] = (1.0, 0.0, 0.5, 2.0),
    eps_out_drawn: bool = True,
):
    """A :class:`StackCase` with every knob drawn, sized so that ``I·n·d²·K ≤ work_budget``.

    Categorical knobs list a non-default value first (RMSNorm, causal), and the depth counts down from the
    budget's maximum, because hypothesis tries the first value first and the quick level draws few examples
    (issue 11 §1; tests/test_strategy_coverage.py).

    ``work_budget`` bounds one example's cost (a float64 matmul chain of that many multiply-adds ≈ a few ms
    here), so wide examples get few steps and instances, narrow ones many.
    """
    placement = draw(st.sampled_from(list(placements)))
    d, heads = draw(width_and_heads(*d_range))
    subl = draw(st.sampled_from(list(sublayers)))
    n = draw(st.integers(1, max_tokens))
    per_block = len(subl)
    # Depth the budget allows at this width with one instance (MLP cost ≈ 8 d² per token per step).
    max_k = max(1, min(max_steps, int(work_budget // (8 * n * d * d))))
    # Counted down from the deepest the budget allows: hypothesis's first try (0) is then the deepest stack, not
    # one block (the quick level draws as few as 3 examples per placement).
    max_blocks = max(1, max_k // per_block)
    n_blocks = max_blocks - draw(st.integers(0, max_blocks - 1))
    n_steps = n_blocks * per_block
    inst = max(1, min(max_instances, int(work_budget // (8 * n * d * d * n_steps))))
    # Δt's first try is 0.5 (clipped into the range), not 10**0 = 1: at Δt = 1 a theory that drops Δt is invisible
    dt_draw = log_uniform(*dt_range, first=min(dt_range[1], max(dt_range[0], 0.5)))
    if per_step_dt and draw(st.booleans()):
        dt = tuple(draw(st.lists(dt_draw, min_size=n_steps, max_size=n_steps)))
    else:
        dt = draw(dt_draw)
    eps = draw(epsilons(allow_zero=eps_zero))
    cfg = StackConfig(
        d=d, n_blocks=n_blocks, placement=placement, n_heads=heads, sublayers=subl,
        norm=draw(st.sampled_from(list(norms))), eps=eps,
        gamma=draw(log_uniform(*gamma_range)) * draw(st.sampled_from([1.0, -1.0])),
        beta=draw(st.floats(*beta_range)), activation=draw(st.sampled_from(list(activations))),
        causal=draw(st.sampled_from(list(causal))), dt=dt, weight_scale=draw(log_uniform(*weight_scale_range)),
        bias_std=draw(st.sampled_from([0.0, 0.1, 1.0])),
    )
    seed = draw(st.integers(0, 2**31 - 1))
    input_scale = draw(log_uniform(*input_scale_range))
    input_mean = draw(st.sampled_from([0.0, 0.0, 3.0, -50.0]))
    # Drawn last so that the knobs above keep the examples they had before these were added (issue 11 §1: every
    # parameter away from its default — the residual-branch output scale, the attention logit scale, peri's ε_out).
    extra = {}
    # (not booleans(): hypothesis's first try, False, would keep out_scale at its default in the first example)
    if out_scale_range is not None and not draw(st.booleans()):
        lo, hi = out_scale_range
        extra["out_scale"] = draw(log_uniform(lo, hi, first=math.sqrt(lo * hi) if lo * hi != 1.0 else lo))
    if len(qk_scales) > 1:
        extra["qk_scale"] = draw(st.sampled_from(list(qk_scales)))
    if eps_out_drawn and placement == "peri" and draw(st.booleans()):
        extra["eps_out"] = draw(epsilons(allow_zero=eps_zero))
    if extra:
        cfg = cfg.replace(**extra)
    return StackCase(cfg=cfg, n_instances=inst, n_tokens=n, seed=seed, input_scale=input_scale,
                     input_mean=input_mean)


# ---- running a check over a strategy --------------------------------------------------------------------------
@contextlib.contextmanager
def _without_local_constants():
    """Stop hypothesis from mixing constants harvested from imported local modules into its draws.

    Recent hypothesis versions bias generation towards literals found in the project's own imported modules, so
    the same seed draws different examples depending on what happens to be imported (pytest vs ``python -m
    verify``, one test file vs all). Checks must be reproducible from their seed alone, so the harvested pool is
    replaced by an empty one while ``run_over`` draws. Falls back to a no-op if hypothesis's internals move.
    """
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:  # pragma: no cover
        yield
        return
    original = getattr(providers, "_get_local_constants", None)
    if original is None or not hasattr(providers, "Constants"):  # pragma: no cover
        yield
        return
    empty = providers.Constants()
    providers.CONSTANTS_CACHE.cache.clear()
    providers._get_local_constants = lambda: empty
    try:
        yield
    finally:
        providers._get_local_constants = original
        providers.CONSTANTS_CACHE.cache.clear()


def run_over(strategy: st.SearchStrategy, fn: Callable[[object], None], *, examples: int, seed: int) -> int:
    """Call ``fn(example)`` on ``examples`` draws of ``strategy`` (scaled by the active profile); return the count.

    Deterministic for a given seed: a seeded hypothesis run with no database and no shrinking. ``fn`` records
    into a Tally; an exception inside ``fn`` propagates with the example attached by hypothesis.
    """
    scale = max(1, settings.default.max_examples // BASE_EXAMPLES)
    count = [0]

    @settings(max_examples=max(1, examples * scale), database=None, deadline=None, derandomize=False,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck), print_blob=False)
    @hypothesis.seed(seed)
    @given(strategy)
    def _run(example):
        count[0] += 1
        fn(example)

    with _without_local_constants():
        _run()
    return count[0]
