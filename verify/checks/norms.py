"""Checks of group N — norm-layer geometry (N1 range, N2 Jacobian, N3 invariances), LayerNorm and RMSNorm.

What it is for: measuring the zoo's own norm layer (``verify.engine.zoo.BatchedNorm``, float64, on ``ctx.device``)
against the closed forms of ``theory.norms``. Every hypothesis example is one batched computation over
I instances × n rows; Jacobians come from ``torch.func.jacrev`` of the output summed over rows: rows are
independent, so its derivative with respect to row r is row r's own Jacobian, and one jacrev call (d reverse
passes) gives all of them.

Each check also runs a few fixed *anchor* cases (a witness with a large mean, the d = 2 edge case, ε ≈ σ²)
so that its verdict never depends on what hypothesis happens to draw. Theory functions are keyword
arguments, so the meta-tests can inject a wrong theory and see the check fail.

What it is not: a test of torch's own LayerNorm (the zoo's norm is the reference semantics of this suite).
"""
from __future__ import annotations

import dataclasses
import math

import mpmath
import numpy as np
import torch
from hypothesis import strategies as st

from theory.norms import (
    ln_jacobian,
    ln_jacobian_eigenvalues,
    ln_jacobian_frobenius_norm,
    ln_jacobian_norm_bound,
    ln_jacobian_spectral_norm,
    ln_jacobian_spectrum,
    ln_row_variance,
    norm_equivalent_eps,
    norm_jacobian_scale_factor,
    norm_output_bound,
    rms_jacobian,
    rms_jacobian_eigenvalues,
    rms_jacobian_frobenius_norm,
    rms_jacobian_norm_bound,
    rms_jacobian_spectral_norm,
    rms_jacobian_spectrum,
    rms_row_mean_square,
)
from verify.checks.record import Tally
from verify.checks.registry import Context, register
from verify.engine.devices import resolve_device
from verify.engine.strategies import log_uniform, run_over
from verify.engine.zoo import BatchedNorm

U64 = float(np.finfo(np.float64).eps)  # 2.2e-16: one ulp at 1; round-to-nearest error is ≤ U64/2 per operation

# Exact algebra in float64. A norm row touches each entry a bounded number of times plus one length-d sum
# (mean, variance, ‖·‖): the relative error is ≤ (d + 10)·u ≈ 3e-14 for d ≤ 256. 1e-12 leaves ≥ 30× headroom
# and is still 1e10 times smaller than a 10% theory error.
RTOL_ALGEBRA = 1e-12
# Witnesses of equality cases: measured/bound must be 1 up to the same round-off.
WITNESS_EXACT = 1.0 - RTOL_ALGEBRA
# Round-off model for quantities evaluated at rows with a large mean or after forming c·z + b1. Computing a
# row's mean (pairwise sums) or forming c·z_i + b moves each entry by ≤ u(1 + log2 d)·size, size = ‖z‖∞ (or
# |c|‖z‖∞ + |b|); a layer with scale s turns an input error δ into an output error ≤ ‖γ‖∞‖δ‖₂/s and a
# Jacobian error ≤ 4‖γ‖∞‖δ‖₂/s² (the derivative of (P − ccᵀ/(ds²))/s). So, normalised by the output scale
# ‖γ‖∞ or the Jacobian scale ‖γ‖∞/s, the allowance is (1 or 4)·√d·u(1 + log2 d)·size/s. This is the honest
# conditioning of LayerNorm at |μ| ≫ σ (both the zoo and the closed form see it), not slack.
# ROUNDOFF_MODEL_FACTOR multiplies the first-order model to absorb second-order terms and both sides' errors.
ROUNDOFF_MODEL_FACTOR = 4.0
# N2 witnesses run over every scalar-γ row, with |μ|/σ up to ~1.5e5: the model above allows ≤ 4e-8 there, so
# equality is required to 1e-6 (still 1e5 times finer than a 10% theory error).
WITNESS_CONDITIONED = 1.0 - 1e-6


def input_roundoff_ratio(d: int, size, s):
    """‖δ‖₂/s for an input perturbation of u(1 + log2 d)·size per entry (see the round-off model above)."""
    return U64 * (1.0 + math.log2(d)) * math.sqrt(d) * np.asarray(size) / np.asarray(s)


# mpmath oracle: the Jacobian by mpmath.diff (which raises its own working precision) at two precisions of a
# ladder; the lower one is certified when both agree to ORACLE_LADDER_ATOL·‖J‖ (far below the float64 floor).
MP_DPS_LADDER = (50, 80)
ORACLE_LADDER_ATOL = 1e-40  # 50-digit arithmetic is good to ~1e-48 relative to ‖J‖; 1e-40 leaves 1e8 room
# The closed form evaluated in mpmath at 50 digits must match the oracle eigenvalue-by-eigenvalue relatively,
# down to the tiniest (γε/s³ ~ 1e-16·‖J‖): 1e-30 relative is 1e-46 absolute, above the 1e-48 floor.
MP_CLOSED_FORM_RTOL = 1e-30
# The closed form evaluated in float64 (from σ² computed in float64) must match the oracle *relatively* for
# every eigenvalue, including γε/s³ at ε/σ² = 1e-16: σ² carries (d + 4)u ≤ 3e-15 relative error (d ≤ 8) and
# γε/s³ adds ~5u; 1e-13 leaves ≥ 30× headroom. (eigvalsh on the float64 matrix misses this eigenvalue by
# ~u·‖J‖, i.e. by O(1) relatively at ε/σ² = 1e-16 (0.22 seen): the closed form is the reference there.)
F64_CLOSED_FORM_RTOL = 1e-13
MP_ZERO_ATOL = 1e-40  # the eigenvalue 0 on 1 is compared absolutely, at the oracle's certified floor (×‖J‖)


