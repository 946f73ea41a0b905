"""The expected curve of the recognised placement's theorem, drawn next to the measured one, with a verdict.

At initialisation (independent layers, output maps with a sign-symmetric law) F5 gives the per-row second moment
m_l = E‖X_l‖²/n step by step, and the recognised placement says which law a step follows:

- identity            m⁺ = m;
- post, bounded       m⁺ = E‖s(X)‖²/n — the output energy, which F1/F5 say does not depend on the input;
- residual placements m⁺ = m + E‖u(X)‖²/n — the cross term 2E⟨X, u(X)⟩ vanishes (F5), and for pre, peri and
  outnorm the branch energy E‖u(X)‖² does not depend on the state's scale either (F5: it depends on X only
  through N(X), or not at all). A step without a norm may also rescale the stream, x⁺ = λx + F(x) (modded-nanogpt's
  √1.1, a decaying 0.7·x): λ = E⟨s(X), X⟩/E‖X‖² is measured over the instances, and where it differs from 1 by
  more than 4 standard errors the law is m⁺ = λ²m + E‖s(X) − λX‖²/n.

The branch (or output) energy of step k of instance i is measured on an input that is *independent of instance
i's weights and has the law of its state*: the state before the same step of another instance π(i) = i + 1
(independent networks). Where the step was measured to be exactly scale-invariant, that input is rescaled to the
scale of X_0 — the invariance is what the theorem claims, so a wrong placement fails here; otherwise it is scaled
to the *predicted* second moment, so the expected curve is a recursion of predictions, not a copy of the
measurement. The verdict compares R_l = mean_i m_l,i / mean_i m̂_l,i with 1 at every layer:
|log R_l| ≤ z·SE_l + δ, SE_l from the instance spread (the derangement makes neighbouring instances dependent,
so the lag-1 covariance is added), z the Bonferroni–Student quantile for a false alarm ≤ 1e-3 over all layers,
δ = 2 × the largest measured invariance error of the steps probed at X_0's scale (a norm's ε: ~1e-5).

After training the layers are no longer independent of their inputs, so F5's equality does not apply; the
expectation is then the placement's bound for *any* weights, on the RMS row norm r = √m per instance:
post/bounded r⁺ ≤ C (F1), pre/peri/outnorm r⁺ ≤ r + M (F2/F3), none r⁺ ≤ (1 + a)·r (F4), with the step
constants C, M, a estimated on other instances' states as max + 3·sd over the probes (an estimate of a
supremum, not a certificate; bounded steps are also probed at 10⁴× their input, where a norm's ε no longer
lowers the output). The verdict is measured ≤ bound at every layer; its tightness is the largest
measured/bound ratio.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from verify.check.layers import ChainLayer
from verify.check.measure import Trajectory, row_mean_square
from verify.check.placement import BOUNDED_LABELS
from verify.engine.stats import z_two_sided

FALSE_ALARM = 1e-3
ROUNDOFF = 1e-9
ENVELOPE_PROBES = 4
ENVELOPE_SIGMAS = 3.0
STREAM_GAIN_Z = 4.0  # two-sided normal false alarm 6e-5 per step: a plain residual step is rarely given a λ

LAWS = {
    "identity": "m⁺ = m",
    "post": "m⁺ = E‖s(X)‖²/n (F1/F5: output energy, independent of the input)",
    "bounded": "m⁺ = E‖s(X)‖²/n (output energy)",
    "residual": "m⁺ = m + E‖u(X)‖²/n (F5: cross term zero at initialisation)",
}


def law_of(label: str) -> str:
    if label == "identity":
        return "identity"
    return label if label in BOUNDED_LABELS else "residual"


def _derangement(n: int) -> torch.Tensor:
    return torch.roll(torch.arange(n), -1)


def _invariance_error(step: dict) -> float:
    ev = step["evidence"]
    if step["label"] == "identity":
        return 0.0
    if step["label"] in BOUNDED_LABELS:
        return abs(ev["output_norm_ratio"] - 1.0)
    return ev["scale_invariance"]


@torch.no_grad()
def expected_at_init(layers: Sequence[ChainLayer], traj: Trajectory, per_layer: list[list[dict]],
                     labels: list[list[str]] | None = None, branch_factor: float = 1.0,
                     reference_scale: bool | None = None) -> dict:
    """The F5 expected second moments m̂ (I, L+1) of the recognised placements, and the verdict.

    ``labels`` overrides the recognised labels (meta-tests inject a wrong placement), ``branch_factor``
    multiplies every branch/output energy (a wrong constant), ``reference_scale`` forces (True) or forbids
    (False) probing at X_0's scale instead of following each step's measured invariance.
    """
    I = traj.r.shape[0]
    if I < 2:
        return {"available": False, "why": "one instance: no independent input to probe a layer with"}
    perm = _derangement(I)
    m0 = torch.as_tensor(traj.m[:, 0])
    m_hat = m0.clone()
    curve = [m_hat.clone()]
    cross, deltas, gains_found = [], [0.0], []
    for l, layer in enumerate(layers):
        for k in range(len(layer.step_names)):
            step = per_layer[l][k]
            label = step["label"] if labels is None else labels[l][k]
            law = law_of(label)
            if law == "identity":
                continue
            invariant = step["invariant"] if reference_scale is None else reference_scale
            s = traj.step_inputs[l][k][perm]
            target = m0[perm] if invariant else m_hat
            p = s * torch.sqrt(target / row_mean_square(s)).view(-1, 1, 1)
            out = layer.run_step(k, p)
            if invariant and step["invariant"]:  # a forced reference scale claims exactness: no allowance
                deltas.append(2.0 * _invariance_error(step))
            if law in BOUNDED_LABELS:
                m_hat = branch_factor * row_mean_square(out)
                continue
            lam = 1.0
            if not invariant:
                lam = _stream_gain(out, p)
                if lam != 1.0:
                    gains_found.append({"layer": l, "step": step["step"], "gain": lam})
            upd = out - lam * p
            energy = row_mean_square(upd)
            denom = math.sqrt(float((upd * upd).sum()) * float((p * p).sum()))
            cross.append(float((upd * p).sum()) / denom if denom > 0 else 0.0)  # cosine of update and stream
            if invariant or lam != 1.0:
                m_hat = lam * lam * m_hat + branch_factor * energy
            else:
                # λ not resolved (a gain |λ − 1| below 4 SE, e.g. modded-nanogpt's √1.1 at a few instances): the
                # probe already has the predicted scale, so m⁺ = E‖s(X)‖²/n itself, which keeps the 2(λ − 1)m
                # that m + E‖s(X) − X‖²/n would drop (it compounds over layers); the cross term 2⟨X, F⟩ is
                # zero-mean per instance, so it widens the band instead of biasing the curve
                m_hat = row_mean_square(out) + (branch_factor - 1.0) * energy
        curve.append(m_hat.clone())
    m_hat = torch.stack(curve, dim=1).numpy()
    return {"available": True, **_verdict(traj.m, m_hat, max(deltas) + ROUNDOFF), "cross_term_cosine":
            float(np.max(np.abs(cross))) if cross else 0.0, "stream_gains": gains_found}


def _stream_gain(out: torch.Tensor, p: torch.Tensor) -> float:
    """λ of a step x⁺ = λx + F(x) with a sign-symmetric F: E⟨s(X), X⟩/E‖X‖², averaged over the instances.

    1 (a plain residual step) unless the instance mean differs from 1 by more than STREAM_GAIN_Z standard errors:
    then the stream itself is rescaled (modded-nanogpt's √1.1, a decaying 0.7·x) and the law is
    m⁺ = λ²m + E‖s(X) − λX‖²/n (the cross term ⟨X, F⟩ still vanishes).
    """
    per = (out * p).sum(dim=(-1, -2)) / (p * p).sum(dim=(-1, -2))
    lam = float(per.mean())
    se = float(per.std(unbiased=True)) / math.sqrt(per.numel())
    return lam if abs(lam - 1.0) > STREAM_GAIN_Z * se + 1e-12 else 1.0


def _verdict(m: np.ndarray, m_hat: np.ndarray, delta: float) -> dict:
    I, L1 = m.shape
    mean_m, mean_h = m.mean(0), m_hat.mean(0)
    log_ratio = np.log(mean_m / mean_h)
    dev = m / mean_m - m_hat / mean_h  # (I, L+1): per-instance contributions to log R (delta method)
    dev = dev - dev.mean(0)
    g0 = (dev * dev).mean(0)
    g1 = (dev * np.roll(dev, -1, axis=0)).mean(0)  # π(i) = i + 1 couples neighbours: lag-1 covariance
    se = np.sqrt((g0 + 2.0 * np.maximum(g1, 0.0)) / (I - 1))
    z = z_two_sided(FALSE_ALARM, n_checks=max(1, L1 - 1), dof=I - 1)
    half = z * se + delta
    err = np.abs(log_ratio[1:]) / half[1:]
    worst = int(np.argmax(err)) + 1
    return {
        "expected_rms": np.sqrt(mean_h).tolist(), "measured_rms": np.sqrt(mean_m).tolist(),
        "ratio": (mean_m / mean_h).tolist(), "ratio_last": float(mean_m[-1] / mean_h[-1]),
        "worst_layer": worst, "ratio_worst": float(mean_m[worst] / mean_h[worst]),
        "error_over_tolerance": float(err.max()), "halfwidth": half.tolist(), "z": z, "bias_allowance": delta,
        "false_alarm": FALSE_ALARM, "verdict": "PASS" if bool(np.all(err <= 1.0)) else "FAIL",
        "m_hat": m_hat,
    }


@torch.no_grad()
def envelope(layers: Sequence[ChainLayer], traj: Trajectory, per_layer: list[list[dict]]) -> dict:
    """The any-weights bound of each recognised placement on r per instance (F1/F2/F3/F4), and the verdict."""
    I = traj.r.shape[0]
    if I < 2:
        return {"available": False, "why": "one instance: no independent input to estimate the step constants"}
    shifts = [torch.roll(torch.arange(I), -j) for j in range(1, min(I - 1, ENVELOPE_PROBES) + 1)]
    bound = torch.as_tensor(traj.r[:, 0]).clone()
    curve = [bound.clone()]
    for l, layer in enumerate(layers):
        for k in range(len(layer.step_names)):
            law = law_of(per_layer[l][k]["label"])
            if law == "identity":
                continue
            vals = []
            for perm in shifts:
                p = traj.step_inputs[l][k][perm]
                out = layer.run_step(k, p)
                rp = torch.sqrt(row_mean_square(p))
                if law in BOUNDED_LABELS:  # at 10⁴× the input a norm's ε no longer matters: its supremum
                    vals.append(torch.sqrt(row_mean_square(out)))
                    vals.append(torch.sqrt(row_mean_square(layer.run_step(k, 1e4 * p))))
                elif per_layer[l][k]["label"] in ("none", "unknown"):
                    vals.append(torch.sqrt(row_mean_square(out - p)) / rp)
                else:
                    vals.append(torch.sqrt(row_mean_square(out - p)))
            v = torch.stack(vals)  # (probes, I)
            sd = v.std(0, unbiased=True) if v.shape[0] > 1 else torch.zeros(I, dtype=v.dtype)
            const = v.max(0).values + ENVELOPE_SIGMAS * sd
            if law in BOUNDED_LABELS:
                bound = const
            elif per_layer[l][k]["label"] in ("none", "unknown"):
                bound = bound * (1.0 + const)
            else:
                bound = bound + const
        curve.append(bound.clone())
    b = torch.stack(curve, dim=1).numpy()
    ratio = traj.r / b
    worst = np.unravel_index(int(np.argmax(ratio[:, 1:])), ratio[:, 1:].shape)
    return {"available": True, "bound_rms": b.mean(0).tolist(), "measured_rms": traj.r.mean(0).tolist(),
            "tightness": float(ratio[:, 1:].max()), "worst_layer": int(worst[1]) + 1,
            "verdict": "PASS" if bool(np.all(ratio[:, 1:] <= 1.0 + ROUNDOFF)) else "FAIL"}


def expected_mean_abs(rms: Sequence[float], d: int) -> list[float]:
    """mean |x| of Gaussian entries with the given RMS row norm: √(2/π)·r/√d (a reference, not a theorem)."""
    return [math.sqrt(2.0 / math.pi) * r / math.sqrt(d) for r in rms]
