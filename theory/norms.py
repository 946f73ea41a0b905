"""N — norm-layer geometry (LayerNorm and RMSNorm): output range, exact Jacobian, invariances.

Everything else in the catalogue rests on these facts. Provenance: standard facts about LayerNorm/RMSNorm,
stated and proved here (paper claims K1–K4 use them implicitly; our statement). Proofs: docs/theorems/N.md.

Notation for one row z ∈ R^d (d ≥ 2):

- LayerNorm  N(z) = γ ⊙ c/s + β,  c = z − μ1, μ = mean(z), σ² = |c|²/d, s = √(σ² + ε);
- RMSNorm    N(z) = γ ⊙ z/r,      m = mean(z²) = |z|²/d,  r = √(m + ε).

The statistic a LayerNorm divides by is the *centred* variance σ², never the raw second moment mean(z²): a
row with a large mean and a small spread has a small s and therefore a *large* Jacobian. Every function
below that takes ``variance`` means σ².

What this module is not: a norm layer for networks (that is ``verify.engine.zoo.BatchedNorm``). It is pure
mathematics on numpy/mpmath numbers, no torch.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import mpmath
import numpy as np

from theory._domain import (
    _is_real_scalar,
    as_float_array,
    require_nonnegative,
    require_real,
    require_width,
)

__all__ = [
    "NormJacobianEigenvalues",
    "ln_jacobian",
    "ln_jacobian_eigenvalues",
    "ln_jacobian_frobenius_norm",
    "ln_jacobian_norm_bound",
    "ln_jacobian_spectral_norm",
    "ln_jacobian_spectrum",
    "ln_row_variance",
    "norm_equivalent_eps",
    "norm_jacobian_scale_factor",
    "norm_output_bound",
    "rms_jacobian",
    "rms_jacobian_eigenvalues",
    "rms_jacobian_frobenius_norm",
    "rms_jacobian_norm_bound",
    "rms_jacobian_spectral_norm",
    "rms_jacobian_spectrum",
    "rms_row_mean_square",
]


# ---- domain helpers local to this module (arrays of statistics, rows) -------------------------------------------
def _is_mp(value) -> bool:
    return isinstance(value, mpmath.mpf)


def _real_scalar_or_array(name: str, value, nonnegative: bool = False):
    """A real scalar (float or mpmath) is returned as is; anything else must be a finite array (≥ 0 if asked)."""
    if _is_real_scalar(value):
        return require_nonnegative(name, value) if nonnegative else require_real(name, value)
    if isinstance(value, (str, bytes)) or value is None:
        raise ValueError(f"{name} must be a real number or an array of them, got {value!r}")
    try:
        arr = as_float_array(name, value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a real number or an array of them, got {value!r}") from exc
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    if nonnegative and not np.all(arr >= 0):
        raise ValueError(f"{name} must be >= 0, got min {arr.min()!r}")
    return arr


def _nonnegative_scalar_or_array(name: str, value):
    return _real_scalar_or_array(name, value, nonnegative=True)


def _rows(name: str, z) -> np.ndarray:
    """Rows z of shape (..., d), d ≥ 2, finite, float64."""
    if isinstance(z, (str, bytes)) or z is None or _is_real_scalar(z):
        raise ValueError(f"{name} must be an array of rows with shape (..., d), d >= 2, got {z!r}")
    try:
        arr = as_float_array("z", z)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a real array of shape (..., d), got {type(z).__name__}") from exc
    if arr.ndim < 1 or arr.shape[-1] < 2:
        raise ValueError(f"{name} must have shape (..., d) with d >= 2, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _gain(name: str, gamma, rows: np.ndarray) -> np.ndarray:
    """γ as an array broadcastable against ``rows`` (scalar, shape (d,), or shape (..., d))."""
    g = _real_scalar_or_array(name, gamma)
    g = np.asarray(g, dtype=float)
    d = rows.shape[-1]
    if g.ndim == 0:
        return np.full(d, float(g))
    if g.shape[-1] != d:
        raise ValueError(f"{name} must be a scalar or have last dimension d={d}, got shape {g.shape}")
    try:
        np.broadcast_shapes(g.shape, rows.shape)
    except ValueError as exc:
        raise ValueError(f"{name} of shape {g.shape} does not broadcast against z of shape {rows.shape}") from exc
    return g


def _positive_scale(stat, eps, stat_name: str):
    """s = √(stat + ε), refusing stat + ε = 0 (the layer would divide by zero)."""
    if _is_mp(stat) or _is_mp(eps):
        if stat + eps == 0:
            raise ValueError(f"{stat_name} must be > 0 when eps == 0 (the norm layer divides by zero)")
        return mpmath.sqrt(stat + eps)
    total = as_float_array("stat", stat) + as_float_array("eps", eps)
    if np.any(total == 0):
        raise ValueError(f"{stat_name} must be > 0 when eps == 0 (the norm layer divides by zero)")
    return np.sqrt(total)


# ---- N1: range ---------------------------------------------------------------------------------------------------
def norm_output_bound(d: int, gamma_max: float, beta_norm: float = 0.0, eps: float = 0.0,
                      second_moment: float | None = None) -> float:
    """N1 — range of a norm layer: ‖N(z)‖₂ ≤ ‖γ‖_∞·√d·√(m/(m+ε)) + ‖β‖₂.

    ``m`` is the input's row statistic that the layer divides by: σ² = mean((z−μ)²) for LayerNorm,
    mean(z²) for RMSNorm (β = 0 there). With ``second_moment=None`` the bound is the supremum over all
    inputs, ‖γ‖_∞·√d + ‖β‖₂ (the factor √(m/(m+ε)) < 1 tends to 1 as m → ∞).
    Equality: constant γ and β = 0 (then ‖N(z)‖ = |γ|·√d·√(m/(m+ε)) exactly).

    Assumptions: d ≥ 2, ε ≥ 0, m ≥ 0 (m > 0 when ε = 0). Provenance: standard fact, our statement (used by
    paper claims K1, K2). Domain errors name the parameter.

    Scalars give a float. ``gamma_max``, ``beta_norm``, ``eps`` and ``second_moment`` may also be arrays of
    one value per row (they broadcast); the result is then an array.
    """
    require_width("d", d)
    scalars = all(_is_real_scalar(v) for v in (gamma_max, beta_norm, eps)) and (
        second_moment is None or _is_real_scalar(second_moment))
    if scalars:
        require_nonnegative("gamma_max", gamma_max)
        require_nonnegative("beta_norm", beta_norm)
        require_nonnegative("eps", eps)
        if second_moment is None:
            factor = 1.0
        else:
            require_nonnegative("second_moment", second_moment)
            if second_moment == 0 and eps == 0:
                raise ValueError("second_moment must be > 0 when eps == 0 (the norm layer divides by zero)")
            factor = math.sqrt(second_moment / (second_moment + eps))
        return gamma_max * math.sqrt(d) * factor + beta_norm
    g = np.asarray(_nonnegative_scalar_or_array("gamma_max", gamma_max), dtype=float)
    b = np.asarray(_nonnegative_scalar_or_array("beta_norm", beta_norm), dtype=float)
    e = np.asarray(_nonnegative_scalar_or_array("eps", eps), dtype=float)
    if second_moment is None:
        factor = np.ones(())
    else:
        m = np.asarray(_nonnegative_scalar_or_array("second_moment", second_moment), dtype=float)
        m, e = np.broadcast_arrays(m, e)
        if np.any((m == 0) & (e == 0)):
            raise ValueError("second_moment must be > 0 when eps == 0 (the norm layer divides by zero)")
        factor = np.sqrt(m / (m + e))
    return g * math.sqrt(d) * factor + b


# ---- row statistics ----------------------------------------------------------------------------------------------
def ln_row_variance(z) -> np.ndarray:
    """σ² = mean((z − μ)²) of each row of z (shape (..., d)): the statistic LayerNorm divides by (N1–N3).

    Computed two-pass (centre first), so a large mean does not cancel the spread. Not the raw second moment:
    using mean(z²) here is the classic mistake that makes a large mean seem to shrink the Jacobian.
    Provenance: definition (our statement). Domain: finite z with d ≥ 2.
    """
    rows = _rows("z", z)
    c = rows - rows.mean(axis=-1, keepdims=True)
    return (c * c).mean(axis=-1)


def rms_row_mean_square(z) -> np.ndarray:
    """m = mean(z²) of each row of z (shape (..., d)): the statistic RMSNorm divides by (N1–N3).

    Provenance: definition (our statement). Domain: finite z with d ≥ 2.
    """
    rows = _rows("z", z)
    return (rows * rows).mean(axis=-1)


# ---- N2: exact Jacobians -----------------------------------------------------------------------------------------
def ln_jacobian(z, gamma=1.0, eps: float = 0.0) -> np.ndarray:
    """N2 — exact Jacobian of LayerNorm at each row z: J = diag(γ)·(P − c cᵀ/(d s²))/s, P = I − 11ᵀ/d.

    Statement: for z ∈ R^d, ∂N(z)/∂z = diag(γ)·(1/s)·(P − c cᵀ/(d s²)) with c = Pz, s = √(σ²+ε); β does not
    enter. Consequences used elsewhere: J 1 = 0, and J z = (ε/s³)·γ ⊙ c (so J z = 0 when ε = 0, N3).

    Assumptions: γ a scalar or a vector (shape (d,) or broadcastable (..., d)); ε ≥ 0; σ² + ε > 0.
    Provenance: standard calculus, our statement (paper claims K3, K4 use it). Domain: z of shape (..., d),
    d ≥ 2, finite. Returns shape (..., d, d), row index = output coordinate.
    """
    rows = _rows("z", z)
    require_nonnegative("eps", eps)
    g = _gain("gamma", gamma, rows)
    d = rows.shape[-1]
    c = rows - rows.mean(axis=-1, keepdims=True)
    var = (c * c).mean(axis=-1)
    s = _positive_scale(var, eps, "z's variance")
    proj = np.eye(d) - 1.0 / d
    inner = proj - c[..., :, None] * c[..., None, :] / (d * (s * s)[..., None, None])
    return g[..., :, None] * inner / s[..., None, None]


def rms_jacobian(z, gamma=1.0, eps: float = 0.0) -> np.ndarray:
    """N2 (RMSNorm) — exact Jacobian of RMSNorm at each row z: J = diag(γ)·(I − z zᵀ/(d r²))/r.

    Consequence: J z = (ε/r³)·γ ⊙ z (zero when ε = 0, N3).
    Assumptions: γ scalar or vector; ε ≥ 0; mean(z²) + ε > 0. Provenance: standard calculus, our statement.
    Domain: z of shape (..., d), d ≥ 2, finite. Returns shape (..., d, d).
    """
    rows = _rows("z", z)
    require_nonnegative("eps", eps)
    g = _gain("gamma", gamma, rows)
    d = rows.shape[-1]
    ms = (rows * rows).mean(axis=-1)
    r = _positive_scale(ms, eps, "z's mean square")
    inner = np.eye(d) - rows[..., :, None] * rows[..., None, :] / (d * (r * r)[..., None, None])
    return g[..., :, None] * inner / r[..., None, None]


# ---- N2: closed-form spectra and norms (scalar γ) ----------------------------------------------------------------
def _scalar_gain_args(d, gamma, stat, eps, stat_name):
    require_width("d", d)
    if _is_mp(gamma) or _is_mp(stat) or _is_mp(eps):
        require_real("gamma", gamma)
        require_nonnegative(stat_name, stat)
        require_nonnegative("eps", eps)
        return True, gamma, stat, eps
    g = _real_scalar_or_array("gamma", gamma)
    v = _nonnegative_scalar_or_array(stat_name, stat)
    e = _nonnegative_scalar_or_array("eps", eps)
    g, v, e = np.broadcast_arrays(np.asarray(g, float), np.asarray(v, float), np.asarray(e, float))
    return False, g, v, e


class NormJacobianEigenvalues(NamedTuple):
    """The eigenvalues of a norm layer's Jacobian (scalar γ), each with the direction it belongs to."""

    along_ones: object  # LayerNorm: 0 on the all-ones vector; RMSNorm: None (no such direction)
    along_input: object  # γε/s³ on the centred input c (LN) or γε/r³ on z (RMS)
    orthogonal: object  # γ/s (γ/r) on every direction orthogonal to the two above