# ---- instances ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class NormCase:
    """A batch of rows for one norm layer: I instances × n rows of width d, with their γ, β and ε.

    Rows are z = mean·a_r + scale·f_r·g with g ~ N(0, I_d), a_r ∈ [0.5, 1.5] and f_r ∈ [0.1, 10] per row, so
    one case spans two orders of magnitude of spread around its drawn scale. γ is a per-instance constant
    (``gamma_mode="scalar"``) or a vector with entries of magnitude in gamma_scale·[0.1, 1] and random sign;
    β (LayerNorm only) is beta_scale·N(0, 1) entrywise.
    """

    kind: str
    d: int
    n_instances: int
    n_rows: int
    eps: float
    gamma_mode: str
    gamma_scale: float
    beta_scale: float
    input_scale: float
    input_mean: float
    seed: int

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(z (I, n, d), γ (I, d), β (I, d)) as float64 numpy arrays, drawn from ``seed``."""
        rng = np.random.default_rng(self.seed)
        I, n, d = self.n_instances, self.n_rows, self.d
        offset = self.input_mean * rng.uniform(0.5, 1.5, size=(I, n, 1))
        spread = self.input_scale * 10.0 ** rng.uniform(-1.0, 1.0, size=(I, n, 1))
        z = offset + spread * rng.standard_normal((I, n, d))
        sign = rng.choice([-1.0, 1.0], size=(I, 1 if self.gamma_mode == "scalar" else d))
        mag = self.gamma_scale * 10.0 ** rng.uniform(-1.0, 0.0, size=sign.shape)
        gamma = np.broadcast_to(sign * mag, (I, d)).copy()
        beta = self.beta_scale * rng.standard_normal((I, d)) if self.kind == "layer" else np.zeros((I, d))
        return z, gamma, beta

    def describe(self) -> dict:
        return dataclasses.asdict(self)


@st.composite
def norm_cases(draw, kinds=("layer", "rms"), d_range=(2, 256), gamma_modes=("scalar", "vector"),
               betas=True, eps_zero=True, scale_range=(1e-6, 1e6), max_mean_ratio=1e6, work=2e5,
               cubic_work=None):
    """A :class:`NormCase` with every knob drawn: width, scales over 12 orders, means up to 1e6 spreads, ε.

    ε is 0, absolute (log-uniform 1e-12..1), or relative to the spread (scale²·log-uniform 1e-8..1e2, the
    regime ε ≈ σ² where √(σ²/(σ²+ε)) and γε/s³ matter). The batch is sized so that I·n·d ≤ ``work`` (and
    I·n·d³ ≤ ``cubic_work`` when given, for checks that take eigenvalues of every row's Jacobian).
    """
    kind = draw(st.sampled_from(list(kinds)))
    d = draw(st.integers(*d_range))
    rows_allowed = max(1, int(work // d))
    if cubic_work is not None:
        rows_allowed = min(rows_allowed, max(1, int(cubic_work // d ** 3)))
    n_instances = draw(st.integers(1, max(1, min(8, rows_allowed))))
    n_rows = draw(st.integers(1, max(1, min(16, rows_allowed // n_instances))))
    scale = draw(log_uniform(*scale_range))
    eps_kind = draw(st.sampled_from(["zero", "absolute", "relative"] if eps_zero else ["absolute", "relative"]))
    if eps_kind == "zero":
        eps = 0.0
    elif eps_kind == "absolute":
        eps = draw(log_uniform(1e-12, 1.0))
    else:
        eps = scale * scale * draw(log_uniform(1e-8, 1e2))
    mean_ratio = draw(st.one_of(st.just(0.0), log_uniform(1e-2, max_mean_ratio)))
    mean = mean_ratio * scale * draw(st.sampled_from([1.0, -1.0]))
    return NormCase(
        kind=kind, d=d, n_instances=n_instances, n_rows=n_rows, eps=float(eps),
        gamma_mode=draw(st.sampled_from(list(gamma_modes))), gamma_scale=draw(log_uniform(1e-2, 1e2)),
        beta_scale=draw(st.sampled_from([0.0, 0.1, 1.0, 10.0])) if betas and kind == "layer" else 0.0,
        input_scale=scale, input_mean=float(mean), seed=draw(st.integers(0, 2**31 - 1)),
    )


def _anchor_cases(seed: int) -> list[NormCase]:
    """Fixed cases every N check runs: witnesses with large means, ε ≈ σ², the d = 2 edge, RMS."""
    common = dict(n_instances=2, n_rows=3, gamma_scale=3.0, beta_scale=0.0, seed=seed)
    return [
        # scalar γ, large mean (1e3 spreads), ε ≈ σ²: the centred s is tiny next to the raw second moment
        NormCase(kind="layer", d=8, eps=0.25, gamma_mode="scalar", input_scale=1.0, input_mean=1e3, **common),
        NormCase(kind="layer", d=3, eps=0.0, gamma_mode="scalar", input_scale=1e-3, input_mean=-5.0, **common),
        # d = 2: the Jacobian is rank one with eigenvalue γε/s³ (zero at ε = 0)
        NormCase(kind="layer", d=2, eps=0.5, gamma_mode="scalar", input_scale=1.0, input_mean=2.0, **common),
        NormCase(kind="layer", d=2, eps=0.0, gamma_mode="scalar", input_scale=1.0, input_mean=0.0, **common),
        NormCase(kind="rms", d=2, eps=0.7, gamma_mode="scalar", input_scale=1.0, input_mean=0.5, **common),
        NormCase(kind="rms", d=16, eps=0.3, gamma_mode="scalar", input_scale=1.0, input_mean=1.0, **common),
        # vector γ and β: the general bounds hold, not with equality
        NormCase(kind="layer", d=12, eps=1e-3, gamma_mode="vector", input_scale=0.1, input_mean=30.0,
                 **{**common, "beta_scale": 1.0}),
        NormCase(kind="rms", d=12, eps=1e-3, gamma_mode="vector", input_scale=0.1, input_mean=3.0, **common),
    ]


# ---- helpers --------------------------------------------------------------------------------------------------
def _norm_layer(kind: str, eps: float, gamma: np.ndarray, beta: np.ndarray, device) -> BatchedNorm:
    """The zoo's norm layer with per-instance γ (I, d) and β (I, d), float64, on ``device``."""
    n_instances, d = gamma.shape
    layer = BatchedNorm(n_instances, d, kind, float(eps), 1.0, 0.0)
    with torch.no_grad():
        layer.gamma.copy_(torch.tensor(gamma, dtype=torch.float64))
        if layer.beta is not None:
            layer.beta.copy_(torch.tensor(beta, dtype=torch.float64))
    return layer.to(device)


def _t(x: np.ndarray, device) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float64).to(device)


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float64).numpy()


