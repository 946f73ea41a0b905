"""Figure 3 — per-layer gradient norms ‖∂loss/∂X_k‖ across depth, at initialisation and after a short training
run, per placement, against the B3 envelope whose per-step rates come from the B2 step bounds.

What it measures: small GPTs (``verify.training.gpt``; every residual step is a zoo step) are built per placement
(pre, peri, post, none) and trained briefly with ``verify.training.train`` (float32, AdamW, seeded). Both the initial
and the trained weights are then measured in float64 on one fixed validation batch of B sequences:

- the adjoint norms ‖p_k‖ = ‖∂loss/∂X_k‖ for k = 0..K (X_0 the embeddings, X_K the last residual state
  before the final norm; loss = the model's mean next-token cross-entropy);
- per step and per sequence, the pieces of the B2 bound (‖J_F‖₂ at the sublayer input from a dense Jacobian,
  the norm gains and the centred scales min_i s_i, as ``verify.checks.backward.step_measurements`` reads them)
  and the exact ‖A_k − I‖₂ (‖A_k‖₂ for post) from the dense step Jacobian.

Attention acts within a sequence, so A_k is block-diagonal over the B sequences and the B3 recursion holds per
sequence: p_k^(b) = A_k^(b)ᵀ p_{k+1}^(b). The envelope is therefore built per sequence, from its own rates
a_k^(b) (``theory.backward.gradient_envelope``; post: ``gradient_gain_envelope`` with the ‖A‖ bounds and no
lower side), and the batch norms ‖p_k‖² = Σ_b ‖p_k^(b)‖² are compared with the quadrature sums of the
per-sequence envelopes. A second envelope uses the exact rates ‖A_k − I‖: the gap between the two is what B2
gives away, the gap between the exact-rate envelope and the measurement is what the product in B3 gives away.

On the trained row the F8 certificate (``verify.training.certificates``) is drawn as well: the B3 envelope with this
model's own exact step Jacobians, chained (∏‖A_j‖₂) and end to end (‖A_kᵀ⋯A_{K−1}ᵀ‖₂), per sequence, plus the
forward certificate of the same model (F1/F2/F3 with its own constants; none: F4's regime has none). Its
measured/bound ratios per layer are in ``placements[p]["trained"]["certificate"]``.

``trained_state`` (the seeded short training of one tiny GPT) is shared with figure 4 (``dt_sweep``) and
cached per process, so a run of both figures trains each (placement, Δt) once.

What it is not: a statement about large models — the sizes are tiny so that dense per-sequence Jacobians
(T·d = 512 at the cpu preset) are exact and cheap.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import numpy as np
import torch

from theory.backward import gradient_envelope, gradient_gain_envelope
from verify.checks.backward import (
    NORMALISED,
    default_bounds,
    step_bound,
    step_measurements,
)
from verify.engine.devices import single_thread
from verify.figures import register_figure, style
from verify.training.certificates import (
    SUPPORTED_RULES,
    forward_certificate,
    gradient_certificate,
    quadrature,
)
from verify.training.corpus import load_corpus
from verify.training.gpt import GPT, GPTConfig, gpt_config
from verify.training.train import TrainConfig, train

NAME = "grad_norms"
TITLE = "Per-layer gradient norms at initialisation and after training vs the B3 envelope (B2 rates)"
PLACEMENTS = ("pre", "peri", "post", "none")

# The measured ‖p_k‖ and the envelope are both float64 computations: ‖J_F‖₂ and ‖A − I‖₂ from LAPACK SVDs of
# dense (T·d)² matrices (≤ 512² here; exact to ~√(Td)·u ≈ 3e-15 relative), the gains and scales from row
# reductions (~d·u), and autograd's adjoints (~K·(d + d_mlp)·u ≈ 1e-13). A product of ≤ K = 8 factors keeps
# the envelope within ~1e-12 relative; 1e-9 leaves a margin of ×1000, far below any physical gap.
ENVELOPE_RTOL = 1e-9


@dataclasses.dataclass(frozen=True)
class TinySizes:
    """Model and training sizes shared by figures 3 and 4 (``dt_sweep``)."""

    d: int
    n_heads: int
    n_blocks: int
    block_size: int
    batch_size: int
    steps: int
    lr: float
    warmup: int
    monitor_batch: int
    device: str = "cpu"


# cpu: d = 32, 4 blocks (K = 8 residual steps), context 16 — a training step takes ~15 ms on one core, and one
# sequence's dense step Jacobian is 512 × 512 (the Jacobians and their SVDs are most of this figure's time, so
# the measured batch is 3 sequences = 48 token rows). gpu: deeper and wider, still small enough for dense Jacobians.
SIZES = {
    "cpu": TinySizes(d=32, n_heads=4, n_blocks=4, block_size=16, batch_size=16, steps=150, lr=3e-3, warmup=15,
                     monitor_batch=3),
    "gpu": TinySizes(d=128, n_heads=4, n_blocks=12, block_size=16, batch_size=64, steps=1500, lr=1e-3, warmup=100,
                     monitor_batch=8, device="cuda"),
}
# fast (tests): 2 blocks, d = 16, context 8 — each data step in a few seconds.
FAST = TinySizes(d=16, n_heads=2, n_blocks=2, block_size=8, batch_size=8, steps=20, lr=3e-3, warmup=4,
                 monitor_batch=3)
MONITOR_SEED = 777  # the validation batch the measurements use (offset by the data step's seed)
# Model seeds for the gradient gains ‖p_k‖ alone (no Jacobians): the data step's seed and the next ones. Claim K2
# compares placements' gains, and an ordering between training runs needs ≥ 3 seeds (verify.report.claims).
GAIN_SEEDS = 3


def sizes(preset: str = "cpu", fast: bool = False) -> TinySizes:
    if preset not in SIZES:
        raise ValueError(f"preset must be one of {tuple(SIZES)}, got {preset!r}")
    if fast:
        return dataclasses.replace(FAST, device=SIZES[preset].device)
    return SIZES[preset]


def tiny_config(s: TinySizes, placement: str, dt: float, dtype: torch.dtype = torch.float32,
                vocab_size: int = 256) -> GPTConfig:
    return gpt_config(vocab_size=vocab_size, block_size=s.block_size, d=s.d, n_blocks=s.n_blocks,
                      n_heads=s.n_heads, placement=placement, dt=float(dt), dtype=dtype, device=s.device)


@functools.lru_cache(maxsize=4)
def corpus(data_path: str | None = None):
    """The training text (``verify.training.corpus``: the embedded default, or ``data_path``), loaded once per process."""
    return load_corpus(data_path)


@functools.lru_cache(maxsize=64)
def trained_state(preset: str, fast: bool, seed: int, placement: str, dt: float,
                  data_path: str | None = None) -> tuple[dict, dict]:
    """Train one tiny GPT (float32, seeded) and return (CPU state dict, summary). Cached: do not mutate.

    The summary holds the final validation loss and the first/last training losses.
    """
    s = sizes(preset, fast)
    text = corpus(data_path)
    with single_thread():
        model = GPT(tiny_config(s, placement, dt, vocab_size=text.vocab_size), seed=seed)
        tcfg = TrainConfig(steps=s.steps, batch_size=s.batch_size, lr=s.lr, warmup=s.warmup, seed=seed,
                           eval_every=0, eval_batches=8, monitor_every=0, progress=False)
        res = train(model, text, tcfg, monitor=False, desc=f"{placement} dt={dt}")
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    summary = {"val_loss": float(res.final_val_loss),
               "train_loss_first": float(res.history["train_loss"][0]),
               "train_loss_last": float(np.mean(res.history["train_loss"][-10:]))}
    return state, summary


def measurement_model(s: TinySizes, placement: str, dt: float, seed: int, state: dict | None = None,
                      data_path: str | None = None) -> GPT:
    """The float64 copy that is measured: the initial weights (``state=None``) or the given trained ones."""
    model = GPT(tiny_config(s, placement, dt, torch.float64, corpus(data_path).vocab_size), seed=seed)
    if state is not None:
        model.load_state_dict(state)  # float32 values are exactly representable in float64
    return model


def monitor_batch(s: TinySizes, seed: int, data_path: str | None = None):
    """The fixed validation batch every measurement uses (B = ``monitor_batch`` sequences of the context)."""
    rng = np.random.default_rng(MONITOR_SEED + seed)
    return corpus(data_path).batch("val", s.monitor_batch, s.block_size, rng, s.device)


# ---- measurement --------------------------------------------------------------------------------------------
_PIECES = ("jf", "g_in", "s_in", "g_out", "s_f", "g_res", "s_y")


def gradient_profile(model: GPT, idx: torch.Tensor, targets: torch.Tensor) -> dict:
    """Adjoint norms per sequence and the B2 pieces of every step, measured on (idx, targets).

    Returns ``p`` ((K+1) × B), ``loss`` and per step a dict with the rule, Δt and the B2 pieces (length-B lists),
    and ``exact`` = ‖A_k − I‖₂ (‖A_k‖₂ for post/DeepNorm) per sequence.
    """
    with single_thread():
        p, loss, states = _adjoints(model, idx, targets)
        n_seq = idx.shape[0]
        steps = []
        for k, step in enumerate(model.stack.steps):
            # The sequences of the batch are the "instances" of the zoo's Jacobian engine: parameters of the
            # one model broadcast over them, and every quantity comes back per sequence.
            q = step_measurements(step, states[k].detach()[0])
            rec = {"rule": q["rule"], "dt": float(q["dt"]), "block": int(q["block"]), "alpha": float(q["alpha"]),
                   "exact": np.broadcast_to(q["measured"], (n_seq,)).tolist()}
            for key in _PIECES:
                if key in q:
                    rec[key] = np.broadcast_to(np.asarray(q[key], dtype=float), (n_seq,)).tolist()
            steps.append(rec)
        model.zero_grad(set_to_none=True)
    return {"p": p.tolist(), "loss": float(loss.detach()), "steps": steps}


def step_rates(profile: dict, bounds: dict | None = None) -> np.ndarray:
    """The B2 bound per step and sequence, (K, B): ‖A_k − I‖ bounds (residual rules) or ‖A_k‖ bounds (post)."""
    bounds = default_bounds() if bounds is None else bounds
    out = []
    for rec in profile["steps"]:
        q = {key: (np.asarray(v, dtype=float) if isinstance(v, list) else v) for key, v in rec.items()}
        out.append(np.asarray(step_bound(q, bounds), dtype=float))
    return np.stack(out)


def _adjoints(model: GPT, idx: torch.Tensor, targets: torch.Tensor):
    """One backward pass: (‖p_k‖ per sequence (K+1, B), loss, the states X_0..X_K with their gradients)."""
    model.zero_grad(set_to_none=True)
    _, loss, states = model(idx, targets, trajectory=True)
    for x in states:
        x.retain_grad()
    loss.backward()
    p = np.array([x.grad[0].flatten(1).norm(dim=1).double().cpu().numpy() for x in states])  # (K+1, B)
    return p, loss, states


def adjoint_norms(model: GPT, idx: torch.Tensor, targets: torch.Tensor) -> list[float]:
    """‖p_k‖ = ‖∂loss/∂X_k‖ over the batch, k = 0..K (the gradient profile without the step Jacobians)."""
    with single_thread():
        p, _, _ = _adjoints(model, idx, targets)
        model.zero_grad(set_to_none=True)
    return quadrature(p).tolist()


def envelopes(profile: dict, bounds: dict | None = None, envelope=gradient_envelope,
              gain_envelope=gradient_gain_envelope) -> dict:
    """B3 envelopes of the batch norms ‖p_k‖ from the B2 rates and from the exact rates.

    Per sequence b: residual rules use ``envelope(a, ‖p_K^(b)‖)`` (a_k from B2, or a_k = ‖A_k − I‖ exact);
    post uses ``gain_envelope`` with g_k = ‖A_k‖ bound (or exact ‖A_k‖) and no lower side. Batch envelopes are
    the quadrature sums over sequences (p_k is the concatenation of the per-sequence adjoints).
    Returns lists over k = 0..K: ``upper``, ``lower``, ``exp_upper`` (None for post), ``exact_upper``,
    ``exact_lower``.
    """
    p = np.asarray(profile["p"], dtype=float)
    p_final = p[-1]
    residual = all(rec["rule"] not in NORMALISED for rec in profile["steps"])
    bound = step_rates(profile, bounds)
    exact = np.array([rec["exact"] for rec in profile["steps"]], dtype=float)
    out = {}
    for tag, rates in (("", bound), ("exact_", exact)):
        if residual:
            lo, up, ex = envelope(rates, p_final)
        else:
            lo, up = gain_envelope(rates, p_final)
            ex = None
        out[tag + "upper_seq"] = up
        out[tag + "lower_seq"] = lo
        out[tag + "upper"] = quadrature(up)
        out[tag + "lower"] = quadrature(lo)
        if tag == "":
            out["exp_upper"] = None if ex is None else quadrature(ex)
    out["rates"] = bound
    out["residual"] = residual
    return out


def containment(profile: dict, env: dict) -> dict:
    """Worst ratios of the B3 inequalities over k < K (at k = K both sides are ‖p_K‖), per sequence and for the
    batch: ``upper`` = max ‖p_k‖/upper_k, ``lower`` = max lower_k/‖p_k‖; ≤ 1 (+ round-off) means it holds."""
    p = np.asarray(profile["p"], dtype=float)
    total = quadrature(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        res = {
            "upper": float(np.max(p[:-1] / env["upper_seq"][:-1])),
            "lower": float(np.max(np.where(p[:-1] > 0, env["lower_seq"][:-1] / p[:-1], 0.0))),
            "exact_upper": float(np.max(p[:-1] / env["exact_upper_seq"][:-1])),
            "exact_lower": float(np.max(np.where(p[:-1] > 0, env["exact_lower_seq"][:-1] / p[:-1], 0.0))),
            "batch_upper": float(np.max(total[:-1] / env["upper"][:-1])),
            "batch_lower": float(np.max(env["lower"][:-1] / total[:-1])),
        }
    # B2 tightness on a real model: measured ‖A − I‖ (or ‖A‖) over its bound, per step and sequence.
    exact = np.array([rec["exact"] for rec in profile["steps"]], dtype=float)
    res["b2_ratio_max"] = float(np.max(exact / env["rates"]))
    res["b2_ratio_median"] = float(np.median(exact / env["rates"]))
    return res


def _clean(x):
    """JSON-able: arrays to lists, non-finite floats to None."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    return x


