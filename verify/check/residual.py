"""The residual-contribution identity: what a step adds to the stream equals Δt × the branch output reported.

Interpretability tools read a block's "branch output" with forward hooks on its attention and MLP modules and take
``resid_post = resid_pre + Δt·(hooked output)`` for granted. That holds for pre-LN; it fails silently where a norm
sits between the hooked module and the residual add (sandwich / peri norm, Gemma's post-norms) or after the add
(post-LN, nGPT). For each residual step s with input X this module measures the increment Δ = s(X) − X and the
reported branch output b, and says which of these holds:

- ``holds``   ‖Δ − Δt·b‖ ≤ RTOL·‖Δ‖: the stream receives exactly Δt × the reported output;
- ``scaled``  Δ = c·b with c ≠ Δt (the design multiplies its branch by a scalar the hook does not see: ReZero's α,
  CompleteP's L^−α); c is reported;
- ``fails``   Δ is not a multiple of b (a norm or another map between the hooked module and the add); the
  relative mismatch ‖Δ − c*b‖/‖Δ‖ at the best scalar c* = ⟨Δ, b⟩/‖b‖² is reported;
- ``not checked`` the block reports no branch.

Where b comes from: the block's own ``branch`` (zoo steps: ``ResidualStep.branch`` and its Δt), else the outputs of
the submodules named by ``--branch-hooks`` or the block's ``branch_modules`` attribute, else its direct children
called ``attn``, ``self_attn``, ``attention``, ``mlp``, ``ffn``, ``feed_forward`` or ``ff`` (the outputs of every
hooked module called during a step are summed; a tuple output counts by its first tensor).

RTOL = 1e-9: Δ is a difference of two O(‖X‖) float64 arrays, so its round-off is ~1e-16·‖X‖/‖Δ‖ times the few
operations in between; 1e-9 admits ‖X‖/‖Δ‖ up to ~10⁶ and is 10⁸ below the mismatch of any norm placed between.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from verify.check.contract import ContractError, forward_error
from verify.check.layers import ChainLayer, EulerRescaled

RTOL = 1e-9
COMMON_BRANCH_NAMES = ("attn", "self_attn", "attention", "mlp", "ffn", "feed_forward", "ff")
INSTANCES_CHECKED = 4


def branch_module_names(module: nn.Module, explicit: Sequence[str] | None) -> list[str]:
    names = dict(module.named_modules())
    if explicit:
        missing = [n for n in explicit if n not in names or not n]
        if missing:
            raise ContractError(f"--branch-hooks: the block has no submodule {missing[0]!r}; it has "
                                f"{sorted(n for n in names if n)[:12]}")
        return list(explicit)
    declared = getattr(module, "branch_modules", None)
    if declared is not None:
        return branch_module_names(module, tuple(declared))
    return [n for n, _ in module.named_children() if n in COMMON_BRANCH_NAMES]


def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def _outer_dt(layer: ChainLayer) -> float:
    return layer.dt if isinstance(layer, EulerRescaled) else 1.0


def _compare(delta: torch.Tensor, b: torch.Tensor, dt: float) -> dict:
    nd = float(delta.norm())
    nb = float(b.norm())
    if nd == 0.0 and nb == 0.0:
        return {"status": "holds", "relative_error": 0.0, "dt": dt, "scalar": dt}
    err = float((delta - dt * b).norm()) / max(nd, 1e-300)
    if err <= RTOL:
        return {"status": "holds", "relative_error": err, "dt": dt, "scalar": dt}
    c = float((delta * b).sum() / (b * b).sum()) if nb > 0 else 0.0
    resid = float((delta - c * b).norm()) / max(nd, 1e-300) if nd > 0 else 0.0
    if nd == 0.0 or resid <= RTOL:
        return {"status": "scaled", "relative_error": err, "dt": dt, "scalar": c}
    return {"status": "fails", "relative_error": err, "dt": dt, "scalar": c, "mismatch": resid}


@torch.no_grad()
def check_layer(layer: ChainLayer, x: torch.Tensor, hook_names: Sequence[str] | None) -> list[dict]:
    """The identity for every residual step of one layer on input x (I, n, d)."""
    out = []
    states = [x]
    for k in range(len(layer.step_names)):
        states.append(layer.run_step(k, states[-1]))
    for k, name in enumerate(layer.step_names):
        xin = states[k]
        reported = layer.reported_branch(k, xin)
        if reported is not None:
            dt, b = reported
            res = _compare(states[k + 1] - xin, b, float(dt))
            res.update(step=name, source="the block's own branch()", branch=f"{name}.branch")
            out.append(res)
            continue
        res = _hooked(layer, k, xin, hook_names)
        res["step"] = name
        out.append(res)
    return out


def _hooked(layer: ChainLayer, k: int, xin: torch.Tensor, hook_names: Sequence[str] | None) -> dict:
    module, batched = layer.hook_module(0)
    names = branch_module_names(module, hook_names)
    if not names:
        return {"status": "not checked", "source": "no branch reported (name submodules with --branch-hooks, or "
                                                   "give the block a branch_modules attribute)"}
    results = []
    idx = [None] if batched else range(min(layer.n_instances, INSTANCES_CHECKED))
    for i in idx:
        if i is not None:
            module, _ = layer.hook_module(i)
        x_i = xin if i is None else xin[i]
        captured = []
        subs = dict(module.named_modules())
        handles = [subs[n].register_forward_hook(lambda _m, _a, o, n=n: captured.append((n, _first_tensor(o))))
                   for n in names]
        try:
            y = layer.hook_step(module, k, x_i)
        except Exception as exc:
            raise forward_error(f"block step {layer.step_names[k]} (with hooks)", exc) from exc
        finally:
            for h in handles:
                h.remove()
        used = [n for n, t in captured if t is not None and t.shape[-x_i.dim():] == x_i.shape[-x_i.dim():]]
        if not used:
            return {"status": "not checked", "source": f"hooks on {names} saw no output of the stream's shape "
                                                       f"in this step"}
        b = sum(t.reshape(x_i.shape) for n, t in captured if n in used)
        results.append((_compare(y - x_i, b, _outer_dt(layer)), sorted(set(used))))
    worst = max(results, key=lambda r: r[0].get("mismatch", r[0]["relative_error"]))
    res, used = worst
    res["source"] = "hooks on " + ", ".join(used)
    res["branch"] = " + ".join(used)
    return res


def check(layers: Sequence[ChainLayer], x0: torch.Tensor, hook_names: Sequence[str] | None,
          n_layers: int = 2) -> dict:
    """The identity on the first ``n_layers`` layers (the rest are built alike), with a one-line summary."""
    per_layer = []
    x = x0
    for layer in layers[:n_layers]:
        per_layer.append(check_layer(layer, x, hook_names))
        with torch.no_grad():
            x = layer(x)
    steps = [s for layer in per_layer for s in layer]
    bad = [s for s in steps if s["status"] == "fails"]
    scaled = [s for s in steps if s["status"] == "scaled"]
    unchecked = [s for s in steps if s["status"] == "not checked"]
    if bad:
        s = bad[0]
        summary = (f"FAILS at {s['step']}: what is added to the stream is not Δt × the output of {s['branch']} "
                   f"(relative mismatch {s['mismatch']:.3g} at the best scalar {s['scalar']:.3g}); a norm or "
                   f"another map sits between that module and the stream (or the stream itself is rescaled), so "
                   f"hooks there misreport the residual contribution")
        status = "fails"
    elif scaled:
        s = scaled[0]
        summary = (f"scaled: what is added equals {s['scalar']:.4g} × the reported branch output at {s['step']} "
                   f"(Δt = {s['dt']:.4g}); the design multiplies its branch by a scalar the hook does not see")
        status = "scaled"
    elif len(unchecked) == len(steps):
        summary = f"not checked: {unchecked[0]['source']}"
        status = "not checked"
    else:
        worst = max(s["relative_error"] for s in steps if s["status"] == "holds")
        summary = (f"holds: what is added to the stream equals Δt × the reported branch output "
                   f"(worst relative error {worst:.1e} ≤ {RTOL:g})")
        status = "holds"
    return {"status": status, "summary": summary, "per_layer": per_layer, "rtol": RTOL}