def _eigenvalues(gamma, stat, eps, stat_name, has_ones):
    mp, g, v, e = _scalar_gain_args(2, gamma, stat, eps, stat_name)
    s = _positive_scale(v, e, stat_name)
    radial = g * e / (s * s * s)  # γε/s³ — no cancellation in this form (unlike γ/s·(1 − σ²/s²))
    bulk = g / s
    if not mp and np.ndim(bulk) == 0:
        radial, bulk = float(radial), float(bulk)
    zero = (0 * g) if has_ones else None
    if not mp and zero is not None and np.ndim(zero) == 0:
        zero = float(zero)
    return NormJacobianEigenvalues(zero, radial, bulk)


def ln_jacobian_eigenvalues(gamma, variance, eps=0.0) -> NormJacobianEigenvalues:
    """N2 — LayerNorm Jacobian eigenvalues by direction (scalar γ): 0 on 1, γε/s³ on c, γ/s on the rest.

    Statement: with scalar γ, J = (γ/s)(P − ccᵀ/(ds²)) is symmetric; J1 = 0, Jc = (γ/s)(1 − σ²/s²)c =
    (γε/s³)c, and Ju = (γ/s)u for u ⟂ {1, c}. s = √(σ² + ε) with σ² the centred variance.
    Assumptions: scalar γ (any sign), σ² ≥ 0, ε ≥ 0, σ² + ε > 0. Provenance: our statement (paper claims
    K3, K4 use ‖J‖). Accepts floats, arrays (one value per row, broadcast) or mpmath numbers.
    """
    return _eigenvalues(gamma, variance, eps, "variance", has_ones=True)