def measure(model: GPT, idx, targets) -> dict:
    """Profile + envelopes + containment of one model, JSON-able."""
    prof = gradient_profile(model, idx, targets)
    env = envelopes(prof)
    p = np.asarray(prof["p"])
    rec = {
        "grad_norm": quadrature(p),
        "grad_norm_seq": p,
        "loss": prof["loss"],
        "envelope_upper": env["upper"], "envelope_lower": env["lower"], "envelope_exp": env["exp_upper"],
        "exact_upper": env["exact_upper"], "exact_lower": env["exact_lower"],
        "b2_rate_max": env["rates"].max(axis=1), "exact_rate_max": np.max([r["exact"] for r in prof["steps"]], 1),
        "residual": env["residual"],
        "containment": containment(prof, env),
        "steps": prof["steps"],
    }
    return _clean(rec)


def certificate(model: GPT, idx, targets) -> dict:
    """F8 on one (trained) model: the gradient certificate (all tiers, per-layer ratios) and, where the placement
    has one, the forward certificate (per-layer ratios of each tier, and the last layer's loss factors)."""
    g = gradient_certificate(model, idx, targets, end_to_end=True)
    rec = {"gradient": {"measured": g["measured"], "bound": g["bound"], "ratio": g["ratio"],
                        "headline": g["headline"], "one_step": g["one_step"],
                        "tiers": g["tiers"]}, "forward": None}
    if all(st.rule in SUPPORTED_RULES for st in model.stack.steps):
        f = forward_certificate(model, idx)
        rec["forward"] = {"measured": f["measured"], "bound": f["bound"], "ratio": f["ratio"],
                          "tiers": {k: v["ratio"] for k, v in f["tiers"].items()}, "loss_factors": f["loss_factors"]}
    return _clean(rec)


