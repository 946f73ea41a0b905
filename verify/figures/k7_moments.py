"""K7 — the paper's Figure 1 at depth: hidden-state moments across the layers of trained GPTs, over seeds.

Data step: GPTs of 12 blocks (24 residual steps), d = 64 (cpu preset; ``PRESET_SPECS``), trained on the embedded
corpus (``verify.training.corpus``) with one recipe — pre-LN with AdamW weight decay tuned on a grid (the lowest
mean validation loss over the seeds wins; whether it *separates* from the runner-up beyond the seed spread is a
paired t-test over the seeds, reported), peri-LN Δt = 1, peri-LN Δt = 0.1 and post-LN — with several seeds each.
Models of one structure are trained as one batched computation (``verify.training.batched``), the structures in
parallel processes, and every per-run number is cached in ``figures/runs/k7_<preset>_<group>.json``
(``verify.training.cache``) so that the figure re-renders in seconds; ``--retrain`` recomputes. Everything a run
stores is measured in the process that trained it (weights are not kept):

- the three moments of ``verify.engine.moments`` (mean |x|, entry-wise variance, data-wise variance), the RMS and
  the largest row norm of every hidden state X_0 … X_K, on fixed validation batches (whole and per sub-batch, for
  the bootstrap of the growth law);
- the training curve (loss, validation loss) and, at logged steps, the Frobenius norm of the decayed weights and
  the last hidden state's moments — the evidence that weights and hidden states have left their initial scale;
- the theorems' bounds read from the trained weights: F2 (peri), F1 (post), the F6 envelope (pre; see
  ``f6_on_gpt``), and — where ``verify.training.certificates`` exists — the a-posteriori certificates
  (measured/bound per layer: ``certificate_ratio``, ``gradient_certificate_ratio``, and for pre the AdamW
  trajectory envelope ``adamw_envelope_ratio``).

Growth law (``growth_fit``): per placement, the seed-mean curve of each moment over k = 1..K is fitted by a
linear law a + b·k and an exponential law a·e^{b·k}, both by least squares on log y (multiplicative noise, so a
curve spanning decades is fitted across its whole range); with Gaussian residuals and the same parameter count,
ΔAIC = AIC_lin − AIC_exp = n·ln(RSS_lin/RSS_exp) (> 0 favours exponential). Its 95 % interval is a hierarchical
bootstrap (seeds with replacement, then validation sub-batches within each seed). The law is "preferred" when the
whole interval lies beyond ±2 (the usual AIC threshold for support); otherwise "undecided".

Ablation (``ablations``): controlled variations of the pre-LN recipe (learning rate ×3, training twice as long,
no final norm), same seeds and measurement, to see which factor lets pre-LN's hidden states grow fastest.
Tied embeddings cannot be ablated: ``verify.training.gpt.GPT`` has no weight tying by design.

Drawing step: three moment panels (seed mean, band = min–max over seeds, F1/F2 bounds and certificates drawn on
the measurement), then loss curves, weight-norm growth, the weight-decay grid and the ablation's last-layer mean |x|.
"""
from __future__ import annotations

import math
import os

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

NAME = "k7_moments"
MOMENTS = ("mean_abs", "entrywise_var", "datawise_var")
KEYS = ("pre", "peri", "peri_small_dt", "post")
LABELS = {"pre": "pre + tuned wd", "peri": "peri Δt = 1", "peri_small_dt": "peri Δt = 0.1", "post": "post"}
OTHER_WEIGHT_DECAY = 0.1  # peri and post train at this λ (the pre grid is the tuned one)
N_SUB = 4  # validation sub-batches per run (the bootstrap's inner level)
N_BOOT = 1000
AIC_SUPPORT = 2.0

# Model shapes and schedules per preset. cpu: sized so that the whole figure trains in ≤ ~6 min cold on 2 cores
# (measured times in docs/theorems/figures-3-5.md); gpu: GPT-2-small and a 48-block deep-narrow model (the
# paper's depth), documented, not run on the CPU machines; fast: a seconds-long smoke size for the tests, same code.
PRESET_SPECS = {
    "cpu": {"models": [{"name": "d64x12", "d": 64, "n_heads": 4, "n_blocks": 12, "block_size": 16}],
            "batch_size": 8, "steps": 300, "lr": 3e-3, "warmup": 30, "dtype": "float32", "device": "cpu",
            "seeds": (0, 1, 2), "wd_grid": (0.0, 0.1, 1.0), "eval_every": 50, "eval_batches": 4, "log_every": 50,
            "monitor_batch": 16, "ablations": ("lr_x3", "no_final_norm"), "corpus_bytes": 2_000_000},
    "gpu": {"models": [{"name": "gpt2_small", "d": 768, "n_heads": 12, "n_blocks": 12, "block_size": 256},
                       {"name": "deep48", "d": 256, "n_heads": 4, "n_blocks": 48, "block_size": 256}],
            "batch_size": 32, "steps": 2000, "lr": 6e-4, "warmup": 200, "dtype": "float32", "device": "cuda",
            "seeds": (0, 1, 2), "wd_grid": (0.0, 0.1, 0.3, 1.0), "eval_every": 250, "eval_batches": 8,
            "log_every": 250, "monitor_batch": 32, "ablations": ("lr_x3", "long", "no_final_norm"),
            "corpus_bytes": None},
    "fast": {"models": [{"name": "d16x2", "d": 16, "n_heads": 2, "n_blocks": 2, "block_size": 16}],
             "batch_size": 4, "steps": 24, "lr": 3e-3, "warmup": 4, "dtype": "float32", "device": "cpu",
             "seeds": (0, 1, 2), "wd_grid": (0.0, 0.1), "eval_every": 12, "eval_batches": 2, "log_every": 12,
             "monitor_batch": 8, "ablations": ("lr_x3", "no_final_norm"), "corpus_bytes": 200_000},
}
DTYPES = {"float32": torch.float32, "float64": torch.float64}