def rms_jacobian_eigenvalues(gamma, mean_square, eps=0.0) -> NormJacobianEigenvalues:
    """N2 (RMSNorm) — eigenvalues by direction (scalar γ): γε/r³ on z, γ/r on z's orthogonal complement.

    ``along_ones`` is None: RMSNorm does not centre. Assumptions as :func:`ln_jacobian_eigenvalues` with
    m = mean(z²) for σ². Provenance: our statement.
    """
    return _eigenvalues(gamma, mean_square, eps, "mean_square", has_ones=False)


def _spectrum(d, gamma, stat, eps, stat_name, has_ones):
    require_width("d", d)
    mp = _is_mp(gamma) or _is_mp(stat) or _is_mp(eps)
    ev = _eigenvalues(gamma, stat, eps, stat_name, has_ones)
    n_zero = 1 if has_ones else 0
    n_bulk = d - 1 - n_zero
    if mp:
        vals = [ev.along_ones] * n_zero + [ev.along_input] + [ev.orthogonal] * n_bulk
        return np.array(sorted(vals), dtype=object)
    radial = np.asarray(ev.along_input, dtype=float)
    bulk = np.asarray(ev.orthogonal, dtype=float)
    parts = [np.zeros(radial.shape + (n_zero,)), radial[..., None], np.repeat(bulk[..., None], n_bulk, axis=-1)]
    return np.sort(np.concatenate(parts, axis=-1), axis=-1)


