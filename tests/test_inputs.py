"""Bad inputs fail early, naming the parameter: every public theory/ function and every CLI (issue 11 §4).

The theory sweep finds the functions itself (every public function defined in a ``theory`` module, so a module or
function added later is swept too). Each function gets one valid call, built from ``VALID`` (valid values by
parameter name) and ``VALID_FOR`` (per function, where one name means different things); then one parameter at a
time is replaced by a bad value and the call must raise ``ValueError`` (or ``TypeError``) whose message names that
parameter. The bad values: NaN, +inf, a string (wrong type), a (2, 3) array where a scalar belongs (wrong shape);
and for parameters whose domain excludes them (``POSITIVE``: Δt, widths, variances, …; ``NONNEGATIVE``) a negative
number, and zero for ``POSITIVE``. Parameters that accept inf (operator norms may be ``math.inf``: 'unbounded
weights', S1) or non-numbers are listed in ``ACCEPTS`` with the reason. A function with a required parameter that
``VALID`` does not know fails ``test_every_required_parameter_is_known``: a new parameter name needs one line here.

Δt = 0 is an error everywhere (the guide's "Δt ≤ 0 is an error"; docs/theorems/engine.md, "Zero steps"): the zoo,
every closed form with a step size, and the CLIs refuse it; ``test_zero_step_is_refused_everywhere`` says so.
"""
from __future__ import annotations

import importlib
import inspect
import math
import os
import pkgutil
import re
import subprocess
import sys

import numpy as np
import pytest

import theory

# ---- discovery -----------------------------------------------------------------------------------------------


def public_functions():
    # SWEEP_MODULES (comma-separated) narrows the sweep to some modules: the mutation run (.ci/mutation.py) sets it
    # to the mutated module so that a mutant costs that module's cases only.
    only = {m for m in os.environ.get("SWEEP_MODULES", "").split(",") if m}
    out = []
    for info in sorted(pkgutil.iter_modules(theory.__path__), key=lambda m: m.name):
        if info.name.startswith("_") or (only and info.name not in only):
            continue
        mod = importlib.import_module(f"theory.{info.name}")
        for name, fn in inspect.getmembers(mod, inspect.isfunction):
            if not name.startswith("_") and fn.__module__ == mod.__name__:
                out.append((f"{info.name}.{name}", fn))
    return out


FUNCTIONS = public_functions()

from theory.criterion import SublayerNorms

MLP = SublayerNorms("mlp", w1_norm=1.5, w2_norm=0.7)
ATTN = SublayerNorms("attn", wv_head_norms=(0.8, 1.1), wo_norm=0.9, qk_head_norms=(0.3, 0.2), head_dim=4)

