"""Registered checks for X7–X14: the gallery of 2024–2026 designs, each measured on its own factory.

Every design lives in ``verify/check/designs/<name>.py`` as a plain ``make_block(d, seed, ...)`` factory (what a
user plugs into ``python -m verify.check``); these checks build many independent instances of it — instance i of
layer l is the factory called after ``torch.manual_seed(seed + 7919·l + i)``, as ``verify.check`` would — and hold
the measurements to the closed forms of ``theory/gallery.py``:

- Monte-Carlo bands use *paired* samples where the theory is a conditional expectation (measured − predicted given
  the instance's own input), Student-t at a false-alarm rate of 1e-4 per tally with Bonferroni over its
  comparisons (``verify.engine.stats.BandSet``);
- exact statements (rows on a sphere, an identity Jacobian, a spectral norm of 1) are identity tallies at a
  round-off tolerance stated where it is used;
- every inequality has a witness built to attain it.

Measurements are cached on their (hashable) arguments, so a meta-test that re-runs a check with a deliberately
wrong theory (keyword arguments) compares it with exactly the data the passing run saw.
"""
from __future__ import annotations

import functools
import importlib
import math

import numpy as np
import torch
from torch import nn

from theory.gallery import (
    completep_energy,
    doubly_stochastic_gain,
    gpas_energy,
    gpas_gain,
    hybridnorm_presum_energy,
    hybridnorm_rms,
    hyperconnection_energy,
    ngpt_rms,
    ngpt_unnormalised_bounds,
    ngpt_unnormalised_energy,
    residual_multiplier_energy,
    rezero_energy,
    sandwich_energy,
    sinkhorn,
    softcap,
    softcap_bound,
)
from verify.checks.record import Tally
from verify.checks.registry import Context, register
from verify.engine.stats import BandSet

U = float(np.finfo(np.float64).eps) / 2  # unit round-off of float64, 1.1e-16
WITNESS_THRESHOLD = 0.99  # the suite-wide tightness threshold of a witness
BAND_TOL = "Student-t band over instances (paired where conditional), false alarm 1e-4, Bonferroni"
LAYER_SEED = 7919


def design(name: str):
    return importlib.import_module(f"verify.check.designs.{name}")


def build(name: str, d: int, n_layers: int, n_instances: int, seed: int, **kw) -> list[list[nn.Module]]:
    """[layer][instance] float64 blocks of design ``name``, each from its own seed (torch's global generator);
    ``kw`` goes to the factory (``depth`` for CompleteP: the depth of the stack being built)."""
    mod = design(name)
    layers = []
    for l in range(n_layers):
        row = []
        for i in range(n_instances):
            torch.manual_seed(seed + LAYER_SEED * l + i)
            row.append(mod.make_block(d=d, seed=seed + LAYER_SEED * l + i, **kw).to(torch.float64).eval())
        layers.append(row)
    return layers