# ---- the figure's data and drawing --------------------------------------------------------------------------
def data(preset: str = "cpu", fast: bool = False, seed: int = 0, data_path: str | None = None,
         placements=PLACEMENTS, dt: float = 1.0) -> dict:
    """Gradient norms and B3 envelopes per placement, at initialisation and after training (deterministic).

    Besides the full measurement at ``seed``, ``grad_norm_by_seed`` holds ‖p_k‖ for the model seeds
    seed, …, seed + GAIN_SEEDS − 1 (same validation batch, each trained with the same recipe): the spread over
    seeds that a comparison between placements needs."""
    s = sizes(preset, fast)
    data_path = None if data_path is None else str(data_path)
    idx, targets = monitor_batch(s, seed, data_path)
    out = {"name": NAME, "preset": preset, "fast": bool(fast), "seed": int(seed), "dt": float(dt),
           "sizes": dataclasses.asdict(s), "corpus": corpus(data_path).describe(), "envelope_rtol": ENVELOPE_RTOL,
           "placements": {}}
    for placement in placements:
        state, summary = trained_state(preset, bool(fast), int(seed), placement, float(dt), data_path)
        init = measure(measurement_model(s, placement, dt, seed, None, data_path), idx, targets)
        trained_model = measurement_model(s, placement, dt, seed, state, data_path)
        trained = measure(trained_model, idx, targets)
        trained.update(summary)
        trained["certificate"] = certificate(trained_model, idx, targets)
        init["grad_norm_by_seed"] = {str(seed): init["grad_norm"]}
        trained["grad_norm_by_seed"] = {str(seed): trained["grad_norm"]}
        for other in range(int(seed) + 1, int(seed) + GAIN_SEEDS):
            state_o, _ = trained_state(preset, bool(fast), other, placement, float(dt), data_path)
            for rec, st in ((init, None), (trained, state_o)):
                rec["grad_norm_by_seed"][str(other)] = _clean(adjoint_norms(
                    measurement_model(s, placement, dt, other, st, data_path), idx, targets))
        out["placements"][placement] = {"init": init, "trained": trained}
    out["gain_seeds"] = list(range(int(seed), int(seed) + GAIN_SEEDS))
    return out