# valid values by parameter name (scalars where a scalar is allowed)
VALID = {
    "dt": 0.3, "d": 8, "eps": 1e-3, "gamma": 1.3, "gamma_max": 1.3, "gamma_in": 1.2, "gamma_out": 0.8,
    "gamma_in_max": 1.2, "gamma_out_max": 0.8, "n_tokens": 3, "n_steps": 4, "tau": 0.7, "x0_max_norm": 2.0,
    "x0_min_scale": 0.5, "lam": 0.1, "blocks": 6, "jf_norm": 0.9, "jf": 0.9, "c": 1.2, "alpha": 1.7, "a": 0.4,
    "z": np.array([[0.3, -1.2, 0.8, 2.0], [1.0, 0.1, -0.4, 0.5]]), "variance": 0.7, "mean_square": 0.9, "r": 2.0,
    "ell": np.array([0.5, 0.8, 0.3, 0.6]), "beta": 0.6, "q": 0.8, "beta_norm": 0.2, "u_sq": 0.9, "h_bound": 1.5,
    "s_min": 0.4, "s_f_min": 0.5, "s_y_min": 0.5, "s_in_min": 0.4, "scale": 3.0, "wv_head_norms": (0.8, 1.1),
    "w1_norm": 1.5, "w2_norm": 0.7, "wo_norm": 0.9, "m0": 1.0, "hidden": 16, "w1_var": 0.125, "w2_var": 0.0625,
    "wv_var": 0.125, "wo_var": 0.125, "mean_energy0": 1.0, "spread_energy0": 0.2, "terminal_adjoint": 0.5,
    "degree": 2.0, "loss_value": 0.7, "p_final_norm": 0.5, "weight_decay": 0.1, "B": 3.0, "forward_budget": 2.0,
    "c_out": 0.9, "x0_norm": 1.5, "sigma": 0.5, "loss": 0.7, "other_sq_norm": 2.0, "output_sq_norms": (0.5, 0.3),
    "mf_over_row": 0.5, "increments": (0.1, 0.2, 0.3), "mu": 0.2, "log_w": np.array([0.1, -0.3, 0.2]),
    "b": 0.3, "m": 0.8, "mixed_sq": 0.6, "dof": 5.0, "input_var": 0.8, "signal": 0.5, "row_sq": 0.7,
    "n_attended": 3, "d_mlp": 32, "n_sublayers": 12, "n": 5, "p": np.array([0.2, 0.3, 0.5]),
    "displacement": 0.4, "grad_loss": 0.3, "decay_energy": 2.0, "backward_rate": 0.2, "step_lipschitz": (1.2, 1.5),
    "lipschitz": 2.0, "w_p": 0.3, "norm_range": (0.5, 2.0), "in_norms": (1.0, 1.2), "out_norms": (0.8, 0.9),
    "activation_adjoint": 0.6, "upper_gains": (1.2, 0.9, 1.1), "backward_rates": (0.2, 0.3), "rho": 0.9,
    "branch_moments": (1.0, 1.2, 0.8, 1.1), "xs": (1.0, 2.0), "norm": "layer", "placement": "pre",
    "activation": "relu", "sublayers": (MLP, ATTN), "rule": "pre", "architecture": "encoder", "block": "pre",
    "matrix": "ffn", "func": np.sqrt, "grad_v": np.array([[0.1, 0.2], [0.3, 0.1]]),
    "w_v": np.array([[1.0, 0.5], [0.2, 1.0]]), "grad_o": np.array([[0.05, 0.1], [0.2, 0.3]]),
    "w_o": np.array([[0.9, 0.1], [0.3, 0.8]]),
    # adamw (F9), certificates (F8), gallery (X7–X14), predictive (S4)
    "t": 5, "lrs": (1e-3, 2e-3, 4e-3), "w0_norm": 2.0, "size": 64, "gains": (1.2, 0.9, 1.1),
    "t0": 1, "w_t0_norm": 2.0, "row_signs": (1.0, -1.0), "col_signs": (1.0, 1.0, -1.0),  # F9b, F9 (d)
    "p_norms": (1.0, 0.8, 0.7, 0.5), "depth": 6, "layer": 3, "cap": 30.0, "x_energy": 5.0, "mixed_energy": 4.0,
    "post_weights": (0.5, 0.7), "stream_width": 2, "matrices": (np.full((2, 2), 0.5), np.eye(2)),
    "logits": np.array([[0.1, -0.2], [0.3, 0.0]]), "design": "ngpt", "scores": (0.1, 0.5, 0.9, 0.3),
    "positive": (False, True, True, False), "actual": (True, True, False), "diverged": (False, False, True),
    "values": (0.1, 0.3, 0.9), "threshold": 0.5, "speed": 2.0, "log_c": -1.0, "lr": 1e-3, "key": "cfg-a",
    "predicted": 1.5e-3, "measured": {"low": 1e-3, "high": 2e-3, "estimate": math.sqrt(2e-6), "censored": None},
    # predictive (S4 growth-aware)
    "log_gain_lo": 0.5, "log_gain_hi": 1.5, "dt_lo": 0.25, "dt_hi": 1.0, "elasticity": 1.2, "sigma_w": 0.18,
    "drift_steps": 30.0, "excess": 0.4, "folds": (0, 1, 0, 1), "correct_a": (True, False, True),
    "correct_b": (False, False, True),
    "log_gain": 0.5, "log_gain_grown": 1.5,  # S4 direct growth
}
VALID_FOR = {  # where one name means something else in one function
    "backward.gradient_envelope": {"a": np.array([1.2, 0.9, 1.1])},
    "backward.lns_step_deviation_bound": {"block": 3},
    "forward.none_gronwall_bound": {"n_steps": 4},
    "forward.peri_moment_bounds": {"n_steps": 4},
    "forward.peri_norm_bound": {"n_steps": 4},
    "forward.pre_norm_bound": {"n_steps": 4},
    "trained.trained_pre_envelope": {"n_steps": 4},
    "neighbours.deepnorm_constants": {"architecture": "encoder-decoder", "n_encoder": 6, "n_decoder": 6},
    "neighbours.deepnorm_init_std": {"matrix": "W1"},
    "neighbours.softmax_lipschitz_constant": {"norm": "l2"},
    "uq.step_lipschitz_bounds": {"eps": 1e-3},
    "codesign.pre_decay_objective": {"output_decays": (0.2, 0.1)},
    "criterion.optimal_step_sizes": {"c": np.array([1.0, 2.0, 1.5, 0.5])},
    "criterion.schedule_dual_value": {"c": np.array([1.0, 2.0, 1.5, 0.5])},
    "criterion.water_level": {"tau": 0.7},
    "criterion.max_uniform_dt_closed_form": {"c": 1.2, "ell": 0.8},
    "criterion.post_max_dt_closed_form": {"jf": 0.9},
    "criterion.forward_gain_bound": {"c": (1.0, 1.2, 0.8)},
    "criterion.backward_log_gain_bound": {"ell": (0.5, 0.8, 0.3)},
    "criterion.one_sided_optimal_time": {"ell": np.array([0.5, 0.8, 0.3])},
    "criterion.propagated_scale_floor": {},
    "criterion.max_uniform_dt": {"placement": "none", "sublayers": (MLP,), "n_tokens": 3, "x0_max_norm": 2.0},
    "criterion.stability_bounds": {"placement": "none", "sublayers": (MLP,), "n_tokens": 3, "x0_max_norm": 2.0},
    "init_moments.peri_second_moments": {"dt": (0.3, 0.2, 0.4)},
    "init_moments.pre_second_moments": {"dt": (0.3, 0.2, 0.4, 0.1)},
    "trained.activation_adjoint_bound": {"backward_rates": (0.2, 0.3)},
    "certificates.forward_chain": {"dt": (0.3, 0.2, 0.4), "c": (1.0, 1.2, 0.8), "normalising": (False, True, False)},
    "gallery.ngpt_unnormalised_bounds": {"alpha": 0.3},  # X7b/c: alpha in [0, 1]
    "gallery.ngpt_unnormalised_energy": {"alpha": 0.3},
    "gallery.expected_placement": {"design": "gpas", "alpha": 0.5},
    # optional x0_energy / layer (default None) given a value so that they are swept too
    "gallery.ngpt_rms": {"x0_energy": 4.0}, "gallery.hybridnorm_rms": {"x0_energy": 4.0},
    "gallery.rezero_energy": {"x0_energy": 4.0}, "gallery.completep_energy": {"layer": 3, "x0_energy": 4.0},
    "gallery.gpas_energy": {"x0_energy": 4.0}, "gallery.residual_multiplier_energy": {"x0_energy": 4.0},
    "gallery.sandwich_energy": {"x0_energy": 4.0},
    "predictive.accuracy": {"predicted": (True, False, True)},  # labels here, a learning rate in within_factor
}

