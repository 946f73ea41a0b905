"""Figure 2 — forward growth at initialisation vs depth, per placement: Monte-Carlo mean with a band, vs F5 and F1–F3.

Data step: I independent random MLP stacks per placement (zoo initialisation: W₁ ~ N(0, 1/d), W₂ ~ N(0, 1/m),
no biases, GELU, γ = 1, β = 0, ε = 0, Δt = 1; peri also at Δt = 0.1), one batched computation each, inputs
X_0 ~ N(0, 1) (n tokens, width d). Measured per hidden state k: the mean over instances and rows of ‖x_{k,i}‖²/d
with the 5–95 % range over instances, and the largest row norm over everything.

Theory over it:
- F5 (exact in expectation at ε = 0): pre m_k = m_0 + k·Δt²·E‖F‖² (E‖F‖² = d·m·w₂·E[φ(z)²] for the
  Gaussian MLP, ``theory.init_moments.mlp_output_second_moment``), peri m_k = m_0 + k·Δt²·d, post m_k = d;
- worst-case row-norm bounds: F1 (post, √d), F2 (peri, max‖x_0‖ + kΔt√d), F3 (pre, from each instance's
  spectral norms, ``theory.forward.pre_norm_bound`` with ``mlp_output_sup``).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from theory.forward import (
    mlp_output_sup,
    peri_norm_bound,
    post_row_bound,
    pre_norm_bound,
)
from theory.init_moments import (
    mlp_output_second_moment,
    peri_second_moments,
    post_second_moment,
    pre_second_moments,
)
from verify.engine.zoo import Stack, StackConfig, sample_inputs
from verify.figures import register_figure, style

NAME = "init_growth"
RUNS = (("post", 1.0, "post", "post"), ("pre", 1.0, "pre", "pre"), ("peri", 1.0, "peri Δt = 1", "peri"),
        ("peri", 0.1, "peri Δt = 0.1", "peri_small_dt"))


def data(preset: str = "cpu", fast: bool = False, seed: int = 0, **_options) -> dict:
    d, hidden, n = (16, 64, 4) if fast else (64, 256, 8)
    instances, steps = (8, 12) if fast else (32, 48)
    runs = []
    for placement, dt, label, key in RUNS:
        cfg = StackConfig(d=d, n_blocks=steps, placement=placement, sublayers=("mlp",), d_mlp=hidden, eps=0.0,
                          bias=False, dt=dt, activation="gelu")
        stack = Stack(cfg, instances, seed=seed + 17)
        x0 = sample_inputs(cfg, instances, n, seed=seed + 18)
        with torch.no_grad():
            _, states = stack(x0, trajectory=True)
        sq = torch.stack([(s * s).sum(-1).mean(-1) / d for s in states])  # (K+1, I): per-instance row mean
        rows = torch.stack([s.norm(dim=-1).amax(-1) for s in states])  # (K+1, I)
        m0 = float((x0 * x0).sum(-1).mean())  # E‖x_0‖² per row, measured (the recursions start from it)
        if placement == "pre":
            branch = mlp_output_second_moment(d, hidden, 1.0 / d, 1.0 / hidden, float(d))  # ‖N(x)‖² = d at ε = 0
            f5 = pre_second_moments(m0, [dt] * steps, np.full(steps, branch)) / d
            w1 = torch.linalg.matrix_norm(torch.stack([s.sublayer.W1.detach() for s in stack.steps]), ord=2).numpy()
            w2 = torch.linalg.matrix_norm(torch.stack([s.sublayer.W2.detach() for s in stack.steps]), ord=2).numpy()
            bound = pre_norm_bound(rows[0].numpy(), dt, mlp_output_sup(math.sqrt(d), w1, w2))  # (K+1, I)
            bound_kind = "F3"
        elif placement == "peri":
            f5 = peri_second_moments(m0, [dt] * steps, 1.0, d, 1.0) / d
            bound = peri_norm_bound(rows[0].numpy(), dt, post_row_bound(d, 1.0), n_steps=steps)
            bound_kind = "F2"
        else:
            f5 = np.concatenate([[m0], np.full(steps, post_second_moment(1.0, d, 1.0))]) / d
            bound = np.concatenate([[rows[0].numpy()], np.full((steps, instances), post_row_bound(d, 1.0))])
            bound_kind = "F1"
        bound = np.asarray(bound).reshape(steps + 1, -1)
        runs.append({
            "label": label, "color": key, "placement": placement, "dt": dt,
            "mean_sq": sq.mean(1).tolist(), "lo": sq.quantile(0.05, dim=1).tolist(),
            "hi": sq.quantile(0.95, dim=1).tolist(), "mc_se": (sq.std(1) / math.sqrt(instances)).tolist(),
            "f5": np.asarray(f5).tolist(), "row_max": rows.amax(1).tolist(),
            "bound": bound.max(1).tolist(), "bound_kind": bound_kind,
            "bound_holds": bool((rows.numpy() <= bound * (1 + 1e-12)).all()),
        })
    return {"d": d, "hidden": hidden, "n_tokens": n, "instances": instances, "steps": steps, "runs": runs}


def draw(data: dict, path) -> None:
    import matplotlib.pyplot as plt

    with style.figure_style():
        fig, (a1, a2) = plt.subplots(1, 2, figsize=style.figsize("double"))
        for run in data["runs"]:
            c = style.color(run["color"])
            ks = np.arange(len(run["mean_sq"]))
            a1.fill_between(ks, run["lo"], run["hi"], color=c, alpha=0.2, linewidth=0)
            every = max(1, len(ks) // 8)  # sparse markers, so the theory line under them stays visible
            a1.plot(ks, run["mean_sq"], color=c, label=run["label"], markevery=every, **style.MEASURED)
            a1.plot(ks, run["f5"], color=c, **style.THEORY)
            a2.plot(ks, np.array(run["row_max"]) / math.sqrt(data["d"]), color=c, markevery=every, **style.MEASURED)
            a2.plot(ks, np.array(run["bound"]) / math.sqrt(data["d"]), color=c, **style.THEORY_ALT)
        a1.set_yscale("log")
        a1.set_title("E‖x_k‖²/d at init: MC mean, 5–95 % band; F5 dashed")
        a2.set_yscale("log")
        a2.set_title("max ‖x_k‖/√d; F1 / F2 / F3 bounds dotted")
        for ax in (a1, a2):
            ax.set_xlabel("residual step k")
        a1.legend(frameon=False)
        fig.tight_layout()
        style.save(fig, path)


register_figure(NAME, title="Forward growth at initialisation vs depth, per placement (F5, F1–F3)",
                data=data, draw=draw)