def _arr(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def placement_label(placement: str) -> str:
    return "no norm" if placement == "none" else f"{placement}-LN"


def draw(data: dict, path: Path) -> list[Path]:
    """Rows: initialisation, after training; columns: placements. ‖p_k‖/‖p_K‖ with the B3 envelopes (log)."""
    import matplotlib.pyplot as plt

    places = list(data["placements"])
    floor = 1e-3  # the lower envelope is 0 once a rate reaches 1; drawn at the axis floor
    with style.figure_style():
        fig, axes = plt.subplots(2, len(places), figsize=style.figsize("double", rows=2), sharey="row",
                                 sharex=True, squeeze=False, layout="constrained")
        for row, when in enumerate(("init", "trained")):
            lo_all, hi_all = [], []
            for ax, placement in zip(axes[row], places):
                rec = data["placements"][placement][when]
                c = style.color(placement)
                p = _arr(rec["grad_norm"])
                k = np.arange(len(p))
                ref = p[-1]
                up, lo = _arr(rec["envelope_upper"]) / ref, _arr(rec["envelope_lower"]) / ref
                xu, xl = _arr(rec["exact_upper"]) / ref, _arr(rec["exact_lower"]) / ref
                ax.fill_between(k, np.maximum(lo, floor), up, color=c, alpha=0.12, lw=0, zorder=1)
                ax.plot(k, up, color=c, label="B3, B2 rates", **style.THEORY)
                ax.plot(k, xu, color="0.3", label="B3, exact ‖A_k − I‖", **style.THEORY_ALT)
                if rec["residual"]:
                    ax.plot(k, np.maximum(lo, floor), color=c, **style.THEORY)
                    ax.plot(k, np.maximum(xl, floor), color="0.3", **style.THEORY_ALT)
                cert = rec.get("certificate")
                if cert is not None:
                    ce = _arr(cert["gradient"]["tiers"]["end_to_end"]["bound"]) / ref
                    cg = _arr(cert["gradient"]["tiers"]["exact_gains"]["bound"]) / ref
                    ax.plot(k, cg, color="0.55", lw=0.9, ls="-.", label="F8: ∏‖A_j‖ (own Jacobians)", zorder=3)
                    ax.plot(k, ce, color="k", lw=0.9, ls=(0, (1, 1)), label="F8: ‖∏A_jᵀ‖ (own Jacobians)", zorder=3)
                    hi_all.append(np.nanmax(ce))
                ax.plot(k, p / ref, color=c, label="measured", **style.MEASURED)
                lo_all.append(np.nanmin(p / ref))
                hi_all.append(np.nanmax(up))
                ax.set_yscale("log")
                ax.grid(alpha=0.3, which="major", lw=0.3)
                cont = rec["containment"]
                extra = f"\nval loss {rec['val_loss']:.2f}" if when == "trained" else ""
                if cert is not None:
                    extra += f"\nF8 ratio at k=0: {cert['gradient']['ratio'][0]:.2f}"
                    if cert["forward"] is not None:
                        extra += f"\nfwd F8 ratio at K: {cert['forward']['ratio'][-1]:.2f}"
                ax.text(0.97, 0.97, f"‖A−I‖/B2 ≤ {cont['b2_ratio_max']:.2f}{extra}", transform=ax.transAxes,
                        ha="right", va="top", fontsize=6)
                if row == 0:
                    ax.set_title(placement_label(placement))
                else:
                    ax.set_xlabel("residual step k")
            axes[row][0].set_ylabel(f"{'at init' if when == 'init' else 'trained'}: ‖p_k‖ / ‖p_K‖")
            axes[row][0].set_ylim(max(floor, 0.5 * min(lo_all)), 3 * max(hi_all))
        axes[0][-1].legend(loc="center right", fontsize=5.5)
        axes[1][-1].legend(loc="center right", fontsize=5)
        fig.suptitle("Gradient norms p_k = ∂loss/∂X_k vs the B3 envelope ∏(1 ± a_j)‖p_K‖ "
                     "(post: ∏ of ‖A_j‖ bounds, no lower side)\ntrained row: also F8, the B3 chain with the model's own Jacobians")
        return style.save(fig, Path(path))


register_figure(NAME, title=TITLE, data=data, draw=draw)