# ---- the design: groups of same-shape models ---------------------------------------------------------------------
def design(spec: dict, model: dict) -> list[dict]:
    """Training groups (one BatchedGPT each): {name, gpt (gpt_config kwargs), train (schedule), instances}.

    An instance is {key, seed, lr, weight_decay, dt, role} where role is "grid" (pre, one wd of the grid), "main"
    (peri, peri Δt = 0.1, post) or "ablation:<name>"."""
    seeds = list(spec["seeds"])
    base_gpt = {k: model[k] for k in ("d", "n_heads", "n_blocks", "block_size")}
    base_train = {k: spec[k] for k in ("batch_size", "steps", "lr", "warmup", "eval_every", "eval_batches",
                                       "log_every", "monitor_batch")}

    def inst(key, seed, wd, dt=1.0, lr=None, role="main"):
        return {"key": key, "seed": seed, "lr": spec["lr"] if lr is None else lr, "weight_decay": wd, "dt": dt, "role": role}

    groups = [
        {"name": "pre", "gpt": {**base_gpt, "placement": "pre"}, "train": base_train,
             "instances": [inst("pre", s, wd, role="grid") for wd in spec["wd_grid"] for s in seeds]},
        {"name": "peri", "gpt": {**base_gpt, "placement": "peri"}, "train": base_train,
             "instances": [inst(k, s, OTHER_WEIGHT_DECAY, dt) for k, dt in (("peri", 1.0), ("peri_small_dt", 0.1))
                        for s in seeds]},
        {"name": "post", "gpt": {**base_gpt, "placement": "post"}, "train": base_train,
             "instances": [inst("post", s, OTHER_WEIGHT_DECAY) for s in seeds]},
    ]
    abl = spec.get("ablations", ())
    wd = OTHER_WEIGHT_DECAY  # the ablations vary one factor of pre at a fixed λ
    if "lr_x3" in abl:
        groups.append({"name": "pre_lr_x3", "gpt": {**base_gpt, "placement": "pre"}, "train": base_train,
                           "instances": [inst("pre", s, wd, lr=3 * spec["lr"], role="ablation:lr_x3") for s in seeds]})
    if "long" in abl:
        groups.append({"name": "pre_long", "gpt": {**base_gpt, "placement": "pre"},
                           "train": {**base_train, "steps": 2 * spec["steps"], "eval_every": 2 * spec["eval_every"],
                                  "log_every": 2 * spec["log_every"]},
                           "instances": [inst("pre", s, wd, role="ablation:long") for s in seeds]})
    if "no_final_norm" in abl:
        groups.append({"name": "pre_no_final_norm", "gpt": {**base_gpt, "placement": "pre", "final_norm": False},
                           "train": base_train,
                           "instances": [inst("pre", s, wd, role="ablation:no_final_norm") for s in seeds]})
    return groups


def instance_config(spec: dict, group: dict, inst: dict, corpus_sha: str) -> dict:
    """Everything that decides one run's record (the cache key hashes it)."""
    return {"figure": NAME, "measure_version": MEASURE_VERSION, "gpt": group["gpt"], "train": group["train"],
            "dtype": spec["dtype"], "device": spec["device"], "certificates": certificates_available(),
            **{k: inst[k] for k in ("seed", "lr", "weight_decay", "dt")}, "corpus": corpus_sha}


MEASURE_VERSION = 1  # bump when what a run records changes


def certificates_available() -> bool:
    try:
        import verify.training.certificates  # noqa: F401
    except ImportError:
        return False
    return True


# ---- bounds read from one trained model (unchanged theory, per instance) -----------------------------------------
def _spectral(w: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(w.detach().double(), ord=2))


@torch.no_grad()
def _norm_range(norm) -> float:
    return norm_output_bound(norm.gamma.shape[-1], float(norm.gamma.abs().max()),
                             0.0 if norm.beta is None else float(norm.beta.double().norm()))


def f6_on_gpt(model: GPT, corpus, batch_size: int, n_batches: int, seed: int) -> dict:
    """The F6 envelope's ingredients on a trained pre-LN GPT, averaged over ``n_batches`` training batches.

    AdamW's decoupled decay does not make the model a stationary point of E[ℓ] + (λ/2)‖W‖², so the envelope is
    used in its residual form, valid at *any* weights: ‖W_k‖ ≤ (Δt_k·E[Σ‖h‖‖p‖] + r_k)/λ̂ with
    r_k = ‖∂E[ℓ]/∂W_k + λ̂W_k‖ measured, and λ̂ = −Σ⟨∂E[ℓ]/∂W_k, W_k⟩/Σ‖W_k‖² (the least-squares λ)."""
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
                act_adj[k] += float((h.double().norm(dim=-1) * grads[K + k + 1].double().norm(dim=-1)).sum()) / n_batches
    W = [w[0].detach().double() for w, _ in maps]
    inner = sum(float((g * w).sum()) for g, w in zip(g_w, W))
    sq = sum(float((w * w).sum()) for w in W)
    lam_hat = -inner / sq
    out = {"lambda_hat": lam_hat, "W_norm": [float(w.norm()) for w in W]}
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
    if lam_hat > 0:
        resid = [float((g + lam_hat * w).norm()) for g, w in zip(g_w, W)]
        dts = [float(s.dt) for s in steps]
        env = trained_pre_envelope(dts, lam_hat, [float(h) for h in h_bound], act_adj, resid, bias)
        no_resid = trained_pre_envelope(dts, lam_hat, [float(h) for h in h_bound], act_adj, 0.0, bias)
        out.update(envelope=env.tolist(),
                   residual_share=float(1.0 - no_resid[-1] / env[-1]) if env[-1] > 0 else 0.0)
    else:
        out.update(envelope=None, residual_share=None)
    return out


def theory_bounds(model: GPT, placement: str, x0: float, corpus, batch_size: int, seed: int) -> dict:
    """F2 (peri), F1 (post) or the F6 envelope (pre) on this trained model, as row-norm and moment bounds."""
    d, K = model.cfg.d, len(model.stack.steps)
    if placement == "peri":
        c_out = [_norm_range(s.norm_out) for s in model.stack.steps]
        b = peri_moment_bounds(x0, [float(s.dt) for s in model.stack.steps], c_out, d)
        return {"kind": "F2", **{m: b[m].tolist() for m in ("row_norm", *MOMENTS)}}
    if placement == "post":
        c = max(post_row_bound(d, float(s.norm_res.gamma.detach().abs().max()),
                               float(s.norm_res.beta.detach().double().norm()))
                for s in model.stack.steps)
        rows = [x0] + [c] * K
        return {"kind": "F1", "row_norm": rows, "mean_abs": [r / math.sqrt(d) for r in rows],
                "entrywise_var": [r * r / d for r in rows], "datawise_var": [r * r / d for r in rows]}
    f6 = f6_on_gpt(model, corpus, batch_size, 4, seed + 99)
    out = {"kind": "F6", "f6": f6}
    if f6["envelope"] is not None:
        b = envelope_moment_bounds(x0, np.array(f6["envelope"]), d)
        out.update({m: b[m].tolist() for m in ("row_norm", *MOMENTS)})
    return out


