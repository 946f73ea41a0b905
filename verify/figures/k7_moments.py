"""K7 — the paper's Figure 1 at small scale: hidden-state moments across the layers of trained GPTs.

Data step: train four small GPTs on the embedded corpus (``verify.training.corpus``) with the same recipe —
pre-LN with AdamW weight decay tuned on a small grid (the lowest validation loss wins), peri-LN Δt = 1,
peri-LN Δt = 0.1 and post-LN — and read, through the monitors, the three moments of ``verify.engine.moments``
(mean |x|, entry-wise variance, data-wise variance) of every hidden state X_0 … X_K on a fixed validation batch.
Theory over it:

- F2 (peri): R_k = max‖x_0‖ + Σ_{j<k} Δt_j C_out,j with C_out,j = ‖γ_out,j‖_∞√d + ‖β_out,j‖ read from the trained
  gains, turned into moment bounds by F2's corollary (``theory.forward.peri_moment_bounds``);
- F1 (post): every row ≤ ‖γ‖_∞√d + ‖β‖ (constant in depth);
- F6 (pre): the trained-model envelope (``theory.trained.trained_pre_envelope``) evaluated on the trained GPT.
  AdamW's decoupled decay does not make the model a stationary point of E[ℓ] + (λ/2)‖W‖², so the envelope is
  used in its residual form, valid at *any* weights: ‖W_k‖ ≤ (Δt_k·E[Σ‖h‖‖p‖] + r_k)/λ̂ with
  r_k = ‖∂E[ℓ]/∂W_k + λ̂W_k‖ measured, and λ̂ = −Σ⟨∂E[ℓ]/∂W_k, W_k⟩/Σ‖W_k‖² the weight decay at which the trained
  output maps are closest to stationary (the least-squares fit of the identity W = −∇E[ℓ]/λ). The data record
  how much of the envelope the residual carries.

Drawing step: three panels (one per moment, log scale, x = hidden-state index) plus the largest row norm of
the last hidden state over training (the monitors' log).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from theory.forward import peri_moment_bounds, post_row_bound
from theory.norms import norm_output_bound
from theory.trained import (
    activation_bound_attention,
    activation_bound_mlp,
    envelope_moment_bounds,
    trained_pre_envelope,
)
from verify.figures import register_figure, style
from verify.training.corpus import load_corpus
from verify.training.gpt import GPT, gpt_config
from verify.training.monitors import output_map, step_activation
from verify.training.train import TrainConfig, preset_configs, train

NAME = "k7_moments"
MOMENTS = ("mean_abs", "entrywise_var", "datawise_var")
WEIGHT_DECAY_GRID = (0.0, 0.1, 0.3, 1.0)
FAST_WEIGHT_DECAY_GRID = (0.0, 0.1)
OTHER_RUNS = (("peri", 1.0, "peri Δt = 1", "peri"), ("peri", 0.1, "peri Δt = 0.1", "peri_small_dt"),
              ("post", 1.0, "post", "post"))


def configs(preset: str, fast: bool, placement: str, dt: float, weight_decay: float, seed: int, vocab: int):
    """(GPTConfig, TrainConfig) for one run; ``fast`` is a seconds-long smoke size."""
    if fast:
        gcfg = gpt_config(vocab_size=vocab, block_size=16, d=16, n_blocks=2, n_heads=2, placement=placement, dt=dt)
        tcfg = TrainConfig(steps=24, batch_size=8, lr=3e-3, warmup=4, weight_decay=weight_decay, seed=seed,
                           eval_every=12, eval_batches=2, monitor_every=12, monitor_batch=8, progress=False)
        return gcfg, tcfg
    gcfg, tcfg = preset_configs(preset, placement, dt, weight_decay, seed=seed, vocab_size=vocab)
    return gcfg, tcfg.replace(eval_every=max(1, tcfg.steps // 6), monitor_every=max(1, tcfg.steps // 6))


def _spectral(w: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(w.detach().double(), ord=2))


@torch.no_grad()
def _norm_range(norm) -> float:
    return norm_output_bound(norm.gamma.shape[-1], float(norm.gamma.abs().max()),
                             0.0 if norm.beta is None else float(norm.beta.double().norm()))


def f6_on_gpt(model: GPT, corpus, batch_size: int, n_batches: int, seed: int) -> dict:
    """The F6 envelope's ingredients on a trained pre-LN GPT, averaged over ``n_batches`` training batches."""
    steps = model.stack.steps
    K = len(steps)
    maps = [output_map(s) for s in steps]
    rng = np.random.default_rng(seed)
    g_w = [torch.zeros_like(w[0], dtype=torch.float64) for w, _ in maps]
    act_adj = np.zeros(K)
    for _ in range(n_batches):
        x, y = corpus.batch("train", batch_size, model.cfg.block_size, rng, model.device)
        _, loss, states = model(x, y, trajectory=True)
        grads = torch.autograd.grad(loss, [w for w, _ in maps] + states)
        for k, s in enumerate(steps):
            g_w[k] += grads[k][0].double() / n_batches
            with torch.no_grad():
                h = step_activation(s, states[k])
                # E_b Σ_t ‖h‖‖p^(b)‖ with p^(b) = B·∂(batch-mean loss)/∂X^(b): Σ_{b,t} ‖h‖‖grad‖
                act_adj[k] += float((h.double().norm(dim=-1) * grads[K + k + 1].double().norm(dim=-1)).sum()) / n_batches
    W = [w[0].detach().double() for w, _ in maps]
    inner = sum(float((g * w).sum()) for g, w in zip(g_w, W))
    sq = sum(float((w * w).sum()) for w in W)
    lam_hat = -inner / sq
    out = {"lambda_hat": lam_hat, "activation_adjoint": act_adj.tolist(),
           "W_norm": [float(w.norm()) for w in W], "grad_norm": [float(g.norm()) for g in g_w]}
    h_bound, bias = [], []
    for s, (w, b) in zip(steps, maps):
        r = _norm_range(s.norm_in)
        if s.kind == "mlp":
            b1 = 0.0 if s.sublayer.b1 is None else float(s.sublayer.b1.detach().double().norm())
            h_bound.append(activation_bound_mlp(r, _spectral(s.sublayer.W1[0]), b1))
        else:
            d, H = model.cfg.d, s.sublayer.n_heads
            wv = s.sublayer.W_v[0].detach().double().view(d, H, d // H).permute(1, 0, 2)
            h_bound.append(activation_bound_attention(r, torch.linalg.matrix_norm(wv, ord=2).numpy()))
        bias.append(0.0 if b is None else float(b.detach().double().norm()))
    out.update(h_bound=[float(h) for h in h_bound], bias_norm=bias)
    if lam_hat > 0:
        resid = [float((g + lam_hat * w).norm()) for g, w in zip(g_w, W)]
        dts = [s.dt for s in steps]
        env = trained_pre_envelope(dts, lam_hat, h_bound, act_adj, resid, bias)
        no_resid = trained_pre_envelope(dts, lam_hat, h_bound, act_adj, 0.0, bias)
        out.update(residual=resid, envelope=env.tolist(),
                   residual_share=float(1.0 - no_resid[-1] / env[-1]) if env[-1] > 0 else 0.0)
    else:
        out.update(residual=None, envelope=None, residual_share=None)
    return out


@torch.no_grad()
def peri_output_constants(model: GPT) -> list[float]:
    """C_out,j = ‖γ_out,j‖_∞√d + ‖β_out,j‖₂ of every peri step (N1 with ε = 0, the supremum)."""
    return [_norm_range(s.norm_out) for s in model.stack.steps]


def theory_bounds(model: GPT, placement: str, dt: float, record: dict, corpus, tcfg, seed: int) -> dict:
    d, K = model.cfg.d, len(model.stack.steps)
    x0 = record["row_norm_max"][0]
    if placement == "peri":
        b = peri_moment_bounds(x0, [s.dt for s in model.stack.steps], peri_output_constants(model), d)
        return {"kind": "F2", **{m: b[m].tolist() for m in ("row_norm", *MOMENTS)}}
    if placement == "post":
        c = max(post_row_bound(d, float(s.norm_res.gamma.detach().abs().max()),
                                 float(s.norm_res.beta.detach().double().norm()))
                for s in model.stack.steps)
        rows = [x0] + [c] * K
        return {"kind": "F1", "row_norm": rows, "mean_abs": [r / math.sqrt(d) for r in rows],
                "entrywise_var": [r * r / d for r in rows], "datawise_var": [r * r / d for r in rows]}
    f6 = f6_on_gpt(model, corpus, tcfg.batch_size, 4, seed + 99)
    out = {"kind": "F6", "f6": f6}
    if f6["envelope"] is not None:
        b = envelope_moment_bounds(x0, np.array(f6["envelope"]), d)
        out.update({m: b[m].tolist() for m in ("row_norm", *MOMENTS)})
    return out


def run_one(corpus, preset, fast, placement, dt, weight_decay, seed, label, key) -> dict:
    gcfg, tcfg = configs(preset, fast, placement, dt, weight_decay, seed, corpus.vocab_size)
    model = GPT(gcfg, seed=seed)
    res = train(model, corpus, tcfg, desc=label)
    last = res.monitor.last
    return {
        "label": label, "color": key, "placement": placement, "dt": dt, "weight_decay": weight_decay,
        "val_loss": res.final_val_loss, "history": {k: res.history[k] for k in ("eval_step", "val_loss")},
        "layers": {m: last[m] for m in (*MOMENTS, "row_norm_max", "max_abs", "float16_headroom")},
        "monitor": [{k: rec[k] for k in ("step", "row_norm_max", "mean_abs", "adjoint_norm", "max_abs")}
                    for rec in res.monitor.log],
        "bounds": theory_bounds(model, placement, dt, last, corpus, tcfg, seed),
        "model": {"d": gcfg.d, "n_blocks": gcfg.stack.n_blocks, "n_steps": gcfg.stack.n_steps,
                  "block_size": gcfg.block_size, "steps": tcfg.steps, "batch_size": tcfg.batch_size, "lr": tcfg.lr,
                  "params": model.n_params()},
    }


def data(preset: str = "cpu", fast: bool = False, seed: int = 0, data_path=None) -> dict:
    corpus = load_corpus(data_path, max_bytes=200_000 if fast else 2_000_000)
    grid = FAST_WEIGHT_DECAY_GRID if fast else WEIGHT_DECAY_GRID
    pre_runs = [run_one(corpus, preset, fast, "pre", 1.0, wd, seed, f"pre, wd = {wd:g}", "pre") for wd in grid]
    best = min(pre_runs, key=lambda r: r["val_loss"])
    best = {**best, "label": f"pre, tuned wd = {best['weight_decay']:g}"}
    others = [run_one(corpus, preset, fast, p, dt, 0.1, seed, label, key) for p, dt, label, key in OTHER_RUNS]
    return {
        "corpus": corpus.describe(),
        "weight_decay_grid": [{"weight_decay": r["weight_decay"], "val_loss": r["val_loss"]} for r in pre_runs],
        "weight_decay_winner": best["weight_decay"],
        "runs": [best, *others],
        "ordering_last_layer": {m: [r["label"] for r in sorted([best, *others], key=lambda r: -r["layers"][m][-1])]
                                for m in MOMENTS},
    }


def draw(data: dict, path) -> None:
    import matplotlib.pyplot as plt

    titles = {"mean_abs": "mean |x|", "entrywise_var": "entry-wise variance", "datawise_var": "data-wise variance"}
    with style.figure_style():
        fig, axes = plt.subplots(1, 4, figsize=style.figsize("double"))
        for ax, m in zip(axes, MOMENTS):
            top = 0.0
            for run in data["runs"]:
                c = style.color(run["color"])
                ks = np.arange(len(run["layers"][m]))
                ax.plot(ks, run["layers"][m], color=c, label=f"{run['label']} (val {run['val_loss']:.2f})",
                        **style.MEASURED)
                top = max(top, max(run["layers"][m]))
                b = run["bounds"]
                if b.get(m) is not None:
                    ax.plot(ks, b[m], color=c, **(style.THEORY_ALT if b["kind"] == "F6" else style.THEORY))
                    if b["kind"] != "F6":
                        top = max(top, max(b[m]))
            # The F6 envelope of an AdamW-trained model can sit orders of magnitude above the data (see the
            # module docstring); keep the data readable and say where the envelope is instead.
            ax.set_yscale("log")
            lo, _ = ax.get_ylim()
            ax.set_ylim(lo, 30 * top)
            for run in data["runs"]:
                b = run["bounds"]
                if b["kind"] == "F6" and b.get(m) is not None and max(b[m][1:]) > 30 * top:
                    ratio = min(b[m][k] / run["layers"][m][k] for k in range(1, len(b[m])))
                    ax.annotate(f"F6 (pre) off scale:\n≥ {ratio:.0e} × data", xy=(0.97, 0.03), ha="right",
                                xycoords="axes fraction", va="bottom", fontsize=5.5, color=style.color(run["color"]))
            ax.set_title(titles[m])
            ax.set_xlabel("hidden state k")
        ax = axes[3]
        for run in data["runs"]:
            steps = [r["step"] for r in run["monitor"]]
            ax.plot(steps, [r["row_norm_max"][-1] for r in run["monitor"]], color=style.color(run["color"]),
                    **style.MEASURED)
        ax.set_yscale("log")
        ax.set_title("max ‖x_K‖ over training")
        ax.set_xlabel("training step")
        handles, labels = axes[0].get_legend_handles_labels()
        from matplotlib.lines import Line2D

        handles += [Line2D([], [], color="k", **style.THEORY), Line2D([], [], color="k", **style.THEORY_ALT)]
        labels += ["F2 (peri) / F1 (post) bound", "F6 envelope (pre)"]
        fig.legend(handles, labels, loc="lower center", ncol=3, frameon=False, bbox_to_anchor=(0.5, -0.12))
        fig.suptitle(f"K7: hidden-state moments of small trained GPTs (wd winner {data['weight_decay_winner']:g})",
                     y=1.02)
        fig.tight_layout()
        style.save(fig, path)


register_figure(NAME, title="K7: hidden-state moments across layers of trained GPTs, with F1/F2/F6 bounds",
                data=data, draw=draw)