# domains: a negative value (and for POSITIVE also zero) is outside them
POSITIVE = {
    "dt", "d", "n_tokens", "n_steps", "tau", "blocks", "variance", "mean_square", "hidden", "w1_var", "w2_var",
    "wv_var", "wo_var", "s_min", "s_f_min", "s_y_min", "s_in_min", "scale", "B", "n_attended", "d_mlp",
    "n_sublayers", "n", "dof", "n_heads", "n_blocks", "alpha", "head_dim", "forward_budget", "level_factor",
    "t", "lrs", "size", "depth", "cap", "lam2", "steps_per_block", "iters", "stream_width", "speed", "lr", "factor",
    "predicted", "dt_lo", "dt_hi", "sigma_w", "drift_steps",
}
NONNEGATIVE = {
    "eps", "eps_in", "eps_out", "gamma_max", "gamma_in_max", "gamma_out_max", "x0_max_norm", "x0_min_scale", "lam",
    "jf_norm", "jf", "beta_norm", "beta_in_norm", "beta_out_norm", "u_sq", "h_bound", "wv_head_norms", "w1_norm",
    "w2_norm", "wo_norm", "bo_norm", "b1_norm", "b2_norm", "qk_head_norms", "m0", "mean_energy0", "spread_energy0",
    "terminal_adjoint", "p_final_norm", "weight_decay", "c_out", "x0_norm", "other_sq_norm", "output_sq_norms",
    "mf_over_row", "increments", "mu", "mixed_sq", "input_var", "row_sq", "displacement", "decay_energy",
    "backward_rate", "lipschitz", "w_p", "activation_adjoint", "upper_gains", "backward_rates", "branch_moments",
    "b1_var", "b2_var", "bo_var", "grad_residual", "bias_norm", "a", "c", "ell", "r", "m", "b", "rho", "q",
    "w0_norm", "gains", "p_norms", "layer", "x_energy", "mixed_energy", "x0_energy", "excess",
    "t0", "w_t0_norm",
}
# (parameter, bad-value label) pairs the domain admits, with the reason
ACCEPTS = {
    ("wv_head_norms", "inf"), ("wo_norm", "inf"), ("qk_head_norms", "inf"), ("w1_norm", "inf"), ("w2_norm", "inf"),
    ("b1_norm", "inf"), ("b2_norm", "inf"), ("bo_norm", "inf"),  # operator norms: inf = 'unbounded weights' (S1)
    ("c", "inf"), ("ell", "inf"), ("a", "inf"),  # per-step constants built from such norms propagate inf (S1)
}
# (function.parameter, label) where one function's documented domain admits the value
ACCEPTS_FOR = {
    # batched closed forms: leading/trailing axes beyond the step axis are independent instances (docstrings)
    ("backward.gradient_envelope.a", "shape"), ("backward.gradient_gain_envelope.upper_gains", "shape"),
    ("codesign.pre_decay_objective.output_sq_norms", "shape"),
    ("codesign.pre_decay_objective.output_decays", "shape"), ("forward.attention_output_sup.wv_head_norms", "shape"),
    ("trained.activation_bound_attention.wv_head_norms", "shape"), ("criterion.attention_jacobian_sup.wv_head_norms",
                                                                     "shape"),
    ("trained.pre_weight_energy_bound.norm_range", "shape"), ("trained.trained_pre_depth_free_bound.norm_range",
                                                              "shape"),
    # a converter: NaN and inf are values it carries, not inputs it judges
    ("backward.mp_to_float.xs", "nan"), ("backward.mp_to_float.xs", "inf"),
    # documented 'inf allowed': an unbounded constant gives the bound inf (S1, U1) or no forward constraint (S2)
    ("criterion.optimal_step_sizes.forward_budget", "inf"),
    ("predictive.direct_growth_score.log_gain_grown", "inf"),  # documented: the grown forward overflowed (S4)
    ("criterion.schedule_dual_value.forward_budget", "inf"), ("criterion.propagated_scale_floor.increments", "inf"),
    ("criterion.water_level.log_w", "inf"), ("uq.flow_lipschitz_bound.step_lipschitz", "inf"),
    ("uq.wasserstein_pushforward_bound.lipschitz", "inf"),
    # zero is in the documented domain: X ≡ 0 (χ²_0), zero-variance (deterministic zero) weights, H_0 = 0,
    # zero blocks = the input itself (require_int(..., 0)), a zero-variance input, scale sign is |c|
    ("init_moments.chi2_expect.dof", "zero"), ("init_moments.attention_output_second_moment.wv_var", "zero"),
    ("init_moments.attention_output_second_moment.wo_var", "zero"), ("init_moments.mlp_output_rho_allowance.w1_var",
                                                                     "zero"),
    ("init_moments.mlp_output_second_moment.w1_var", "zero"), ("init_moments.mlp_output_second_moment.w2_var", "zero"),
    ("neighbours.activation_second_moment.variance", "zero"), ("neighbours.harmonic_number.n", "zero"),
    ("neighbours.lns_energy.blocks", "zero"), ("neighbours.noci_mean_energy.blocks", "zero"),
    ("neighbours.noci_token_cosine.blocks", "zero"), ("neighbours.xiong_pre_energy_bounds.blocks", "zero"),
    ("norms.norm_jacobian_scale_factor.scale", "negative"),
    # F8 (b): gains (K, *S) are per-step constants of S independent sequences (batched, as in the docstring)
    ("certificates.gradient_chain.gains", "shape"),
    # alpha is any real where the docstring says so (docs/theorems/G.md): ReZero α = 0 is the identity at
    # initialisation (X9a) and E‖x_L‖² depends on α² only; CompleteP's L^{−α} with α = 0 is plain Pre-LN (Δt = 1),
    # α < 0 a growing step; GPAS's α is a raw gate parameter, λ = 1 − SiLU(α) for every real α, and α = 0 is the
    # paper's initialisation (Pre-LN); expected_placement's α is ReZero's or GPAS's
    *{(f"gallery.{f}.alpha", label) for f in ("rezero_energy", "rezero_rms", "completep_energy", "completep_rms",
                                              "gpas_gain", "gpas_energy", "gpas_rms", "expected_placement")
      for label in ("negative", "zero")},
    # nGPT's X7b/c are stated for α ∈ [0, 1]: α = 0 is the block that keeps h (bounds (1, 1), energy 1)
    ("gallery.ngpt_unnormalised_bounds.alpha", "zero"), ("gallery.ngpt_unnormalised_energy.alpha", "zero"),
    # depth 0 = the input itself (require_int(..., 0), as the docstrings say: E‖x_0‖² = m_0)
    ("gallery.rezero_energy.depth", "zero"), ("gallery.sandwich_energy.depth", "zero"),
    # S4: roc_auc ranks its scores (only NaN is excluded: ±inf is an ordered score); crossing_lr's values may be
    # +inf (a probe that overflowed: 'counts as above'); accuracy's predicted are labels, 0 is False;
    # split_half's key is any non-empty string
    ("predictive.roc_auc.scores", "inf"), ("predictive.crossing_lr.values", "inf"),
    ("predictive.accuracy.predicted", "zero"), ("predictive.split_half.key", "choice"),
    ("predictive.fold_of.key", "choice"),  # as split_half's: any non-empty string
}

