"""Figure 4 — the Δt sweep: hidden-state growth slope across depth and final validation loss vs the residual
step size Δt, per placement, with the F2/F3/F1 bounds over the measured slopes and the S1 recommendation marked.

What it measures, for Δt in a small grid and placements pre, peri, post (tiny GPTs of ``grad_norms``, trained
with ``verify.training.train``; the trained weights are shared with figure 3 through ``grad_norms.trained_state``):

- the growth curve g_k = mean_i(‖x_{k,i}‖ − ‖x_{0,i}‖) over every token row i of a fixed validation batch,
  k = 0..K, and its **growth slope** s = Σ_k k·g_k / Σ_k k² (least squares through the origin, per residual
  step), at initialisation and after training, in float64;
- the mean per-step update ‖x_{k+1,i} − x_{k,i}‖ (for peri this is Δt·‖N_out(F)_i‖, the quantity F2's proof
  bounds row by row);
- the final validation loss of the short training run.

Theory drawn over it (every number from ``theory/``): the same least-squares functional applied to the per-row
bound curve b_k — F2 (``peri_norm_bound``, b_k = Σ_{j<k} Δt C_out,j, C_out,j = ‖γ_out,j‖_∞√d + ‖β_out,j‖, so
the slope bound is exactly Δt·C_out for uniform gains), F3 (``pre_norm_bound`` with the sublayer sups
``SublayerNorms.output_sup`` at the input norm's range) and F1 (``post_row_bound``: b_k = ρ_k − mean‖x_0‖).
The functional has non-negative weights, so g_k ≤ b_k for every k implies s ≤ s_bound: each plotted bound is a
theorem about the plotted slope. At initialisation (γ = 1, β = 0) peri's update rows have norm exactly
Δt·√d·σ_i/√(σ_i² + ε_out) (σ_i the centred RMS of the sublayer output row, N1 with constant gain): the
per-step update is proportional to Δt up to a factor in [min_i σ_i/√(σ_i² + ε_out), 1], recorded per Δt.

S1 (``theory.criterion.max_uniform_dt``) at the initial weights, with a stated budget: rows may grow by at most
``GROWTH_RANGES`` norm ranges ρ = √d beyond the input (B = 1 + GROWTH_RANGES·ρ/M_0, M_0 the largest embedding
row) and gradients by at most e^τ = 100. The forward admissible step Δt_f is drawn as a vertical line per
placement (peri: weight-free, GROWTH_RANGES/K; post: every Δt, F1); the backward a priori step Δt_b — which
must floor the norm scales at √ε because nothing a priori keeps them away from 0 — is orders of magnitude
smaller and is printed, not drawn.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch

from theory.criterion import max_uniform_dt
from theory.forward import peri_norm_bound, post_row_bound, pre_norm_bound
from verify.checks.criterion import stack_sublayer_norms
from verify.engine.devices import single_thread
from verify.figures import grad_norms as gn
from verify.figures import register_figure, style
from verify.training.gpt import GPT

NAME = "dt_sweep"
TITLE = "Δt sweep: growth slope and validation loss vs Δt per placement, with F1–F3 bounds and the S1 step"
PLACEMENTS = ("pre", "peri", "post")
DTS = (0.05, 0.1, 0.25, 0.5, 1.0)
FAST_DTS = (0.1, 0.5, 1.0)
# S1 budget (our choice, stated in the figure): the largest row may grow by GROWTH_RANGES norm ranges
# ρ = ‖γ‖_∞√d + ‖β‖ beyond the input, i.e. B = 1 + GROWTH_RANGES·ρ/M_0; gradients by at most e^τ = 100.
# The GPT's embeddings are small (std 0.02, M_0 ≈ 0.2), so a budget relative to M_0 alone (B = 10, say) would
# forbid even one peri step of size 0.1; measuring growth in units of the norm range is scale-free.
GROWTH_RANGES = 4.0
TAU = math.log(100.0)
# Slopes and bounds are float64 sums of ≤ K(B·T) row norms (relative error ~d·u per row, ~K·u per sum):
# ≲ 1e-13 relative. 1e-9 leaves a ×1e4 margin and is far below every physical gap.
SLOPE_RTOL = 1e-9


def lsq_slope(curve) -> float:
    """s = Σ_k k·c_k / Σ_k k² over k = 0..K: the least-squares slope through the origin (non-negative weights,
    so it is monotone: c ≤ c' entrywise implies s(c) ≤ s(c'))."""
    c = np.asarray(curve, dtype=float)
    k = np.arange(c.size, dtype=float)
    return float(np.sum(k * c) / np.sum(k * k))


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def _gain_max(norm) -> float:
    return float(norm.gamma.detach().abs().max())


def _beta_norm(norm) -> float:
    return 0.0 if norm.beta is None else float(norm.beta.detach().norm())


@torch.no_grad()
def growth_profile(model: GPT, idx: torch.Tensor, forward_bound=peri_norm_bound, pre_bound=pre_norm_bound,
                   post_bound=post_row_bound) -> dict:
    """The growth curve, slope, per-step updates and the placement's bound curve for one float64 model.

    The theory functions are injectable (the tests pass deliberately wrong ones and show the comparison fails).
    """
    with single_thread():
        _, _, states = model(idx, trajectory=True)
        xs = [x[0] for x in states]  # (B, T, d) each
        d = xs[0].shape[-1]
        rows = np.stack([_np(x.norm(dim=-1)).ravel() for x in xs])  # (K+1, B·T)
        g = (rows - rows[0]).mean(axis=1)
        upd = np.array([_np((xs[k + 1] - xs[k]).norm(dim=-1)).mean() for k in range(len(xs) - 1)])
        stack = model.stack
        rule = stack.steps[0].rule
        dts = np.array([s.dt for s in stack.steps], dtype=float)
        out = {"rule": rule, "growth": g, "slope": lsq_slope(g), "update": upd, "dt": dts,
               "row_norm_mean": rows.mean(axis=1), "x0_max_norm": float(rows[0].max())}
        if rule == "peri":
            c_out = np.array([float(post_row_bound(d, _gain_max(s.norm_out), _beta_norm(s.norm_out)))
                              for s in stack.steps])
            bound = np.asarray(forward_bound(0.0, dts, c_out), dtype=float)
            out["c_out"] = c_out
            # N1 with constant gain: ‖N_out(f)_i‖ = |γ|√d·σ_i/√(σ_i² + ε) (+ β); the smallest factor over rows.
            factors = []
            for k, s in enumerate(stack.steps):
                f = s.sublayer(s.norm_in(xs[k]))
                c = f - f.mean(dim=-1, keepdim=True)
                var = (c * c).mean(dim=-1)
                factors.append(float(torch.sqrt(var / (var + s.norm_out.eps)).min()))
            out["update_factor_min"] = float(min(factors))
            out["constant_out_gain"] = bool(all(
                float(s.norm_out.gamma.detach().std()) == 0.0 and _beta_norm(s.norm_out) == 0.0 for s in stack.steps))
        elif rule == "pre":
            subl = stack_sublayer_norms(stack)[0]
            rho = [float(post_row_bound(d, _gain_max(s.norm_in), _beta_norm(s.norm_in))) for s in stack.steps]
            m = np.array([sl.output_sup(r) for sl, r in zip(subl, rho)])
            bound = np.asarray(pre_bound(0.0, dts, m), dtype=float)
            out["m"] = m
        elif rule == "post":
            rho = np.array([float(post_bound(d, _gain_max(s.norm_res), _beta_norm(s.norm_res))) for s in stack.steps])
            # Per row: ‖x_{k,i}‖ − ‖x_{0,i}‖ ≤ ρ_{k−1} − ‖x_{0,i}‖ for k ≥ 1 (F1); averaged over rows.
            bound = np.concatenate([[0.0], rho - rows[0].mean()])
        else:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got rule {rule!r}")
        out["growth_bound"] = bound
        out["slope_bound"] = lsq_slope(bound)
        # F2/F3 bound every row's step ‖x_{k+1,i} − x_{k,i}‖ by the increment of the bound curve (Δt_k C_out,k or
        # Δt_k M_k); F1 bounds rows, not steps.
        out["update_bound"] = np.diff(bound) if rule in ("peri", "pre") else None
    return out


def s1_recommendation(model: GPT, idx: torch.Tensor, growth_ranges: float = GROWTH_RANGES, tau: float = TAU,
                      criterion=max_uniform_dt) -> dict:
    """S1's largest admissible uniform Δt at the model's (initial) weights and input batch."""
    with torch.no_grad():
        x0 = model.embed(idx)[0]
        rows = x0.norm(dim=-1)
        c = x0 - x0.mean(dim=-1, keepdim=True)
        sigma0 = float(c.pow(2).mean(dim=-1).sqrt().min())
        m0 = float(rows.max())
    cfg = model.cfg.stack
    d, n_tokens = cfg.d, int(idx.shape[1])
    rho = float(post_row_bound(d, cfg.gamma, abs(cfg.beta) * math.sqrt(d)))
    B = 1.0 + growth_ranges * rho / m0
    subl = stack_sublayer_norms(model.stack)[0]
    kw = dict(d=d, n_tokens=n_tokens, x0_max_norm=m0, x0_min_scale=sigma0, norm=cfg.norm)
    if cfg.placement == "peri":
        kw.update(gamma_in=cfg.gamma, gamma_out=cfg.gamma, eps_in=cfg.eps, eps_out=cfg.eps_output)
    else:
        kw.update(gamma=cfg.gamma, eps=cfg.eps)
    step = criterion(cfg.placement, B, tau, subl, **kw)
    return {"B": B, "tau": tau, "growth_ranges": growth_ranges, "x0_max_norm": m0, "x0_min_scale": sigma0,
            "dt": step.dt, "dt_forward": step.dt_forward, "dt_backward": step.dt_backward,
            "binding": step.binding, "note": step.note}


def loglog_exponent(dts, values) -> float | None:
    """Least-squares exponent e of values ∝ Δt^e (None if any value is ≤ 0)."""
    v = np.asarray(values, dtype=float)
    if np.any(~(v > 0)):
        return None
    return float(np.polyfit(np.log(np.asarray(dts, dtype=float)), np.log(v), 1)[0])


def data(preset: str = "cpu", fast: bool = False, seed: int = 0, data_path: str | None = None, dts=None,
         placements=PLACEMENTS) -> dict:
    """Growth slopes (init, trained), updates, bounds, validation losses and the S1 step per placement."""
    s = gn.sizes(preset, fast)
    data_path = None if data_path is None else str(data_path)
    dts = tuple(float(v) for v in (dts if dts is not None else (FAST_DTS if fast else DTS)))
    idx, _ = gn.monitor_batch(s, seed, data_path)
    out = {"name": NAME, "preset": preset, "fast": bool(fast), "seed": int(seed), "dts": list(dts),
           "sizes": dataclasses.asdict(s), "corpus": gn.corpus(data_path).describe(), "slope_rtol": SLOPE_RTOL,
           "growth_ranges": GROWTH_RANGES, "tau": TAU, "placements": {}}
    for placement in placements:
        rec = {"init": [], "trained": [], "val_loss": []}
        for dt in dts:
            state, summary = gn.trained_state(preset, bool(fast), int(seed), placement, dt, data_path)
            init_model = gn.measurement_model(s, placement, dt, seed, None, data_path)
            trained_model = gn.measurement_model(s, placement, dt, seed, state, data_path)
            rec["init"].append(gn._clean(growth_profile(init_model, idx)))
            rec["trained"].append(gn._clean(growth_profile(trained_model, idx)))
            rec["val_loss"].append(summary["val_loss"])
        # S1 at the initial weights (the same for every Δt: the initial weights do not depend on Δt).
        rec["s1"] = gn._clean(s1_recommendation(gn.measurement_model(s, placement, dts[0], seed, None, data_path), idx))
        for when in ("init", "trained"):
            rec[f"slope_exponent_{when}"] = loglog_exponent(dts, [r["slope"] for r in rec[when]])
            rec[f"update_exponent_{when}"] = loglog_exponent(dts, [np.mean(r["update"]) for r in rec[when]])
        out["placements"][placement] = rec
    return out


BOUND_NAME = {"peri": "F2", "pre": "F3", "post": "F1"}


def draw(data: dict, path: Path) -> list[Path]:
    """(a) slope at init, (b) slope after training — measured vs bound; (c) validation loss with S1's Δt_f."""
    import matplotlib.pyplot as plt

    dts = np.asarray(data["dts"], dtype=float)
    with style.figure_style():
        fig, axes = plt.subplots(1, 3, figsize=style.figsize("double", rows=1.25), layout="constrained")
        for ax, when in zip(axes[:2], ("init", "trained")):
            for placement, rec in data["placements"].items():
                c = style.color(placement)
                slope = np.array([r["slope"] for r in rec[when]], dtype=float)
                bound = np.array([r["slope_bound"] for r in rec[when]], dtype=float)
                ax.plot(dts, slope, color=c, label=f"{placement}", **style.MEASURED)
                ax.plot(dts, bound, color=c, label=f"{BOUND_NAME.get(placement, 'bound')} bound", **style.THEORY)
                if placement == "peri":
                    upd = np.array([np.mean(r["update"]) for r in rec[when]], dtype=float)
                    ax.plot(dts, upd, color=c, marker="x", ms=4, lw=0, zorder=4, label="peri ‖Δx‖/step")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("Δt")
            ax.set_title(f"growth slope per step, {'at init' if when == 'init' else 'trained'}")
            ax.grid(alpha=0.3, which="major", lw=0.3)
        axes[0].set_ylabel("LSQ slope of mean(‖x_k‖ − ‖x_0‖) vs k")
        axes[0].legend(fontsize=5.5, ncol=2, loc="upper left")
        ax = axes[2]
        notes = []
        for placement, rec in data["placements"].items():
            c = style.color(placement)
            ax.plot(dts, rec["val_loss"], color=c, label=placement, **style.MEASURED)
            s1 = rec["s1"]
            dtf = s1["dt_forward"]
            if dtf is not None and 0 < dtf < np.inf:
                ax.axvline(dtf, color=c, **style.THEORY_ALT)
            forward = "any Δt" if dtf is None else f"{dtf:.2g}"
            notes.append(f"{placement}: Δt_f = {forward}, Δt_b = {s1['dt_backward']:.1g}")
        ax.set_xscale("log")
        budget = f"S1 budget: rows ≤ {data['growth_ranges']:g}√d growth, gradients ≤ e^τ = {math.exp(data['tau']):.0f}"
        ax.set_xlabel("\n".join(["Δt", budget] + notes), fontsize=6)
        ax.set_ylabel("final validation loss (nats/token)")
        ax.set_title("validation loss; dotted: S1 forward Δt_f")
        ax.grid(alpha=0.3, which="major", lw=0.3)
        ax.legend(fontsize=6, loc="upper right")
        return style.save(fig, Path(path))


register_figure(NAME, title=TITLE, data=data, draw=draw)