# ---- training one group (runs in a worker process) ---------------------------------------------------------------
@torch.no_grad()
def _states_moments(model, x: torch.Tensor) -> dict:
    """Per instance and hidden state: the moments, RMS row norm, max row norm and max |x| on inputs x (B, T)."""
    from verify.engine import moments

    I = model.n_instances
    _, _, states = model(x.expand(I, *x.shape), trajectory=True)
    out = {k: [] for k in (*MOMENTS, "row_norm", "row_norm_max", "max_abs")}
    for s in states:
        s = s.double()
        for k, v in moments.all_moments(s).items():
            out[k].append(v)
        rn = s.norm(dim=-1).flatten(1)
        out["row_norm"].append(rn.pow(2).mean(1).sqrt())
        out["row_norm_max"].append(rn.max(1).values)
        out["max_abs"].append(s.abs().flatten(1).max(1).values)
    return {k: torch.stack(v, 1).cpu().tolist() for k, v in out.items()}  # {name: I × (K+1)}


@torch.no_grad()
def _weight_norms(model) -> list[float]:
    """Frobenius norm of every decayed weight matrix together (embeddings, stack maps, head), per instance."""
    tot = torch.zeros(model.n_instances, dtype=torch.float64)
    for _, p, dec in model.decay_mask():
        if dec:
            tot += p.detach().double().pow(2).flatten(1).sum(1).cpu()
    return tot.sqrt().tolist()


CERT_BATCH = 4  # sequences for the forward certificate and F9
# The gradient certificate builds dense (T·d)² step Jacobians per sequence and takes their exact spectral norms:
# measured 180 s for 4 × 16 tokens of a 12-block d = 64 GPT here, 10 s for 2 × 8 tokens — so it gets 2 × 8.
GRAD_CERT_BATCH, GRAD_CERT_TOKENS = 2, 8


def _certificates(gpt: GPT, x, y, gradient: bool = True) -> dict:
    """F8 (forward, gradient) of ``verify.training.certificates`` on one trained model, measured/bound per layer;
    the forward one's tiers and where its last-layer gap is lost (``loss_factors``) are kept."""
    if not certificates_available():
        return {}
    from verify.training import certificates as cert

    out = {}
    try:
        f = cert.forward_certificate(gpt, x)
        out.update(certificate_ratio=[float(v) for v in f["ratio"]], certificate_bound=[float(v) for v in f["bound"]],
                   certificate_measured=[float(v) for v in f["measured"]],
                   certificate_tiers={t: [float(v) for v in f["tiers"][t]["ratio"]] for t in f["tiers"]},
                   certificate_loss_factors=f.get("loss_factors"))
        if not gradient:
            return out
        g = cert.gradient_certificate(gpt, x[:GRAD_CERT_BATCH, :GRAD_CERT_TOKENS], y[:GRAD_CERT_BATCH, :GRAD_CERT_TOKENS])
        out.update(gradient_certificate_ratio=[float(v) for v in g["ratio"]],
                   gradient_certificate_bound=[float(v) for v in g["bound"]],
                   gradient_certificate_measured=[float(v) for v in g["measured"]])
    except (ValueError, NotImplementedError) as exc:  # a placement or size the certificate does not cover: say so
        out["certificate_error"] = f"{type(exc).__name__}: {exc}"
    return out


def _adamw(init_state, gpt: GPT, it: dict, lr_factors: list[float], betas, history, x) -> dict:
    """F9 on one pre-LN run: the trajectory envelope's ratio per layer at the end, and at every logged step."""
    if not certificates_available():
        return {}
    from verify.training import certificates as cert

    try:
        r = cert.adamw_envelope_ratio(init_state, gpt, lr=[it["lr"] * f for f in lr_factors],
                                      weight_decay=it["weight_decay"], betas=betas, tokens=x, history=history)
    except (ValueError, NotImplementedError) as exc:
        return {"adamw_error": f"{type(exc).__name__}: {exc}"}
    if not r["ratio"]:
        return {}
    return {"adamw_envelope_ratio": r["ratio"][-1],
            "adamw": {k: r[k] for k in ("steps_checked", "deviation_ratio_max", "norm_ratio_max", "ratio_last",
                                        "f3_ratio_last", "update_bound_limit", "decay_factor_last")}}


