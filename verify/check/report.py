"""Printing and drawing a ``verify.check`` result: the lines the README explains, check.png and coord.png.

The printout is a list of sections (:data:`SECTIONS`), each a function from the result to its lines, in order:
notes, design, growth, placement, theory, expected curve, residual identity, criterion, advice, coordinate check,
after training. The ``advice`` section prints ``result["advice"]["lines"]`` when a provider has filled it (the
predicted stable (Δt, lr) region), and nothing while it is None.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

# |cos(update, stream)| of an independent sign-symmetric branch is ~1/√(n·d) per instance and averages out over
# instances; 0.3 is above every zoo stack (measured ≤ 0.2 at d = 16) and flags a branch built from the stream.
CORRELATED_COSINE = 0.3


def _fmt(v, spec=".3g"):
    return "n/a" if v is None else format(v, spec)


def _ci(ci, spec=".3g"):
    return "" if ci is None else f" (95% CI {format(ci[0], spec)}..{format(ci[1], spec)})"


def growth_line(g: dict) -> str:
    regime = g["regime"]
    detail = {
        "exponential": f"rate {g['rate']:.3g} per layer{_ci(g['rate_ci95'])}",
        "polynomial": f"exponent {g['exponent']:.3g}{_ci(g['exponent_ci95'])}",
        "bounded": f"deep-half log-log slope {g['deep_exponent']:.3g}",
        "decaying": f"r_L/r_0 = {g['growth_curve'][-1]:.3g}, log-rate {g['decay_rate']:.3g} per layer"
                    f"{_ci(g['decay_rate_ci95'])}",
        "identity-at-init": "every block maps X to X: nothing grows or decays at initialisation",
    }[regime]
    conf = ("no bootstrap (one effective instance)" if g["confidence"] is None
            else f"bootstrap confidence {g['confidence']:.0%}")
    return f"forward growth: {regime} — {detail}; {conf}"


def section_notes(r):
    return [f"note: {n}" for n in r["notes"]]


def section_design(r):
    d = r["design"]
    inst = (f"{d['instances']} independent instances" if d["independent_instances"] else
            f"{d['instances']} instances, {d['effective_instances']} effective")
    how = ("the design’s own" if d["dt_inside_block"] else "the block as written" if d["dt"] == 1
           else "applied outside the block")
    dt = f"Δt = {d['dt']:g} ({how})"
    steps = ("one step each: no residual steps exposed" if d["steps_per_block"] == ["forward"]
             else "+".join(d["steps_per_block"]))
    return [f"design: {d['label']} — d={d['d']}, depth {d['depth']} blocks ({steps}), {inst}, {d['n_tokens']} "
            f"tokens, {dt}, float64"]


def section_growth(r):
    return [growth_line(r["growth"])]


def section_placement(r, prefix=""):
    p = r["placement"]
    out = [f"{prefix}placement: {p['description']} — {p['reason']}"]
    dec = r.get("declared")
    if dec is not None:
        ok = "recognised as expected" if dec["recognised_as_expected"] else "NOT recognised as expected"
        out.append(f"{prefix}declared zoo placement {dec['placement']}: {ok} ({dec['expected_label']})")
    return out


def section_theory(r, prefix=""):
    t = r["theory"]
    if t["regime"] is None:
        return [f"{prefix}theory: {t['statement']}"]
    curve = "bound" if "tightness" in r["expected"] else "expected curve"
    verdict = ("agrees" if t["agrees"] else
               f"the regime label differs, but the {curve} passes (the label is a deep-half fit at finite depth)"
               if t["consistent"] else "DISAGREES")
    return [f"{prefix}theory ({t['placement']}): {t['statement']} — predicts {t['regime']}: {verdict} with the "
            f"measured {r['growth']['regime']}"]


def section_expected(r, prefix=""):
    e = r["expected"]
    if not e.get("available", False):
        return [f"{prefix}expected curve: not available ({e.get('why', '')})"]
    if "tightness" in e:
        return [f"{prefix}bound ({e['kind']}: F1/F2/F3/F4 with step constants estimated on other instances): "
                f"{e['verdict']} — largest measured/bound ratio {e['tightness']:.3g} at layer {e['worst_layer']}"]
    half = e["halfwidth"][e["worst_layer"]]
    gains = sorted({round(g["gain"], 4) for g in e.get("stream_gains", [])})
    stream = (f"; the stream is rescaled by λ ≈ {', '.join(f'{g:g}' for g in gains[:3])} per step (law "
              f"m⁺ = λ²m + E‖s − λx‖²/n)" if gains else "")
    return [f"{prefix}expected curve ({e['kind']}): {e['verdict']} — measured/expected second moment at the last "
            f"layer {e['ratio_last']:.4g}, worst {e['ratio_worst']:.4g} at layer {e['worst_layer']} (band |log ratio| "
            f"≤ {half:.3g}, false alarm ≤ {e['false_alarm']:g}; largest |cos(update, stream)| "
            f"{e['cross_term_cosine']:.2g}){stream}"] + (
        [f"{prefix}  the update is correlated with the stream (cosine {e['cross_term_cosine']:.2g}; F5's cross term "
         "vanishes for a sign-symmetric output map, cosine ≈ 0): the block is outside the theorem's assumptions"]
        if e["verdict"] == "FAIL" and e["cross_term_cosine"] > CORRELATED_COSINE else [])


def section_residual(r, prefix=""):
    res = r.get("residual_identity")
    return [] if res is None else [f"{prefix}residual identity: {res['summary']}"]


def section_criterion(r):
    c = r["criterion"]
    return [f"criterion (B={c['B']:.3g}, τ={c['tau']:.3g}, both directions): recommended Δt = "
            f"{_fmt(c['recommended_dt'], 'g')} — {c['note']}"]


def section_advice(r):
    adv = r.get("advice")
    return [] if not adv else [f"advice: {line}" for line in adv.get("lines", [])]


def section_coord(r):
    c = r.get("coord_check")
    if not c:
        return []
    worst = [abs(np.log(s["ratio"])) for row in c["configs"] for s in (row["init"], row.get("trained"))
             if s is not None and s["ratio"]]
    cfg = ", ".join(f"d={row['d']}/L={row['depth']}" for row in c["configs"])
    return [f"coordinate check ({cfg}): {c['verdict']} — {c['passed']}/{c['checked']} expected curves pass"
            + (f", worst |log ratio| {max(worst):.3g}" if worst else "")]


def section_trained(r):
    t = r.get("after_training")
    if not t:
        return []
    tr = t["training"]
    out = [f"after {tr['steps']} training steps (loss {tr['loss_first']:.3f} -> {tr['loss_last']:.3f}), measured on "
           f"the same input:"]
    out.append("  " + growth_line(t["growth"]))
    out += section_placement(t, "  ") + section_theory(t, "  ") + section_expected(t, "  ") + \
        section_residual(t, "  ")
    return out


SECTIONS = [section_notes, section_design, section_growth, section_placement, section_theory, section_expected,
            section_residual, section_criterion, section_advice, section_coord, section_trained]


def lines(result: dict) -> list[str]:
    return [line for section in SECTIONS for line in section(result)]


# ---- drawing ----------------------------------------------------------------------------------------------------
def draw(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from verify.figures import style

    trained = result.get("after_training")
    with style.figure_style():
        fig, axes = plt.subplots(1, 3, figsize=(style.DOUBLE, 2.4))
        _curve_panel(axes[0], result, "at initialisation")
        if trained:
            _curve_panel(axes[1], trained, "after training")
        else:
            _sweep_panel(axes[1], result["criterion"])
        ax = axes[2]
        ax.plot(result["measured"]["gradient_norms"], color=style.color("pre"), label="init", **style.MEASURED)
        if trained:
            ax.plot(trained["measured"]["gradient_norms"], color=style.color("post"), label="trained", **style.MEASURED)
            ax.legend()
        ax.set_yscale("log")
        ax.set_xlabel("layer l")
        ax.set_title("gradient norm ‖p_l‖/‖p_L‖")
        fig.suptitle(f"{result['design']['label']}: {result['placement']['label']}, {result['growth']['regime']}; "
                     f"recommended Δt {_fmt(result['criterion']['recommended_dt'], 'g')}", fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=style.DPI)
        plt.close(fig)


def _curve_panel(ax, r: dict, when: str) -> None:
    from verify.figures import style

    e = r["expected"]
    meas = np.asarray(r["measured"]["rms"])
    ax.plot(meas, color=style.color("peri"), label="measured RMS r_l", **style.MEASURED)
    if e.get("available"):
        key = "bound_rms" if "bound_rms" in e else "expected_rms"
        label = "any-weights bound" if key == "bound_rms" else "expected (F5)"
        ax.plot(e[key], color="black", label=label, **style.THEORY)
        ratio = e.get("ratio_last", e.get("tightness"))
        ax.set_title(f"{when}: {e['verdict']} (ratio {ratio:.3g})")
    else:
        ax.set_title(f"{when}: no expected curve")
    ax.set_yscale("log")
    ax.set_xlabel("layer l")
    ax.legend()


def _sweep_panel(ax, c: dict) -> None:
    from verify.figures import style

    dts = [s["dt"] for s in c["sweep"]]
    ax.plot(dts, [s["forward_gain"] for s in c["sweep"]], color=style.color("pre"), label="max r_l/r_0",
            **style.MEASURED)
    ax.plot(dts, [s["forward_gain_min"] for s in c["sweep"]], color=style.color("none"), label="min r_l/r_0",
            **style.MEASURED)
    ax.axhline(c["B"], color="black", **style.THEORY)
    ax.axhline(1.0 / c["B"], color="black", **style.THEORY)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Δt")
    ax.set_title(f"criterion: recommended Δt {_fmt(c['recommended_dt'], 'g')}")
    ax.legend()


def draw_coord(result: dict, path: Path) -> None:
    """Coordinate-check plot: RMS and mean |x| per layer for each (width, depth), measured vs expected."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from verify.figures import style

    c = result["coord_check"]
    stages = ["init"] + (["trained"] if any("trained" in row for row in c["configs"]) else [])
    cmap = plt.get_cmap("viridis")
    with style.figure_style():
        fig, axes = plt.subplots(2, len(stages), figsize=(style.DOUBLE * len(stages) / 2 + 1, 4.2), squeeze=False)
        for j, stage in enumerate(stages):
            for i, row in enumerate(c["configs"]):
                s = row[stage]
                col = cmap(i / max(1, len(c["configs"]) - 1))
                lab = f"d={row['d']}, L={row['depth']}: {s['verdict']}"
                axes[0, j].plot(s["rms"], color=col, label=lab, **style.MEASURED)
                axes[1, j].plot(s["mean_abs"], color=col, **style.MEASURED)
                if s["expected_rms"]:
                    axes[0, j].plot(s["expected_rms"], color=col, **style.THEORY)
                if s["expected_mean_abs"]:
                    axes[1, j].plot(s["expected_mean_abs"], color=col, **style.THEORY_ALT)
            kind = "expected (F5)" if stage == "init" else "any-weights bound"
            axes[0, j].set_title(f"{'initialisation' if stage == 'init' else 'after training'}: RMS r_l "
                                 f"(dashed: {kind})")
            axes[1, j].set_title("mean |x|" + (" (dotted: √(2/π)·r̂/√d, Gaussian entries)" if stage == "init" else ""))
            for a in axes[:, j]:
                a.set_yscale("log")
                a.set_xlabel("layer l")
            axes[0, j].legend()
        fig.suptitle(f"coordinate check of {result['design']['label']}: {c['verdict']} ({c['passed']}/{c['checked']} "
                     f"expected curves pass)", fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=style.DPI)
        plt.close(fig)