def _output(layer: BatchedNorm, z: np.ndarray, device) -> np.ndarray:
    with torch.no_grad():
        return _np(layer(_t(z, device)))


def row_jacobians(layer: BatchedNorm, z: np.ndarray, device) -> np.ndarray:
    """Every row's Jacobian (I, n, d, d) of the zoo's norm layer, by one ``torch.func.jacrev`` call.

    Differentiates h(z) = Σ_r N(z)_r ∈ R^d, the layer's output summed over all rows: rows are independent, so
    ∂h_a/∂z_{r,b} = ∂N(z)_{r,a}/∂z_{r,b} is entry [a, b] of row r's own Jacobian. That is d reverse passes
    for all rows at once (jacrev of the unsummed output would take one pass per output entry, I·n·d).
    """
    zt = _t(z, device)
    d = zt.shape[-1]
    jac = torch.func.jacrev(lambda x: layer(x).reshape(-1, d).sum(dim=0))(zt)  # (d, I, n, d): [a, i, r, b]
    return np.moveaxis(_np(jac), 0, -2)


def _gamma_rows(gamma: np.ndarray, z: np.ndarray) -> np.ndarray:
    """γ broadcast to one gain vector per row: (I, d) → (I, n, d)."""
    return np.broadcast_to(gamma[:, None, :], z.shape)


# ---- N1 -------------------------------------------------------------------------------------------------------
@register("N1", title="norm-layer output range",
          statement="‖N(z)‖₂ ≤ ‖γ‖_∞·√d·√(m/(m+ε)) + ‖β‖₂ (m = σ² for LN, mean z² for RMS); equality for "
                    "constant γ, β = 0",
          provenance="standard fact, our statement (used by paper claims K1, K2)",
          theory=("theory.norms.norm_output_bound",), tests=("tests/test_norms.py",))