def train_group(group: dict, spec: dict, corpus_path, corpus_bytes, instance_ids: list[int]) -> list[dict]:
    """Train the group's instances ``instance_ids`` as one BatchedGPT and measure each; one record per instance."""
    from verify.training.batched import train_batched

    insts = [group["instances"][i] for i in instance_ids]
    tr = group["train"]
    corpus, gcfg, model, tcfg, mon_x, mon_y = _batched_setup(group, spec, insts, corpus_path, corpus_bytes)
    log: list[dict] = []
    f9 = group["gpt"]["placement"] == "pre" and certificates_available()
    snaps: dict[int, list] = {i: [] for i in range(len(insts))}

    def on_log(step, m, hist):
        if f9:  # the states F9 is checked on: every logged step (step 0 = the initial weights)
            for i in range(len(insts)):
                snaps[i].append((step, {k: v.detach().clone() for k, v in m.instance(i).state_dict().items()}))
        mom = _states_moments(m, mon_x[: tr["monitor_batch"]])
        log.append({"step": step, "weight_norm": _weight_norms(m), "mean_abs": mom["mean_abs"],
                    "entrywise_var": [v[-1] for v in mom["entrywise_var"]],
                    "row_norm_max": [v[-1] for v in mom["row_norm_max"]]})

    res = train_batched(model, corpus, tcfg, on_log=on_log, log_every=tr["log_every"], desc=group["name"])
    whole = _states_moments(model, mon_x)
    subs = [_states_moments(model, mon_x[j::N_SUB]) for j in range(N_SUB)]
    stride = max(1, tr["steps"] // 100)
    records = []
    for i, it in enumerate(insts):
        h = res.instance_history(i)
        gpt = model.instance(i)
        gpt.zero_grad(set_to_none=True)
        rec = {
            "key": it["key"], "role": it["role"], "placement": group["gpt"]["placement"], "dt": it["dt"],
            "seed": it["seed"], "weight_decay": it["weight_decay"], "lr": it["lr"], "group": group["name"],
            "val_loss": h["val_loss"][-1], "diverged_at": res.diverged_at[i],
            "history": {"step": list(range(1, len(h["train_loss"]) + 1, stride)),
                        "train_loss": h["train_loss"][::stride], "eval_step": h["eval_step"],
                        "val_loss": h["val_loss"]},
            "layers": {k: v[i] for k, v in whole.items()},
            "layers_by_batch": {m: [s[m][i] for s in subs] for m in MOMENTS},
            "monitor": [{"step": r["step"], "weight_norm": r["weight_norm"][i], "mean_abs": r["mean_abs"][i],
                         "entrywise_var_last": r["entrywise_var"][i], "row_norm_max_last": r["row_norm_max"][i]}
                        for r in log],
            "bounds": theory_bounds(gpt, group["gpt"]["placement"], whole["row_norm_max"][i][0], corpus,
                                    tr["batch_size"], it["seed"]),
            "model": {"d": gcfg.d, "n_blocks": gcfg.stack.n_blocks, "n_steps": gcfg.stack.n_steps,
                      "block_size": gcfg.block_size, "steps": tr["steps"], "batch_size": tr["batch_size"],
                      "tokens": tr["steps"] * tr["batch_size"] * gcfg.block_size, "params": gpt.n_params(),
                      "final_norm": gcfg.stack.final_norm, "dtype": spec["dtype"]},
            "seconds_per_step": res.seconds / max(1, len(h["train_loss"])),
        }
        rec.update(_certificates(gpt, mon_x[:CERT_BATCH], mon_y[:CERT_BATCH],
                                 gradient=not it["role"].startswith("ablation")))
        if f9:
            rec.update(_adamw(snaps[i][0][1], gpt, it, res.history["lr_factor"], tcfg.betas,
                              [(t, st) for t, st in snaps[i][1:-1]], mon_x[:CERT_BATCH]))
        records.append(rec)
    return records


# ---- the growth law -----------------------------------------------------------------------------------------------
def _rss_laws(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares fits on log y of the rows of Y (m, n) over k = 1..n, vectorised over the rows.

    Exponential, log y ≈ α + b·k: ordinary regression (closed form). Linear, y ≈ a + b·k = a(1 + c·k) with
    a > 0: for fixed c the best log a is the mean of log y − log(1 + c·k), so the fit is a 1-D search over
    c ∈ (−1/n, 10⁴] (c → ∞ is y ∝ k, c = 0 the constant), on a log-spaced grid refined once around its best point
    (relative precision of c ≈ 0.3 %, far below what the AIC comparison resolves).
    Returns (rss_lin, rss_exp, (a, b) linear, (A, b) exponential), each per row."""
    ly = np.log(Y)
    m, n = ly.shape
    k = np.arange(1, n + 1, dtype=float)
    kc = k - k.mean()
    b_e = (ly * kc).sum(1) / (kc * kc).sum()
    al_e = ly.mean(1) - b_e * k.mean()
    rss_exp = ((ly - al_e[:, None] - b_e[:, None] * k) ** 2).sum(1)

    def rss_for(cs):  # cs (m, g) → RSS (m, g)
        L = np.log1p(cs[..., None] * k)  # (m, g, n)
        r = ly[:, None, :] - L
        return (r * r).sum(-1) - n * r.mean(-1) ** 2

    neg = -(1.0 - np.logspace(-4, 0, 40, endpoint=False)) / n
    grid = np.concatenate([neg, [0.0], np.logspace(-5, 4, 240)])
    g = np.broadcast_to(grid, (m, grid.size))
    best = rss_for(g).argmin(1)
    lo = grid[np.maximum(best - 1, 0)]
    hi = grid[np.minimum(best + 1, grid.size - 1)]
    fine = lo[:, None] + (hi - lo)[:, None] * np.linspace(0, 1, 61)[None]
    rf = rss_for(fine)
    j = rf.argmin(1)
    c = fine[np.arange(m), j]
    rss_lin = rf[np.arange(m), j]
    a = np.exp((ly - np.log1p(c[:, None] * k)).mean(1))
    return rss_lin, rss_exp, np.stack([a, a * c], 1), np.stack([np.exp(al_e), b_e], 1)


def _aic(rss: np.ndarray, n: int) -> np.ndarray:
    """Gaussian AIC with 3 parameters (a, b, σ): n·ln(RSS/n) + 6."""
    return n * np.log(np.maximum(rss, 1e-300) / n) + 6.0


def fit_growth(curves, n_boot: int = N_BOOT, seed: int = 0, support: float = AIC_SUPPORT) -> dict:
    """Linear vs exponential growth in depth of a moment, with a bootstrap interval of ΔAIC = AIC_lin − AIC_exp.

    ``curves``: array (n_seeds, n_sub, K+1) — per seed, per validation sub-batch, the moment at X_0..X_K (X_0, the
    embedding, is left out of the fit). Point estimate on the mean curve; interval: 95 % percentile bootstrap,
    resampling seeds with replacement, then sub-batches within each drawn seed. "exponential" if the whole
    interval is > ``support``, "linear" if < −``support``, else "undecided"."""
    c = np.asarray(curves, dtype=float)
    if c.ndim != 3 or c.shape[0] < 1 or c.shape[2] < 4:
        raise ValueError(f"curves must have shape (n_seeds, n_sub, K+1) with K+1 >= 4, got {c.shape}")
    c = c[..., 1:]
    if not np.all(np.isfinite(c)) or np.any(c <= 0):
        raise ValueError("curves must be finite and > 0")
    S, B, n = c.shape
    rng = np.random.default_rng(seed)
    si = rng.integers(0, S, (n_boot, S))
    bi = rng.integers(0, B, (n_boot, S, B))
    boot_curves = c[si[:, :, None], bi].mean(axis=(1, 2))  # (n_boot, n)
    Y = np.concatenate([c.mean(axis=(0, 1))[None], boot_curves])
    rl, re, pl, pe = _rss_laws(Y)
    al, ae = _aic(rl, n), _aic(re, n)
    aic_l, aic_e = float(al[0]), float(ae[0])
    params = {"linear": pl[0].tolist(), "exponential": pe[0].tolist()}
    boot = al[1:] - ae[1:]
    lo, hi = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
    preferred = "exponential" if lo > support else ("linear" if hi < -support else "undecided")
    return {"preferred": preferred, "aic_linear": aic_l, "aic_exponential": aic_e, "delta_aic": aic_l - aic_e,
            "ci": [lo, hi], "ci_level": 0.95, "n_boot": n_boot, "params": params,
            "ratio_last_first": float(c.mean(axis=(0, 1))[-1] / c.mean(axis=(0, 1))[0])}


def growth_fits(runs: list[dict], n_boot: int = N_BOOT) -> dict:
    """growth_fit per key: mean |x| at the top level (what the ledger reads), every moment under ``by_moment``."""
    out = {}
    for key in KEYS:
        rs = sorted((r for r in runs if r["key"] == key), key=lambda r: r["seed"])
        if not rs:
            continue
        by = {m: fit_growth([r["layers_by_batch"][m] for r in rs], n_boot=n_boot) for m in MOMENTS}
        out[key] = {**by["mean_abs"], "moment": "mean_abs", "by_moment": by}
    return out


# ---- statistics over seeds ------------------------------------------------------------------------------------
def weight_decay_table(grid_runs: list[dict]) -> dict:
    """Mean ± std of the validation loss per λ over seeds, the winner, and a paired t-test winner vs runner-up."""
    wds = sorted({r["weight_decay"] for r in grid_runs})
    table = []
    for wd in wds:
        v = np.array([r["val_loss"] for r in sorted(grid_runs, key=lambda r: r["seed"]) if r["weight_decay"] == wd])
        table.append({"weight_decay": wd, "val_loss": float(v.mean()), "val_loss_std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
                      "val_loss_by_seed": v.tolist()})
    ranked = sorted(table, key=lambda t: t["val_loss"])
    out = {"grid": table, "winner": ranked[0]["weight_decay"]}
    if len(ranked) > 1 and len(ranked[0]["val_loss_by_seed"]) > 1:
        from scipy import stats

        diff = np.array(ranked[1]["val_loss_by_seed"]) - np.array(ranked[0]["val_loss_by_seed"])
        n = diff.size
        se = float(diff.std(ddof=1) / math.sqrt(n))
        t = float(diff.mean() / se) if se > 0 else math.inf
        crit = float(stats.t.ppf(0.975, n - 1))
        out.update(runner_up=ranked[1]["weight_decay"], paired_difference=float(diff.mean()), paired_se=se,
                   t=t, t_critical_95=crit, separates=bool(t > crit),
                   spread_across_grid=float(ranked[-1]["val_loss"] - ranked[0]["val_loss"]))
    return out


def band(runs: list[dict], field: str) -> dict:
    """Seed mean, min and max per layer of ``layers[field]``."""
    a = np.array([r["layers"][field] for r in runs], dtype=float)
    return {"mean": a.mean(0).tolist(), "min": a.min(0).tolist(), "max": a.max(0).tolist()}


def ordering(runs_by_key: dict[str, list[dict]]) -> dict:
    """Last-layer ordering of the seed means per moment, with the per-seed values."""
    out = {}
    for m in MOMENTS:
        means = {k: float(np.mean([r["layers"][m][-1] for r in rs])) for k, rs in runs_by_key.items()}
        out[m] = {"order": sorted(means, key=lambda k: -means[k]), "seed_mean": means,
                  "by_seed": {k: [r["layers"][m][-1] for r in rs] for k, rs in runs_by_key.items()}}
    return out


def ablation_summary(runs: list[dict], reference: list[dict], others: dict[str, list[dict]]) -> dict:
    """Per ablation: last-layer mean |x| per seed and its ratio to the reference pre runs (λ = 0.1, same seeds),
    the weight norm growth, the validation loss, and whether pre then grows fastest (above every other key's max)."""
    ref = {r["seed"]: r for r in reference}
    top_other = max(max(r["layers"]["mean_abs"][-1] for r in rs) for rs in others.values())
    out = {}
    for name in sorted({r["role"].split(":", 1)[1] for r in runs}):
        rs = sorted((r for r in runs if r["role"] == f"ablation:{name}"), key=lambda r: r["seed"])
        last = [r["layers"]["mean_abs"][-1] for r in rs]
        ratio = [r["layers"]["mean_abs"][-1] / ref[r["seed"]]["layers"]["mean_abs"][-1] for r in rs if r["seed"] in ref]
        out[name] = {"seeds": [r["seed"] for r in rs], "mean_abs_last": last, "ratio_to_reference": ratio,
                     "val_loss": [r["val_loss"] for r in rs],
                     "weight_norm_growth": [r["monitor"][-1]["weight_norm"] / r["monitor"][0]["weight_norm"] for r in rs],
                     "growth_fit": fit_growth([r["layers_by_batch"]["mean_abs"] for r in rs]),
                     "pre_above_every_other_placement": bool(min(last) > top_other),
                     "layers_mean_abs": band(rs, "mean_abs"), "diverged": [r["diverged_at"] for r in rs]}
    out["_reference"] = {"weight_decay": OTHER_WEIGHT_DECAY, "mean_abs_last": [ref[s]["layers"]["mean_abs"][-1]
                                                                             for s in sorted(ref)],
                         "max_other_placement_mean_abs_last": top_other}
    return out


# ---- F9b: the windowed AdamW envelope on the pre runs ---------------------------------------------------------------
# Windows w (optimiser steps between checkpoints) at which the online envelope is evaluated; w ≥ steps from t₀ = 0
# is F9 (c). Kept in their own cache (figures/runs/k7_<preset>_<model>_pre_f9b.json): they need every step's weights,
# so the pre runs of the tuned λ are trained once more with a per-step callback (same seeds, batches, schedule).
F9B_WINDOWS = (1, 5, 10, 20, 50, 100, 300)
F9B_VERSION = 1  # bump when what a windowed record holds changes


def _instance_state(m, i: int) -> dict:
    """Instance i's parameters of a BatchedGPT under the standalone GPT's names (as ``BatchedGPT.instance``)."""
    return {n: (p[i] if n in ("wte", "wpe", "head", "head_b") else p[i:i + 1]).detach().clone()
            for n, p in m.named_parameters()}


def train_windows(group: dict, spec: dict, corpus_path, corpus_bytes, instances: list[dict]) -> list[dict]:
    """Train the pre ``instances`` as one BatchedGPT (the K7 recipe) and evaluate, at every step t, F9b's envelope
    from the last checkpoint t₀ = w·⌊(t − 1)/w⌋ for each w of F9B_WINDOWS against the measured max row norm on the
    probe batch F9 (c) uses (float64). One record per instance: per w the last layer's measured/bound at every
    step, its minimum and the step of the minimum; the same for the zero window (F3 at the step's own weights)."""
    from verify.training import adamw_trajectory as traj
    from verify.training.batched import train_batched
    from verify.training.certificates import _float64

    tr = group["train"]
    corpus, gcfg, model, tcfg, mon_x, _ = _batched_setup(group, spec, instances, corpus_path, corpus_bytes)
    x = mon_x[:CERT_BATCH]
    gpts = [model.instance(i) for i in range(len(instances))]
    probes = [_float64(g) for g in gpts]
    summ: list[dict] = [{} for _ in instances]
    meas: list[dict] = [{} for _ in instances]

    def on_log(step, m, hist):
        for i in range(len(instances)):
            st = _instance_state(m, i)
            summ[i][step] = traj.norm_summary(st, gpts[i])
            meas[i][step] = traj.measured_rows(gpts[i], st, x, probes[i])

    res = train_batched(model, corpus, tcfg, on_log=on_log, log_every=1, desc="f9b")
    windows = sorted({min(w, tr["steps"]) for w in F9B_WINDOWS})
    out = []
    for i, it in enumerate(instances):
        lrs = [it["lr"] * f for f in res.history["lr_factor"]]
        env = traj.window_envelopes(summ[i], gpts[i], lrs, it["weight_decay"], tcfg.betas, windows)
        mt = np.array([meas[i][t] for t in env["steps"]])
        rec = {"seed": it["seed"], "weight_decay": it["weight_decay"], "lr": it["lr"], "steps": len(lrs),
               "windows": {}, "measured_last": mt[:, -1].tolist(),
               "final_measured_last": float(mt[-1, -1]), "val_loss": res.instance_history(i)["val_loss"][-1]}
        for w, b in [*env["windows"].items(), ("zero", env["zero"])]:
            r = mt / b
            last = r[:, -1]
            rec["windows"][str(w)] = {"ratio_last": last.tolist(), "ratio_last_min": float(last.min()),
                                      "argmin_step": int(env["steps"][int(np.argmin(last))]),
                                      "ratio_last_final": float(last[-1]), "ratio_max_any_layer": float(r.max())}
        out.append(rec)
    return out


def window_data(spec, groups, corpus, corpus_path, preset_name, model_name, winner, retrain, use_cache) -> list[dict]:
    """The F9b records of the pre runs at the tuned λ ``winner`` (cached; trains what is missing in-process)."""
    if not certificates_available():
        return []
    from verify.training.cache import RunCache, run_key

    g = next(g for g in groups if g["name"] == "pre")
    insts = [it for it in g["instances"] if it["weight_decay"] == winner]
    cache = RunCache(f"k7_{preset_name}_{model_name}_pre_f9b", enabled=use_cache and not retrain)
    keyed = [(run_key({**instance_config(spec, g, it, corpus.sha256), "f9b_windows": F9B_WINDOWS,
                       "f9b_version": F9B_VERSION}, corpus.sha256), it) for it in insts]
    if not use_cache:
        return train_windows(g, spec, corpus_path, spec["corpus_bytes"], insts)
    return cache.fetch(keyed, lambda missing: train_windows(g, spec, corpus_path, spec["corpus_bytes"], missing))


# ---- the data step ------------------------------------------------------------------------------------------------
def _train_all(spec, groups, corpus, corpus_path, preset_name, model_name, retrain, workers, use_cache) -> list[list[dict]]:
    from verify.training.batched import run_parallel
    from verify.training.cache import RunCache, run_key

    caches, keys, jobs, where = [], [], [], []
    for g in groups:
        cache = RunCache(f"k7_{preset_name}_{model_name}_{g['name']}", enabled=use_cache and not retrain)
        ks = [run_key(instance_config(spec, g, it, corpus.sha256), corpus.sha256) for it in g["instances"]]
        missing = [i for i, k in enumerate(ks) if cache.get(k) is None]
        if missing:
            jobs.append({"group": g, "spec": spec, "corpus_path": corpus_path, "corpus_bytes": spec["corpus_bytes"],
                             "instance_ids": missing})
            where.append((len(caches), missing))
        caches.append(cache)
        keys.append(ks)
    def done(j, recs):
        gi, missing = where[j]
        for i, rec in zip(missing, recs):
            caches[gi].put(keys[gi][i], rec)
        if use_cache:  # each group is saved as soon as it is trained: an interrupted run keeps what it finished
            caches[gi].save()

    n_workers = min(len(jobs), workers or os.cpu_count() or 1)
    if n_workers <= 1:
        for j, job in enumerate(jobs):
            done(j, run_parallel(train_group, [job], workers=1)[0])
    elif jobs:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        from verify.training.batched import _call

        order = sorted(range(len(jobs)), key=lambda j: -len(jobs[j]["instance_ids"]) * jobs[j]["group"]["train"]["steps"])
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=mp.get_context("spawn")) as pool:
            futs = {pool.submit(_call, (train_group, jobs[j], 1)): j for j in order}  # largest first
            for f in as_completed(futs):
                done(futs[f], f.result())
    out = []
    for cache, ks in zip(caches, keys):
        out.append([cache.records[k] for k in ks])
        if use_cache and jobs:
            cache.save(keep=ks)  # drop runs no configuration uses any more
    return out


def model_data(spec, model, corpus, corpus_path, preset_name, retrain, workers, use_cache, n_boot) -> dict:
    groups = design(spec, model)
    recs = [r for group in _train_all(spec, groups, corpus, corpus_path, preset_name, model["name"], retrain,
                                      workers, use_cache) for r in group]
    grid_runs = [r for r in recs if r["role"] == "grid"]
    wd = weight_decay_table(grid_runs)
    pre = sorted((r for r in grid_runs if r["weight_decay"] == wd["winner"]), key=lambda r: r["seed"])
    main = [dict(r, label=f"{LABELS['pre']} (λ = {wd['winner']:g})") for r in pre]
    main += [dict(r, label=LABELS[r["key"]]) for r in recs if r["role"] == "main"]
    by_key = {k: [r for r in main if r["key"] == k] for k in KEYS}
    data = {
        "model_name": model["name"], "n_layers": model["n_blocks"], "n_residual_steps": 2 * model["n_blocks"],
        "d": model["d"], "seeds": list(spec["seeds"]),
        "token_budget": {"tokens_per_run": spec["steps"] * spec["batch_size"] * model["block_size"],
                         "steps": spec["steps"], "batch_size": spec["batch_size"], "block_size": model["block_size"]},
        "weight_decay": wd, "weight_decay_winner": wd["winner"],
        "weight_decay_grid": [{"weight_decay": t["weight_decay"], "val_loss": t["val_loss"],
                               "val_loss_std": t["val_loss_std"]} for t in wd["grid"]],
        "grid_runs": [{k: r[k] for k in ("seed", "weight_decay", "val_loss")} | {
            "mean_abs_last": r["layers"]["mean_abs"][-1]} for r in grid_runs],
        "runs": main,
        "bands": {k: {m: band(rs, m) for m in (*MOMENTS, "row_norm")} for k, rs in by_key.items() if rs},
        "ordering_last_layer": ordering({k: rs for k, rs in by_key.items() if rs}),
        "growth_fit": growth_fits(main, n_boot=n_boot),
        "seconds_per_step": {g: float(np.mean([r["seconds_per_step"] for r in recs if r["group"] == g]))
                             for g in sorted({r["group"] for r in recs})},
    }
    abl = [r for r in recs if r["role"].startswith("ablation:")]
    if abl:
        ref = [r for r in grid_runs if r["weight_decay"] == OTHER_WEIGHT_DECAY]
        data["ablations"] = ablation_summary(abl, ref, {k: rs for k, rs in by_key.items() if rs and k != "pre"})
    pre_runs = by_key["pre"]
    if pre_runs and all("adamw_envelope_ratio" in r for r in pre_runs):
        data["adamw_envelope_ratio"] = {r["seed"]: r["adamw_envelope_ratio"] for r in pre_runs}
    win = {w["seed"]: w for w in window_data(spec, groups, corpus, corpus_path, preset_name, model["name"],
                                             wd["winner"], retrain, use_cache)}
    for r in pre_runs:  # F9b: per window w, the worst (smallest) last-layer measured/bound over every step
        if r["seed"] in win:
            ws = win[r["seed"]]["windows"]
            r["adamw_window_envelope_ratio"] = {w: v["ratio_last_min"] for w, v in ws.items()}
            r["adamw_window"] = {"ratio_last_final": {w: v["ratio_last_final"] for w, v in ws.items()},
                                 "argmin_step": {w: v["argmin_step"] for w, v in ws.items()},
                                 "never_violated": all(v["ratio_max_any_layer"] <= 1 for v in ws.values()),
                                 "steps": win[r["seed"]]["steps"],
                                 "final_measured_last": win[r["seed"]]["final_measured_last"]}
    data["certificate_summary"] = {
        k: {"forward_ratio_last": [r["certificate_ratio"][-1] for r in rs if "certificate_ratio" in r],
            "gradient_ratio_first": [r["gradient_certificate_ratio"][0] for r in rs
                                     if "gradient_certificate_ratio" in r],
            "adamw_ratio_last": [r["adamw"]["ratio_last"][-1] for r in rs if "adamw" in r]}
        for k, rs in by_key.items() if rs}
    data["certificates"] = ("computed by verify.training.certificates in the training process"
                            if all("certificate_ratio" in r for r in main) else
                            "not computed: verify.training.certificates is not available on this branch")
    return data


def data(preset: str = "cpu", fast: bool = False, seed: int = 0, data_path=None, retrain: bool = False,
         workers: int | None = None, cache: bool | None = None) -> dict:
    """The K7 data of ``preset``; ``fast``: the smoke size, not cached unless ``cache=True`` (the tests' cache
    check). ``seed`` offsets every run's seed; ``retrain`` ignores the cache; ``workers`` processes."""
    name = "fast" if fast else preset
    if name not in PRESET_SPECS:
        raise ValueError(f"preset must be one of {sorted(PRESET_SPECS)}, got {preset!r}")
    spec = dict(PRESET_SPECS[name])
    spec["seeds"] = tuple(int(seed) + s for s in spec["seeds"])
    if spec["device"] == "cuda" and not torch.cuda.is_available():
        raise ValueError("preset 'gpu' needs a CUDA device (torch.cuda.is_available() is False)")
    corpus = load_corpus(data_path, **({} if spec["corpus_bytes"] is None else {"max_bytes": spec["corpus_bytes"]}))
    n_boot = 50 if fast else N_BOOT
    use_cache = (not fast) if cache is None else bool(cache)
    models = [model_data(spec, m, corpus, data_path, name, retrain, workers, use_cache=use_cache, n_boot=n_boot)
              for m in spec["models"]]
    out = {"corpus": corpus.describe(), "preset": name, **models[0]}
    if len(models) > 1:
        out["other_models"] = models[1:]
    return out


# ---- the drawing step ---------------------------------------------------------------------------------------------
def draw(data: dict, path) -> None:
    import matplotlib.pyplot as plt

    titles = {"mean_abs": "mean |x|", "entrywise_var": "entry-wise variance", "datawise_var": "data-wise variance"}
    runs = data["runs"]
    keys = [k for k in KEYS if k in data["bands"]]
    with style.figure_style():
        fig, axes = plt.subplots(2, 4, figsize=(style.figsize("double")[0], 1.9 * style.figsize("double")[1]))
        for ax, m in zip(axes[0], MOMENTS):
            for key in keys:
                b, c = data["bands"][key][m], style.color(key)
                ks = np.arange(len(b["mean"]))
                fit = data["growth_fit"].get(key, {}).get("by_moment", {}).get(m, {})
                lab = f"{LABELS[key]}: {fit.get('preferred', '?')}" if fit else LABELS[key]
                ax.plot(ks, b["mean"], color=c, label=lab, **style.MEASURED)
                ax.fill_between(ks, b["min"], b["max"], color=c, alpha=0.25, lw=0)
                # theory on the measurement: F1/F2 bounds (seed max) and, where present, the certificates
                bounds = [r["bounds"][m] for r in runs if r["key"] == key and r["bounds"].get(m)
                          and r["bounds"]["kind"] != "F6"]
                if bounds:
                    ax.plot(ks, np.max(bounds, 0), color=c, **style.THEORY)
                cert = [r for r in runs if r["key"] == key and "certificate_bound" in r]
                if cert and m == "mean_abs":
                    d = data["d"]
                    ax.plot(ks[-len(cert[0]["certificate_bound"]):],
                            np.max([r["certificate_bound"] for r in cert], 0) / math.sqrt(d), color=c,
                            **style.THEORY_ALT)
            ax.set_yscale("log")
            ax.set_title(titles[m])
            ax.set_xlabel("hidden state k")
        ax = axes[0][3]
        for key in keys:
            for r in (r for r in runs if r["key"] == key):
                ax.plot(r["history"]["step"], r["history"]["train_loss"], color=style.color(key), lw=0.5, alpha=0.5)
                ax.plot(r["history"]["eval_step"], r["history"]["val_loss"], color=style.color(key), lw=1.0)
        ax.set_title("loss (thin: train, thick: val)")
        ax.set_xlabel("training step")
        ax = axes[1][0]
        for key in keys:
            for r in (r for r in runs if r["key"] == key):
                mon = r["monitor"]
                ax.plot([q["step"] for q in mon], [q["weight_norm"] / mon[0]["weight_norm"] for q in mon],
                        color=style.color(key), lw=0.8)
        ax.set_title("‖W‖_F / ‖W‖_F at init")
        ax.set_xlabel("training step")
        ax = axes[1][1]
        for key in keys:
            for r in (r for r in runs if r["key"] == key):
                mon = r["monitor"]
                ax.plot([q["step"] for q in mon], [q["mean_abs"][-1] for q in mon], color=style.color(key), lw=0.8)
        ax.set_yscale("log")
        ax.set_title("mean |x_K| over training")
        ax.set_xlabel("training step")
        ax = axes[1][2]
        wd = data["weight_decay"]
        g = wd["grid"]
        ax.errorbar(range(len(g)), [t["val_loss"] for t in g], yerr=[t["val_loss_std"] for t in g], fmt="o",
                    color=style.color("pre"), ms=3, capsize=2)
        for i, t in enumerate(g):
            ax.plot([i] * len(t["val_loss_by_seed"]), t["val_loss_by_seed"], ".", color="0.5", ms=2)
        ax.set_xticks(range(len(g)), [f"{t['weight_decay']:g}" for t in g])
        verdict = ("separates" if wd.get("separates") else "does not separate")
        ax.set_title(f"pre: val loss vs λ\n({verdict}: t = {wd.get('t', float('nan')):.1f})")
        ax.set_xlabel("weight decay λ")
        ax = axes[1][3]
        abl = {k: v for k, v in data.get("ablations", {}).items() if not k.startswith("_")}
        if abl:
            names = ["reference"] + list(abl)
            vals = [data["ablations"]["_reference"]["mean_abs_last"]] + [abl[n]["mean_abs_last"] for n in names[1:]]
            for i, v in enumerate(vals):
                ax.plot([i] * len(v), v, "o", color=style.color("pre"), ms=3)
            ax.axhline(data["ablations"]["_reference"]["max_other_placement_mean_abs_last"], color="0.4", lw=0.8,
                       ls=":", label="max of peri/post")
            ax.set_xticks(range(len(names)), names, rotation=20, fontsize=6)
            ax.set_yscale("log")
            ax.legend(frameon=False, fontsize=6)
        ax.set_title("pre ablations: mean |x_K|")
        handles, labels = axes[0][0].get_legend_handles_labels()
        from matplotlib.lines import Line2D

        handles += [Line2D([], [], color="k", **style.THEORY), Line2D([], [], color="k", **style.THEORY_ALT)]
        labels += ["F2 (peri) / F1 (post) bound", "forward certificate"]
        fig.legend(handles, labels, loc="lower center", ncol=3, frameon=False, bbox_to_anchor=(0.5, -0.06))
        tb = data["token_budget"]
        fig.suptitle(f"K7: {data['n_layers']} blocks, d = {data['d']}, {len(data['seeds'])} seeds, "
                     f"{tb['tokens_per_run']:,} tokens per run (band: min–max over seeds; legend: growth law)",
                     y=1.01)
        fig.tight_layout()
        style.save(fig, path)


register_figure(NAME, title="K7: hidden-state moments across layers of trained GPTs (seeds, growth law, bounds)",
                data=data, draw=draw)

def _batched_setup(group: dict, spec: dict, insts: list, corpus_path, corpus_bytes):
    """The corpus, config, BatchedGPT, train config and monitor batch of one group's instances (K7 and F9b runs)."""
    from verify.training.batched import BatchedGPT, BatchedTrainConfig
    from verify.training.corpus import load_corpus

    corpus = load_corpus(corpus_path, **({} if corpus_bytes is None else {"max_bytes": corpus_bytes}))
    tr = group["train"]
    gcfg = gpt_config(vocab_size=corpus.vocab_size, dtype=DTYPES[spec["dtype"]], device=spec["device"], **group["gpt"])
    model = BatchedGPT(gcfg, [it["seed"] for it in insts], dt=[it["dt"] for it in insts])
    tcfg = BatchedTrainConfig(steps=tr["steps"], batch_size=tr["batch_size"], lr=tuple(it["lr"] for it in insts),
                              warmup=tr["warmup"], weight_decay=tuple(it["weight_decay"] for it in insts),
                              eval_every=tr["eval_every"], eval_batches=tr["eval_batches"], progress=False)
    mon_x, mon_y = corpus.batch("val", tr["monitor_batch"] * N_SUB, gcfg.block_size, np.random.default_rng(777),
                                model.device)
    return corpus, gcfg, model, tcfg, mon_x, mon_y