def ln_jacobian_spectrum(d: int, gamma, variance, eps=0.0):
    """N2 — eigenvalues of the LayerNorm Jacobian for scalar γ, ascending, with multiplicity (d values).

    Statement (scalar γ, so J is symmetric): J has eigenvalue 0 on 1, γε/s³ on the centred input c, and γ/s
    on the d − 2 directions orthogonal to both; s = √(σ² + ε) with σ² the *centred* variance. When σ² = 0
    (ε > 0) "the centred input" is any unit vector ⟂ 1, and γε/s³ = γ/s, consistent with J = (γ/s)P.

    Assumptions: scalar γ (any sign), σ² ≥ 0, ε ≥ 0, σ² + ε > 0. Provenance: our statement (paper claims
    K3, K4 use ‖J‖). Domain: d ≥ 2. Accepts floats, numpy arrays of one (γ, σ², ε) per row (result
    (..., d)), or mpmath numbers (result: object array of mpf). The form γε/s³ is evaluated without the
    cancellation 1 − σ²/s² that a numerical eigensolver suffers when ε ≪ σ².
    """
    return _spectrum(d, gamma, variance, eps, "variance", has_ones=True)


def rms_jacobian_spectrum(d: int, gamma, mean_square, eps=0.0):
    """N2 (RMSNorm) — eigenvalues of the RMSNorm Jacobian for scalar γ, ascending (d values).

    Statement: eigenvalue γε/r³ on z and γ/r on the d − 1 directions orthogonal to z; r = √(mean(z²) + ε).
    Assumptions/domain as :func:`ln_jacobian_spectrum` with m = mean(z²) in place of σ². Provenance: our
    statement.
    """
    return _spectrum(d, gamma, mean_square, eps, "mean_square", has_ones=False)