def baseline(name, fn):

    """The valid call: (kwargs, names of required parameters VALID does not know)."""
    kw, missing = {}, []
    extra = VALID_FOR.get(name, {})
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.name.startswith("_"):
            continue
        if p.name in extra:
            kw[p.name] = extra[p.name]
        elif p.default is p.empty:
            if p.name in VALID:
                kw[p.name] = VALID[p.name]
            else:
                missing.append(p.name)
    kw.update({k: v for k, v in extra.items() if k not in kw})
    return kw, missing


def swept(fn, kw):
    """(parameter, valid value) pairs to sweep: the baseline's and every optional parameter with a numeric default."""
    out = dict(kw)
    for p in inspect.signature(fn).parameters.values():
        if p.name not in out and p.default is not p.empty and _is_number(p.default):
            out[p.name] = p.default
    return out


def _is_number(v):
    return isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool)


def _numeric_array(v):
    if isinstance(v, (tuple, list, np.ndarray)):
        try:
            a = np.asarray(v, dtype=float)
        except (TypeError, ValueError):
            return None
        return a if a.size else None
    return None


def bad_values(pname, v):
    """(label, bad value) pairs for one parameter whose valid value is ``v``."""
    out = []
    arr = _numeric_array(v)
    if _is_number(v):
        out += [("nan", math.nan), ("inf", math.inf), ("str", "x")]
        if pname in POSITIVE or pname in NONNEGATIVE:
            out.append(("negative", -1.0 if isinstance(v, float) else -1))
        if pname in POSITIVE:
            out.append(("zero", 0.0 if isinstance(v, float) else 0))
    elif arr is not None:
        first = np.arange(arr.size).reshape(arr.shape) == 0
        out += [("nan", np.where(first, np.nan, arr)), ("inf", np.where(first, np.inf, arr)), ("str", "x")]
        if arr.ndim == 1:
            out.append(("shape", np.ones((2, 3, 2))))
        if pname in POSITIVE or pname in NONNEGATIVE:
            out.append(("negative", np.where(first, -1.0, arr)))
        if pname in POSITIVE:
            out.append(("zero", np.where(first, 0.0, arr)))
    elif isinstance(v, str):
        out += [("choice", "no-such-choice"), ("type", 3)]
    return [(label, b) for label, b in out if (pname, label) not in ACCEPTS and (pname, "*") not in ACCEPTS]