def inputs(n_instances: int, n_tokens: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n_instances, n_tokens, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def states(name: str, d: int, n_layers: int, n_tokens: int, n_instances: int, seed: int, **kw) -> torch.Tensor:
    """Hidden states (I, L+1, n, d) of I independent stacks of L layers on standard Gaussian inputs."""
    blocks = build(name, d, n_layers, n_instances, seed, **kw)
    x = inputs(n_instances, n_tokens, d, seed + 1)
    out = [x]
    for row in blocks:
        x = torch.stack([row[i](x[i]) for i in range(n_instances)])
        out.append(x)
    return torch.stack(out, dim=1)


def row_energy(x: torch.Tensor) -> np.ndarray:
    """Per-row second moment averaged over the tokens: ‖x‖²/n, over the last two axes."""
    return (x * x).sum(-1).mean(-1).numpy()


# =====================================================================================================================
# X7 — nGPT
# =====================================================================================================================
@functools.lru_cache(maxsize=16)
def measure_ngpt(d: int, depth: int, n_tokens: int, n_instances: int, seed: int, alpha: float) -> dict:
    """Row norms of every state (I, L, n), and ‖h + α(unit(F(h)) − h)‖² of block l on the state before it (I, L−1):
    that state (l ≥ 1) is on the sphere and independent of block l's weights."""
    blocks = build("ngpt", d, depth, n_instances, seed, alpha=alpha)
    x = inputs(n_instances, n_tokens, d, seed + 1)
    norms, pre = [], []
    with torch.no_grad():
        for l, row in enumerate(blocks):
            if l >= 1:
                pre.append(torch.stack([row[i].unnormalised(x[i]) for i in range(n_instances)]))
            x = torch.stack([row[i](x[i]) for i in range(n_instances)])
            norms.append(x.norm(dim=-1))
    return {"row_norms": torch.stack(norms, 1).numpy(),
            "pre_energy": np.stack([(p * p).sum(-1).mean(-1).numpy() for p in pre], 1),
            "pre_norms": torch.stack([p.norm(dim=-1) for p in pre], 1).numpy()}


@torch.no_grad()
def ngpt_witness(d: int, alpha: float, sign: float) -> float:
    """‖h + α(unit(F(h)) − h)‖ for a block whose branch returns sign·h: attains 1 (sign +1) or |1 − 2α| (−1)."""
    torch.manual_seed(0)
    block = design("ngpt").make_block(d=d, alpha=alpha).to(torch.float64)
    block.mlp = _Scaled(sign)
    h = inputs(1, 4, d, 5)[0]
    h = h / h.norm(dim=-1, keepdim=True)
    return float(block.unnormalised(h).norm(dim=-1).max() if sign > 0 else block.unnormalised(h).norm(dim=-1).min())


class _Scaled(nn.Module):
    def __init__(self, c: float):
        super().__init__()
        self.c = c

    def forward(self, x):
        return self.c * x


NGPT_ALPHAS = (0.05, 0.3, 0.7)


@register(
    "X7",
    title="nGPT (Loshchilov et al. 2024): hidden state on the unit sphere, bounded by construction",
    statement=("h ← unit(h + α(unit(F(h)) − h)): every row has norm 1 after every block, for any weights; "
               "|1 − 2α| ≤ ‖h + α(unit(F(h)) − h)‖ ≤ 1 for unit h; at init E‖h + α(unit(F(h)) − h)‖² = (1−α)² + α²"),
    provenance="neighbour: Loshchilov et al. 2024 (nGPT, arXiv 2410.01131), our statement",
    theory=("theory.gallery.ngpt_rms", "theory.gallery.ngpt_unnormalised_bounds",
            "theory.gallery.ngpt_unnormalised_energy"),
    tests=("tests/test_gallery.py",),
)
def check_x7(ctx: Context, *, rms=ngpt_rms, bounds=ngpt_unnormalised_bounds, energy=ngpt_unnormalised_energy,
             d: int = 16, depth: int = 6, n_tokens: int = 4) -> list[Tally]:
    sphere = Tally("X7", "nGPT: every row on the unit sphere (l ≥ 1)", "identity",
                   tolerance="rtol 0, atol 16u·√d: one division by a norm of d terms", evidence="independent",
                   instances="random")
    ineq = Tally("X7", "|1−2α| ≤ ‖h + α(unit(F)−h)‖ ≤ 1", "inequality",
                 tolerance="rtol 8u: a sum of two unit vectors' multiples", evidence="independent", instances="random")
    wit = Tally("X7", "witness: branch ∥ ±h attains both ends", "witness", tolerance="ratio ≥ 0.99",
                evidence="independent", instances="witness")
    band = Tally("X7", "E‖h + α(unit(F)−h)‖² = (1−α)² + α² at init", "band", tolerance=BAND_TOL,
                 evidence="independent", instances="random")
    bands = BandSet()
    I = ctx.examples(48, 192)
    for j, alpha in enumerate(NGPT_ALPHAS):
        m = measure_ngpt(d, depth, n_tokens, I, ctx.seed + 10 * j, alpha)
        case = {"d": d, "depth": depth, "alpha": alpha, "I": I}
        r = rms(depth, d)[1:]  # r_l for l ≥ 1: the row norm itself, every row on the sphere
        sphere.identity(m["row_norms"], np.broadcast_to(r[None, :, None], m["row_norms"].shape), rtol=0.0,
                        atol=16 * U * math.sqrt(d), case=case)
        lo, hi = bounds(alpha)
        ineq.inequality(m["pre_norms"], hi, rtol=8 * U, case=dict(case, end="upper"))
        ineq.inequality(np.full_like(m["pre_norms"], lo), m["pre_norms"], rtol=8 * U, atol=8 * U,
                        case=dict(case, end="lower"))
        w_hi, w_lo = ngpt_witness(d, alpha, +1.0), ngpt_witness(d, alpha, -1.0)
        wit.witness(w_hi / hi, threshold=WITNESS_THRESHOLD, case={**case, "end": "upper"})
        if lo > 0:
            wit.witness(lo / w_lo, threshold=WITNESS_THRESHOLD, case={**case, "end": "lower"})
        # the witnesses must satisfy the inequality too: a bound below what they attain is wrong
        ineq.inequality(w_hi, hi, rtol=8 * U, case={**case, "end": "upper witness"})
        ineq.inequality(lo, w_lo, rtol=8 * U, atol=8 * U, case={**case, "end": "lower witness"})
        bands.add(m["pre_energy"], energy(alpha), case=case)
    bands.record(band)
    return [sphere, ineq, wit, band]


# =====================================================================================================================
# X8 — HybridNorm
# =====================================================================================================================
@functools.lru_cache(maxsize=16)
def measure_hybridnorm(d: int, depth: int, n_tokens: int, n_instances: int, seed: int) -> dict:
    """Row norms after every block (I, L, n); one token: the FFN's residual sum energy and ‖x‖² of the block input."""
    blocks = build("hybridnorm", d, depth, n_instances, seed)
    x = inputs(n_instances, n_tokens, d, seed + 1)
    norms, presum, xin = [], [], []
    with torch.no_grad():
        for row in blocks:
            xin.append(row_energy(x))
            ps = torch.stack([row[i].presum(row[i].attention_step(x[i])) for i in range(n_instances)])
            presum.append(row_energy(ps))
            x = torch.stack([row[i](x[i]) for i in range(n_instances)])
            norms.append(x.norm(dim=-1))
    return {"row_norms": torch.stack(norms, 1).numpy(), "presum": np.stack(presum, 1), "x_energy": np.stack(xin, 1)}


@register(
    "X8",
    title="HybridNorm (Zhuo et al. 2025): QKV-norm attention, Post-Norm FFN — rows bounded, presum 3d",
    statement=("x' = x + Attn_QKVnorm(x), x⁺ = N(x' + F(x')): every output row has norm √d for any weights; one "
               "token at init: E‖x' + F(x')‖² = (3/2)(‖x‖² + d), = 3d after the first block"),
    provenance="neighbour: Zhuo et al. 2025 (HybridNorm, arXiv 2503.04598), our statement",
    theory=("theory.gallery.hybridnorm_rms", "theory.gallery.hybridnorm_presum_energy"),
    tests=("tests/test_gallery.py",),
)
def check_x8(ctx: Context, *, rms=hybridnorm_rms, presum_energy=hybridnorm_presum_energy, d: int = 16,
             depth: int = 6) -> list[Tally]:
    sphere = Tally("X8", "HybridNorm: every output row has norm √d", "identity",
                   tolerance="rtol 16u·d: an RMS norm of d terms (ε = 0)", evidence="independent", instances="random")
    band = Tally("X8", "one token: E‖x' + F(x')‖² = 1.5(‖x‖² + d)", "band", tolerance=BAND_TOL,
                 evidence="independent", instances="random")
    bands = BandSet()
    for n_tokens, I in ((1, ctx.examples(128, 512)), (3, ctx.examples(16, 64))):
        m = measure_hybridnorm(d, depth, n_tokens, I, ctx.seed + n_tokens)
        case = {"d": d, "depth": depth, "n": n_tokens, "I": I}
        r = rms(depth, d)[1:]
        sphere.identity(m["row_norms"], np.broadcast_to(r[None, :, None], m["row_norms"].shape), rtol=16 * U * d,
                        case=case)
        if n_tokens == 1:  # the closed form is a one-token statement (softmax = 1)
            # one paired sample per instance: the mean over its layers (fresh weights each layer, one comparison)
            pred = np.vectorize(lambda e: presum_energy(e, d))(m["x_energy"])
            bands.add(((m["presum"] - pred) / d).mean(1), pred.mean() / d, estimate=m["presum"].mean() / d,
                      case=case)
    bands.record(band)
    return [sphere, band]


# =====================================================================================================================
# X9 — ReZero
# =====================================================================================================================
@functools.lru_cache(maxsize=16)
def measure_rezero(d: int, depth: int, n_tokens: int, n_instances: int, seed: int, alpha: float) -> np.ndarray:
    """Per-instance row energies (I, L+1) of ReZero stacks with α set to ``alpha``."""
    return row_energy(states("rezero", d, depth, n_tokens, n_instances, seed, alpha=alpha))


def rezero_jacobian_error(d: int, depth: int, n_instances: int, seed: int) -> np.ndarray:
    """max |J − I| of the whole stack's Jacobian at α = 0 (autograd, one token per instance): (I,)."""
    blocks = build("rezero", d, depth, n_instances, seed)
    x = inputs(n_instances, 1, d, seed + 1)
    errs = []
    for i in range(n_instances):
        def f(v, i=i):
            for row in blocks:
                v = row[i](v)
            return v
        jac = torch.autograd.functional.jacobian(f, x[i][0])
        errs.append(float((jac - torch.eye(d, dtype=torch.float64)).abs().max()))
    return np.asarray(errs)


REZERO_ALPHAS = (0.5, 1.0)


@register(
    "X9",
    title="ReZero (Bachlechner et al. 2021): identity Jacobian at init; (1 + α²/2)^L once α ≠ 0",
    statement=("x⁺ = x + αF(x), α = 0 at init: the stack is the identity map, Jacobian I exactly; with α ≠ 0 at "
               "init of F: E‖x_L‖² = (1 + α²/2)^L ‖x_0‖² (no norm: exponential)"),
    provenance="neighbour: Bachlechner et al. 2021 (ReZero, arXiv 2003.04887), our statement",
    theory=("theory.gallery.rezero_energy", "theory.gallery.rezero_rms"),
    tests=("tests/test_gallery.py",),
)
def check_x9(ctx: Context, *, energy=rezero_energy, d: int = 64, depth: int = 8, n_tokens: int = 16) -> list[Tally]:
    ident = Tally("X9", "α = 0: stack Jacobian = I", "identity",
                  tolerance="exact: x + 0·F(x) and its derivative carry no round-off (atol 0)",
                  evidence="independent", instances="random")
    band = Tally("X9", "E‖x_L‖² = (1 + α²/2)^L ‖x_0‖²", "band", tolerance=BAND_TOL, evidence="independent",
                 instances="random")
    err = rezero_jacobian_error(d, depth, ctx.examples(4, 16), ctx.seed)
    ident.identity(err, 0.0, rtol=0.0, atol=1e-300, case={"d": d, "depth": depth, "alpha": 0.0})
    m0 = measure_rezero(d, depth, n_tokens, 8, ctx.seed, 0.0)
    ident.identity(m0[:, -1], m0[:, 0], rtol=0.0, atol=1e-300, case={"d": d, "depth": depth, "what": "‖x_L‖² = ‖x_0‖²"})
    bands = BandSet()
    I = ctx.examples(64, 256)
    for j, alpha in enumerate(REZERO_ALPHAS):
        m = measure_rezero(d, depth, n_tokens, I, ctx.seed + 1 + j, alpha)
        pred = np.stack([[energy(l, alpha, d, x0_energy=e) for l in range(1, depth + 1)] for e in m[:, 0]])
        bands.add((m[:, 1:] - pred) / d, pred.mean(0) / d, estimate=m[:, 1:].mean(0) / d,
                  effect=(pred.mean(0) - m[:, 0].mean()) / d, case={"d": d, "depth": depth, "alpha": alpha, "I": I})
    bands.record(band)
    return [ident, band]


# =====================================================================================================================
# X10 — the √1.1 residual multiplier
# =====================================================================================================================
@functools.lru_cache(maxsize=16)
def measure_multiplier(d: int, depth: int, n_tokens: int, n_instances: int, seed: int, lam2: float) -> np.ndarray:
    return row_energy(states("residual_multiplier", d, depth, n_tokens, n_instances, seed, lam2=lam2))


@register(
    "X10",
    title="Residual multiplier √1.1 per sublayer (modded-nanogpt style): ×1.1 per layer in the second moment",
    statement=("x⁺ = √1.1·x + F(N(x)): at init E‖x_l‖² = 1.1^l m_0 + (d/2)(1.1^l − 1)/0.1 — exponential by design, "
               "against Pre-LN's additive m_0 + l·d/2"),
    provenance="neighbour: modded-nanogpt (Keller Jordan et al. 2024–25) as stated in issue 10, our statement",
    theory=("theory.gallery.residual_multiplier_energy",),
    tests=("tests/test_gallery.py",),
)
def check_x10(ctx: Context, *, energy=residual_multiplier_energy, lam2: float = 1.1, d: int = 16, depth: int = 12,
              n_tokens: int = 32) -> list[Tally]:
    band = Tally("X10", "E‖x_l‖² = λ^{2l}m_0 + (d/2)(λ^{2l}−1)/(λ²−1), λ² = 1.1", "band", tolerance=BAND_TOL,
                 evidence="independent", instances="random")
    I = ctx.examples(48, 192)
    m = measure_multiplier(d, depth, n_tokens, I, ctx.seed, 1.1)
    pred = np.stack([[energy(l, d, lam2, x0_energy=e) for l in range(1, depth + 1)] for e in m[:, 0]])
    bands = BandSet()
    # effect: what the multiplier adds over Pre-LN's additive law — the band must resolve the ×1.1 itself
    pre = np.stack([[residual_multiplier_energy(l, d, 1.0, x0_energy=e) for l in range(1, depth + 1)]
                    for e in m[:, 0]])
    bands.add((m[:, 1:] - pred) / d, pred.mean(0) / d, estimate=m[:, 1:].mean(0) / d,
              effect=(pred.mean(0) - pre.mean(0)) / d, case={"d": d, "depth": depth, "I": I})
    bands.record(band)
    # m_l + 5d = 1.1^l (m_0 + 5d) exactly in expectation (the fixed point of m⁺ = 1.1m + d/2 is −5d)
    shift = 0.5 * d / (1.1 - 1.0)
    band.note(measured_growth_per_layer_deep=float((np.mean(m[:, -1]) + shift) / (np.mean(m[:, -2]) + shift)))
    return [band]


# =====================================================================================================================
# X11 — CompleteP / depth-µP
# =====================================================================================================================
@functools.lru_cache(maxsize=32)
def measure_completep(d: int, depth: int, n_tokens: int, n_instances: int, seed: int, alpha: float) -> np.ndarray:
    """Row energies (I, L+1); the factory gets the stack's depth, as ``verify.check`` passes it."""
    return row_energy(states("completep", d, depth, n_tokens, n_instances, seed, depth=depth, alpha=alpha))


COMPLETEP_DEPTHS = (2, 4, 16)
COMPLETEP_ALPHAS = (0.5, 1.0)


@register(
    "X11",
    title="CompleteP / depth-µP (Δt = L^−α): E‖x_L‖²/d = 1 + (1/2)L^{1−2α} at init",
    statement=("x⁺ = x + L^{−α}F(N(x)) in a stack of depth L: E‖x_L‖²/d = m_0/d + (1/2)L^{1−2α} — "
               "depth-independent at α = 1/2, → 1 at α = 1 (CompleteP)"),
    provenance=("neighbour: Dey et al. 2025 (CompleteP, arXiv 2505.01618); Yang et al. 2023 / Bordelon et al. "
                "2023 (depth-µP), our statement"),
    theory=("theory.gallery.completep_energy",),
    tests=("tests/test_gallery.py",),
)
def check_x11(ctx: Context, *, energy=completep_energy, d: int = 64, n_tokens: int = 16) -> list[Tally]:
    band = Tally("X11", "E‖x_L‖²/d − m_0/d = (1/2)L^{1−2α}", "band", tolerance=BAND_TOL, evidence="independent",
                 instances="random")
    bands = BandSet()
    I = ctx.examples(64, 256)
    for j, alpha in enumerate(COMPLETEP_ALPHAS):
        for L in COMPLETEP_DEPTHS:
            m = measure_completep(d, L, n_tokens, I, ctx.seed + 100 * j + L, alpha)
            pred = np.array([energy(L, alpha, d, x0_energy=e) for e in m[:, 0]])
            inc = (pred - m[:, 0]) / d  # the theory's increment: the same for every instance
            bands.add((m[:, -1] - pred) / d, inc.mean(), estimate=(m[:, -1] - m[:, 0]).mean() / d,
                      case={"d": d, "depth": L, "alpha": alpha, "I": I})
    bands.record(band)
    return [band]


# =====================================================================================================================
# X12 — hyper-connections with a doubly-stochastic mixing
# =====================================================================================================================
@functools.lru_cache(maxsize=16)
def measure_hyperconnections(d: int, depth: int, n_tokens: int, n_instances: int, seed: int, streams: int,
                             mixing: str) -> dict:
    blocks = build("hyperconnections", d, depth, n_instances, seed, streams=streams, mixing=mixing)
    x = inputs(n_instances, n_tokens, d, seed + 1)
    gains, logits, mixed, post, out = [], [], [], [], []
    with torch.no_grad():
        for i in range(n_instances):
            prod = torch.eye(streams, dtype=torch.float64)
            for row in blocks:
                prod = row[i].mixing_matrix() @ prod
            gains.append(float(torch.linalg.matrix_norm(prod, ord=2)))
            logits.append([(row[i].res_logits.numpy(), row[i].mixing_matrix().numpy()) for row in blocks[:2]])
        xin = []
        for row in blocks:
            xin.append(row_energy(x))
            mixed.append(row_energy(torch.stack([row[i].mixed(x[i]) for i in range(n_instances)])))
            post.append(np.stack([row[i].post_weights().numpy() for i in range(n_instances)]))
            x = torch.stack([row[i](x[i]) for i in range(n_instances)])
            out.append(row_energy(x))
    return {"gains": np.asarray(gains), "pairs": logits, "mixed": np.stack(mixed, 1), "xin": np.stack(xin, 1),
            "post": np.stack(post, 1), "out": np.stack(out, 1)}


@torch.no_grad()
def hc_witness(d: int, streams: int) -> float:
    """‖HX‖_F/‖X‖_F on equal streams X_k = x: H1 = 1 makes it exactly 1 (the contraction is attained)."""
    torch.manual_seed(3)
    block = design("hyperconnections").make_block(d=d, streams=streams).to(torch.float64)
    x = inputs(1, 4, d // streams, 9)[0]
    X = x.unsqueeze(-2).expand(4, streams, d // streams).flatten(-2)
    return float(block.mixed(X).norm() / X.norm())


@register(
    "X12",
    title="Hyper-connections with a Sinkhorn (doubly-stochastic) mixing matrix: residual gain exactly 1",
    statement=("X⁺_j = Σ_k H_jk X_k + b_j F(N(Σ a_k X_k)), H = Sinkhorn(exp Θ): ‖H_L⋯H_1‖₂ = 1, ‖HX‖_F ≤ ‖X‖_F "
               "(equality on equal streams); at init E[‖X⁺‖² | X] = ‖HX‖² + ‖b‖²d_s/2 — additive, never exponential"),
    provenance=("neighbour: Zhu et al. 2025 (Hyper-Connections, arXiv 2409.19606); Xie et al. 2025/2026 (mHC, "
                "manifold-constrained hyper-connections, arXiv 2512.24880), our statement"),
    theory=("theory.gallery.sinkhorn", "theory.gallery.doubly_stochastic_gain",
            "theory.gallery.hyperconnection_energy"),
    tests=("tests/test_gallery.py",),
)
def check_x12(ctx: Context, *, gain=None, energy=hyperconnection_energy, mixing: str = "sinkhorn", d: int = 32,
              depth: int = 8, streams: int = 4, n_tokens: int = 16) -> list[Tally]:
    gain_t = Tally("X12", "‖H_L⋯H_1‖₂ = 1 (residual path gain)", "identity",
                   tolerance="rtol 1e-12: 60 Sinkhorn sweeps leave row sums within ~1e-15 of 1 (measured), times L",
                   evidence="independent", instances="random")
    sink = Tally("X12", "design's Sinkhorn = theory's (numpy) Sinkhorn", "identity",
                 tolerance="rtol 1e-12: 60 sweeps of s² float64 divisions in two implementations",
                 evidence="independent", instances="random")
    ineq = Tally("X12", "‖HX‖_F ≤ ‖X‖_F", "inequality", tolerance="rtol 1e-12 (H doubly stochastic to ~1e-15)",
                 evidence="independent", instances="random")
    wit = Tally("X12", "witness: equal streams attain ‖HX‖ = ‖X‖", "witness", tolerance="ratio ≥ 0.99",
                evidence="independent", instances="witness")
    band = Tally("X12", "E[‖X⁺‖² | X] = ‖HX‖² + ‖b‖²d_s/2", "band", tolerance=BAND_TOL, evidence="independent",
                 instances="random")
    I = ctx.examples(64, 256)
    m = measure_hyperconnections(d, depth, n_tokens, I, ctx.seed, streams, mixing)
    case = {"d": d, "depth": depth, "streams": streams, "mixing": mixing, "I": I}
    # the theory's value: the gain of its own (numpy) Sinkhorn matrices on the same logits — 1, and refused for
    # anything not doubly stochastic; a meta-test passes a wrong value as ``gain``
    theory_gain = doubly_stochastic_gain([sinkhorn(lg) for pairs in m["pairs"] for lg, _ in pairs]) if gain is None \
        else gain
    gain_t.identity(m["gains"], theory_gain, rtol=1e-12, case=case)
    for pairs in m["pairs"][:4]:
        for logits, mat in pairs:
            sink.identity(mat, sinkhorn(logits), rtol=1e-12, atol=1e-15, case=case)
    ineq.inequality(m["mixed"], m["xin"], rtol=1e-12, case=case)
    wit.witness(hc_witness(d, streams), threshold=WITNESS_THRESHOLD, case={"d": d, "streams": streams})
    ds = d // streams
    pred = np.stack([[energy(m["mixed"][i, l], m["post"][i, l], ds) for l in range(depth)] for i in range(I)])
    bands = BandSet()
    bands.add(m["out"] - pred, pred.mean(0), estimate=m["out"].mean(0), effect=(pred - m["mixed"]).mean(0),
              case=case)
    bands.record(band)
    gain_t.note(max_abs_gain_minus_1=float(np.max(np.abs(m["gains"] - 1))))
    return [gain_t, sink, ineq, wit, band]


# =====================================================================================================================
# X13 — GPAS
# =====================================================================================================================
@functools.lru_cache(maxsize=16)
def measure_gpas(d: int, depth: int, n_tokens: int, n_instances: int, seed: int, alpha: float) -> np.ndarray:
    return row_energy(states("gpas", d, depth, n_tokens, n_instances, seed, alpha=alpha))


def gpas_jacobians(d: int, alpha: float, n_instances: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Autograd Jacobians (I, d, d) of a GPAS block and of its own unscaled Pre-LN part at the same input."""
    blocks = build("gpas", d, 1, n_instances, seed, alpha=alpha)[0]
    x = inputs(n_instances, 1, d, seed + 1)
    ja, jb = [], []
    for i, b in enumerate(blocks):
        ja.append(torch.autograd.functional.jacobian(b, x[i][0]).numpy())
        jb.append(torch.autograd.functional.jacobian(b.pre_ln, x[i][0]).numpy())
    return np.stack(ja), np.stack(jb)


GPAS_ALPHAS = (0.0, 0.5, 1.5)


@register(
    "X13",
    title="GPAS (Chen et al. 2025): forward stream scaled by 1 − SiLU(α), gradient of the unscaled block",
    statement=("x⁺ = x' − SiLU(α)·sg(x'), x' = x + F(N(x)): at init E‖x_l‖² = λ^{2l}m_0 + (d/2)λ²(1−λ^{2l})/(1−λ²), "
               "λ = 1 − SiLU(α) (Pre-LN at α = 0, a bounded fixed point for λ < 1); ∂x⁺/∂x = ∂x'/∂x"),
    provenance="neighbour: Chen et al. 2025 (GPAS, arXiv 2506.22049), our statement",
    theory=("theory.gallery.gpas_gain", "theory.gallery.gpas_energy", "theory.gallery.gpas_rms"),
    tests=("tests/test_gallery.py",),
)
def check_x13(ctx: Context, *, energy=gpas_energy, d: int = 16, depth: int = 8, n_tokens: int = 32) -> list[Tally]:
    band = Tally("X13", "E‖x_l‖² = λ^{2l}m_0 + (d/2)λ²(1−λ^{2l})/(1−λ²)", "band", tolerance=BAND_TOL,
                 evidence="independent", instances="random")
    grad = Tally("X13", "block Jacobian = Jacobian of the unscaled Pre-LN block", "identity",
                 tolerance="exact: the stop-gradient term has zero derivative (atol 0)", evidence="code-identity",
                 instances="random")
    bands = BandSet()
    I = ctx.examples(48, 192)
    for j, alpha in enumerate(GPAS_ALPHAS):
        m = measure_gpas(d, depth, n_tokens, I, ctx.seed + j, alpha)
        pred = np.stack([[energy(l, alpha, d, x0_energy=e) for l in range(1, depth + 1)] for e in m[:, 0]])
        bands.add((m[:, 1:] - pred) / d, pred.mean(0) / d, estimate=m[:, 1:].mean(0) / d,
                  case={"d": d, "depth": depth, "alpha": alpha, "lam": gpas_gain(alpha), "I": I})
        ja, jb = gpas_jacobians(d, alpha, 4, ctx.seed + 50 + j)
        grad.identity(ja, jb, rtol=0.0, atol=1e-300, case={"d": d, "alpha": alpha})
    bands.record(band)
    return [band, grad]


# =====================================================================================================================
# X14 — Gemma-2 sandwich norm with soft-capping
# =====================================================================================================================
@functools.lru_cache(maxsize=16)
def measure_gemma(d: int, depth: int, n_tokens: int, n_instances: int, seed: int) -> dict:
    """Row energies (I, L+1) and every update's row norms (I, 2L, n), at ε = 0."""
    blocks = build("gemma", d, depth, n_instances, seed, eps=0.0)
    x = inputs(n_instances, n_tokens, d, seed + 1)
    energies, upd = [row_energy(x)], []
    with torch.no_grad():
        for row in blocks:
            for step in ("attention_step", "mlp_step"):
                nxt = torch.stack([getattr(row[i], step)(x[i]) for i in range(n_instances)])
                upd.append((nxt - x).norm(dim=-1))
                x = nxt
            energies.append(row_energy(x))
    return {"energy": np.stack(energies, 1), "update_norms": torch.stack(upd, 1).numpy()}


@torch.no_grad()
def gemma_logits(d: int, scale: float, n_instances: int, seed: int) -> dict:
    """Soft-capped attention logits ``att`` and final logits ``fin`` of blocks fed inputs of RMS ``scale``, the raw
    attention logits ``raw`` and the raw max |z|."""
    gem = design("gemma")
    blocks = build("gemma", d, 1, n_instances, seed)[0]
    x = scale * inputs(n_instances, 5, d, seed + 1)
    att, fin, raws, raw = [], [], [], 0.0
    for i, b in enumerate(blocks):
        a = b.attn
        q, k = a.q(x[i]), a.k(x[i])
        z = q @ k.transpose(-1, -2) / math.sqrt(d)
        raw = max(raw, float(z.abs().max()))
        raws.append(z.numpy())
        att.append(gem.softcap(z, a.logit_cap).numpy())
        g = torch.Generator().manual_seed(seed + 100 + i)
        w_u = torch.randn(d, 11, generator=g, dtype=torch.float64)
        fin.append(gem.final_logits(x[i], w_u).numpy())
    return {"att": np.stack(att), "fin": np.stack(fin), "raw": np.stack(raws), "raw_max": raw}


@register(
    "X14",
    title="Gemma 2 sandwich norm with logit soft-caps: updates of norm √d, E‖x_L‖² = m_0 + 2Ld, |logits| < cap",
    statement=("x' = x + N(Attn_cap(N(x))), x⁺ = x' + N(F(N(x'))), unit gains, ε = 0: every update row has norm √d "
               "for any weights, E‖x_L‖² = m_0 + 2Ld at init; c·tanh(z/c) keeps attention (c = 50) and final (c = 30) "
               "logits in (−c, c), attained as |z| → ∞"),
    provenance="neighbour: Gemma Team 2024 (Gemma 2, arXiv 2408.00118), our statement",
    theory=("theory.gallery.sandwich_energy", "theory.gallery.softcap", "theory.gallery.softcap_bound"),
    tests=("tests/test_gallery.py",),
)
def check_x14(ctx: Context, *, energy=sandwich_energy, cap_bound=softcap_bound, d: int = 16, depth: int = 4,
              n_tokens: int = 3) -> list[Tally]:
    upd = Tally("X14", "every update row has norm √d (ε = 0)", "identity",
                tolerance="rtol 16u·d: an RMS norm of d terms", evidence="independent", instances="random")
    band = Tally("X14", "E‖x_L‖² = m_0 + 2Ld", "band", tolerance=BAND_TOL, evidence="independent",
                 instances="random")
    cap = Tally("X14", "|soft-capped logit| ≤ cap (attention 50, final 30)", "inequality",
                tolerance="rtol 4u: one tanh and one product", evidence="independent", instances="random")
    wit = Tally("X14", "witness: inputs ×10⁴ push logits to the cap", "witness", tolerance="ratio ≥ 0.99",
                evidence="independent", instances="witness")
    I = ctx.examples(64, 256)
    m = measure_gemma(d, depth, n_tokens, I, ctx.seed)
    case = {"d": d, "depth": depth, "n": n_tokens, "I": I}
    upd.identity(m["update_norms"], math.sqrt(d), rtol=16 * U * d, case=case)
    e = m["energy"]
    pred = np.stack([[energy(l, d, x0_energy=x0) for l in range(1, depth + 1)] for x0 in e[:, 0]])
    bands = BandSet()
    bands.add((e[:, 1:] - pred) / d, pred.mean(0) / d, estimate=e[:, 1:].mean(0) / d,
              effect=(pred.mean(0) - e[:, 0].mean()) / d, case=case)
    bands.record(band)
    same = Tally("X14", "design's soft-cap = theory's (numpy) soft-cap", "identity",
                 tolerance="rtol 8u, atol 8u·cap: tanh in two libraries", evidence="independent", instances="random")
    gem = design("gemma")
    for scale in (1.0, 1e2):
        lg = gemma_logits(d, scale, 8, ctx.seed + 7)
        cap.inequality(np.abs(lg["att"]), cap_bound(gem.ATTN_LOGIT_CAP), rtol=4 * U,
                       case={"scale": scale, "what": "attn"})
        cap.inequality(np.abs(lg["fin"]), cap_bound(gem.FINAL_LOGIT_CAP), rtol=4 * U,
                       case={"scale": scale, "what": "final"})
        same.identity(lg["att"], softcap(lg["raw"], gem.ATTN_LOGIT_CAP), rtol=8 * U, atol=8 * U * gem.ATTN_LOGIT_CAP,
                      case={"scale": scale})
    lg = gemma_logits(d, 1e4, 8, ctx.seed + 7)
    wit.witness(np.abs(lg["att"]).max() / cap_bound(gem.ATTN_LOGIT_CAP), threshold=WITNESS_THRESHOLD,
                case={"scale": 1e4, "what": "attn", "raw_max": lg["raw_max"]})
    wit.witness(np.abs(lg["fin"]).max() / cap_bound(gem.FINAL_LOGIT_CAP), threshold=WITNESS_THRESHOLD,
                case={"scale": 1e4, "what": "final"})
    return [upd, band, cap, wit, same]