def _norms(d, gamma, stat, eps, stat_name, n_bulk_of_d):
    mp, g, v, e = _scalar_gain_args(d, gamma, stat, eps, stat_name)
    s = _positive_scale(v, e, stat_name)
    n_bulk = n_bulk_of_d(d)
    a = abs(g) if mp else np.abs(g)
    bulk = a / s
    radial = a * e / (s * s * s)
    spectral = bulk if n_bulk > 0 else radial  # ε/s² ≤ 1, so the bulk dominates whenever it exists
    frob_sq = bulk * bulk * n_bulk + radial * radial
    frob = mpmath.sqrt(frob_sq) if mp else np.sqrt(frob_sq)
    if not mp and np.ndim(spectral) == 0:
        return float(spectral), float(frob)
    return spectral, frob


def ln_jacobian_spectral_norm(d: int, gamma, variance, eps=0.0):
    """N2 — ‖J‖₂ of the LayerNorm Jacobian for scalar γ: |γ|/s when d ≥ 3; |γ|ε/s³ when d = 2.

    d = 2 is the edge case: the only direction ⟂ 1 is the centred input itself, so J = (γε/s³)·ĉĉᵀ (and
    J = 0 when ε = 0: a 2-wide LayerNorm output is ±γ ⊙ (1, −1), locally constant). Assumptions, domain and
    array/mpmath support as :func:`ln_jacobian_spectrum`. Provenance: our statement.
    """
    return _norms(d, gamma, variance, eps, "variance", lambda n: n - 2)[0]


def rms_jacobian_spectral_norm(d: int, gamma, mean_square, eps=0.0):
    """N2 (RMSNorm) — ‖J‖₂ = |γ|/r for every d ≥ 2 (there are d − 1 ≥ 1 directions ⟂ z).

    Assumptions, domain, support as :func:`rms_jacobian_spectrum`. Provenance: our statement.
    """
    return _norms(d, gamma, mean_square, eps, "mean_square", lambda n: n - 1)[0]


def ln_jacobian_frobenius_norm(d: int, gamma, variance, eps=0.0):
    """N2 — ‖J‖_F of the LayerNorm Jacobian for scalar γ: (|γ|/s)·√((d − 2) + ε²/s⁴).

    Assumptions, domain, support as :func:`ln_jacobian_spectrum`. Provenance: our statement.
    """
    return _norms(d, gamma, variance, eps, "variance", lambda n: n - 2)[1]