def sweep_cases():
    cases = []
    for name, fn in FUNCTIONS:
        kw, missing = baseline(name, fn)
        if missing:
            continue
        for pname, v in swept(fn, kw).items():
            for label, bad in bad_values(pname, v):
                if (f"{name}.{pname}", label) in ACCEPTS_FOR:
                    continue
                cases.append(pytest.param(name, fn, pname, bad, id=f"{name}-{pname}-{label}"))
    return cases


@pytest.mark.parametrize(("name", "fn", "pname", "bad"), sweep_cases())
def test_bad_value_is_refused_naming_the_parameter(name, fn, pname, bad):
    kw = swept(fn, baseline(name, fn)[0])
    kw = {k: v for k, v in kw.items() if k in baseline(name, fn)[0] or k == pname}
    kw[pname] = bad
    with pytest.raises((ValueError, TypeError)) as info:
        fn(**kw)
    # the name as a word: "jf" must not be satisfied by a message about "jf_norm" (a mutant survived that way)
    assert re.search(rf"(?<![A-Za-z0-9_]){re.escape(pname)}(?![A-Za-z0-9_])", str(info.value)), \
        f"{name}({pname}={bad!r}) raised without naming {pname}: {info.value}"


@pytest.mark.parametrize(("name", "fn"), FUNCTIONS, ids=[n for n, _ in FUNCTIONS])
def test_every_required_parameter_is_known(name, fn):
    """A new theory function is swept as soon as its required parameters have a valid value in VALID."""
    kw, missing = baseline(name, fn)
    assert not missing, f"{name}: add a valid value for {missing} to VALID (or VALID_FOR[{name!r}])"
    fn(**kw)  # the baseline itself is valid: otherwise every sweep case would pass for the wrong reason