def check_n1(ctx: Context, bound=norm_output_bound) -> list[Tally]:
    device = resolve_device(ctx.device)
    tol = f"float64 round-off: (d+10)u ≤ 3e-14 relative for d ≤ 256; rtol {RTOL_ALGEBRA:g} gives ≥ 30× room"
    ln_tally = Tally("N1", "LayerNorm range, vector γ and β", "inequality", tol, evidence="independent",
                     instances="random")
    rms_tally = Tally("N1", "RMSNorm range, vector γ", "inequality", tol, evidence="independent", instances="random")
    sup_tally = Tally("N1", "supremum over inputs ‖γ‖_∞√d + ‖β‖₂", "inequality", tol, evidence="independent",
                      instances="random")
    witness = Tally("N1", "equality for constant γ, β = 0 (witness)", "witness",
                    f"measured/bound ≥ 1 − {RTOL_ALGEBRA:g}: exact up to round-off", evidence="independent",
                    instances="witness")
    witness_large_mean = [float("nan")]
    witness_min = [float("inf")]

    def one(case: NormCase) -> None:
        z, gamma, beta = case.arrays()
        d = case.d
        stat = ln_row_variance(z) if case.kind == "layer" else rms_row_mean_square(z)  # (I, n)
        gmax = np.abs(gamma).max(axis=-1)[:, None]  # (I, 1)
        bnorm = np.linalg.norm(beta, axis=-1)[:, None]
        y = _output(_norm_layer(case.kind, case.eps, gamma, beta, device), z, device)
        measured = np.linalg.norm(y, axis=-1)  # (I, n)
        predicted = bound(d, gmax * np.ones_like(stat), bnorm * np.ones_like(stat), case.eps, stat)
        (ln_tally if case.kind == "layer" else rms_tally).inequality(
            measured, predicted, rtol=RTOL_ALGEBRA, case=case.describe())
        sup_tally.inequality(measured, bound(d, gmax * np.ones_like(stat), bnorm * np.ones_like(stat), case.eps),
                             rtol=RTOL_ALGEBRA, case=case.describe())
        # equality case on the same rows: constant γ (each instance's first |γ| entry), β = 0
        g_const = np.broadcast_to(np.abs(gamma[:, :1]), gamma.shape)
        y0 = _output(_norm_layer(case.kind, case.eps, g_const, np.zeros_like(beta), device), z, device)
        ratio = np.linalg.norm(y0, axis=-1) / bound(d, g_const[:, :1] * np.ones_like(stat), 0.0 * stat,
                                                     case.eps, stat)
        witness.witness(ratio, threshold=WITNESS_EXACT, case=case.describe())
        witness_min[0] = min(witness_min[0], float(np.min(ratio)))
        if abs(case.input_mean) >= 100 * case.input_scale and case.kind == "layer":
            witness_large_mean[0] = float(np.min(ratio))

    for case in _anchor_cases(ctx.seed):
        one(case)
    run_over(norm_cases(), one, examples=ctx.examples(20, 100), seed=ctx.seed)
    witness.note(min_ratio=witness_min[0], min_ratio_large_mean_layernorm=witness_large_mean[0])
    return [ln_tally, rms_tally, sup_tally, witness]


# ---- N2 -------------------------------------------------------------------------------------------------------
def _mp_row_jacobian(kind: str, z: list, gamma: float, eps) -> mpmath.matrix:
    """Oracle: the Jacobian of one row by ``mpmath.diff`` on the layer's *definition* (no closed form used)."""
    d = len(z)

    def layer(a):
        def f(*x):
            if kind == "layer":
                mu = mpmath.fsum(x) / d
                c = [xi - mu for xi in x]
                return gamma * c[a] / mpmath.sqrt(mpmath.fsum(ci * ci for ci in c) / d + eps)
            return gamma * x[a] / mpmath.sqrt(mpmath.fsum(xi * xi for xi in x) / d + eps)
        return f

    J = mpmath.matrix(d, d)
    for a in range(d):
        fa = layer(a)
        for b in range(d):
            order = [0] * d
            order[b] = 1
            J[a, b] = mpmath.diff(fa, z, tuple(order))
    return J


def _mp_spectrum_cases(seed: int, count: int) -> list[tuple[str, np.ndarray, float, float]]:
    """(kind, z (d,), γ, ε) for the cancellation regime ε/σ² ∈ {1e-4, 1e-10, 1e-16}, float64 numbers."""
    rng = np.random.default_rng(seed + 7)
    out = []
    for k in range(count):
        kind = "rms" if k % 4 == 3 else "layer"
        d = (3, 5, 8)[k % 3]
        rho = (1e-4, 1e-10, 1e-16)[k % 3]
        z = 10.0 * (k % 2) + rng.uniform(0.5, 2.0) * rng.standard_normal(d)
        stat = float(np.var(z)) if kind == "layer" else float(np.mean(z * z))
        gamma = float(rng.choice([-1.0, 1.0]) * 10.0 ** rng.uniform(-1, 1))
        out.append((kind, z, gamma, rho * stat))
    return out


def _check_mp_spectrum(ctx: Context, tally_oracle: Tally, tally_mp: Tally, tally_f64: Tally,
                       ln_spectrum, rms_spectrum, ln_row_var, rms_row_ms) -> None:
    eigvalsh_rel = []
    for kind, z, gamma, eps in _mp_spectrum_cases(ctx.seed, ctx.examples(4, 16)):
        d = z.size
        spectrum = ln_spectrum if kind == "layer" else rms_spectrum
        desc = dict(kind=kind, d=d, gamma=gamma, eps=eps, eps_over_stat=eps / float(
            np.var(z) if kind == "layer" else np.mean(z * z)), z_mean=float(z.mean()))
        with mpmath.workdps(MP_DPS_LADDER[1]):
            hi = sorted(mpmath.eigsy(_mp_row_jacobian(kind, [mpmath.mpf(float(x)) for x in z], mpmath.mpf(gamma),
                                                      mpmath.mpf(eps)), eigvals_only=True))
        with mpmath.workdps(MP_DPS_LADDER[0]):
            zm = [mpmath.mpf(float(x)) for x in z]
            J = _mp_row_jacobian(kind, zm, mpmath.mpf(gamma), mpmath.mpf(eps))
            lo = sorted(mpmath.eigsy(J, eigvals_only=True))
            mu = mpmath.fsum(zm) / d
            stat_mp = (mpmath.fsum((x - mu) ** 2 for x in zm) if kind == "layer" else mpmath.fsum(x * x for x in zm)) / d
            closed_mp = list(spectrum(d, mpmath.mpf(gamma), stat_mp, mpmath.mpf(eps)))
            jnorm = max(abs(v) for v in lo)
            tally_oracle.identity([float(a - b) / float(jnorm) for a, b in zip(lo, hi)], 0.0, rtol=0.0,
                                  atol=ORACLE_LADDER_ATOL, case=desc)
            tally_mp.identity([float((a - b) / (MP_CLOSED_FORM_RTOL * abs(b) + MP_ZERO_ATOL * jnorm))
                               for a, b in zip(closed_mp, lo)], 0.0, rtol=0.0, atol=1.0, case=desc)
            stat64 = float(ln_row_var(z) if kind == "layer" else rms_row_ms(z))
            closed64 = np.asarray(spectrum(d, gamma, stat64, eps), dtype=float)
            tally_f64.identity([float((mpmath.mpf(float(a)) - b) / (F64_CLOSED_FORM_RTOL * abs(b) + MP_ZERO_ATOL * jnorm))
                                for a, b in zip(closed64, lo)], 0.0, rtol=0.0, atol=1.0, case=desc)
            # what float64 eigvalsh makes of the eigenvalue on the input direction (for the record only)
            f64 = np.linalg.eigvalsh((ln_jacobian if kind == "layer" else rms_jacobian)(z, gamma, eps))
            radial_true = gamma * eps / float(stat_mp + eps) ** 1.5
            nearest = f64[np.argmin(np.abs(f64 - radial_true))]
            eigvalsh_rel.append(abs(nearest - radial_true) / abs(radial_true))
    tally_f64.note(eigvalsh_worst_relative_error_on_radial_eigenvalue=max(eigvalsh_rel))