def rms_jacobian_frobenius_norm(d: int, gamma, mean_square, eps=0.0):
    """N2 (RMSNorm) — ‖J‖_F = (|γ|/r)·√((d − 1) + ε²/r⁴) for scalar γ.

    Assumptions, domain, support as :func:`rms_jacobian_spectrum`. Provenance: our statement.
    """
    return _norms(d, gamma, mean_square, eps, "mean_square", lambda n: n - 1)[1]


def ln_jacobian_norm_bound(gamma_max, variance, eps=0.0):
    """N2 — general-γ bound ‖J‖₂ ≤ ‖γ‖_∞/s, s = √(σ² + ε) from the CENTRED variance σ².

    Statement: for any gain vector γ, ‖diag(γ)·M‖₂ ≤ ‖γ‖_∞‖M‖₂ and M = (P − ccᵀ/(ds²))/s is symmetric with
    eigenvalues {0, ε/s³, 1/s}, so ‖M‖₂ ≤ 1/s. Equality: constant γ and d ≥ 3. A large mean does not
    shrink this bound: replacing σ² by the raw second moment mean(z²) gives a *wrong* (too small) bound.
    (For d = 2 the sharper ‖γ‖_∞ε/s³ holds, see :func:`ln_jacobian_spectral_norm`.)

    Assumptions: ‖γ‖_∞ ≥ 0, σ² ≥ 0, ε ≥ 0, σ² + ε > 0. Provenance: our statement (used by B2 for paper claim
    K4). Domain errors name the parameter. Scalars give a float, arrays broadcast.
    """
    g = _nonnegative_scalar_or_array("gamma_max", gamma_max)
    v = _nonnegative_scalar_or_array("variance", variance)
    e = _nonnegative_scalar_or_array("eps", eps)
    out = g / _positive_scale(v, e, "variance")
    return float(out) if np.ndim(out) == 0 and not _is_mp(out) else out


def rms_jacobian_norm_bound(gamma_max, mean_square, eps=0.0):
    """N2 (RMSNorm) — ‖J‖₂ ≤ ‖γ‖_∞/r, r = √(mean(z²) + ε); equality for constant γ (every d ≥ 2).

    Assumptions/domain as :func:`ln_jacobian_norm_bound`. Provenance: our statement.
    """
    g = _nonnegative_scalar_or_array("gamma_max", gamma_max)
    m = _nonnegative_scalar_or_array("mean_square", mean_square)
    e = _nonnegative_scalar_or_array("eps", eps)
    out = g / _positive_scale(m, e, "mean_square")
    return float(out) if np.ndim(out) == 0 and not _is_mp(out) else out


# ---- N3: invariances ---------------------------------------------------------------------------------------------
def norm_equivalent_eps(eps, scale):
    """N3 — the ε that makes a rescaled input look like the original: N_ε(c·z + b1) = N_{ε/c²}(z), c > 0.

    Statement: LayerNorm with ε at input c·z + b·1 (c > 0, any b) equals LayerNorm with ε/c² at z; RMSNorm
    likewise with b = 0. So at ε = 0 the layer is invariant to positive rescaling and (LN) to shifts along 1.
    Assumptions: ε ≥ 0, c > 0 (for c < 0, LN gives 2β − N_{ε/c²}(z): odd about β). Provenance: our statement.
    Domain errors name the parameter.
    """
    require_nonnegative("eps", eps)
    require_real("scale", scale)
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")
    return eps / (scale * scale)


def norm_jacobian_scale_factor(scale):
    """N3 — Jacobian under rescaling: J_ε(c·z + b1) = J_{ε/c²}(z)·f(c) with f(c) = 1/|c| (LN; RMS with b = 0).

    In particular at ε = 0: J(cz) = J(z)/c for c > 0. Assumptions: c ≠ 0 real. Provenance: our statement.
    Domain errors name the parameter.
    """
    require_real("scale", scale)
    if scale == 0:
        raise ValueError("scale must be nonzero")
    return 1.0 / abs(scale)
