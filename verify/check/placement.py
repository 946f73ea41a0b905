"""Which placement a block behaves as, recognised from measured invariances of each residual step.

Each step s (one residual step when the block exposes its steps, else the whole block) is probed on Gaussian
inputs G (I, n, d); u(X) = s(X) − X is its update. The measurements (medians over instances):

- ``identity_error``   ‖s(G) − G‖/‖G‖ — zero for a block that is the identity (ReZero at initialisation);
- ``output_exponent``  log(‖s(cG)‖/‖s(G)‖)/log c at c = 10³ — 0 when the output norm does not depend on the
  input's scale (a norm after the residual sum: post, DeepNorm, nGPT), 1 when the stream passes through;
- ``row_norm_spread``  the relative spread of the output's row norms — 0 when every row lands on one sphere;
- ``update_exponent``  log(‖u(c₂G)‖/‖u(c₁G)‖)/log(c₂/c₁), c₁ = 10², c₂ = 10⁴ — ≈ 0 when the update is bounded
  independently of the input (a norm, or a saturating map, before the sublayer: pre, peri, DyT), ≈ 1 when it
  grows with the input (no norm: none, trained ReZero);
- ``scale_invariance`` ‖u(10³G) − u(G)‖/‖u(G)‖ — ≈ 0 when the update is *exactly* independent of the input scale;
- ``weight_exponent``  log(‖u_w(G)‖/‖u(G)‖)/log w, every weight matrix multiplied by w = 4 — ≈ 0 when the update's
  norm does not depend on the weights (a norm on the sublayer's output: peri, outnorm), ≈ 2 for pre (two maps);
- ``shift_invariance`` ‖u(G + 3·1) − u(G)‖/‖u(G)‖ and ``row_scale_invariance`` ‖u(DG) − u(G)‖/‖u(G)‖ for a
  per-row diagonal scaling D — what separates an input norm (peri) from an output norm alone (outnorm): a
  LayerNorm input removes row means, any input norm removes per-row scales. Both are also taken at input scale
  10⁴ (``..._asymptotic``), where a block of several sublayers behaves as its first norm.

INVARIANCE_TOL = 1e-3 decides "unchanged": at ε = 0 every invariance above is exact; a norm's ε changes its output
by at most ε/(2σ²) relatively (5e-6 at ε = 1e-5 and unit variance), and the 10⁴-scale probes of a block of
several sublayers carry an O(10⁻⁴) remainder, so 1e-3 admits ε up to 1e-3 at unit input variance. The exponent
thresholds (0.1, 0.25, 0.75) sit between measured clusters: zoo pre/peri update exponents are ~1e-6, no-norm
ones 0.99–1.0; post output exponents ~1e-7; pre weight exponents 1.9–2.0, peri ~1e-6.

Labels: ``identity``, ``post`` (output norm scale-free, rows on one sphere), ``bounded`` (output norm bounded,
rows not normalised), ``peri`` (update weight-free and invariant under an input norm's symmetries),
``outnorm`` (update weight-free, no input norm), ``peri|outnorm`` (a tie: an RMS-type input norm and an output
norm after a positively homogeneous sublayer compute the same update, so no measurement can tell them apart —
their theorems F2/F5 coincide), ``pre`` (update bounded, grows with the weights), ``none`` (update grows with the
input), ``unknown`` (in between; the evidence says why).
"""
from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Sequence

import torch

from verify.check.layers import ChainLayer

INVARIANCE_TOL = 1e-3
IDENTITY_TOL = 1e-12  # round-off of x + 0·F(x) is exactly 0; 1e-12 admits a block that adds a last-ulp term
OUTPUT_BOUNDED_EXPONENT = 0.1
UPDATE_BOUNDED_EXPONENT = 0.25
UPDATE_GROWING_EXPONENT = 0.75
WEIGHT_FREE_EXPONENT = 0.25
ROW_SPREAD_TOL = 1e-3
WEIGHT_FACTOR = 4.0
BOUNDED_LABELS = ("post", "bounded")

# What the catalogue's theory says of each recognised placement (forward growth at initialisation and for any
# weights), and the regime it predicts at initialisation.
THEOREMS = {
    "identity": ("identity-at-init", "the block is the identity map at initialisation: nothing grows or decays "
                 "until training moves it (e.g. ReZero's α = 0)"),
    "post": ("bounded", "F1: every row after a norm of the residual sum has norm ≤ ‖γ‖∞√d + ‖β‖, for any "
             "weights; F5: E‖x_k‖² = γ²dρ for k ≥ 1"),
    "bounded": ("bounded", "F1-type: the output norm is bounded independently of the input, for any weights"),
    "peri": ("polynomial", "F2: ‖x_k‖ ≤ ‖x_0‖ + Σ Δt·C_out (linear in t, free of the weights); F5: "
             "E‖x_k‖² += Δt²γ²dρ per step, so r_l ~ √l"),
    "outnorm": ("polynomial", "F2-type: the output norm caps each update at ‖γ‖∞√d; F5-type additive second "
                "moments, r_l ~ √l"),
    "peri|outnorm": ("polynomial", "F2/F5 (both placements): updates of fixed norm, additive second moments, "
                     "r_l ~ √l"),
    "pre": ("polynomial", "F3: ‖x_k‖ ≤ ‖x_0‖ + Σ Δt·M_k with M_k from the weight norms; F5: E‖x_k‖² += "
            "Δt²E‖F(N(x_k))‖², so r_l ~ √l at initialisation"),
    "none": ("exponential", "F4: M_{k+1} ≤ (1 + Δt a_k)M_k (Grönwall); at initialisation E‖x‖² is multiplied by "
             "(1 + c) per step"),
    "unknown": (None, "no theorem: the block's invariances match no placement (see the evidence)"),
}