ORTHO_KEEP = 0.5  # a random direction is used only if ≥ half of it survives the projections (see below)


def _orthogonal_direction(shape, u_rad: np.ndarray, centred: bool, seed: int, tries: int = 64) -> np.ndarray:
    """Per row, a unit vector ⟂ u_rad (and ⟂ 1 when ``centred``): a random draw with those components removed.

    u_rad carries the centring round-off δ ~ u(1 + log2 d)‖z‖∞/s (the model above), so the projected vector has a
    radial component ~ δ·‖v‖, which normalising divides by the part that survived the projection. A draw nearly
    parallel to u_rad — likely at d = 3, where the centred space is a plane (soak seeds 2395010012, 3153489512:
    39× the model) — amplifies δ without bound; so a row keeps a draw only when ≥ ORTHO_KEEP of it survives,
    which caps the amplification at 1/ORTHO_KEEP. Deterministic: the draws come from ``seed``."""
    rng = np.random.default_rng(seed)
    out = np.zeros(shape)
    todo = np.ones(shape[:-1], dtype=bool)
    for _ in range(tries):
        v = rng.standard_normal(shape)
        if centred:
            v -= v.mean(axis=-1, keepdims=True)
        full = np.linalg.norm(v, axis=-1)
        v -= np.sum(v * u_rad, axis=-1, keepdims=True) * u_rad
        kept = np.linalg.norm(v, axis=-1)
        ok = todo & (kept >= ORTHO_KEEP * full)
        out[ok] = v[ok] / kept[ok][..., None]
        todo &= ~ok
        if not todo.any():
            return out
    raise ArithmeticError(f"no well-conditioned orthogonal direction in {tries} draws")  # pragma: no cover


@register("N2", title="norm-layer Jacobian: exact matrix, spectrum, norms",
          statement="J = diag(γ)(P − ccᵀ/(ds²))/s; scalar γ: spectrum {0 on 1, γε/s³ on c, γ/s ×(d−2)}, "
                    "‖J‖₂ = |γ|/s (d ≥ 3), ‖J‖_F = (|γ|/s)√(d−2+ε²/s⁴); ‖J‖₂ ≤ ‖γ‖_∞/s with centred s; RMS analogue",
          provenance="standard calculus, our statement (used by paper claims K3, K4)",
          theory=("theory.norms.ln_jacobian", "theory.norms.ln_jacobian_spectrum",
                  "theory.norms.ln_jacobian_spectral_norm", "theory.norms.ln_jacobian_frobenius_norm",
                  "theory.norms.ln_jacobian_norm_bound", "theory.norms.rms_jacobian"),
          tests=("tests/test_norms.py",))
