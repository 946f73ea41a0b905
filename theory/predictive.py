"""S4 — the stability criterion as a *predictor* of trainability: a predicted boundary of the (Δt, lr) region.

Statement (S4, our statement; paper claim K5: "a general stability criterion guides the residual scaling").
S1 bounds how far one residual stack can move its output per unit of change of its steps: with J_{k→K} the
end-to-end Jacobian from step k, ‖δX_K‖ ≤ Σ_k ‖J_{k→K}‖·Δt_k·‖δF_k‖ ≤ e^Λ Σ_k Δt_k ‖δF_k‖ (Λ the S1 backward
log-gain). Under AdamW the first update of every parameter is exactly −lr·sign(g₀) (m̂₁/√v̂₁ = g/|g|, up to ε),
so the logits of a fixed batch move, to first order, by

    ‖δ logits‖ ≈ lr · m,   m = ‖J_θ sign(g₀)‖ / √(tokens)    (the *sign-step logit speed* at initialisation),

and S1 bounds m by the head's own term plus e^Λ Σ_k Δt_k b_k (b_k: the branch's parameter sensitivity). The
predicted trainable region is where one step moves the logits by less than an O(1) amount:

    predicted stable  ⇔  lr · m ≤ c,     i.e. the largest stable learning rate is lr* = c / m.

At finite lr the first-order term is replaced by the exact one-step change (the *probe*, S4 at finite step):
ΔL₁(lr) = L(θ₀ − lr·sign g₀) − L(θ₀) ≤ c', the loss change of AdamW's first update at the run's own peak
learning rate, measured at initialisation. ΔL₁ is nondecreasing in lr beyond its minimum, so its crossing of c'
is the predicted largest stable lr (``crossing_lr``).

m is measured at initialisation by one finite difference along sign(∇L) (no trained weights are needed). The
constant c is the only free quantity and is fitted on a fixed half of the atlas (``split``); accuracy and ROC AUC
are scored on the other half. The functions here are the pure-mathematics side: the split, the scores, the fit,
the boundary and its baselines; the measurement of m lives in ``verify.atlas``.

S4 growth-aware (the placement-aware criterion; derivation in docs/theorems/atlas.md): multiplying a branch's
weights by s is the same map as multiplying Δt by s² (a branch homogeneous of degree 2 in its weights), so the
init gain's Δt-elasticity e predicts how the gain responds to the weight growth s(lr) of training; additive growth
(e ≤ 1) is divided out by the final norm, the compounding excess κ = max(0, e − 1) is not, and

    predicted stable  ⇔  lr · s(lr)^{2κ} ≤ c,     s(lr) = √(1 + (n̄·lr/σ_w)²)   (``growth_score``, ``growth_max_lr``).

Paired comparison of two criteria on the same held-out runs: ``mcnemar_exact``.

Assumptions: AdamW with bias correction (the first step is a sign step), a loss whose curvature in the logits is
O(1) (softmax cross-entropy: its Hessian in the logits has norm ≤ 1/2), a schedule whose peak learning rate is lr.
It is a *first-order* prediction: it ignores the growth of m during training, which the fitted c absorbs.
Provenance: our statement, derived from S1's end-to-end gain; the paper's criterion is not available.
Domain errors are ValueErrors naming the parameter.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np

from theory._domain import as_float_array, require_positive, require_real

__all__ = [
    "accuracy",
    "compounding_excess",
    "crossing_lr",
    "dt_elasticity",
    "fit_threshold",
    "fold_of",
    "growth_max_lr",
    "growth_score",
    "kfold_accuracy",
    "mcnemar_exact",
    "measured_max_lr",
    "predicted_max_lr",
    "roc_auc",
    "sensitivity_score",
    "split_half",
    "weight_growth",
    "within_factor",
]


def split_half(key: str, salt: str = "atlas-split-v1") -> str:
    """S4 protocol — ``"fit"`` or ``"held_out"`` for a configuration, by a seeded hash of its key string.

    Deterministic and independent of the outcome: the same key always lands in the same half (SHA-256 of
    ``salt + "|" + key``, lowest bit of its first byte). Domain: a non-empty string key.
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"key must be a non-empty string, got {key!r}")
    h = hashlib.sha256((salt + "|" + key).encode()).digest()
    return "fit" if h[0] % 2 == 0 else "held_out"