@contextlib.contextmanager
def scaled_parameters(params: Sequence[torch.Tensor], factor: float):
    """Multiply ``params`` in place by ``factor`` for the duration of the block; restored exactly after."""
    saved = [p.detach().clone() for p in params]
    try:
        with torch.no_grad():
            for p in params:
                p.mul_(factor)
        yield
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)


def _norms(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1)


def _median(t: torch.Tensor) -> float:
    t = t[torch.isfinite(t)]
    return float(t.median()) if t.numel() else float("nan")


@torch.no_grad()
def step_evidence(layer: ChainLayer, k: int, g: torch.Tensor, rows: torch.Tensor) -> dict:
    """The invariance measurements of step k of ``layer`` on probe g (I, n, d); ``rows`` (I, n, 1) row scales."""
    def s(x):
        return layer.run_step(k, x)

    def u(x):
        return s(x) - x

    y = s(g)
    ev = {"identity_error": _median(_norms(y - g) / _norms(g))}
    ev["identity_error_max"] = float((_norms(y - g) / _norms(g)).max())
    if ev["identity_error_max"] <= IDENTITY_TOL:
        return ev
    c = 1e3
    yc = s(c * g)
    ev["output_exponent"] = _median(torch.log(_norms(yc) / _norms(y)) / math.log(c))
    spreads = []
    for out in (y, s(1e4 * g)):
        rn = out.norm(dim=-1)
        spreads.append(rn.std(dim=-1, unbiased=False) / rn.mean(dim=-1))
    ev["row_norm_spread"] = _median(torch.stack(spreads).amax(0))
    ev["output_norm_ratio"] = _median(_norms(yc) / _norms(y))
    ev["output_row_norm"] = _median(y.norm(dim=-1).mean(dim=-1))
    u1 = y - g
    c1, c2 = 1e2, 1e4
    ev["update_exponent"] = _median(torch.log(_norms(u(c2 * g)) / _norms(u(c1 * g))) / math.log(c2 / c1))
    ev["scale_invariance"] = _median(_norms(u(c * g) - u1) / _norms(u1))
    mats = layer.matrix_parameters()
    if mats:
        with scaled_parameters(mats, WEIGHT_FACTOR):
            uw = u(g)
        ev["weight_exponent"] = _median(torch.log(_norms(uw) / _norms(u1)) / math.log(WEIGHT_FACTOR))
    else:
        ev["weight_exponent"] = None
    for scale, suffix in ((1.0, ""), (1e4, "_asymptotic")):
        base = u(scale * g)
        ev["shift_invariance" + suffix] = _median(_norms(u(scale * (g + 3.0)) - base) / _norms(base))
        ev["row_scale_invariance" + suffix] = _median(_norms(u(scale * rows * g) - base) / _norms(base))
    return ev