def check_n2(ctx: Context, *,
             ln_row_variance=ln_row_variance, rms_row_mean_square=rms_row_mean_square,
             ln_jacobian=ln_jacobian, rms_jacobian=rms_jacobian,
             ln_eigenvalues=ln_jacobian_eigenvalues, rms_eigenvalues=rms_jacobian_eigenvalues,
             ln_spectrum=ln_jacobian_spectrum, rms_spectrum=rms_jacobian_spectrum,
             ln_spectral_norm=ln_jacobian_spectral_norm, rms_spectral_norm=rms_jacobian_spectral_norm,
             ln_frobenius_norm=ln_jacobian_frobenius_norm, rms_frobenius_norm=rms_jacobian_frobenius_norm,
             ln_bound=ln_jacobian_norm_bound, rms_bound=rms_jacobian_norm_bound) -> list[Tally]:
    device = resolve_device(ctx.device)
    tol = (f"per row, relative to ‖J‖: {RTOL_ALGEBRA:g} (jacrev/eigvalsh/SVD err O(d·u) ≈ 2e-14 for d ≤ 96) + "
           f"{ROUNDOFF_MODEL_FACTOR:g}·4·√d·u(1+log2 d)‖z‖∞/s (conditioning at large means)")
    t_jac = Tally("N2", "exact Jacobian = jacrev (vector γ, ε ≥ 0)", "identity", tol, evidence="independent",
                  instances="random")
    t_eigdir = Tally("N2", "eigenpairs: J1 = 0, Jc = γε/s³·c, Ju = γ/s·u", "identity", tol, evidence="independent",
                     instances="random")
    t_spec = Tally("N2", "closed-form spectrum = eigvalsh(J) (scalar γ)", "identity", tol, evidence="independent",
                   instances="random")
    t_snorm = Tally("N2", "‖J‖₂ closed form (d ≥ 3 and d = 2)", "identity", tol, evidence="independent",
                    instances="random")
    t_fro = Tally("N2", "‖J‖_F closed form", "identity", tol, evidence="independent", instances="random")
    t_bound = Tally("N2", "‖J‖₂ ≤ ‖γ‖_∞/s, centred s (vector γ)", "inequality", tol, evidence="independent",
                    instances="random")
    t_wit = Tally("N2", "‖J‖₂ = ‖γ‖_∞/s at constant γ, d ≥ 3, large mean (witness)", "witness",
                  f"measured/bound ≥ {WITNESS_CONDITIONED:.7g}: exact up to conditioned round-off (≤ 4e-8)",
                  evidence="independent", instances="witness")
    t_oracle = Tally("N2", "mpmath oracle certified by a 50/80-digit ladder", "identity",
                     f"eigenvalues at 50 and 80 digits agree to {ORACLE_LADDER_ATOL:g}·‖J‖",
                     evidence="code-identity", instances="random")
    t_mp = Tally("N2", "closed-form spectrum at 50 digits = oracle, ε/σ² down to 1e-16", "identity",
                 f"rtol {MP_CLOSED_FORM_RTOL:g} per eigenvalue (oracle floor ~1e-48·‖J‖)", evidence="independent",
                 instances="random")
    t_f64 = Tally("N2", "closed-form spectrum in float64 = oracle, relatively", "identity",
                  f"rtol {F64_CLOSED_FORM_RTOL:g} per eigenvalue incl. γε/s³: (d+4)u ≤ 3e-15 from σ², 30× room",
                  evidence="independent", instances="random")
    uncentred_ratio = [0.0]
    witness_min = [float("inf")]

    def one(case: NormCase) -> None:
        z, gamma, beta = case.arrays()
        d, eps, layer_kind = case.d, case.eps, case.kind == "layer"
        desc = case.describe()
        stat = ln_row_variance(z) if layer_kind else rms_row_mean_square(z)  # (I, n)
        J = row_jacobians(_norm_layer(case.kind, eps, gamma, beta, device), z, device)  # (I, n, d, d)
        g_rows = _gamma_rows(gamma, z)
        gmax = np.abs(gamma).max(axis=-1)[:, None]  # (I, 1)
        bound = (ln_bound if layer_kind else rms_bound)(gmax * np.ones_like(stat), stat, eps)  # (I, n)
        # per-row allowance relative to ‖J‖: algebra plus the conditioning at ‖z‖∞ ≫ s (large means)
        tol = RTOL_ALGEBRA + ROUNDOFF_MODEL_FACTOR * 4 * input_roundoff_ratio(
            d, np.abs(z).max(axis=-1), np.sqrt(stat + eps))
        unit = bound[..., None, None]  # the scale ‖γ‖_∞/s of each row's Jacobian
        J_th = (ln_jacobian if layer_kind else rms_jacobian)(z, g_rows, eps)
        t_jac.identity(np.abs(J - J_th).max(axis=(-2, -1)) / unit[..., 0, 0] / tol, 0.0, rtol=0.0, atol=1.0,
                       case=desc)
        snorm = np.linalg.norm(J, 2, axis=(-2, -1))
        t_bound.inequality(snorm, bound, rtol=tol.ravel(), case=desc)  # rtol per row, same order as ravel()
        if layer_kind:  # how far above an (incorrect) uncentred bound ‖γ‖∞/√(mean z² + ε) the truth goes
            uncentred_ratio[0] = max(uncentred_ratio[0], float(np.max(
                snorm * np.sqrt(rms_row_mean_square(z) + eps) / gmax)))
        if case.gamma_mode != "scalar":
            return
        g = gamma[:, :1] * np.ones_like(stat)  # (I, n) scalar γ of each row
        scale = np.abs(g) / np.sqrt(stat + eps)  # |γ|/s, the unit of every comparison below

        def record(tally, measured, predicted):  # |measured − predicted|/(|γ|/s) ≤ tol, per row
            err = np.abs(np.asarray(measured) - np.asarray(predicted))
            err = err.reshape(err.shape[:2] + (-1,)).max(axis=-1) if err.ndim > 2 else err
            tally.identity(err / scale / tol, 0.0, rtol=0.0, atol=1.0, case=desc)

        if d >= 3 or not layer_kind:
            t_wit.witness(snorm / bound, threshold=WITNESS_CONDITIONED, case=desc)
            witness_min[0] = min(witness_min[0], float(np.min(snorm / bound)))
        # spectrum vs eigvalsh (J is symmetric for scalar γ; symmetrise away the round-off asymmetry)
        ev = np.linalg.eigvalsh(0.5 * (J + np.swapaxes(J, -1, -2)))
        record(t_spec, ev, (ln_spectrum if layer_kind else rms_spectrum)(d, g, stat, eps))
        record(t_snorm, snorm, (ln_spectral_norm if layer_kind else rms_spectral_norm)(d, g, stat, eps))
        record(t_fro, np.linalg.norm(J, "fro", axis=(-2, -1)),
               (ln_frobenius_norm if layer_kind else rms_frobenius_norm)(d, g, stat, eps))
        # eigenpairs by direction: J·u − λ·u for u = ĉ (or ẑ), 1/√d, and a unit vector orthogonal to both
        pairs = (ln_eigenvalues if layer_kind else rms_eigenvalues)(g, stat, eps)
        radial_dir = z - z.mean(axis=-1, keepdims=True) if layer_kind else z
        u_rad = radial_dir / np.linalg.norm(radial_dir, axis=-1, keepdims=True)  # drawn rows are never constant

        def residual(u, lam):
            return np.linalg.norm(np.einsum("...ab,...b->...a", J, u) - np.asarray(lam)[..., None] * u, axis=-1)

        record(t_eigdir, residual(u_rad, pairs.along_input), 0.0)
        if layer_kind:
            record(t_eigdir, residual(np.broadcast_to(np.full(d, d ** -0.5), z.shape), pairs.along_ones), 0.0)
        if d - (2 if layer_kind else 1) >= 1:
            record(t_eigdir, residual(_orthogonal_direction(z.shape, u_rad, layer_kind, case.seed + 1),
                                      pairs.orthogonal), 0.0)

    for case in _anchor_cases(ctx.seed):
        one(case)
    run_over(norm_cases(d_range=(2, 96), cubic_work=3e5, max_mean_ratio=1e4), one, examples=ctx.examples(12, 60), seed=ctx.seed + 2)
    t_bound.note(max_ratio_to_uncentred_bound=uncentred_ratio[0])
    t_wit.note(min_ratio=witness_min[0])
    _check_mp_spectrum(ctx, t_oracle, t_mp, t_f64, ln_spectrum, rms_spectrum, ln_row_variance, rms_row_mean_square)
    return [t_jac, t_eigdir, t_spec, t_snorm, t_fro, t_bound, t_wit, t_oracle, t_mp, t_f64]