# ---- Δt = 0 ---------------------------------------------------------------------------------------------------


DT_FUNCTIONS = [(n, f) for n, f in FUNCTIONS if "dt" in inspect.signature(f).parameters]


@pytest.mark.skipif(bool(os.environ.get("SWEEP_MODULES")), reason="the sweep is narrowed to some modules")
def test_the_step_size_sweep_is_not_empty():
    assert len(DT_FUNCTIONS) >= 20, [n for n, _ in DT_FUNCTIONS]


@pytest.mark.parametrize("zero", [0.0, 0, -0.0], ids=["0.0", "int-0", "-0.0"])
@pytest.mark.parametrize(("name", "fn"), DT_FUNCTIONS, ids=[n for n, _ in DT_FUNCTIONS])
def test_zero_step_is_refused_by_every_closed_form(name, fn, zero):
    """Δt = 0 (a residual step that does nothing) is outside every closed form's domain: ValueError naming dt."""
    kw = baseline(name, fn)[0]
    kw["dt"] = zero
    with pytest.raises(ValueError, match="dt"):
        fn(**kw)


@pytest.mark.parametrize(("name", "fn"), DT_FUNCTIONS, ids=[n for n, _ in DT_FUNCTIONS])
def test_one_zero_entry_in_a_step_schedule_is_refused(name, fn):
    """Per-step Δt_k: one zero among positive steps is refused too, wherever a schedule is accepted."""
    kw = baseline(name, fn)[0]
    kw.setdefault("dt", inspect.signature(fn).parameters["dt"].default)
    n = len(kw["dt"]) if isinstance(kw["dt"], (tuple, list)) else kw.get("n_steps", 4)
    schedule = [0.3] * n
    try:
        fn(**{**kw, "dt": tuple(schedule)})
    except ValueError:
        pytest.skip(f"{name} takes a scalar dt only (the zero-scalar test covers it)")
    schedule[n // 2] = 0.0
    with pytest.raises(ValueError, match="dt"):
        fn(**{**kw, "dt": tuple(schedule)})


@pytest.mark.parametrize("dt", [0.0, (0.5, 0.0, 0.5, 0.5)], ids=["scalar", "one-step"])
def test_zero_step_is_refused_by_the_zoo(dt):
    from verify.engine.zoo import StackConfig

    with pytest.raises(ValueError, match="dt"):
        StackConfig(d=8, n_blocks=2, placement="pre", sublayers=("attn", "mlp"), dt=dt)


@pytest.mark.parametrize("argv", [["--dt", "0"], ["--dt-grid", "0.1,0"]], ids=["dt", "dt-grid"])
def test_zero_step_is_refused_by_the_check_cli(argv, capsys, tmp_path):
    from verify.check.cli import main

    with pytest.raises(SystemExit) as info:
        main(["--placement", "pre", "--out", str(tmp_path), "--quiet", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "dt" in err, err


# ---- output paths are checked before any work ----------------------------------------------------------------


def _blocked(tmp_path):
    """A path whose folder cannot exist: its parent is a regular file (unwritable even for root)."""
    (tmp_path / "a-file").write_text("")
    return tmp_path / "a-file" / "sub"


def _cli_cases():
    from verify import bench
    from verify.__main__ import main as verify_main
    from verify.check.cli import main as check_main
    from verify.figures.__main__ import main as figures_main
    from verify.report.core import main as report_main

    return [
        pytest.param(verify_main, lambda p: ["--json", str(p / "r.json")], "--json", id="verify--json"),
        pytest.param(verify_main, lambda p: ["--json", str(p.parent.parent)], "--json", id="verify--json-is-a-folder"),
        pytest.param(figures_main, lambda p: ["--out", str(p), "--fast"], "--out", id="figures--out"),
        pytest.param(report_main, lambda p: ["--out", str(p)], "--out", id="report--out"),
        pytest.param(bench.main, lambda p: ["--quick", "--json", str(p / "b.json")], "--json", id="bench--json"),
        pytest.param(check_main, lambda p: ["--placement", "pre", "--quiet", "--out", str(p)], "--out",
                     id="check--out"),
        pytest.param(check_main, lambda p: ["--placement", "pre", "--quiet", "--out", str(p.parent.parent / "ok"),
                                            "--json", str(p / "c.json")], "--json", id="check--json"),
    ]


@pytest.mark.parametrize(("main", "argv", "option"), _cli_cases())
def test_unwritable_output_fails_first_in_one_line(main, argv, option, tmp_path, capsys, monkeypatch):
    """Every CLI checks its output paths before the work: exit 2, one line naming the option, nothing run."""
    import time

    monkeypatch.setattr("verify.checks.registry.run_checks",
                        lambda *a, **k: pytest.fail("the checks ran before the output path was checked"))
    t0 = time.perf_counter()
    with pytest.raises(SystemExit) as info:
        main(argv(_blocked(tmp_path)))
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert option in err, err
    assert time.perf_counter() - t0 < 20, "the path check came after the work"


def test_unwritable_json_fails_before_the_checks_in_a_fresh_process(tmp_path):
    """The end-to-end form of the issue's report: python -m verify --json UNWRITABLE exits 2 at once."""
    proc = subprocess.run([sys.executable, "-m", "verify", "--json", str(_blocked(tmp_path) / "r.json")],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "--json" in proc.stderr
    assert "Traceback" not in proc.stderr and "verified" not in proc.stdout