def classify(ev: dict, single_step: bool) -> tuple[str, str, bool]:
    """(label, reason, invariant) from one step's evidence; ``invariant``: its energy is exactly scale-free."""
    tol = INVARIANCE_TOL
    if ev["identity_error_max"] <= IDENTITY_TOL:
        return "identity", f"s(X) = X to round-off (‖s(G) − G‖/‖G‖ ≤ {ev['identity_error_max']:.1e})", True
    if ev["output_exponent"] < OUTPUT_BOUNDED_EXPONENT:
        exact = abs(ev["output_norm_ratio"] - 1.0) <= tol
        if ev["row_norm_spread"] <= ROW_SPREAD_TOL:
            return ("post", f"output norm independent of the input scale (‖s(10³G)‖/‖s(G)‖ = "
                    f"{ev['output_norm_ratio']:.4g}), every output row at norm {ev['output_row_norm']:.4g} "
                    f"(spread {ev['row_norm_spread']:.1e}): a norm after the residual sum", exact)
        return ("bounded", f"output norm bounded independently of the input scale (exponent "
                f"{ev['output_exponent']:.3g}) but rows not normalised (spread {ev['row_norm_spread']:.2g})", exact)
    k_u = ev["update_exponent"]
    if k_u > UPDATE_GROWING_EXPONENT:
        return "none", f"update grows with the input (‖u(cX)‖ ∝ c^{k_u:.3g}): no norm before or after the branch", False
    if k_u >= UPDATE_BOUNDED_EXPONENT:
        return "unknown", f"update exponent {k_u:.3g} between bounded (< {UPDATE_BOUNDED_EXPONENT}) and growing " \
                          f"(> {UPDATE_GROWING_EXPONENT})", False
    exact = ev["scale_invariance"] <= tol
    how = (f"update unchanged by the input scale (‖u(10³G) − u(G)‖/‖u(G)‖ = {ev['scale_invariance']:.1e})" if exact
           else f"update bounded in the input scale (exponent {k_u:.2g}) but not invariant "
                f"({ev['scale_invariance']:.2g}: a saturating input map or several sublayers)")
    k_w = ev["weight_exponent"]
    if k_w is None or abs(k_w) > WEIGHT_FREE_EXPONENT:
        wt = "no weight matrices to scale" if k_w is None else f"update norm ∝ (weight scale)^{k_w:.3g}"
        return "pre", f"{how}; {wt}: a norm (or saturation) before the sublayer only", exact
    wfree = f"update norm free of the weight scale (exponent {k_w:.1e})"
    sfx = "" if single_step else "_asymptotic"
    if ev["shift_invariance" + sfx] <= tol:
        return ("peri", f"{how}; {wfree}; unchanged by a row-mean shift ({ev['shift_invariance' + sfx]:.1e}): a "
                "LayerNorm before and a norm after the sublayer", exact)
    rows_exact = ev["row_scale_invariance"] <= tol
    rows_asym = ev["row_scale_invariance_asymptotic"] <= tol
    if rows_exact or (rows_asym and not single_step):
        return ("peri|outnorm", f"{how}; {wfree}; unchanged by per-row rescaling "
                f"({min(ev['row_scale_invariance'], ev['row_scale_invariance_asymptotic']):.1e}) but not by a "
                f"row-mean shift ({ev['shift_invariance' + sfx]:.2g}): an RMSNorm before the sublayer, or an output "
                "norm after a positively homogeneous sublayer — the same function, told apart by no measurement",
                exact)
    return ("outnorm", f"{how}; {wfree}; changed by per-row rescaling ({ev['row_scale_invariance']:.2g}): a norm on "
            "the sublayer output only", exact)


def recognise_layer(layer: ChainLayer, n_tokens: int, d: int, seed: int, single_step: bool) -> list[dict]:
    """Evidence, label and reason for each residual step of one layer."""
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(layer.n_instances, n_tokens, d, generator=gen, dtype=torch.float64)
    rows = torch.exp(math.log(10.0) * (2 * torch.rand(layer.n_instances, n_tokens, 1, generator=gen,
                                                      dtype=torch.float64) - 1))
    out = []
    for k, name in enumerate(layer.step_names):
        ev = step_evidence(layer, k, g, rows)
        label, reason, invariant = classify(ev, single_step)
        out.append({"step": name, "label": label, "reason": reason, "invariant": invariant, "evidence": ev})
    return out


def recognise(layers: Sequence[ChainLayer], n_tokens: int, d: int, seed: int, single_step: bool,
              progress=None) -> dict:
    """Per-layer, per-step placements and a summary: one label when all agree, else runs of labels."""
    per_layer = []
    for l, layer in enumerate(layers):
        per_layer.append(recognise_layer(layer, n_tokens, d, seed + 7 * l, single_step))
        if progress is not None:
            progress()
    return {"per_layer": per_layer, **summarise(per_layer)}


def _runs(labels: list[str]) -> list[tuple[str, int, int]]:
    runs = []
    for i, lab in enumerate(labels):
        if runs and runs[-1][0] == lab:
            runs[-1] = (lab, runs[-1][1], i)
        else:
            runs.append((lab, i, i))
    return runs


def summarise(per_layer: list[list[dict]]) -> dict:
    """Block label: its steps' labels joined with '+' when they differ; the stack: one label or its runs."""
    blocks = []
    for steps in per_layer:
        labs = [s["label"] for s in steps]
        blocks.append(labs[0] if len(set(labs)) == 1 else "+".join(labs))
    runs = _runs(blocks)
    if len(runs) == 1:
        label = runs[0][0]
        description = f"{label} (every layer)"
    else:
        label = "mixed"
        description = ", then ".join(f"{lab} (layers {a}–{b})" if a != b else f"{lab} (layer {a})"
                                     for lab, a, b in runs)
    step_labels = Counter(s["label"] for steps in per_layer for s in steps)
    main = max(step_labels, key=step_labels.get)
    example = next(s for steps in per_layer for s in steps if s["label"] == main)
    regime, statement = THEOREMS.get(main, (None, ""))
    theory = {"placement": main, "regime": regime, "statement": statement}
    return {"label": label, "description": description, "block_labels": blocks,
            "runs": [{"label": lab, "first": a, "last": b} for lab, a, b in runs],
            "step_counts": dict(step_labels), "reason": example["reason"], "theory": theory}


# The label each zoo placement should be recognised as: DeepNorm is post-type, LayerNorm-Scaling pre-type, and
# Mix-LN post in its first blocks and pre after them.
ZOO_EQUIVALENT = {"post": "post", "deepnorm": "post", "pre": "pre", "lns": "pre", "peri": "peri", "none": "none",
                  "outnorm": "outnorm", "mixln": "mixed"}