# ---- N3 -------------------------------------------------------------------------------------------------------
@register("N3", title="norm-layer invariances",
          statement="ε = 0: N(cz + b1) = N(z) for c > 0 (RMS: b = 0), J z = 0, J 1 = 0 (LN), J(cz) = J(z)/c; "
                    "LN odd when β = 0; for ε > 0: N_ε(cz + b1) = N_{ε/c²}(z), J_ε(cz + b1) = J_{ε/c²}(z)/c",
          provenance="standard fact, our statement",
          theory=("theory.norms.norm_equivalent_eps", "theory.norms.norm_jacobian_scale_factor",
                  "theory.norms.ln_jacobian_eigenvalues"),
          tests=("tests/test_norms.py",))
def check_n3(ctx: Context, *, equivalent_eps=norm_equivalent_eps, jacobian_scale_factor=norm_jacobian_scale_factor,
             ln_eigenvalues=ln_jacobian_eigenvalues, rms_eigenvalues=rms_jacobian_eigenvalues,
             shift_invariant_kinds=("layer",)) -> list[Tally]:
    device = resolve_device(ctx.device)
    model = (f"first-order round-off model ×{ROUNDOFF_MODEL_FACTOR:g}: input rounding u(1+log2 d)(|c|‖z‖∞+|b|) "
             f"amplified by ‖J‖ ≤ ‖γ‖∞/s, plus (d+10)u arithmetic per side")
    tol = f"(d+10)u relative ≤ 3e-14 for d ≤ 256; {RTOL_ALGEBRA:g} of ‖J‖‖z‖ gives ≥ 30× room"
    t_inv0 = Tally("N3", "ε = 0: N(cz + b1) = N(z), c > 0 (RMS: b = 0)", "identity", model,
                   evidence="code-identity", instances="random")
    t_inv = Tally("N3", "ε > 0: N_ε(cz + b1) = N_{ε/c²}(z)", "identity", model, evidence="code-identity",
                  instances="random")
    t_null = Tally("N3", "ε = 0: J z = 0 and J 1 = 0 (LN)", "identity", tol, evidence="independent",
                   instances="random")
    t_rad = Tally("N3", "ε ≥ 0: J z = (ε/s³)·γ⊙c (radial image)", "identity", tol, evidence="independent",
                  instances="random")
    t_jac0 = Tally("N3", "ε = 0: J(cz + b1) = J(z)/c", "identity", model, evidence="code-identity",
                   instances="random")
    t_jac = Tally("N3", "ε > 0: J_ε(cz + b1) = J_{ε/c²}(z)/c", "identity", model, evidence="code-identity",
                  instances="random")
    t_odd = Tally("N3", "odd: N(−z) = 2β − N(z) (= −N(z) when β = 0)", "identity",
                  f"negation is exact in float64; {RTOL_ALGEBRA:g} of ‖γ‖∞+‖β‖∞ covers the β re-association",
                  evidence="code-identity", instances="random")

    def one(case_scale) -> None:
        case, c, b_ratio = case_scale
        z, gamma, beta = case.arrays()
        d, layer_kind = case.d, case.kind == "layer"
        desc = {**case.describe(), "c": c, "b_ratio": b_ratio}
        b = b_ratio * c * case.input_scale if case.kind in shift_invariant_kinds else 0.0
        zc = c * z + b  # (I, n, d), rounded: the model below accounts for it
        gmax = np.abs(gamma).max(axis=-1)[:, None]  # (I, 1)
        bmax = np.abs(beta).max(axis=-1)[:, None]
        stat = ln_row_variance(z) if layer_kind else rms_row_mean_square(z)
        zinf = np.abs(z).max(axis=-1)
        eps = case.eps if case.eps > 0 else case.input_scale ** 2  # this check always has an ε > 0 variant
        for e, t_out, t_j in ((0.0, t_inv0, t_jac0), (eps, t_inv, t_jac)):
            e_equiv = equivalent_eps(e, c)
            s_equiv = np.sqrt(stat + e_equiv)  # scale of the layer at z with ε'; at cz + b1 it is c·s_equiv
            # relative size of the input rounding as seen by the layer: u(|c|‖z‖∞ + |b|)·√d/(c·s')
            cond = input_roundoff_ratio(d, abs(c) * zinf + abs(b), abs(c) * s_equiv)
            arith = U64 * (d + 10)
            out_tol = ROUNDOFF_MODEL_FACTOR * (gmax * (cond + 2 * arith) + bmax * arith)  # (I, n)
            y_scaled = _output(_norm_layer(case.kind, e, gamma, beta, device), zc, device)
            y_ref = _output(_norm_layer(case.kind, e_equiv, gamma, beta, device), z, device)
            err = np.abs(y_scaled - y_ref).max(axis=-1) / out_tol
            t_out.identity(err, 0.0, rtol=0.0, atol=1.0, case=desc)
            # Jacobians, normalised by the reference Jacobian's scale ‖γ‖∞/s'
            if d <= 64:
                J_scaled = row_jacobians(_norm_layer(case.kind, e, gamma, beta, device), zc, device)
                J_ref = row_jacobians(_norm_layer(case.kind, e_equiv, gamma, beta, device), z, device)
                unit = (gmax / s_equiv)[..., None, None]
                jac_tol = ROUNDOFF_MODEL_FACTOR * (4 * cond + 2 * arith)
                diff = np.abs(J_scaled / jacobian_scale_factor(c) - J_ref) / unit
                t_j.identity(diff.max(axis=(-2, -1)) / jac_tol, 0.0, rtol=0.0, atol=1.0, case=desc)
        # J z and J 1 at ε = 0 and the radial image at ε > 0, on the original rows
        if d <= 64:
            for e in (0.0, eps):
                J = row_jacobians(_norm_layer(case.kind, e, gamma, beta, device), z, device)
                s = np.sqrt(stat + e)
                jscale = (gmax / s) * np.linalg.norm(z, axis=-1)  # ‖J‖·‖z‖, the size round-off is measured in
                Jz = np.einsum("...ab,...b->...a", J, z)
                centred = z - z.mean(axis=-1, keepdims=True) if layer_kind else z
                radial = np.asarray((ln_eigenvalues if layer_kind else rms_eigenvalues)(1.0, stat, e).along_input)
                expected = radial[..., None] * _gamma_rows(gamma, z) * centred
                t_rad.identity(np.linalg.norm(Jz - expected, axis=-1) / jscale, 0.0, rtol=0.0, atol=RTOL_ALGEBRA,
                               case=desc)
                if e == 0.0:
                    t_null.identity(np.linalg.norm(Jz, axis=-1) / jscale, 0.0, rtol=0.0, atol=RTOL_ALGEBRA,
                                    case=desc)
                    if case.kind in shift_invariant_kinds:
                        J1 = J.sum(axis=-1) / math.sqrt(d)  # J applied to the unit vector 1/√d
                        t_null.identity(np.linalg.norm(J1, axis=-1) / (gmax / s), 0.0, rtol=0.0,
                                        atol=RTOL_ALGEBRA, case=desc)
        # oddness (any ε)
        layer = _norm_layer(case.kind, case.eps, gamma, beta, device)
        y, y_neg = _output(layer, z, device), _output(layer, -z, device)
        t_odd.identity((np.abs(y_neg - (2 * beta[:, None, :] - y)).max(axis=-1)) / (gmax + bmax), 0.0, rtol=0.0,
                       atol=RTOL_ALGEBRA, case=desc)

    @st.composite
    def cases(draw):
        case = draw(norm_cases(d_range=(2, 96), max_mean_ratio=1e3, work=5e3))
        c = draw(log_uniform(1e-6, 1e6))
        b_ratio = draw(st.one_of(st.just(0.0), log_uniform(1e-2, 1e4))) * draw(st.sampled_from([1.0, -1.0]))
        return case, c, b_ratio

    for k, case in enumerate(_anchor_cases(ctx.seed)):
        one((case, (10.0, 1e-3, 7.0)[k % 3], (3.0, -1e3, 0.0)[k % 3]))
    run_over(cases(), one, examples=ctx.examples(12, 60), seed=ctx.seed + 3)
    return [t_inv0, t_inv, t_null, t_rad, t_jac0, t_jac, t_odd]
