"""U1 — uncertainty quantification: the flow map's Lipschitz constant and Wasserstein push-forward bounds.

Let T = Φ_{K−1} ∘ ⋯ ∘ Φ_0 be the map from the input hidden state X_0 to X_K (vectorised in R^{nd}, Euclidean =
Frobenius norm). If every step is L_k-Lipschitz on the whole space then Lip(T) ≤ Π_k L_k, and for every p ≥ 1 and
all probability measures μ, ν with finite p-th moments

    W_p(T#μ, T#ν) ≤ Lip(T)·W_p(μ, ν):

take an optimal coupling π of (μ, ν); (T × T)#π couples (T#μ, T#ν) and moves mass by ‖T(x) − T(y)‖ ≤ Lip(T)‖x − y‖.
So an uncertainty in the input distribution (data shift, noise) of size W_p(μ, ν) propagates to an output
uncertainty at most Lip(T) times larger — the form of the paper's UQ claim that this project states.

Per-step global constants L_k (B2 with the norm scales replaced by their global floors √ε):
    none  L = 1 + Δt·J                                   (J = sup‖J_F‖; MLPs, one-token attention)
    pre   L = 1 + Δt·J·‖γ‖_∞/√ε                          (ε > 0: the norm's Jacobian |γ|/s, s ≥ √ε)
    peri  L = 1 + Δt·(‖γ_out‖_∞/√ε_out)·J·(‖γ_in‖_∞/√ε_in)
    post  L = (|γ|/√ε)(1 + Δt·J)
Provenance: paper claim K6, our statement (the paper's exact constants are not available to this project).
"""
from __future__ import annotations

import math

import numpy as np

from theory._domain import (
    as_float_array,
    require_choice,
    require_nonnegative,
    require_real,
    step_sizes,
)
from theory.backward import (
    none_step_deviation_bound,
    peri_step_deviation_bound,
    post_step_norm_bound,
    pre_step_deviation_bound,
)

__all__ = ["UQ_PLACEMENTS", "flow_lipschitz_bound", "step_lipschitz_bounds", "wasserstein_pushforward_bound"]

UQ_PLACEMENTS = ("none", "pre", "peri", "post")


def _positive_eps(name: str, value) -> float:
    require_nonnegative(name, value)
    if not value > 0:
        raise ValueError(f"{name} must be > 0 for a global Lipschitz constant (a norm layer's Jacobian |γ|/√(σ²+ε) "
                         f"is unbounded as σ → 0 when ε = 0), got {value!r}")
    return math.sqrt(float(value))


def step_lipschitz_bounds(placement: str, dt, jf, *, gamma=1.0, eps=None, gamma_out=1.0, eps_out=None) -> np.ndarray:
    """U1 — global Lipschitz constants L_k of the K steps of one placement (table in the module docstring).

    ``jf`` holds J_k ≥ sup ‖J_{F_k}‖₂ over the inputs the sublayer can see (for pre/peri the input norm's range;
    for none/post every input, so attention must have one token: ``theory.criterion.SublayerNorms.jacobian_sup``).
    ``gamma``/``eps`` are the (input) norm's ‖γ‖_∞ and ε; ``gamma_out``/``eps_out`` peri's output norm.
    Proof: Lip(Φ_k) = sup ‖A_k‖; B2 bounds ‖A_k − I‖ (or ‖A_k‖ for post) by the sublayer Jacobian and the norm
    Jacobians, whose norms are ≤ ‖γ‖_∞/s ≤ ‖γ‖_∞/√ε for every input (N2).
    Provenance: paper claims K4/K6, our statement. Domain: Δt_k > 0, J_k ≥ 0 finite, ε > 0 where a norm divides.
    """
    require_choice("placement", placement, UQ_PLACEMENTS)
    j = np.atleast_1d(as_float_array("jf", jf))
    if j.ndim != 1 or np.any(~np.isfinite(j)) or np.any(j < 0):
        raise ValueError("jf must be a 1-D array of finite values >= 0")
    dts = step_sizes(dt, j.size)
    require_real("gamma", gamma)
    require_real("gamma_out", gamma_out)
    if placement == "none":
        dev = [none_step_deviation_bound(float(h), float(x)) for h, x in zip(dts, j)]
        return 1.0 + np.asarray(dev, dtype=float)
    s = _positive_eps("eps", eps)
    if placement == "pre":
        dev = [pre_step_deviation_bound(float(h), float(x), abs(gamma), s) for h, x in zip(dts, j)]
        return 1.0 + np.asarray(dev, dtype=float)
    if placement == "peri":
        s_out = _positive_eps("eps_out", eps_out)
        dev = [peri_step_deviation_bound(float(h), float(x), abs(gamma), s, abs(gamma_out), s_out)
               for h, x in zip(dts, j)]
        return 1.0 + np.asarray(dev, dtype=float)
    return np.asarray([post_step_norm_bound(float(h), float(x), abs(gamma), s) for h, x in zip(dts, j)],
                      dtype=float)


def flow_lipschitz_bound(step_lipschitz) -> float:
    """U1 — Lip(Φ_{K−1} ∘ ⋯ ∘ Φ_0) ≤ Π_k L_k (composition of Lipschitz maps).

    Equality: linear steps I + Δt_k M_k with symmetric positive semidefinite M_k sharing their top eigenvector (a
    none stack of one-token attention), where ‖Π(I + Δt M)‖ = Π(1 + Δt‖M‖). Provenance: paper claim K6, our
    statement. Domain: L_k ≥ 0 (inf allowed).
    """
    lk = np.atleast_1d(as_float_array("step_lipschitz", step_lipschitz))
    if lk.ndim != 1 or np.any(np.isnan(lk)) or np.any(lk < 0):
        raise ValueError("step_lipschitz must be a 1-D array of values >= 0")
    with np.errstate(over="ignore"):
        return float(np.exp(np.sum(np.log(lk)))) if np.all(lk > 0) else 0.0


def wasserstein_pushforward_bound(lipschitz, w_p) -> float:
    """U1 — W_p(T#μ, T#ν) ≤ Lip(T)·W_p(μ, ν) for every p ≥ 1 (push an optimal coupling forward).

    Equality: T affine with its top singular direction along a translation: ν = μ + v with v a top right singular
    vector of T's linear part, where both sides equal ‖T v‖ (W_p(μ, μ + v) = ‖v‖ by Jensen and the translation
    coupling). Provenance: paper claim K6, our statement. Domain: Lip ≥ 0, W_p ≥ 0.
    """
    if isinstance(lipschitz, bool) or not isinstance(lipschitz, (int, float, np.floating)) or math.isnan(lipschitz) \
            or lipschitz < 0:
        raise ValueError(f"lipschitz must be a real number >= 0 (inf allowed), got {lipschitz!r}")
    require_nonnegative("w_p", w_p)
    if w_p == 0:
        return 0.0
    return float(lipschitz) * float(w_p)