def fold_of(key: str, k: int = 5, salt: str = "atlas-cv-v1") -> int:
    """S4 protocol — the cross-validation fold (0 … k−1) of a configuration inside the fit half, by a seeded hash of
    its key (SHA-256 of ``salt + "|" + key``, first 8 bytes mod k): fixed and outcome-blind. Domain: a non-empty key,
    k ≥ 2."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"key must be a non-empty string, got {key!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"k must be an integer >= 2, got {k!r}")
    h = hashlib.sha256((salt + "|" + key).encode()).digest()
    return int.from_bytes(h[:8], "big") % k


def _labels(name: str, values) -> np.ndarray:
    """Outcomes: booleans, or the numbers 0 and 1 (a NaN, an inf or a string is not silently True)."""
    a = np.asarray(values)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {a.shape}")
    if a.dtype != bool and (a.dtype.kind not in "iuf" or not np.all(np.isin(a, (0, 1)))):
        raise ValueError(f"{name} must hold booleans (True/False or 0/1), got {values!r}")
    return a.astype(bool)


def _scores(name: str, values, finite: bool = False) -> np.ndarray:
    a = as_float_array(name, values)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {a.shape}")
    if np.any(np.isnan(a)):
        raise ValueError(f"{name} must not hold NaN")
    if finite and not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite (map ±inf to a large finite score first)")
    return a


def _lr_grid(name: str, values) -> np.ndarray:
    a = as_float_array(name, values)
    if a.ndim == 1 and a.size and (not np.all(np.isfinite(a)) or np.any(a <= 0) or np.any(np.diff(a) <= 0)):
        raise ValueError(f"{name} must be finite, positive and strictly ascending, got {values!r}")
    return a


def roc_auc(scores, positive) -> float:
    """The ROC AUC of ``scores`` for the event ``positive`` (higher score ⇒ more likely positive).

    The Mann–Whitney form: P(score of a random positive > score of a random negative) + ½ P(tie). NaN when one
    class is empty (the AUC is undefined there). Domain: equal-length non-empty 1-D inputs, no NaN scores.
    """
    s, y = _scores("scores", scores), _labels("positive", positive)
    if s.size != y.size:
        raise ValueError(f"scores and positive must have the same length, got {s.size} and {y.size}")
    pos, neg = s[y], s[~y]
    if pos.size == 0 or neg.size == 0:
        return math.nan
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size)
    srt = s[order]
    i = 0
    while i < s.size:  # average ranks over ties
        j = i
        while j + 1 < s.size and srt[j + 1] == srt[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1
        i = j + 1
    u = ranks[y].sum() - pos.size * (pos.size + 1) / 2
    return float(u / (pos.size * neg.size))


def accuracy(predicted, actual) -> float:
    """Fraction of entries where the boolean prediction equals the outcome. Domain: equal non-empty lengths."""
    p, a = _labels("predicted", predicted), _labels("actual", actual)
    if p.size != a.size:
        raise ValueError(f"predicted and actual must have the same length, got {p.size} and {a.size}")
    return float(np.mean(p == a))


def fit_threshold(scores, positive) -> float:
    """S4 fit — the threshold θ minimising the errors of "positive ⇔ score > θ" on the given (fit-half) data.

    Candidates are the midpoints between consecutive distinct scores and the two ends u_min − 1, u_max + 1; ties in
    the error are broken towards the median candidate (index ⌊n/2⌋ of the n tied ones, in ascending order, so the
    fit does not sit on a data point's edge). Returns θ. Domain: as ``roc_auc``, and finite scores: a midpoint next
    to an infinite score is itself infinite, so the separating threshold would be missed (scores (0.1, inf) with
    outcomes (False, True) would fit θ = inf, one error).
    """
    s, y = _scores("scores", scores, finite=True), _labels("positive", positive)
    if s.size != y.size:
        raise ValueError(f"scores and positive must have the same length, got {s.size} and {y.size}")
    u = np.unique(s)
    cands = np.concatenate([[u[0] - 1.0], 0.5 * (u[1:] + u[:-1]), [u[-1] + 1.0]])
    errors = np.array([np.sum((s > t) != y) for t in cands])
    best = np.flatnonzero(errors == errors.min())
    return float(cands[best[len(best) // 2]])


def sensitivity_score(lr, speed) -> np.ndarray:
    """S4 — the criterion's score log(lr·m): predicted *unstable* where it exceeds log c.

    ``lr`` is the peak learning rate, ``speed`` the sign-step logit speed m at initialisation (logit change per
    unit learning rate, per token). Domain: lr > 0 and m > 0 entrywise (finite).
    """
    lr_a = np.atleast_1d(as_float_array("lr", lr))
    m_a = np.atleast_1d(as_float_array("speed", speed))
    if not np.all(np.isfinite(lr_a)) or np.any(lr_a <= 0):
        raise ValueError("lr must be finite and > 0 entrywise")
    if not np.all(np.isfinite(m_a)) or np.any(m_a <= 0):
        raise ValueError("speed must be finite and > 0 entrywise")
    return np.log(lr_a) + np.log(m_a)


def predicted_max_lr(speed, log_c: float) -> float:
    """S4 — the predicted largest stable learning rate lr* = c/m. Domain: m > 0 finite, log c finite."""
    require_positive("speed", speed)
    if not math.isfinite(float(speed)):
        raise ValueError(f"speed must be finite, got {speed!r}")
    require_real("log_c", log_c)
    return float(math.exp(float(log_c)) / float(speed))


def measured_max_lr(lrs: Sequence[float], diverged: Sequence[bool]) -> dict:
    """The measured largest stable learning rate on a grid: the bracket [last stable, first unstable].

    ``lrs`` ascending (one outcome each, e.g. the majority over seeds). Returns {"low", "high", "estimate",
    "censored"}: low = the largest lr below which every lr trained (None if the smallest diverged), high = the
    first lr that diverged (None if none did); estimate = √(low·high) when both exist, else the one that exists;
    censored = "above" (none diverged: the true value is ≥ low), "below" (the smallest diverged) or None.
    Domain: strictly ascending positive lrs, one outcome each.
    """
    lr_a = _lr_grid("lrs", lrs)
    dv = _labels("diverged", diverged)
    if lr_a.ndim != 1 or lr_a.size != dv.size or lr_a.size == 0:
        raise ValueError("lrs and diverged must be non-empty 1-D sequences of the same length")
    first_bad = int(np.argmax(dv)) if dv.any() else None
    if first_bad is None:
        return {"low": float(lr_a[-1]), "high": None, "estimate": float(lr_a[-1]), "censored": "above"}
    if first_bad == 0:
        return {"low": None, "high": float(lr_a[0]), "estimate": float(lr_a[0]), "censored": "below"}
    low, high = float(lr_a[first_bad - 1]), float(lr_a[first_bad])
    return {"low": low, "high": high, "estimate": math.sqrt(low * high), "censored": None}


def within_factor(predicted: float, measured: dict, factor: float = 2.0) -> bool:
    """Whether a predicted largest stable lr agrees with a measured bracket within ``factor``.

    Uncensored: predicted/estimate ∈ [1/factor, factor]. Censored above (nothing diverged up to ``low``):
    predicted ≥ low/factor. Censored below (the smallest lr diverged): predicted ≤ high·factor.
    Domain: predicted > 0, factor ≥ 1, a bracket from ``measured_max_lr``.
    """
    require_positive("predicted", predicted)
    require_real("factor", factor)
    if not (factor >= 1):
        raise ValueError(f"factor must be >= 1, got {factor!r}")
    c = measured.get("censored")
    if c == "above":
        return predicted >= measured["low"] / factor
    if c == "below":
        return predicted <= measured["high"] * factor
    r = predicted / measured["estimate"]
    return 1.0 / factor <= r <= factor


def crossing_lr(lrs, values, threshold: float) -> tuple[float, str | None]:
    """S4 (finite step) — where ``values`` (e.g. ΔL₁ at each lr, ascending lrs) first exceeds ``threshold``.

    Linear interpolation in log lr between the last grid point at or below the threshold and the first above it.
    Returns (lr*, censored): censored "above" when no value exceeds the threshold (lr* = the largest lr), "below"
    when the first already does (lr* = the smallest lr). +inf values count as above. Domain: ascending positive
    lrs, one value each, no NaN (nor −inf), a finite threshold.
    """
    lr_a = _lr_grid("lrs", lrs)
    v = as_float_array("values", values)
    if lr_a.ndim != 1 or lr_a.size == 0 or v.shape != lr_a.shape:
        raise ValueError("lrs and values must be non-empty 1-D sequences of the same length")
    if np.any(np.isnan(v)) or np.any(v == -np.inf):
        raise ValueError("values must not hold NaN or -inf")
    require_real("threshold", threshold)
    above = v > threshold
    if not above.any():
        return float(lr_a[-1]), "above"
    j = int(np.argmax(above))
    if j == 0:
        return float(lr_a[0]), "below"
    lo, hi = v[j - 1], v[j]
    t = 1.0 if not math.isfinite(hi) else (threshold - lo) / (hi - lo)
    return float(math.exp(math.log(lr_a[j - 1]) + t * (math.log(lr_a[j]) - math.log(lr_a[j - 1])))), None


# ---- S4 growth-aware: the placement-aware criterion (docs/theorems/atlas.md, "S4 growth-aware") -----------------


def dt_elasticity(log_gain_lo: float, log_gain_hi: float, dt_lo: float, dt_hi: float) -> float:
    """S4 growth-aware, step 2 — e = d log G / d log Δt by a finite difference between two Δt of one θ₀.

    ``log_gain_*`` are log G at ``dt_lo`` < ``dt_hi`` (log of the forward gain, or the backward log-gain Λ itself).
    Returns (log G(dt_hi) − log G(dt_lo)) / log(dt_hi/dt_lo). Domain: finite log-gains, 0 < dt_lo < dt_hi finite.
    """
    for name, v in (("log_gain_lo", log_gain_lo), ("log_gain_hi", log_gain_hi)):
        require_real(name, v)
        if not math.isfinite(float(v)):
            raise ValueError(f"{name} must be finite, got {v!r}")
    for name, v in (("dt_lo", dt_lo), ("dt_hi", dt_hi)):
        require_positive(name, v)
        if not math.isfinite(float(v)):
            raise ValueError(f"{name} must be finite, got {v!r}")
    if not float(dt_hi) > float(dt_lo):
        raise ValueError(f"dt_hi must be > dt_lo, got dt_lo={dt_lo!r}, dt_hi={dt_hi!r}")
    return (float(log_gain_hi) - float(log_gain_lo)) / math.log(float(dt_hi) / float(dt_lo))


def compounding_excess(elasticity: float) -> float:
    """S4 growth-aware, step 3 — κ = max(0, e − 1): the part of the gain's Δt-elasticity beyond additive growth.

    Additive growth (normalised branch inputs: G ≈ 1 + Δt·b) has e ≤ 1 and is a rescaling the final norm removes;
    compounding growth (∏(1 + Δt a_k), no normalisation) has e > 1. Domain: a finite real elasticity.
    """
    require_real("elasticity", elasticity)
    if not math.isfinite(float(elasticity)):
        raise ValueError(f"elasticity must be finite, got {elasticity!r}")
    return max(0.0, float(elasticity) - 1.0)


def weight_growth(lr, sigma_w: float, drift_steps: float) -> np.ndarray:
    """S4 growth-aware, step 4 — s(lr) = √(1 + (n̄·lr/σ_w)²): the factor by which AdamW can grow a weight entry.

    Each AdamW update moves an entry by at most ≈ lr_t; ``drift_steps`` n̄ = Σ_t lr_t/lr (1 for one peak step),
    ``sigma_w`` the entries' initial size. An upper bound (coherent signs, weight decay ignored). Evaluated as
    hypot(1, n̄·lr/σ_w): the square is never formed (it overflowed for n̄·lr/σ_w ≳ 1e154). Domain: lr > 0 finite
    entrywise, σ_w > 0, n̄ > 0.
    """
    lr_a = np.atleast_1d(as_float_array("lr", lr))
    if not np.all(np.isfinite(lr_a)) or np.any(lr_a <= 0):
        raise ValueError("lr must be finite and > 0 entrywise")
    for name, v in (("sigma_w", sigma_w), ("drift_steps", drift_steps)):
        require_positive(name, v)
        if not math.isfinite(float(v)):
            raise ValueError(f"{name} must be finite, got {v!r}")
    return np.hypot(1.0, float(drift_steps) * lr_a / float(sigma_w))


def growth_score(lr, excess, sigma_w: float, drift_steps: float) -> np.ndarray:
    """S4 growth-aware, step 5 — the score log(lr·s(lr)^{2κ}) = log lr + 2κ·log s(lr); unstable where > log c.

    Strictly increasing in lr for every κ ≥ 0; κ = 0 is the lr-only rule. Domain: as ``weight_growth``, κ ≥ 0
    finite entrywise (broadcast against lr).
    """
    lr_a = np.atleast_1d(as_float_array("lr", lr))
    k = np.atleast_1d(as_float_array("excess", excess))
    if not np.all(np.isfinite(k)) or np.any(k < 0):
        raise ValueError("excess must be finite and >= 0 entrywise")
    growth = weight_growth(lr_a, sigma_w, drift_steps)  # validates lr (> 0) before its log is taken
    return np.log(lr_a) + 2.0 * k * np.log(growth)


def growth_max_lr(excess: float, log_c: float, sigma_w: float, drift_steps: float) -> float:
    """S4 growth-aware — the predicted largest stable lr: the root of log lr + 2κ log s(lr) = log c.

    Bisection in log lr (the left side is strictly increasing, → −∞ as lr → 0 and ≥ log lr) of the bracket
    [log c − 2κ log s(e^{log c}) − 1, log c] until its midpoint is one of its ends, i.e. to float64 resolution (a
    fixed 200 halvings fell short for κ ≳ 1e40, whose bracket is ~κ wide); 2κ log s = κ·softplus(2(x + log a)),
    a = n̄/σ_w, so no (a·lr)² is formed (it overflowed, an OverflowError, for a·c ≳ 1e154). Domain: κ ≥ 0, log c
    finite, σ_w > 0, n̄ > 0.
    """
    require_real("log_c", log_c)
    if not math.isfinite(float(log_c)):
        raise ValueError(f"log_c must be finite, got {log_c!r}")
    growth_score(1.0, excess, sigma_w, drift_steps)  # the domain checks, once
    k, log_a = float(excess), math.log(float(drift_steps)) - math.log(float(sigma_w))

    def f(x: float) -> float:  # growth_score at lr = e^x, minus log c: 2κ log s = κ log(1 + e^u), u = 2(x + log a)
        u = 2.0 * (x + log_a)
        return x + k * (max(u, 0.0) + math.log1p(math.exp(-abs(u)))) - float(log_c)

    hi = float(log_c)  # f(hi) ≥ 0 since 2κ log s ≥ 0
    lo = hi - 1.0 - f(hi)  # f(lo) ≤ −1 < 0: lo < hi, and the κ term only grows with x
    while True:  # each pass halves hi − lo, so the ends become adjacent floats after at most ~2100 passes
        mid = 0.5 * (lo + hi)
        if not lo < mid < hi:
            break
        if f(mid) > 0:
            hi = mid
        else:
            lo = mid
    return float(math.exp(0.5 * (lo + hi)))


def kfold_accuracy(scores, positive, folds) -> float:
    """Cross-validated accuracy of "positive ⇔ score > θ": for each fold, θ fitted (``fit_threshold``) on the
    other folds and scored on it; the pooled fraction right. Domain: as ``fit_threshold``, ``folds`` one integer
    label per entry with at least two distinct labels."""
    s, y = _scores("scores", scores, finite=True), _labels("positive", positive)
    f = np.asarray(folds)
    if f.shape != s.shape or s.size != y.size:
        raise ValueError("scores, positive and folds must have the same length")
    if f.dtype.kind not in "iu" and not (f.dtype.kind == "f" and np.all(np.isfinite(f)) and np.all(f == np.round(f))):
        raise ValueError(f"folds must hold integer fold labels, got {folds!r}")
    labels = np.unique(f)
    if labels.size < 2:
        raise ValueError(f"folds must hold at least two distinct labels, got {labels.tolist()}")
    right = 0
    for k in labels:
        te = f == k
        theta = fit_threshold(s[~te], y[~te])
        right += int(np.sum((s[te] > theta) == y[te]))
    return right / s.size


def mcnemar_exact(correct_a, correct_b) -> dict:
    """McNemar's exact test of two classifiers on the same runs: ``correct_a``/``correct_b`` say, per run, whether
    each was right. Returns {"a_only": runs only A got right, "b_only": only B, "p": two-sided exact p}, p =
    min(1, 2·P(Bin(n, ½) ≤ min(a_only, b_only))) with n the discordant runs (p = 1 when n = 0).
    Domain: equal-length non-empty boolean sequences.
    """
    a, b = _labels("correct_a", correct_a), _labels("correct_b", correct_b)
    if a.size != b.size:
        raise ValueError(f"correct_a and correct_b must have the same length, got {a.size} and {b.size}")
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = a_only + b_only
    if n == 0:
        return {"a_only": 0, "b_only": 0, "p": 1.0}
    k = min(a_only, b_only)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
    return {"a_only": a_only, "b_only": b_only, "p": float(min(1.0, 2.0 * tail))}


def grown_dt(dt, lr, sigma_w: float, drift_steps: float) -> np.ndarray:
    """S4 direct growth, steps 1–2 — the Δt at which the *initial* weights reproduce the branch scale of weights grown
    by s(lr): Δt·s(lr)² (the Δt–weight-scale duality of degree-2 homogeneous branches; assumption: exact for ReLU
    MLPs and attention's W_V W_O, approximate for GELU and softmax). Provenance: our statement (paper claim K5;
    docs/theorems/atlas.md). Domain: Δt > 0 finite, and ``weight_growth``'s."""
    dt_a = np.atleast_1d(as_float_array("dt", dt))
    if not np.all(np.isfinite(dt_a)) or np.any(dt_a <= 0):
        raise ValueError("dt must be finite and > 0 entrywise")
    s = weight_growth(lr, sigma_w, drift_steps)
    return dt_a * s * s


def direct_growth_score(lr, log_gain, log_gain_grown, sigma_w: float, drift_steps: float) -> np.ndarray:
    """S4 direct growth — log lr + max(0, log G(Δt·s²) − log G(Δt) − 2 log s): the score of "predicted stable ⇔
    lr·A(lr) ≤ c" with A the growth of the forward gain beyond additive (∝ s²) when the weights grow by s(lr),
    measured at initialisation at the grown Δt (``grown_dt``) instead of extrapolated from the local elasticity
    (``growth_score``). A normalised stack grows at most additively (A = 1: the lr rule); a compounding one has
    A ≫ 1. ``log_gain_grown`` = +inf (the grown forward overflowed) gives +inf. Assumptions: those of ``grown_dt``
    and of ``weight_growth`` (coherent drift, an upper bound). Provenance: our statement (paper claim K5;
    docs/theorems/atlas.md). Domain: lr > 0, log gains real (log_gain finite), and ``weight_growth``'s."""
    lr_a = np.atleast_1d(as_float_array("lr", lr))
    g0 = np.atleast_1d(as_float_array("log_gain", log_gain))
    g1 = np.atleast_1d(as_float_array("log_gain_grown", log_gain_grown))
    if np.any(np.isnan(g1)) or np.any(g1 == -np.inf):
        raise ValueError("log_gain_grown must be real or +inf entrywise")
    if not np.all(np.isfinite(g0)):
        raise ValueError("log_gain must be finite entrywise")
    log_s = np.log(weight_growth(lr_a, sigma_w, drift_steps))
    with np.errstate(invalid="ignore"):
        excess = np.where(np.isinf(g1), np.inf, np.maximum(0.0, g1 - g0 - 2.0 * log_s))
    return np.log(lr_a) + excess
